"""What a datamodule tells a task about its data, so values that must agree are linked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chanformer.channels import ChannelVocab

__all__ = ["DataSpec"]


@dataclass
class DataSpec:
    """Facts about a dataset that models need to be built.

    Datamodules expose one as ``.spec``; the CLI links ``data.spec`` into ``model.data_spec``
    (``link_arguments``), so class counts, lengths and vocabularies are never copied by hand.

    Attributes:
        vocab: channel vocabulary the dataset's ``channel_ids`` index.
        n_times: samples per channel along time (``T``), for encoders with a fixed length.
        image_size: pixel height/width for image encoders.
        sfreq: sampling rate in Hz.
        num_classes: number of target classes (classification).
        class_names: their names, in index order.
        horizon: forecast length (forecasting).
        channel_mean / channel_std: per-vocabulary-id scaler statistics applied by the dataset,
            so forecasts can be reported on the original scale.
        feature_dim: width of precomputed instance features (MIL bags of slide tiles).
        channels: the vocabulary keys of the dataset's channels in file order, when every sample
            holds the same set (a fixed montage); ``None`` when the set varies. Encoders with a
            fixed input layout (DBConformer) take their montage from it.
        multilabel: targets are multi-hot ``[num_classes]`` vectors (several labels per sample)
            rather than one class index; :class:`~chanformer.tasks.ClassificationTask` then trains
            one sigmoid per label.
    """

    vocab: ChannelVocab = field(default_factory=ChannelVocab)
    n_times: int | None = None
    image_size: int | None = None
    sfreq: float | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    horizon: int | None = None
    channel_mean: list[float] | None = None
    channel_std: list[float] | None = None
    feature_dim: int | None = None
    channels: list[str] | None = None
    multilabel: bool = False

    def encoder_kwargs(self, data_args: dict[str, str]) -> dict[str, Any]:
        """Map spec fields onto an encoder's constructor names (``Encoder.data_args``)."""
        out: dict[str, Any] = {}
        for spec_field, kwarg in data_args.items():
            value = len(self.vocab) if spec_field == "vocab_size" else getattr(self, spec_field)
            if value is not None:
                out[kwarg] = value
        return out
