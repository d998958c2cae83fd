"""Time series: the ``.ts`` format, offline sources, datasets and datamodules.

Public names are exported once, from :mod:`chanformer.datasets`.
"""
