"""Whole-slide images: slide reading and tiling, the Zarr bag store, bag datasets/datamodules, bag tables.

Feature extraction (which needs an encoder) lives above, in :mod:`chanformer.pipelines.wsi_features`.
Public names are exported once, from :mod:`chanformer.datasets`.
"""
