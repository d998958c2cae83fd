"""Multichannel images: microscopy and satellite readers, manifest datasets, simulation, datamodules.

Public names are exported once, from :mod:`chanformer.datasets`.
"""
