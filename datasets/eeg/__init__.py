"""EEG / iEEG recordings: readers, the window cache, datamodules, simulation, PhysioNet MMI, UEA EEG.

Public names are exported once, from :mod:`chanformer.datasets`.
"""
