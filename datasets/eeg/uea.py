"""Electrode names of the UEA EEG archives, mapped onto the 10-05 vocabulary, and a datamodule
that trains one model across several archives at once.

The UEA ``.ts`` files carry no channel names; the archives' own descriptions (the ``.txt`` beside
each archive) do, for some of them. :data:`UEA_EEG_ELECTRODES` records them in file order:

* ``FingerMovements`` (28 channels, 100 Hz, 0.5 s): the description lists all 28 names, all of
  them 10-05 positions (``F3 ... CP6, O1, O2``).
* ``SelfRegulationSCP1`` (6 channels, 256 Hz, 3.5 s): channels 3-6 are described as "2 cm frontal /
  parietal of C3 / C4"; in the 10-05 system those points are ``FCC3``, ``CCP3``, ``FCC4``, ``CCP4``
  (about 1.8 cm from C3/C4 on mne's template head). Channels 1-2 are ``A1-Cz`` and ``A2-Cz``:
  mastoid-to-vertex derivations, not electrodes at one scalp position, so they stay unnamed with
  archive-specific keys (``uea/SelfRegulationSCP1/A1-Cz``, ``.../A2-Cz``).
* ``EyesOpenShut`` (14 channels, 128 Hz, 1 s): its description names no electrodes; it is the UCI
  "EEG Eye State" recording from an Emotiv EPOC headset, whose 14 columns are, in UCI's order,
  ``AF3 F7 F3 FC5 T7 P7 O1 O2 P8 T8 FC6 F4 F8 AF4``. That order is assumed to survive the UEA
  reformulation (not stated in the ``.txt``).

:func:`uea_eeg_vocab` is the 10-05 vocabulary plus every unnamed key above, identical for every
archive, so an encoder trained on one archive loads onto another with its channel table intact.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import Channel, ChannelVocab, eeg_1005_vocab
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.timeseries.datamodules import UEADataModule
from chanformer.spec import DataSpec

__all__ = [
    "UEA_EEG_ELECTRODES",
    "UEAJointDataModule",
    "resample_series",
    "uea_eeg_keys",
    "uea_eeg_vocab",
]

#: Channel names per archive, in file order; a name with ``/`` is an unnamed (archive-specific) key.
UEA_EEG_ELECTRODES: dict[str, tuple[str, ...]] = {
    "FingerMovements": (
        "F3", "F1", "Fz", "F2", "F4", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "C5", "C3",
        "C1", "Cz", "C2", "C4", "C6", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "O1", "O2",
    ),
    "SelfRegulationSCP1": (
        "uea/SelfRegulationSCP1/A1-Cz", "uea/SelfRegulationSCP1/A2-Cz", "FCC3", "CCP3", "FCC4", "CCP4",
    ),
    "EyesOpenShut": (
        "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
    ),
}  # fmt: skip


def uea_eeg_keys(name: str) -> list[str]:
    """Vocabulary keys of archive ``name``'s channels (``eeg/<10-05 name>`` or an unnamed key)."""
    if name not in UEA_EEG_ELECTRODES:
        raise ValueError(
            f"no electrode names are known for UEA archive {name!r} (known: {sorted(UEA_EEG_ELECTRODES)}); "
            "drop montage= or pass channel_names="
        )
    return [n if "/" in n else f"eeg/{n}" for n in UEA_EEG_ELECTRODES[name]]


def uea_eeg_vocab() -> ChannelVocab:
    """The 10-05 vocabulary (positions from mne) plus the unnamed UEA channels (no position)."""
    vocab = eeg_1005_vocab()
    vocab.name = "eeg_1005+uea"
    for keys in UEA_EEG_ELECTRODES.values():
        for k in keys:
            if "/" in k and k not in vocab:
                vocab.add(Channel(k, kind="eeg", unit="V"))
    return vocab


