"""PhysioNet EEG Motor Movement/Imagery (EEGMMIDB) read from the folder its publishers distribute.

Layout (https://physionet.org/content/eegmmidb/1.0.0/, ODC-By 1.0)::

    <root>/S001/S001R01.edf ... <root>/S001/S001R14.edf
    ...
    <root>/S109/S109R01.edf ... <root>/S109/S109R14.edf

``<root>`` may also be a folder holding ``files/eegmmidb/1.0.0/`` (what ``wget -r`` of the
PhysioNet page leaves) or ``eegmmidb/1.0.0/``. Each EDF+ file has 64 EEG channels whose labels are
padded with dots to four characters (``Fc5.``, ``C3..``, ``Cz..``), 160 Hz, and annotations
``T0``/``T1``/``T2`` whose meaning depends on the run:

====================  =================  ==========  ===========  ===========
runs                  run type           T0          T1           T2
====================  =================  ==========  ===========  ===========
1                     baseline_open      eyes_open   --           --
2                     baseline_closed    eyes_closed --           --
3, 7, 11              real_lr            rest        left_fist    right_fist
4, 8, 12              imagery_lr         rest        left_fist    right_fist
5, 9, 13              real_fists_feet    rest        both_fists   both_feet
6, 10, 14             imagery_fists_feet rest        both_fists   both_feet
====================  =================  ==========  ===========  ===========

Nothing is ever downloaded: a missing folder or file raises :class:`PhysionetMMIMissingError`
describing the expected layout and where to get it.
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
from chanformer.datasets.eeg.readers import EEGWindowDataset, read_recording
from chanformer.datasets.eeg.splits import subject_split
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "CHANNELS",
    "CLASS_NAMES",
    "EXCLUDED_SUBJECTS",
    "EVENT_MEANING",
    "N_SUBJECTS",
    "PHYSIONET_MMI_URL",
    "RUN_TYPES",
    "TASKS",
    "PhysionetMMIDataModule",
    "PhysionetMMIDataset",
    "PhysionetMMIMissingError",
    "classes_of",
    "physionet_mmi_path",
]

PHYSIONET_MMI_URL = "https://physionet.org/content/eegmmidb/1.0.0/"
N_SUBJECTS = 109
N_RUNS = 14

#: Run number -> run type.
RUN_TYPES: dict[int, str] = {
    1: "baseline_open",
    2: "baseline_closed",
    **{r: "real_lr" for r in (3, 7, 11)},
    **{r: "imagery_lr" for r in (4, 8, 12)},
    **{r: "real_fists_feet" for r in (5, 9, 13)},
    **{r: "imagery_fists_feet" for r in (6, 10, 14)},
}

#: Run type -> {annotation: class name}.
EVENT_MEANING: dict[str, dict[str, str]] = {
    "baseline_open": {"T0": "eyes_open"},
    "baseline_closed": {"T0": "eyes_closed"},
    "real_lr": {"T0": "rest", "T1": "left_fist", "T2": "right_fist"},
    "imagery_lr": {"T0": "rest", "T1": "left_fist", "T2": "right_fist"},
    "real_fists_feet": {"T0": "rest", "T1": "both_fists", "T2": "both_feet"},
    "imagery_fists_feet": {"T0": "rest", "T1": "both_fists", "T2": "both_feet"},
}

#: Canonical order of the class names; a dataset's classes are the ones its runs can produce, in this order.
CLASS_NAMES: tuple[str, ...] = (
    "rest", "left_fist", "right_fist", "both_fists", "both_feet", "eyes_open", "eyes_closed",
)  # fmt: skip

#: Named selections of runs.
TASKS: dict[str, tuple[int, ...]] = {
    "baseline": (1, 2),
    "real_lr": (3, 7, 11),
    "imagery_lr": (4, 8, 12),
    "real_fists_feet": (5, 9, 13),
    "imagery_fists_feet": (6, 10, 14),
    "real": (3, 5, 7, 9, 11, 13),
    "imagery": (4, 6, 8, 10, 12, 14),
    "all": tuple(range(1, N_RUNS + 1)),
}

#: The 64 EEG channel labels of every EEGMMIDB file, in file order (PhysioNet pads them with dots).
CHANNELS: tuple[str, ...] = tuple(
    "Fc5. Fc3. Fc1. Fcz. Fc2. Fc4. Fc6. C5.. C3.. C1.. Cz.. C2.. C4.. C6.. Cp5. Cp3. Cp1. Cpz. "
    "Cp2. Cp4. Cp6. Fp1. Fpz. Fp2. Af7. Af3. Afz. Af4. Af8. F7.. F5.. F3.. F1.. Fz.. F2.. F4.. "
    "F6.. F8.. Ft7. Ft8. T7.. T8.. T9.. T10. Tp7. Tp8. P7.. P5.. P3.. P1.. Pz.. P2.. P4.. P6.. "
    "P8.. Po7. Po3. Poz. Po4. Po8. O1.. Oz.. O2.. Iz..".split()
)

#: Subjects :class:`PhysionetMMIDataModule` leaves out by default, as much of the cross-subject
#: literature does: 88, 92 and 100 were recorded at 128 Hz instead of 160 Hz, and 104 is the
#: fourth subject commonly dropped with them.
EXCLUDED_SUBJECTS: tuple[int, ...] = (88, 92, 100, 104)

_LAYOUT = (
    "expected the PhysioNet EEG Motor Movement/Imagery layout <root>/S001/S001R01.edf ... "
    "<root>/S109/S109R14.edf (or <root>/files/eegmmidb/1.0.0/S001/...); download it yourself from "
    f"{PHYSIONET_MMI_URL} (e.g. `wget -r -N -c -np {PHYSIONET_MMI_URL.replace('content', 'files')}`); "
    "chanformer never downloads it"
)


class PhysionetMMIMissingError(FileNotFoundError):
    """The EEGMMIDB folder, a subject folder or a run file is missing; the message shows the layout."""


def _subject_number(subject: int | str) -> int:
    if isinstance(subject, (int, np.integer)):
        n = int(subject)
    else:
        m = re.fullmatch(r"[Ss]?0*(\d+)", str(subject).strip())
        if not m:
            raise ValueError(f"subject must be a number 1..{N_SUBJECTS} or 'S001'-style, got {subject!r}")
        n = int(m.group(1))
    if not 1 <= n <= N_SUBJECTS:
        raise ValueError(f"subject must be in 1..{N_SUBJECTS}, got {subject!r}")
    return n


def _run_number(run: int | str) -> int:
    if isinstance(run, (int, np.integer)):
        n = int(run)
    else:
        m = re.fullmatch(r"[Rr]?0*(\d+)", str(run).strip())
        if not m:
            raise ValueError(f"run must be a number 1..{N_RUNS} or 'R01'-style, got {run!r}")
        n = int(m.group(1))
    if not 1 <= n <= N_RUNS:
        raise ValueError(f"run must be in 1..{N_RUNS}, got {run!r}")
    return n


def _data_root(root: Path) -> Path:
    """``root`` itself, or its ``files/eegmmidb/1.0.0`` / ``eegmmidb/1.0.0`` sub-folder."""
    if not root.is_dir():
        raise PhysionetMMIMissingError(f"EEGMMIDB root folder not found: {root}; {_LAYOUT}")
    for sub in (Path("."), Path("files/eegmmidb/1.0.0"), Path("eegmmidb/1.0.0"), Path("1.0.0")):
        cand = root / sub
        if cand.is_dir() and any(p.is_dir() and re.fullmatch(r"S\d{3}", p.name) for p in cand.iterdir()):
            return cand
    raise PhysionetMMIMissingError(f"no subject folders S001..S109 in {root}; {_LAYOUT}")


def physionet_mmi_path(root: str | os.PathLike[str], subject: int | str, run: int | str) -> Path:
    """Path of one run file, ``<root>/S###/S###R##.edf`` (not checked for existence)."""
    s, r = _subject_number(subject), _run_number(run)
    return Path(root) / f"S{s:03d}" / f"S{s:03d}R{r:02d}.edf"


