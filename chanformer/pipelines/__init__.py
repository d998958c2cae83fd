"""Pipelines: what needs both data readers and models (above ``datasets`` and the model families).

* :mod:`chanformer.pipelines.embed` — :class:`Pipeline`: a pretrained encoder plus its stored input
  contract, from a raw recording, image or sound (file, mne object, xarray, numpy) to embeddings.
* :mod:`chanformer.pipelines.wsi_heatmap` — attention heatmaps of MIL heads on slide thumbnails.
"""

from chanformer.pipelines.embed import EmbeddingResult, Pipeline, input_kind

__all__ = ["EmbeddingResult", "Pipeline", "input_kind"]