def resample_series(x: np.ndarray, length: int) -> np.ndarray:
    """``[C, T] -> [C, length]`` by polyphase resampling (anti-aliased; ``padtype='line'`` keeps a
    trend at the edges from ringing). ``length == T`` returns ``x`` unchanged."""
    from math import gcd

    from scipy.signal import resample_poly

    t = x.shape[-1]
    if length < 1:
        raise ValueError(f"resample length must be >= 1, got {length}")
    if t == length:
        return x
    if np.isnan(x).any():
        raise ValueError("cannot resample a case with missing values (NaN); fill them first")
    g = gcd(length, t)
    out = resample_poly(x.astype(np.float64), length // g, t // g, axis=-1, padtype="line")
    return np.ascontiguousarray(out[..., :length], dtype=np.float32)


class _OffsetTargets(Dataset[ChannelSample]):
    """A dataset whose class indices are shifted by ``offset`` (one label space over archives)."""

    def __init__(self, ds: Dataset[ChannelSample], offset: int) -> None:
        self.ds, self.offset = ds, offset

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> ChannelSample:
        s = self.ds[i]
        return replace(s, target=s.target + self.offset if s.target is not None else None)


class UEAJointDataModule(ChannelDataModule):
    """Several UEA archives as one classification problem, for cross-archive (pre)training.

    Every archive is read by :class:`~chanformer.datasets.UEADataModule` with the same arguments
    (own train/val split and own normalisation statistics), resampled to ``resample_to`` samples
    per case and indexed by one shared vocabulary (``montage="eeg_1005"``: :func:`uea_eeg_vocab`).
    Classes are the union ``<archive>/<class>`` (archive ``k``'s labels shifted by the number of
    classes before it), so one head learns every archive's task; the exported encoder is then
    fine-tuned per archive with ``model.pretrained=``. The other arguments are those of
    :class:`~chanformer.datasets.UEADataModule`.

    Args:
        names: archive names.
        resample_to: samples per case for every archive (required: lengths and rates differ).
        montage: channel names and vocabulary, ``"eeg_1005"``.
    """

    def __init__(
        self,
        names: list[str],
        resample_to: int = 128,
        montage: Literal["eeg_1005"] = "eeg_1005",
        batch_size: int = 32,
        val_fraction: float = 0.2,
        seed: int = 0,
        normalize: Literal["dataset"] | None = "dataset",
        root: str | None = None,
        num_workers: int = 0,
        augment_shift: float = 0.0,
        augment_scale: float = 0.0,
        augment_noise: float = 0.0,
        augment_channel_drop: float = 0.0,
    ) -> None:
        if not names:
            raise ValueError("UEAJointDataModule needs at least one archive name")
        self.parts = [
            UEADataModule(name=n, batch_size=batch_size, val_fraction=val_fraction, seed=seed, normalize=normalize, root=root,
                          montage=montage, resample_to=resample_to, augment_shift=augment_shift, augment_scale=augment_scale,
                          augment_noise=augment_noise, augment_channel_drop=augment_channel_drop)
            for n in names
        ]  # fmt: skip
        super().__init__(vocab=self.parts[0].vocab, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.names, self.resample_to = list(names), resample_to
        self.augment = self.parts[0].augment

    @property
    def classes(self) -> list[str]:
        return [f"{p.name}/{c}" for p in self.parts for c in p.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, n_times=self.resample_to, num_classes=self.num_classes,
                        class_names=self.classes)  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        offset, train, val, test = 0, [], [], []
        for p in self.parts:
            p.setup(stage)
            if p.train_dataset is None or p.test_dataset is None:  # UEADataModule.setup builds both
                raise RuntimeError(f"UEADataModule({p.name!r}).setup() built no train or test dataset")
            train.append(_OffsetTargets(p.train_dataset, offset))
            if p.val_dataset is not None:
                val.append(_OffsetTargets(p.val_dataset, offset))
            test.append(_OffsetTargets(p.test_dataset, offset))
            offset += p.num_classes
        self.train_dataset = ConcatDataset(train)
        self.val_dataset = ConcatDataset(val) if val else None
        self.test_dataset = ConcatDataset(test)

    def val_dataloader(self):  # type: ignore[no-untyped-def,override]
        return [] if self.train_dataset is not None and self.val_dataset is None else super().val_dataloader()
