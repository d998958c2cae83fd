"""TUH EEG Seizure Corpus (TUSZ v2.0.x) read from the folder as distributed.

Layout (https://isip.piconepress.com/projects/nedc/html/tuh_eeg/, data use agreement required)::

    <root>/edf/train/<subject>/<session>/<montage>/<subject>_<session>_<token>.edf
                                                    ... .csv_bi   (bckg/seiz, term-based)
                                                    ... .csv      (per-channel seizure types, not needed)
    <root>/edf/dev/...
    <root>/edf/eval/...

e.g. ``edf/train/aaaaaaac/s001_2002/02_tcp_le/aaaaaaac_s001_t000.edf``; ``<root>`` may also be the
``edf`` folder itself. ``train``/``dev``/``eval`` are the official splits (disjoint subjects);
``<montage>`` is ``01_tcp_ar`` (average reference), ``02_tcp_le`` (linked ears), ``03_tcp_ar_a``
(average reference without A1/A2) or ``04_tcp_le_a``. Files differ in sampling rate (250, 256,
400, 512 Hz ...): pass ``resample=``.

``.csv_bi`` files have ``#`` comment lines (``# version = csv_v1.0.0``, ``# duration = 301.00
secs`` ...) then ``channel,start_time,stop_time,label,confidence`` rows with label ``bckg`` or
``seiz`` (channel ``TERM``: the whole montage); a window is a seizure window when at least
``min_overlap`` of it lies in a ``seiz`` span.

Channels: the EDF labels are referential, ``EEG FP1-REF`` (``_ar``) or ``EEG FP1-LE`` (``_le``).
``montage="referential"`` keeps the EEG electrodes as recorded, keyed ``eeg/Fp1`` ... (the old
temporal names stay: ``EEG T3-REF`` -> ``eeg/T3``); ``montage="tcp"`` derives the 22 channels of
the transverse central parietal (TCP) montage the annotations were made on (``FP1-F7``,
``F7-T3``, ... 20 without A1/A2), keyed ``eeg/Fp1-F7`` ... at the electrodes' midpoint
(:func:`~chanformer.datasets.eeg.readers.scalp_bipolar_key`). Non-EEG channels (``EEG EKG1-REF``,
``EEG ROC-REF``, ``EEG T1-REF``, ``PHOTIC-REF``, ``IBI``, ``BURSTS``, ``SUPPR`` ...) are left out.

Nothing is ever downloaded: a missing folder, split or annotation file raises
:class:`TUSZMissingError` describing the expected layout and where to get it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch.utils.data import Subset

from chanformer.channels import ChannelVocab, eeg_1005_vocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.eeg.readers import read_recording, scalp_bipolar_key
from chanformer.datasets.eeg.sim import SeizureWindowDataset
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "SPLITS",
    "TCP_MONTAGE",
    "TUSZ_URL",
    "TUSZDataModule",
    "TUSZDataset",
    "TUSZMissingError",
    "read_csv_bi",
]

TUSZ_URL = "https://isip.piconepress.com/projects/nedc/html/tuh_eeg/"
SPLITS = ("train", "dev", "eval")
#: The transverse central parietal (TCP) montage of the TUSZ annotations, anode-cathode.
TCP_MONTAGE: tuple[tuple[str, str], ...] = (
    ("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"), ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"),
    ("T6", "O2"), ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"), ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"),
    ("P4", "O2"),
)  # fmt: skip
_LABELS = ("bckg", "seiz")
_REFERENTIAL = re.compile(r"^EEG\s+([A-Z0-9]+)-(REF|LE)$", re.I)
_LAYOUT = (
    "expected the TUSZ v2 layout <root>/edf/{train,dev,eval}/<subject>/<session>/<montage>/"
    "<subject>_<session>_<token>.edf with a .csv_bi annotation file beside each .edf (e.g. "
    "edf/train/aaaaaaac/s001_2002/02_tcp_le/aaaaaaac_s001_t000.edf); request access and download it yourself "
    f"from {TUSZ_URL} (rsync after signing the data use agreement); chanformer never downloads it"
)


class TUSZMissingError(FileNotFoundError):
    """The TUSZ folder, a split folder or a ``.csv_bi`` annotation file is missing; the message shows the layout."""


def read_csv_bi(path: str | os.PathLike[str]) -> tuple[list[tuple[str, float, float, str, float]], float | None]:
    """Rows ``(channel, start_s, stop_s, label, confidence)`` of a TUSZ ``.csv_bi`` (or ``.csv``) file and
    the ``# duration = ... secs`` it declares (``None`` when absent).

    Comment lines start with ``#``; the first other line must be the column header
    ``channel,start_time,stop_time,label,confidence``. A malformed row, a stop before its start
    or (for ``.csv_bi``) a label other than ``bckg``/``seiz`` raises ``ValueError`` naming the line.
    """
    path = Path(path)
    rows: list[tuple[str, float, float, str, float]] = []
    duration: float | None = None
    header_seen = False
    for lineno, raw_line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*duration\s*=\s*([0-9.]+)", line, re.I)
            if m:
                duration = float(m.group(1))
            continue
        cells = [c.strip() for c in line.split(",")]
        if not header_seen:
            if [c.lower() for c in cells[:4]] != ["channel", "start_time", "stop_time", "label"]:
                raise ValueError(
                    f"{path}:{lineno}: expected the header 'channel,start_time,stop_time,label,confidence', got {line!r}"
                )
            header_seen = True
            continue
        if len(cells) < 4:
            raise ValueError(f"{path}:{lineno}: expected channel,start_time,stop_time,label,confidence, got {line!r}")
        try:
            start, stop = float(cells[1]), float(cells[2])
            conf = float(cells[4]) if len(cells) > 4 and cells[4] else 1.0
        except ValueError:
            raise ValueError(f"{path}:{lineno}: non-numeric time or confidence in {line!r}") from None
        if stop < start:
            raise ValueError(f"{path}:{lineno}: stop_time {stop:g} before start_time {start:g}")
        label = cells[3].lower()
        if path.suffix == ".csv_bi" and label not in _LABELS:
            raise ValueError(f"{path}:{lineno}: label {cells[3]!r} is not one of {_LABELS}")
        rows.append((cells[0], start, stop, label, conf))
    if not header_seen:
        raise ValueError(f"{path}: no 'channel,start_time,stop_time,label,confidence' header")
    return rows, duration


def _edf_root(root: Path) -> Path:
    if not root.is_dir():
        raise TUSZMissingError(f"TUSZ root folder not found: {root}; {_LAYOUT}")
    for cand in (root / "edf", root):
        if cand.is_dir() and any((cand / s).is_dir() for s in SPLITS):
            return cand
    raise TUSZMissingError(f"no edf/train, edf/dev or edf/eval folder in {root}; {_LAYOUT}")


def _electrode(name: str) -> str | None:
    m = _REFERENTIAL.match(name.strip())
    return m.group(1).upper() if m else None


def _prepare(raw: mne.io.BaseRaw, path: Path, vocab: ChannelVocab, montage: str, seizures: list[tuple[float, float]]) -> None:
    """Keep the referential EEG electrodes (typed ``eeg``) or derive the TCP montage; annotate seizures."""
    import mne

    electrodes = {name: _electrode(name) for name in raw.ch_names}
    eeg = {n: e for n, e in electrodes.items() if e is not None and vocab.resolve(e, "eeg/") is not None}
    if not eeg:
        raise ValueError(f"{path}: no 'EEG <electrode>-REF/-LE' channel of the 10-05 system among {raw.ch_names}")
    raw.set_channel_types({n: "eeg" if n in eeg else "misc" for n in raw.ch_names}, on_unit_change="ignore",
                          verbose="error")  # fmt: skip
    if montage == "tcp":
        by_electrode = {e: n for n, e in eeg.items()}
        pairs = [(a, b) for a, b in TCP_MONTAGE if a in by_electrode and b in by_electrode]
        if not pairs:
            raise ValueError(f"{path}: none of the TCP montage's electrode pairs is present")
        names = [f"{a}-{b}" for a, b in pairs]
        for name in names:
            scalp_bipolar_key(name, vocab)  # joins the vocabulary at the midpoint
        mne.set_bipolar_reference(raw, [by_electrode[a] for a, _ in pairs], [by_electrode[b] for _, b in pairs],
                                  ch_name=names, drop_refs=False, copy=False, on_bad="ignore", verbose="error")  # fmt: skip
        raw.pick(names, verbose="error")
    else:
        raw.pick(list(eeg), verbose="error")
    duration = raw.n_times / raw.info["sfreq"]
    spans = [(a, min(b, duration)) for a, b in seizures if a < duration]
    raw.set_annotations(mne.Annotations([a for a, _ in spans], [b - a for a, b in spans], ["seizure"] * len(spans),
                                        orig_time=raw.annotations.orig_time), verbose="error")  # fmt: skip


class TUSZDataset(SeizureWindowDataset):
    """Fixed-length windows of TUSZ recordings labelled seizure (1) / background (0) from ``.csv_bi``.

    Each item is a :class:`~chanformer.batch.ChannelSample` over the file's EEG channels (see the
    module docstring for ``montage``). Per window: :attr:`window_splits` (``train``/``dev``/``eval``),
    :attr:`window_subjects`, :attr:`window_sessions`, :attr:`window_montages` (``01_tcp_ar`` ...),
    :attr:`window_files` and :attr:`window_onsets`; :meth:`window_info`.

    Args:
        root: the corpus folder holding ``edf/`` (or ``edf/`` itself).
        splits: official splits to read, among ``train``, ``dev``, ``eval`` (default all three).
        subjects: subject folder names (``"aaaaaaac"``); default all.
        montages: recording montage folders to keep (``"01_tcp_ar"`` or ``"tcp_ar"``); default all.
        montage: ``"tcp"`` (default: the bipolar TCP montage the annotations were made on) or
            ``"referential"`` (the electrodes as recorded).
        window_s / stride_s / min_overlap: windowing and the seizure-label threshold.
        vocab: vocabulary (default 10-05; TCP keys are added to it).
        **kwargs: passed on to :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`
            (``resample`` (needed when files differ in rate), ``l_freq``, ``h_freq``, ``bad_channels``
            (default ``"drop"``) ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        splits: Iterable[str] | None = None,
        subjects: Iterable[str] | None = None,
        montages: Iterable[str] | None = None,
        montage: Literal["referential", "tcp"] = "tcp",
        window_s: float = 4.0,
        stride_s: float | None = None,
        min_overlap: float = 0.5,
        vocab: ChannelVocab | None = None,
        **kwargs: Any,
    ) -> None:
        for k in ("mode", "label_map", "recordings", "label_description"):
            if k in kwargs:
                raise TypeError(f"TUSZDataset sets {k!r} itself")
        if montage not in ("referential", "tcp"):
            raise ValueError(f"montage must be 'referential' or 'tcp', got {montage!r}")
        kwargs.setdefault("bad_channels", "drop")
        split_list = list(SPLITS) if splits is None else [str(s).lower() for s in splits]
        bad = [s for s in split_list if s not in SPLITS]
        if bad or not split_list:
            raise ValueError(f"splits must be among {SPLITS}, got {split_list}")
        self.root = Path(root)
        edf_root = _edf_root(self.root)
        absent = [str(edf_root / s) + "/" for s in split_list if not (edf_root / s).is_dir()]
        if absent:
            raise TUSZMissingError(f"TUSZ split folder(s) missing (partial download?): {', '.join(absent)}; {_LAYOUT}")
        want_subjects = None if subjects is None else {str(s) for s in subjects}
        want_montages = None if montages is None else {str(m).lower() for m in montages}

        entries: list[tuple[str, str, str, str, Path]] = []  # split, subject, session, montage folder, edf
        no_labels: list[str] = []
        for split in split_list:
            for path in sorted((edf_root / split).rglob("*.edf")):
                parts = path.relative_to(edf_root / split).parts
                if len(parts) != 4:
                    raise ValueError(f"{path}: not at <split>/<subject>/<session>/<montage>/<file>.edf; {_LAYOUT}")
                subject, session, mont, _ = parts
                if want_subjects is not None and subject not in want_subjects:
                    continue
                if want_montages is not None and not {mont.lower(), mont.lower().split("_", 1)[-1]} & want_montages:
                    continue
                if not path.with_suffix(".csv_bi").is_file():
                    no_labels.append(str(path.with_suffix(".csv_bi")))
                    continue
                entries.append((split, subject, session, mont, path))
        if no_labels:
            shown = ", ".join(no_labels[:5]) + (f" and {len(no_labels) - 5} more" if len(no_labels) > 5 else "")
            raise TUSZMissingError(f"{len(no_labels)} TUSZ annotation file(s) missing: {shown}; {_LAYOUT}")
        if not entries:
            raise ValueError(f"no TUSZ recordings under {edf_root} for splits={split_list}, subjects={subjects}, "
                             f"montages={montages}")  # fmt: skip

        vocab = vocab if vocab is not None else eeg_1005_vocab()
        raws: list[mne.io.BaseRaw] = []
        self.recording_seizures: list[list[tuple[float, float]]] = []
        for *_, path in entries:
            rows, declared = read_csv_bi(path.with_suffix(".csv_bi"))
            raw = read_recording(path)
            duration = raw.n_times / raw.info["sfreq"]
            if declared is not None and abs(declared - duration) > 1.0:
                raise ValueError(f"{path}: {duration:g} s of data but its .csv_bi declares {declared:g} s")
            seizures = sorted((a, b) for _, a, b, label, _ in rows if label == "seiz")
            _prepare(raw, path, vocab, montage, seizures)
            raws.append(raw)
            self.recording_seizures.append(seizures)
        self.edf_root, self.montage, self.split_list = edf_root, montage, split_list
        super().__init__(raws, window_s=window_s, stride_s=stride_s, min_overlap=min_overlap, vocab=vocab,
                         picks=("eeg",), **kwargs)  # fmt: skip
        self.sources = [str(p) for *_, p in entries]
        self.recording_splits = [e[0] for e in entries]
        self.recording_subjects = [e[1] for e in entries]
        per_rec = self.recording_of
        self.window_splits = np.asarray(self.recording_splits)[per_rec]
        self.window_subjects = np.asarray(self.recording_subjects)[per_rec]
        self.window_sessions = np.asarray([e[2] for e in entries])[per_rec]
        self.window_montages = np.asarray([e[3] for e in entries])[per_rec]
        self.window_files = np.asarray([e[4].name for e in entries])[per_rec]
        self.window_onsets = np.concatenate(self.onsets) if self.onsets else np.zeros(0)

    @property
    def classes(self) -> list[str]:
        return ["background", "seizure"]

    def window_info(self, idx: int) -> dict[str, Any]:
        """Split, subject, session, montage folder, file, onset (s), label name and path of window ``idx``."""
        idx, rec, _ = self.locate(idx)
        return {
            "split": str(self.window_splits[idx]),
            "subject": str(self.window_subjects[idx]),
            "session": str(self.window_sessions[idx]),
            "montage": str(self.window_montages[idx]),
            "file": str(self.window_files[idx]),
            "onset": float(self.window_onsets[idx]),
            "label": self.classes[int(self.labels[rec][idx - int(self.offsets[rec])])],
            "path": self.sources[rec],
        }


class TUSZDataModule(ChannelDataModule):
    """TUSZ windows (:class:`TUSZDataset`) on the official splits: ``train`` -> train, ``dev`` -> val,
    ``eval`` -> test.

    Windows of ``n_segments * segment_samples`` samples at ``resample`` Hz (MVPFormer's segments),
    every ``stride_s`` seconds, band-passed ``l_freq``-``h_freq``, scaled by ``scale`` (volts ->
    microvolts by default).

    Args:
        root: the corpus folder holding ``edf/`` (the one argument to set).
        montage: ``"referential"`` or ``"tcp"`` (see :mod:`chanformer.datasets.eeg.tusz`).
        montages / subjects: only these recording montage folders / subject folders.

    """

    def __init__(
        self,
        root: str,
        montage: Literal["referential", "tcp"] = "tcp",
        montages: list[str] | None = None,
        subjects: list[str] | None = None,
        segment_samples: int = 64,
        n_segments: int = 8,
        resample: float = 128.0,
        stride_s: float | None = None,
        min_overlap: float = 0.5,
        l_freq: float | None = 0.5,
        h_freq: float | None = None,
        scale: float = 1e6,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=eeg_1005_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.root, self.montage, self.montages, self.subjects = root, montage, montages, subjects
        self.segment_samples, self.n_segments, self.resample = segment_samples, n_segments, resample
        self.window_s = n_segments * segment_samples / resample
        self.stride_s = self.window_s if stride_s is None else stride_s
        self.min_overlap, self.l_freq, self.h_freq, self.scale = min_overlap, l_freq, h_freq, scale
        self.dataset: TUSZDataset | None = None

    @property
    def n_times(self) -> int:
        return self.n_segments * self.segment_samples

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.resample, num_classes=2,
                        class_names=["background", "seizure"])  # fmt: skip

    def input_contract(self) -> InputContract:
        """Rate, band-pass, montage, window and stride, scale, for the pretrained export."""
        ds = self.dataset
        used = sorted({k for keys in ds.channel_keys for k in keys}) if ds is not None else []
        return InputContract(
            modality="eeg", channels=used, key_prefix="eeg/", sfreq=self.resample, l_freq=self.l_freq,
            h_freq=self.h_freq, reference="bipolar" if self.montage == "tcp" else "none", window_s=self.window_s,
            stride_s=self.stride_s, n_times=self.n_times, scale=self.scale if self.scale != 1.0 else None,
            units="V" if self.scale == 1.0 else f"V x {self.scale:g}", picks=["eeg"],
            extra={"mode": "windows", "classes": ["background", "seizure"], "min_overlap": self.min_overlap,
                   "dataset": "TUSZ", "montage": self.montage},
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = TUSZDataset(
            self.root, montage=self.montage, montages=self.montages, subjects=self.subjects, window_s=self.window_s,
            stride_s=self.stride_s, min_overlap=self.min_overlap, vocab=self.vocab, resample=self.resample,
            l_freq=self.l_freq, h_freq=self.h_freq,
        )  # fmt: skip
        if self.scale != 1.0:
            ds.values = [v * np.float32(self.scale) for v in ds.values]
        idx = np.arange(len(ds))
        parts = [idx[ds.window_splits == s] for s in SPLITS]
        if not len(parts[0]):
            raise ValueError(f"no training windows under {self.root}")
        self.train_dataset, self.val_dataset, self.test_dataset = (
            Subset(ds, p.tolist()) if len(p) else None for p in parts
        )
