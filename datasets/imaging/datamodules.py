"""Lightning datamodule for multichannel images: synthetic sets, manifests, CellProfiler fields.

:class:`ImageDataModule` wraps either :class:`~chanformer.datasets.imaging.sim.SyntheticImageDataset`
(``source="synthetic"``), an :class:`~chanformer.datasets.imaging.datasets.ImageManifestDataset`
(``source="manifest"``) or the real CellProfiler example fields shipped in the shared data folder
(``source="cellprofiler"``: 6 fields with 3, 3 and 2 channels of different stains, read as random
tiles - a ragged channel set). Training batches can go through Hierarchical Channel Sampling
(``hcs=True``) on the device in ``on_after_batch_transfer``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch.utils.data import Dataset, Subset

from chanformer.batch import ChannelSample
from chanformer.channels import Channel, ChannelVocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule, stratified_split
from chanformer.datasets.imaging.datasets import ImageAugment, ImageManifestDataset
from chanformer.datasets.imaging.sim import SyntheticImageDataset, cell_painting_vocab
from chanformer.spec import DataSpec
from chanformer.transforms.channel_sampling import HierarchicalChannelSampling

__all__ = ["CELLPROFILER_DEFAULT", "ImageDataModule", "cellprofiler_manifest", "resolve_data_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default location of the CellProfiler example images (relative to the repository root).
CELLPROFILER_DEFAULT = "../shared/data/microscopy-cellprofiler"

# (set, file glob, suffix -> channel key): one file per channel, grouped into fields.
_CP_SETS: dict[str, dict[str, str]] = {
    "ExampleHuman": {"d0": "stain/DNA", "d1": "stain/PH3", "d2": "stain/CellBody"},
    "ExampleFly": {"D": "stain/DNA", "F": "stain/Fly-F", "R": "stain/Fly-R"},
    "ExampleColocalization": {"G": "stain/Cy3", "R": "stain/Cy5"},
}


def resolve_data_path(path: str | os.PathLike[str], what: str = "data folder") -> Path:
    """``path`` as given if it exists, else relative to the repository root; a clear error otherwise."""
    p = Path(path).expanduser()
    for cand in (p, REPO_ROOT / p):
        if cand.exists():
            return cand.resolve()
    raise FileNotFoundError(
        f"{what} not found: {str(path)!r} (tried {p.resolve()} and {(REPO_ROOT / p).resolve()}); "
        "pass its location, e.g. --data.init_args.data_root=/path/to/microscopy-cellprofiler"
    )


def cellprofiler_manifest(root: str | os.PathLike[str] = CELLPROFILER_DEFAULT) -> pd.DataFrame:
    """Manifest (``image_id``, ``path``, ``channel``, ``set``) of the CellProfiler example fields.

    One row per channel file; rows sharing ``image_id`` form one field. ExampleHuman has 3
    channels (DNA, PH3, cell body), ExampleFly 3 (DNA and two further stains), ExampleColocalization
    2 (Cy3-like, Cy5-like), so the fields have ragged, partly overlapping channel sets.
    """
    base = resolve_data_path(root, "CellProfiler example images")
    rows = []
    for set_name, suffixes in _CP_SETS.items():
        folder = base / set_name / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"CellProfiler example set missing: {folder}")
        fields: dict[str, dict[str, Path]] = {}
        for f in sorted(folder.iterdir()):
            stem = f.stem
            for suf in suffixes:
                if stem.endswith(f"_{suf}") or (set_name == "ExampleHuman" and stem.endswith(suf)):
                    fields.setdefault(stem[: -len(suf)].rstrip("_"), {})[suf] = f
                    break
        for fid, files in sorted(fields.items()):
            for suf, key in suffixes.items():
                if suf in files:
                    rows.append({"image_id": f"{set_name}/{fid}", "path": str(files[suf]), "channel": key,
                                 "set": set_name})  # fmt: skip
    if not rows:
        raise FileNotFoundError(f"no CellProfiler example images under {base}")
    return pd.DataFrame(rows)


class _Repeat(Dataset[ChannelSample]):
    """``times`` passes over ``ds`` (each access of a tiled dataset draws a new random tile)."""

    def __init__(self, ds: Dataset[ChannelSample], times: int) -> None:
        self.ds, self.times = ds, times

    def __len__(self) -> int:
        return len(self.ds) * self.times  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> ChannelSample:
        return self.ds[i % len(self.ds)]  # type: ignore[arg-type]


class ImageDataModule(ChannelDataModule):
    """Multichannel images as :class:`~chanformer.batch.ChannelBatch` es ``[B, C, H, W]``.

    Args:
        source: ``"synthetic"`` (:class:`SyntheticImageDataset`), ``"manifest"`` (CSV/Parquet
            manifest, see :class:`ImageManifestDataset`) or ``"cellprofiler"`` (real example
            fields from ``data_root``, no labels: for self-supervised pretraining).
        style: synthetic style, ``"cells"`` (5 Cell Painting stains) or ``"fields"`` (Sentinel-2).
        channels: synthetic channel keys (default: all of the style's).
        num_train / num_val / num_test: synthetic set sizes (disjoint seeds).
        image_size: synthetic image side, or tile side for manifests (``tile``).
        num_classes: synthetic classes.
        noise: synthetic pixel noise.
        manifest: manifest path (``source="manifest"``).
        data_root: CellProfiler folder; relative paths are tried from the working directory, then
            from the repository root (default ``../shared/data/microscopy-cellprofiler``).
        tile: random square crop read from each file (manifest/CellProfiler); ``None`` = whole image.
        repeats: passes over the manifest's images per training epoch (a new random tile each).
        val_fraction / test_fraction: manifest split (stratified when labelled). With no labels and
            fewer than 10 images every image is used for training, and val/test read fixed-seed
            tiles of the same images (a reconstruction-loss monitor, not a held-out estimate).
        normalize: per-channel percentile normalisation fitted on the training images
            (manifest/CellProfiler; statistics cached at ``normalizer_path`` when given).
        hcs: Hierarchical Channel Sampling of training batches (``hcs_min_channels`` kept at least).
        channel_drop: per-sample channel dropout of training samples (keeps >= 1), on the CPU.
        flip_rot: random flips/90-degree rotations of training samples.
        vocab_path: JSON vocabulary to index channels with (default: built from the source).

    """

    def __init__(
        self,
        source: Literal["synthetic", "manifest", "cellprofiler"] = "synthetic",
        style: Literal["cells", "fields"] = "cells",
        channels: list[str] | None = None,
        num_train: int = 1000,
        num_val: int = 200,
        num_test: int = 500,
        image_size: int = 32,
        num_classes: int = 4,
        noise: float = 0.1,
        manifest: str | None = None,
        data_root: str = CELLPROFILER_DEFAULT,
        tile: int | None = None,
        repeats: int = 1,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        normalize: bool = True,
        normalizer_path: str | None = None,
        hcs: bool = False,
        hcs_min_channels: int = 1,
        channel_drop: float = 0.0,
        flip_rot: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        vocab_path: str | None = None,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"ImageDataModule(repeats={repeats}): must be >= 1")
        self.source, self.style, self.channels = source, style, channels
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.image_size, self._num_classes, self.noise = image_size, num_classes, noise
        self.tile, self.repeats = tile, repeats
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.normalize, self.normalizer_path = normalize, normalizer_path
        self.channel_drop, self.flip_rot = channel_drop, flip_rot
        self._frame: pd.DataFrame | None = None
        if source == "manifest":
            if manifest is None:
                raise ValueError("ImageDataModule(source='manifest') needs manifest=PATH")
            self._frame_path: Any = resolve_data_path(manifest, "image manifest")
        elif source == "cellprofiler":
            self._frame_path = cellprofiler_manifest(data_root)
        elif source != "synthetic":
            raise ValueError(f"ImageDataModule(source={source!r}): expected 'synthetic', 'manifest' or 'cellprofiler'")
        vocab = ChannelVocab.load(vocab_path) if vocab_path else self._default_vocab()
        super().__init__(vocab=vocab, batch_size=batch_size, num_workers=num_workers, seed=seed)
        # names tasks also use (ClassificationTask.num_classes, MaskedChannelPretrainTask.channel_drop) would
        # make a logger refuse to merge the hparams when the values differ
        self.save_hyperparameters(ignore=["num_classes", "channel_drop"])
        if hcs:
            # global RNG (not a private generator): its state travels in checkpoints for exact resumes
            self.augment = HierarchicalChannelSampling(min_channels=hcs_min_channels)  # type: ignore[assignment]
        self._labelled: bool | None = None
        self._classes: list[Any] | None = None

    # -- facts for linking ---------------------------------------------------------------
    def _default_vocab(self) -> ChannelVocab:
        if self.source == "synthetic":
            return SyntheticImageDataset(1, max(8, self.image_size), self._num_classes, style=self.style).vocab
        if self.source == "cellprofiler":
            keys = list(dict.fromkeys(self._frame_path["channel"]))
            return ChannelVocab("cellprofiler", [Channel(k, kind="stain") for k in keys])
        # manifest: stain keys named in the manifest (else the Cell Painting stains, grown on read)
        path = self._frame_path
        df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
        self._frame = df
        col = "channel" if "channel" in df.columns else "channels" if "channels" in df.columns else None
        vocab = cell_painting_vocab() if col is None else ChannelVocab("manifest")
        if col is not None:
            from chanformer.datasets.imaging.microscopy import stain_key

            for cell in df[col].dropna():
                for name in str(cell).split(";"):
                    if name.strip():
                        vocab.add(Channel(stain_key(name.strip()), kind="stain"))
        return vocab

    @property
    def num_classes(self) -> int | None:
        if self.source == "synthetic":
            return self._num_classes
        if self._classes is None and self.train_dataset is None:
            self.setup("fit")
        return len(self._classes) if self._classes else None

    @property
    def spec(self) -> DataSpec:
        size = self.image_size if self.source == "synthetic" else (self.tile or self.image_size)
        names = None
        if self.source == "synthetic":
            names = SyntheticImageDataset(1, max(8, self.image_size), self._num_classes, style=self.style).class_names
        elif self.num_classes:
            names = [str(c) for c in self._classes or []]
        return DataSpec(vocab=self.vocab, image_size=size, num_classes=self.num_classes, class_names=names)

    def input_contract(self) -> InputContract:
        """The images' preprocessing for the pretrained export: tile size, the per-channel
        normaliser statistics fitted on the training images (keyed by channel), the channels,
        and aliases for common names of the DNA stain."""
        size = self.image_size if self.source == "synthetic" else (self.tile or None)
        normalizer = None
        if self.source != "synthetic" and self.normalize:
            if self.train_dataset is None:
                self.setup("fit")
            ds: Any = self.train_dataset
            while ds is not None and getattr(ds, "normalizer", None) is None:
                ds = getattr(ds, "ds", None) or getattr(ds, "dataset", None)
            fitted = getattr(ds, "normalizer", None)
            normalizer = fitted.to_json() if fitted is not None and fitted.fitted else None
        keys = list(self.vocab.keys)
        aliases = {n: "stain/DNA" for n in ("DAPI", "Hoechst", "Hoechst 33342", "Hoechst33342", "nuclei")
                   if "stain/DNA" in self.vocab}  # fmt: skip
        prefixes = {k.split("/", 1)[0] for k in keys if "/" in k}
        return InputContract(
            modality="image", channels=keys, key_prefix=f"{prefixes.pop()}/" if len(prefixes) == 1 else "",
            tile_size=size, image_size=self.image_size if self.source == "synthetic" else None,
            units="normalised" if normalizer else "", normalizer=normalizer, aliases=aliases,
            extra={"source": self.source},
        )  # fmt: skip

    # -- datasets ------------------------------------------------------------------------
    def _augment(self) -> ImageAugment | None:
        if not (self.flip_rot or self.channel_drop):
            return None
        return ImageAugment(flip_rot=self.flip_rot, channel_drop=self.channel_drop, seed=None)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:  # type: ignore[has-type]
            return
        if self.source == "synthetic":
            kw: dict[str, Any] = dict(image_size=self.image_size, num_classes=self._num_classes, style=self.style,
                                      channels=self.channels, vocab=self.vocab, noise=self.noise)  # fmt: skip
            train = SyntheticImageDataset(self.num_train, seed=self.seed * 3 + 1, **kw)
            aug = self._augment()
            self.train_dataset = _Mapped(train, aug) if aug else train
            self.val_dataset = SyntheticImageDataset(self.num_val, seed=self.seed * 3 + 2, **kw) if self.num_val else None
            self.test_dataset = SyntheticImageDataset(self.num_test, seed=self.seed * 3 + 3, **kw) if self.num_test else None
            return
        frame = self._frame_path if isinstance(self._frame_path, pd.DataFrame) else self._frame
        root = None if isinstance(self._frame_path, pd.DataFrame) else self._frame_path.parent

        def make(seed: int | None, transform: Any = None) -> ImageManifestDataset:
            return ImageManifestDataset(frame, self.vocab, root=root, tile=self.tile, transform=transform, seed=seed)

        base = make(None, self._augment())
        if self.normalize:
            base.fit_normalizer(self.normalizer_path)
        labels = [it["label"] for it in base.items]
        self._labelled = all(lab is not None and not (isinstance(lab, float) and np.isnan(lab)) for lab in labels)
        self._classes = base.classes if self._labelled and base.classes is not None else (
            sorted({int(v) for v in labels}) if self._labelled else None)  # fmt: skip
        n = len(base)
        fixed = make(self.seed + 12345)
        fixed.normalizer = base.normalizer
        if not self._labelled and n < 10:
            tr_idx = va_idx = te_idx = np.arange(n)
            val_ds: Dataset[ChannelSample] = fixed
            test_ds: Dataset[ChannelSample] = fixed
        else:
            y = np.array([self._classes.index(v) if self._classes and v in self._classes else 0 for v in labels])  # type: ignore[union-attr]
            rest, te_idx = stratified_split(y, self.test_fraction, self.seed)
            tr_rel, va_rel = stratified_split(y[rest], self.val_fraction / max(1e-9, 1 - self.test_fraction), self.seed)
            tr_idx, va_idx = rest[tr_rel], rest[va_rel]
            val_ds, test_ds = Subset(fixed, va_idx.tolist()), Subset(fixed, te_idx.tolist())
        train_ds: Dataset[ChannelSample] = Subset(base, tr_idx.tolist())
        self.train_dataset = _Repeat(train_ds, self.repeats) if self.repeats > 1 else train_ds
        self.val_dataset = val_ds if len(va_idx) else None
        self.test_dataset = test_ds if len(te_idx) else None


class _Mapped(Dataset[ChannelSample]):
    def __init__(self, ds: Dataset[ChannelSample], fn: Any) -> None:
        self.ds, self.fn = ds, fn

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> ChannelSample:
        return self.fn(self.ds[i])