class PhysionetMMIDataset(EEGWindowDataset):
    """Event-locked trials from EEGMMIDB runs, labelled by what ``T0``/``T1``/``T2`` mean in each run.

    Each item is a :class:`~chanformer.batch.ChannelSample`: values ``[64, T]`` in volts, channel
    ids of the 10-05 vocabulary keys (``Fc5.`` -> ``eeg/FC5``), positions, and the class index
    into :attr:`classes`. The subject, run and run type of every window are in
    :attr:`window_subjects`, :attr:`window_runs`, :attr:`window_run_types` (and
    :meth:`window_info`), e.g. for splits by subject.

    Args:
        root: the folder holding ``S001`` ... ``S109`` (see the module docstring).
        subjects: subject numbers (``1``..``109``) or names (``"S001"``); default: every
            ``S###`` folder found under ``root``.
        runs: run numbers (``1``..``14``); mutually exclusive with ``task``.
        task: a key of :data:`TASKS` (``"imagery_lr"``, ``"imagery_fists_feet"``, ``"real_lr"``,
            ``"real_fists_feet"``, ``"real"``, ``"imagery"``, ``"baseline"``, ``"all"``).
            Default (neither given): ``"imagery_lr"``.
        tmin / tmax: trial window ``[tmin, tmax)`` in seconds around each annotation onset.
        include_rest: keep ``T0`` of the task runs (3-14) as class ``"rest"``; otherwise they
            are left out. ``T0`` of runs 1/2 is always ``eyes_open``/``eyes_closed``.
        vocab: channel vocabulary (default 10-05).
        **kwargs: passed on to :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset` (``resample``,
            ``l_freq``, ``h_freq``, ``reference``, ``euclidean_alignment``, ...). Files whose sampling
            rates differ are refused by name unless ``resample=`` gives one common rate.

    Real and imagined runs share class names (``left_fist`` means the cue, executed or
    imagined); :attr:`window_run_types` tells them apart.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        subjects: Iterable[int | str] | None = None,
        runs: Iterable[int | str] | None = None,
        task: str | None = None,
        tmin: float = 0.0,
        tmax: float = 4.0,
        include_rest: bool = False,
        vocab: ChannelVocab | None = None,
        **kwargs: Any,
    ) -> None:
        for k in ("mode", "label_map", "recordings"):
            if k in kwargs:
                raise TypeError(f"PhysionetMMIDataset sets {k!r} itself")
        if runs is not None and task is not None:
            raise ValueError("pass either runs=... or task=..., not both")
        if runs is None:
            task = task or "imagery_lr"
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; choose among {sorted(TASKS)}")
            run_list = list(TASKS[task])
        else:
            run_list = sorted({_run_number(r) for r in runs})
            if not run_list:
                raise ValueError("runs is empty")
        self.task = task
        self.root = Path(root)
        data_root = _data_root(self.root)
        if subjects is None:
            found = sorted(int(p.name[1:]) for p in data_root.iterdir() if p.is_dir() and re.fullmatch(r"S\d{3}", p.name))
            subject_list = [s for s in found if 1 <= s <= N_SUBJECTS]
        else:
            subject_list = sorted({_subject_number(s) for s in subjects})
            if not subject_list:
                raise ValueError("subjects is empty")
        self.data_root = data_root
        self.subject_list, self.run_list, self.include_rest = subject_list, run_list, include_rest

        missing: list[Path] = []
        files: list[tuple[int, int, Path]] = []
        for s in subject_list:
            for r in run_list:
                path = physionet_mmi_path(data_root, s, r)
                if path.is_file():
                    files.append((s, r, path))
                else:
                    missing.append(path)
        if missing:
            shown = ", ".join(str(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise PhysionetMMIMissingError(f"{len(missing)} EEGMMIDB run file(s) missing (partial download?): {shown}; {_LAYOUT}")

        self.classes: list[str] = classes_of(run_list, include_rest)
        class_index = {c: i for i, c in enumerate(self.classes)}

        raws: list[mne.io.BaseRaw] = []
        present: set[str] = set()
        for _, r, path in files:
            raw = read_recording(path)
            _relabel(raw, EVENT_MEANING[RUN_TYPES[r]], include_rest)
            present.update(str(d) for d in raw.annotations.description)
            raws.append(raw)
        label_map = {c: class_index[c] for c in self.classes if c in present}
        if not label_map:
            raise ValueError(
                f"no {'/'.join(self.classes)} events in {len(files)} EEGMMIDB run file(s) under {data_root} "
                "(no T0/T1/T2 annotations?)"
            )
        super().__init__(raws, mode="events", label_map=label_map, tmin=tmin, tmax=tmax, vocab=vocab, **kwargs)
        self.recording_subjects = [s for s, _, _ in files]
        self.recording_runs = [r for _, r, _ in files]
        self.window_subjects = np.asarray(self.recording_subjects, dtype=int)[self.recording_of]
        self.window_runs = np.asarray(self.recording_runs, dtype=int)[self.recording_of]
        self.window_run_types = np.asarray([RUN_TYPES[r] for r in self.recording_runs])[self.recording_of]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def window_info(self, idx: int) -> dict[str, Any]:
        """Subject, run, run type, class name, onset (s) and file of window ``idx``."""
        idx, rec, j = self.locate(idx)
        return {
            "subject": int(self.window_subjects[idx]),
            "run": int(self.window_runs[idx]),
            "run_type": str(self.window_run_types[idx]),
            "label": self.classes[int(self.labels[rec][j])],
            "onset": float(self.onsets[rec][j]),
            "file": self.sources[rec],
        }


def classes_of(runs: Iterable[int], include_rest: bool = False) -> list[str]:
    """The class names runs ``runs`` can produce, in :data:`CLASS_NAMES` order (``rest`` only
    with ``include_rest``; ``T0`` of runs 1/2 is always ``eyes_open``/``eyes_closed``)."""
    possible = {
        name for r in runs for code, name in EVENT_MEANING[RUN_TYPES[_run_number(r)]].items()
        if include_rest or not (code == "T0" and name == "rest")
    }  # fmt: skip
    return [c for c in CLASS_NAMES if c in possible]


def _relabel(raw: mne.io.BaseRaw, meaning: dict[str, str], include_rest: bool) -> None:
    """Replace ``T0``/``T1``/``T2`` by class names; drop the ones this run gives no class (and
    ``T0`` rest unless ``include_rest``); keep ``BAD``-prefixed annotations."""
    import mne

    ann = raw.annotations
    keep: list[int] = []
    desc: list[str] = []
    for i, d in enumerate(ann.description):
        d = str(d).strip()
        name = meaning.get(d)
        if d.upper().startswith("BAD"):
            keep.append(i)
            desc.append(d)
        elif name is not None and (include_rest or name != "rest"):
            keep.append(i)
            desc.append(name)
    new = mne.Annotations(onset=ann.onset[keep], duration=ann.duration[keep], description=desc, orig_time=ann.orig_time)
    raw.set_annotations(new, verbose="error")


# -- datamodule -------------------------------------------------------------------------------------
class PhysionetMMIDataModule(ChannelDataModule):
    """EEGMMIDB cue-locked trials (:class:`PhysionetMMIDataset`) for training, in the common set-ups.

    **Task.** ``task="imagery_lr"`` (default: runs 4, 8, 12, imagined left vs right fist, 2
    classes), ``"real_lr"`` (runs 3, 7, 11), ``"imagery_fists_feet"`` / ``"real_fists_feet"``
    (both fists vs both feet), ``"imagery"`` / ``"real"`` (both kinds of run: 4 classes), any key
    of :data:`TASKS`; ``runs=`` names the runs instead. ``include_rest=True`` adds the ``T0``
    rest periods as class ``rest``.

    **Trials.** ``[tmin, tmax)`` seconds from the onset of each ``T1``/``T2`` cue (default 0-4 s:
    the cue annotations last 4.1 s, the whole imagery period), band-passed ``l_freq``-``h_freq``,
    resampled to ``resample`` Hz (default 128: 512 samples), optionally Euclidean-aligned per run
    file (each file whitened by the mean spatial covariance of its trials; unsupervised, so it uses
    the held-out subjects' trials too, as Euclidean alignment does), and multiplied by ``scale``
    (default 1 with alignment, 1e5 without: volts -> units of 10 uV).

    **Split.** ``"cross_subject"`` (default, the standard protocol): ``test_fraction`` of the
    subjects (or the subjects named in ``test_subjects``) are the test set and ``val_fraction`` of
    the subjects the validation set, drawn with ``seed``; the rest train, and no subject is in two
    splits. ``"within_subject"``: every subject's trials are split, stratified by class.

    Every file has the same 64 channels: :attr:`channels` (and ``spec.channels``) are their 10-05
    keys in file order, which DBConformer takes as its montage.

    Args:
        root: the folder holding ``S001`` ... ``S109`` (the one argument to set).
        subjects: subject numbers (default: every ``S###`` folder found), less ``exclude_subjects``.
        exclude_subjects: left out (default :data:`EXCLUDED_SUBJECTS`; ``[]`` keeps every one).
        runs: run numbers; when given, ``task`` is not used.

    """

    def __init__(
        self,
        root: str,
        task: str = "imagery_lr",
        runs: list[int] | None = None,
        subjects: list[int | str] | None = None,
        exclude_subjects: list[int] | None = None,
        include_rest: bool = False,
        split: Literal["cross_subject", "within_subject"] = "cross_subject",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        test_subjects: list[int] | None = None,
        tmin: float = 0.0,
        tmax: float = 4.0,
        resample: float | None = 128.0,
        l_freq: float | None = 4.0,
        h_freq: float | None = 40.0,
        euclidean_alignment: bool = True,
        scale: float | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=eeg_1005_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        if split not in ("cross_subject", "within_subject"):
            raise ValueError(f"split must be 'cross_subject' or 'within_subject', got {split!r}")
        if runs is None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose among {sorted(TASKS)}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"need val_fraction, test_fraction >= 0 summing to < 1, got {val_fraction}, {test_fraction}")
        self.save_hyperparameters()
        self.root, self.task, self.subjects, self.include_rest = root, task, subjects, include_rest
        self.runs = sorted({_run_number(r) for r in runs}) if runs is not None else list(TASKS[task])
        self.exclude_subjects = list(EXCLUDED_SUBJECTS if exclude_subjects is None else exclude_subjects)
        self.split, self.val_fraction, self.test_fraction = split, val_fraction, test_fraction
        self.test_subjects = test_subjects
        self.tmin, self.tmax, self.resample = tmin, tmax, resample
        self.l_freq, self.h_freq, self.ea, self.scale = l_freq, h_freq, euclidean_alignment, scale
        self.dataset: PhysionetMMIDataset | None = None

    @property
    def classes(self) -> list[str]:
        return classes_of(self.runs, self.include_rest)

    @property
    def channels(self) -> list[str]:
        """10-05 vocabulary keys of the 64 channels, in file order."""
        keys = [self.vocab.resolve(label.strip("."), "eeg/") for label in CHANNELS]
        return [k for k in keys if k is not None]

    @property
    def sfreq(self) -> float:
        return float(self.resample) if self.resample is not None else 160.0

    @property
    def n_times(self) -> int:
        return int(round((self.tmax - self.tmin) * self.sfreq))

    @property
    def _scale(self) -> float:
        return self.scale if self.scale is not None else (1.0 if self.ea else 1e5)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.sfreq, num_classes=len(self.classes),
                        class_names=self.classes, channels=self.channels)  # fmt: skip

    def input_contract(self) -> InputContract:
        """The trials' preprocessing for the pretrained export: rate, band-pass, cue window, alignment, scale."""
        scale = self._scale
        return InputContract(
            modality="eeg", channels=[k for k in self.vocab.keys if k in set(self.channels)], key_prefix="eeg/",
            sfreq=self.sfreq, l_freq=self.l_freq, h_freq=self.h_freq, window_s=self.tmax - self.tmin,
            n_times=self.n_times, alignment="euclidean" if self.ea else "none", scale=scale if scale != 1.0 else None,
            units="V" if scale == 1.0 else f"V x {scale:g}", picks=["eeg"],
            extra={"mode": "events", "tmin": self.tmin, "tmax": self.tmax, "classes": self.classes,
                   "runs": self.runs, "dataset": "PhysioNet EEGMMIDB", "cue_aligned": True},
        )  # fmt: skip

    def _subject_list(self) -> list[int]:
        if self.subjects is not None:
            chosen = sorted({_subject_number(s) for s in self.subjects})
        else:
            data_root = _data_root(Path(self.root))
            found = (int(p.name[1:]) for p in data_root.iterdir() if p.is_dir() and re.fullmatch(r"S\d{3}", p.name))
            chosen = sorted(s for s in found if 1 <= s <= N_SUBJECTS)
        excluded = {_subject_number(s) for s in self.exclude_subjects}
        kept = [s for s in chosen if s not in excluded]
        if not kept:
            raise ValueError(f"no EEGMMIDB subjects left under {self.root} after exclude_subjects={sorted(excluded)}")
        return kept

    def build_dataset(self) -> PhysionetMMIDataset:
        ds = PhysionetMMIDataset(
            self.root, subjects=self._subject_list(), runs=self.runs, tmin=self.tmin, tmax=self.tmax,
            include_rest=self.include_rest, vocab=self.vocab, resample=self.resample, l_freq=self.l_freq,
            h_freq=self.h_freq, euclidean_alignment=self.ea,
        )  # fmt: skip
        if self._scale != 1.0:
            ds.values = [v * np.float32(self._scale) for v in ds.values]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = self.build_dataset()
        train, val, test = subject_split(ds.window_subjects, ds.targets, self.split, self.val_fraction,
                                         self.test_fraction, self.seed, self.test_subjects)  # fmt: skip
        if not len(train):
            raise ValueError(f"no training trials under {self.root} (split={self.split!r})")
        self.train_dataset = Subset(ds, train.tolist())
        self.val_dataset = Subset(ds, val.tolist()) if len(val) else None
        self.test_dataset = Subset(ds, test.tolist()) if len(test) else None
