"""Speech: audio I/O, augmentation, datasets, verification trials, espeak synthesis, datamodules.

Public names are exported once, from :mod:`chanformer.datasets`.
"""
