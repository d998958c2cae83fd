"""CHB-MIT Scalp EEG Database (PhysioNet ``chbmit/1.0.0``) read from the folder as distributed.

Layout (https://physionet.org/content/chbmit/1.0.0/, ODC-By 1.0)::

    <root>/chb01/chb01-summary.txt
    <root>/chb01/chb01_01.edf ... chb01_46.edf      (+ chbNN_MM.edf.seizures, not needed)
    ...
    <root>/chb24/chb24-summary.txt ...

``<root>`` may also be the folder ``wget -r`` leaves (``physionet.org/files/chbmit/1.0.0/``).
Recordings are plain EDF at 256 Hz in a bipolar "double banana" montage whose labels are the two
electrodes (``FP1-F7``, ``T7-P7``, ``FZ-CZ`` ...); they map onto the vocabulary keys
``eeg/Fp1-F7``, ``eeg/T7-P7``, ``eeg/Fz-Cz`` ..., added to the 10-05 vocabulary at the midpoint of
the two electrodes (:func:`~chanformer.datasets.eeg.readers.scalp_bipolar_key`). A label repeated
within a file (most files repeat ``T8-P8`` as their last channel) keeps its first occurrence; the
dash-only placeholder channels (``-``; mne reads them as ``--0``, ``--1`` ...) and the channels that
are neither two 10-05 electrodes nor one (``ECG``, ``VNS``, ``LOC-ROC``, ``EKG1-CHEST``) are left out;
a single electrode (``FP1-Ref``) keeps its monopolar key (``eeg/Fp1``).

Seizure times come from ``chbNN-summary.txt``: per file ``Number of Seizures in File: k`` and
``Seizure Start Time: X seconds`` / ``Seizure End Time: Y seconds`` (also written
``Seizure 1 Start Time:`` ...), seconds from the start of the file. Case ``chb21`` is the same
patient as ``chb01`` 1.5 years later (the database's ``SUBJECT-INFO``); :attr:`CHBMITDataset.window_patients`
groups them, for splits by patient.

Nothing is ever downloaded: a missing folder, summary or EDF file raises
:class:`CHBMITMissingError` describing the expected layout and where to get it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch.utils.data import Subset

from chanformer.channels import ChannelVocab, eeg_1005_vocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.eeg.readers import read_recording, scalp_bipolar_key
from chanformer.datasets.eeg.sim import SeizureWindowDataset, _split_indices
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "CHBMIT_URL",
    "CHBMITDataModule",
    "CHBMITDataset",
    "CHBMITFile",
    "CHBMITMissingError",
    "parse_chbmit_summary",
]

CHBMIT_URL = "https://physionet.org/content/chbmit/1.0.0/"
#: Cases recorded from the same patient (database ``SUBJECT-INFO``): case -> patient.
SAME_PATIENT = {"chb21": "chb01"}
_LAYOUT = (
    "expected the CHB-MIT layout <root>/chb01/chb01-summary.txt, <root>/chb01/chb01_01.edf, ... "
    "(or <root>/files/chbmit/1.0.0/chb01/...); download it yourself from "
    f"{CHBMIT_URL} (e.g. `wget -r -N -c -np {CHBMIT_URL.replace('content', 'files')}`); chanformer never downloads it"
)


class CHBMITMissingError(FileNotFoundError):
    """The CHB-MIT folder, a case folder, its summary or an EDF file is missing; the message shows the layout."""


@dataclass
class CHBMITFile:
    """One ``File Name:`` entry of a summary: seizure spans in seconds from the file start."""

    name: str
    start_time: str | None = None
    end_time: str | None = None
    seizures: list[tuple[float, float]] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)


_FILE = re.compile(r"^File Name:\s*(\S+)", re.I)
_NUMBER = re.compile(r"^Number of Seizures in File:\s*(\d+)", re.I)
_SEIZURE = re.compile(r"^Seizure(?:\s+\d+)?\s+(Start|End)\s+Time\s*:\s*([0-9.]+)\s*(?:seconds?|s)?\s*$", re.I)
_CHANNEL = re.compile(r"^Channel\s+\d+\s*:\s*(.*)$", re.I)


def parse_chbmit_summary(path: str | os.PathLike[str]) -> dict[str, CHBMITFile]:
    """Parse ``chbNN-summary.txt``: file name -> :class:`CHBMITFile` (in summary order).

    Reads ``File Name``, ``File Start/End Time`` (when given), ``Number of Seizures in File`` and
    the seizure lines in both spellings (``Seizure Start Time: X seconds``, ``Seizure 2 End Time:
    Y seconds``); each file also gets the channel list in force (``Channels in EDF Files:``, then
    any ``Channels changed:`` block). A seizure count that disagrees with the seizure lines, an
    end before its start or a line outside a file entry raises ``ValueError`` naming the summary.
    """
    path = Path(path)
    files: dict[str, CHBMITFile] = {}
    expected: dict[str, int] = {}
    current: CHBMITFile | None = None
    channels: list[str] = []
    in_channels = False
    pending: float | None = None
    for lineno, raw_line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw_line.strip()
        where = f"{path}:{lineno}"
        if not line or set(line) == {"*"}:
            continue
        low = line.lower()
        if low.startswith("channels in edf files") or low.startswith("channels changed"):
            channels, in_channels = [], True
            continue
        m = _CHANNEL.match(line)
        if m and in_channels:
            channels.append(m.group(1).strip())
            continue
        in_channels = False
        m = _FILE.match(line)
        if m:
            if pending is not None and current is not None:
                raise ValueError(f"{where}: seizure start without an end in {current.name}")
            current = files[m.group(1)] = CHBMITFile(m.group(1), channels=list(channels))
            continue
        if low.startswith("file start time") or low.startswith("file end time"):
            if current is None:
                raise ValueError(f"{where}: {line!r} before any 'File Name:'")
            value = line.split(":", 1)[1].strip()
            if low.startswith("file start"):
                current.start_time = value
            else:
                current.end_time = value
            continue
        m = _NUMBER.match(line)
        if m:
            if current is None:
                raise ValueError(f"{where}: {line!r} before any 'File Name:'")
            expected[current.name] = int(m.group(1))
            continue
        m = _SEIZURE.match(line)
        if m:
            if current is None:
                raise ValueError(f"{where}: {line!r} before any 'File Name:'")
            t = float(m.group(2))
            if m.group(1).lower() == "start":
                if pending is not None:
                    raise ValueError(f"{where}: two seizure starts in a row in {current.name}")
                pending = t
            else:
                if pending is None:
                    raise ValueError(f"{where}: seizure end without a start in {current.name}")
                if t <= pending:
                    raise ValueError(f"{where}: seizure in {current.name} ends ({t:g} s) before it starts ({pending:g} s)")
                current.seizures.append((pending, t))
                pending = None
            continue
    if pending is not None:
        raise ValueError(f"{path}: seizure start without an end at the end of the file")
    for name, entry in files.items():
        if name in expected and expected[name] != len(entry.seizures):
            raise ValueError(
                f"{path}: {name} declares {expected[name]} seizure(s) but lists {len(entry.seizures)}"
            )
    return files


def _data_root(root: Path) -> Path:
    if not root.is_dir():
        raise CHBMITMissingError(f"CHB-MIT root folder not found: {root}; {_LAYOUT}")
    for sub in (Path("."), Path("files/chbmit/1.0.0"), Path("chbmit/1.0.0"), Path("1.0.0")):
        cand = root / sub
        if cand.is_dir() and any(p.is_dir() and re.fullmatch(r"chb\d{2}", p.name) for p in cand.iterdir()):
            return cand
    raise CHBMITMissingError(f"no case folders chb01..chb24 in {root}; {_LAYOUT}")


def _case_name(subject: int | str) -> str:
    if isinstance(subject, (int, np.integer)):
        n = int(subject)
    else:
        m = re.fullmatch(r"(?:chb)?0*(\d+)", str(subject).strip(), re.I)
        if not m:
            raise ValueError(f"subject must be a case number or 'chb01'-style, got {subject!r}")
        n = int(m.group(1))
    if not 1 <= n <= 99:
        raise ValueError(f"subject must be a case number 1..24, got {subject!r}")
    return f"chb{n:02d}"


def _edf_labels(path: Path) -> list[str]:
    """Signal labels exactly as stored in an EDF header (mne renames duplicates)."""
    with open(path, "rb") as f:
        head = f.read(256)
        n = int(head[252:256].decode("ascii").strip())
        return [f.read(16).decode("latin-1").strip() for _ in range(n)]


def _prepare(raw: mne.io.BaseRaw, path: Path, vocab: ChannelVocab, seizures: list[tuple[float, float]]) -> list[str]:
    """Type the channels (bipolar 10-05 pairs, or single 10-05 electrodes such as ``FP1-Ref``: ``eeg``;
    the rest ``misc``), keep the first of repeated labels, restore the stored labels and annotate the
    seizures; returns the left-out labels."""
    import mne

    stored = _edf_labels(path)
    if len(stored) != len(raw.ch_names):
        raise ValueError(f"{path}: {len(stored)} labels in the header but mne read {len(raw.ch_names)} channels")
    seen: set[str] = set()
    types: dict[str, str] = {}
    rename: dict[str, str] = {}
    left_out: list[str] = []
    for name, label in zip(raw.ch_names, stored):
        key = scalp_bipolar_key(label, vocab) or vocab.resolve(label, "eeg/")  # a few files are referential
        if key is None or key in seen:
            types[name] = "misc"
            left_out.append(label)
            continue
        seen.add(key)
        types[name] = "eeg"
        if name != label:
            rename[name] = label
    if not seen:
        raise ValueError(f"{path}: no bipolar 10-05 EEG channel among {stored}")
    raw.set_channel_types(types, on_unit_change="ignore", verbose="error")
    if rename:
        raw.rename_channels(rename, verbose="error")
    duration = raw.n_times / raw.info["sfreq"]
    late = [(a, b) for a, b in seizures if a >= duration]
    if late:
        raise ValueError(f"{path}: seizure(s) {late} start after the end of the recording ({duration:g} s)")
    onsets = [a for a, _ in seizures]
    spans = [min(b, duration) - a for a, b in seizures]
    raw.set_annotations(mne.Annotations(onsets, spans, ["seizure"] * len(seizures),
                                        orig_time=raw.annotations.orig_time), verbose="error")  # fmt: skip
    return left_out


class CHBMITDataset(SeizureWindowDataset):
    """Fixed-length windows of CHB-MIT recordings labelled seizure (1) / background (0).

    A window is a seizure window when at least ``min_overlap`` of it lies inside a seizure of the
    summary. Each item is a :class:`~chanformer.batch.ChannelSample`: values ``[C, T]`` in volts
    over the file's bipolar EEG channels (``eeg/Fp1-F7`` ...; files of one case can differ in
    montage), vocabulary ids, midpoint positions and the label. Per window:
    :attr:`window_subjects` (case, ``"chb01"``), :attr:`window_patients` (``chb21`` -> ``chb01``),
    :attr:`window_files` and :attr:`window_onsets` (s from the file start); :meth:`window_info`.

    Windows are held in memory (float32): select cases and files, or resample, for the whole
    database (about 980 hours).

    Args:
        root: the folder holding ``chb01`` ... (see the module docstring).
        subjects: case numbers or names (``1``, ``"chb01"``); default: every ``chbNN`` folder.
        files: only these file names (``"chb01_03.edf"``), e.g. the seizure files.
        window_s / stride_s: window length and step in seconds (stride default: window).
        min_overlap: fraction of a window inside a seizure for the seizure label.
        vocab: vocabulary (default 10-05); the bipolar keys are added to it.
        **kwargs: passed on to :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`
            (``resample``, ``l_freq``, ``h_freq``, ``bad_channels`` (default ``"drop"``) ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        subjects: Iterable[int | str] | None = None,
        files: Iterable[str] | None = None,
        window_s: float = 4.0,
        stride_s: float | None = None,
        min_overlap: float = 0.5,
        vocab: ChannelVocab | None = None,
        **kwargs: Any,
    ) -> None:
        for k in ("mode", "label_map", "recordings", "label_description"):
            if k in kwargs:
                raise TypeError(f"CHBMITDataset sets {k!r} itself")
        kwargs.setdefault("bad_channels", "drop")
        self.root = Path(root)
        data_root = _data_root(self.root)
        if subjects is None:
            cases = sorted(p.name for p in data_root.iterdir() if p.is_dir() and re.fullmatch(r"chb\d{2}", p.name))
        else:
            cases = sorted({_case_name(s) for s in subjects})
            if not cases:
                raise ValueError("subjects is empty")
        wanted = None if files is None else {Path(f).name for f in files}
        vocab = vocab if vocab is not None else eeg_1005_vocab()
        missing: list[str] = []
        entries: list[tuple[str, Path, CHBMITFile]] = []
        for case in cases:
            folder = data_root / case
            summary = folder / f"{case}-summary.txt"
            if not folder.is_dir():
                missing.append(str(folder) + "/")
                continue
            if not summary.is_file():
                missing.append(str(summary))
                continue
            for name, entry in parse_chbmit_summary(summary).items():
                if wanted is not None and name not in wanted:
                    continue
                path = folder / name
                if path.is_file():
                    entries.append((case, path, entry))
                else:
                    missing.append(str(path))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CHBMITMissingError(f"{len(missing)} CHB-MIT file(s) missing (partial download?): {shown}; {_LAYOUT}")
        if wanted is not None:
            found = {p.name for _, p, _ in entries}
            if wanted - found:
                raise ValueError(f"file(s) {sorted(wanted - found)} are in no summary of {', '.join(cases)}")
        if not entries:
            raise ValueError(f"no recordings listed in the summaries of {', '.join(cases)} under {data_root}")

        raws: list[mne.io.BaseRaw] = []
        self.left_out_channels: dict[str, list[str]] = {}
        for _, path, entry in entries:
            raw = read_recording(path)
            self.left_out_channels[str(path)] = _prepare(raw, path, vocab, entry.seizures)
            raws.append(raw)
        self.data_root, self.case_list = data_root, cases
        self.recording_subjects = [c for c, _, _ in entries]
        self.recording_seizures = [list(e.seizures) for _, _, e in entries]
        super().__init__(raws, window_s=window_s, stride_s=stride_s, min_overlap=min_overlap, vocab=vocab,
                         picks=("eeg",), **kwargs)  # fmt: skip
        self.sources = [str(p) for _, p, _ in entries]
        self.window_subjects = np.asarray(self.recording_subjects)[self.recording_of]
        self.window_patients = np.asarray([SAME_PATIENT.get(c, c) for c in self.recording_subjects])[self.recording_of]
        self.window_files = np.asarray([p.name for _, p, _ in entries])[self.recording_of]
        self.window_onsets = np.concatenate(self.onsets) if self.onsets else np.zeros(0)

    @property
    def classes(self) -> list[str]:
        return ["background", "seizure"]

    def window_info(self, idx: int) -> dict[str, Any]:
        """Case, patient, file, onset (s), label name and path of window ``idx``."""
        idx, rec, _ = self.locate(idx)
        return {
            "subject": str(self.window_subjects[idx]),
            "patient": str(self.window_patients[idx]),
            "file": str(self.window_files[idx]),
            "onset": float(self.window_onsets[idx]),
            "label": self.classes[int(self.labels[rec][idx - int(self.offsets[rec])])],
            "path": self.sources[rec],
        }


class CHBMITDataModule(ChannelDataModule):
    """CHB-MIT windows (:class:`CHBMITDataset`) for seizure detection with MVPFormer.

    Windows of ``n_segments * segment_samples`` samples at ``resample`` Hz (what MVPFormer cuts
    into ``n_segments`` segments), every ``stride_s`` seconds, band-passed ``l_freq``-``h_freq`` and
    scaled by ``scale`` (volts -> microvolts by default). CHB-MIT has no official split:
    ``"cross_subject"`` holds out the last ``test_subjects`` patients (``chb21`` counted with
    ``chb01``) as the test set, val is a stratified share of the other patients' windows;
    ``"within_subject"`` splits every patient's windows, stratified by label.

    Args:
        root: the CHB-MIT folder (the one argument to set).
        subjects: case numbers or names (default: every case found).
        files: only these file names (e.g. the ``RECORDS-WITH-SEIZURES`` files).

    """

    def __init__(
        self,
        root: str,
        subjects: list[int | str] | None = None,
        files: list[str] | None = None,
        segment_samples: int = 64,
        n_segments: int = 8,
        resample: float = 128.0,
        stride_s: float | None = None,
        min_overlap: float = 0.5,
        l_freq: float | None = 0.5,
        h_freq: float | None = None,
        split: Literal["within_subject", "cross_subject"] = "cross_subject",
        test_subjects: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        scale: float = 1e6,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=eeg_1005_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        if split not in ("within_subject", "cross_subject"):
            raise ValueError(f"split must be 'within_subject' or 'cross_subject', got {split!r}")
        self.save_hyperparameters()
        self.root, self.subjects, self.files = root, subjects, files
        self.segment_samples, self.n_segments, self.resample = segment_samples, n_segments, resample
        self.window_s = n_segments * segment_samples / resample
        self.stride_s = self.window_s if stride_s is None else stride_s
        self.min_overlap, self.l_freq, self.h_freq = min_overlap, l_freq, h_freq
        self.split, self.test_subjects = split, test_subjects
        self.val_fraction, self.test_fraction, self.scale = val_fraction, test_fraction, scale
        self.dataset: CHBMITDataset | None = None

    @property
    def n_times(self) -> int:
        return self.n_segments * self.segment_samples

    @property
    def spec(self) -> DataSpec:
        # the bipolar keys join the vocabulary when the recordings are read (MVPFormer needs no look-up)
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.resample, num_classes=2,
                        class_names=["background", "seizure"])  # fmt: skip

    def input_contract(self) -> InputContract:
        """Rate, band-pass, bipolar montage, window and stride, scale, for the pretrained export."""
        ds = self.dataset
        used = sorted({k for keys in ds.channel_keys for k in keys}) if ds is not None else []
        return InputContract(
            modality="eeg", channels=used, key_prefix="eeg/", sfreq=self.resample, l_freq=self.l_freq,
            h_freq=self.h_freq, reference="bipolar", window_s=self.window_s, stride_s=self.stride_s,
            n_times=self.n_times, scale=self.scale if self.scale != 1.0 else None,
            units="V" if self.scale == 1.0 else f"V x {self.scale:g}", picks=["eeg"],
            extra={"mode": "windows", "classes": ["background", "seizure"], "min_overlap": self.min_overlap,
                   "dataset": "CHB-MIT"},
        )  # fmt: skip

    def build_dataset(self) -> CHBMITDataset:
        ds = CHBMITDataset(
            self.root, subjects=self.subjects, files=self.files, window_s=self.window_s, stride_s=self.stride_s,
            min_overlap=self.min_overlap, vocab=self.vocab, resample=self.resample, l_freq=self.l_freq,
            h_freq=self.h_freq,
        )  # fmt: skip
        if self.scale != 1.0:
            ds.values = [v * np.float32(self.scale) for v in ds.values]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = self.build_dataset()
        groups = np.unique(ds.window_patients, return_inverse=True)[1]
        tr, va, te = _split_indices(groups, ds.targets, self.split, self.val_fraction, self.test_fraction,
                                    self.test_subjects, self.seed)  # fmt: skip
        self.train_dataset, self.val_dataset, self.test_dataset = (Subset(ds, p.tolist()) for p in (tr, va, te))
