"""Pipelines: what needs both data readers and models (above ``datasets`` and the model families).

* :mod:`chanformer.pipelines.wsi_heatmap` — attention heatmaps of MIL heads on slide thumbnails.
"""
