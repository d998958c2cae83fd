"""BCI Competition IV data sets 2a and 2b (Graz motor imagery) read from the files as distributed.

Layout (https://www.bbci.de/competition/iv/#download, GDF files; true labels of every session
from https://www.bbci.de/competition/iv/results/index.html#labels)::

    <root>/A01T.gdf  A01E.gdf ... A09T.gdf  A09E.gdf      2a: 9 subjects x 2 sessions
    <root>/A01T.mat  A01E.mat ... A09E.mat                2a: true labels (``classlabel``, 1-4)
    <root>/B0101T.gdf B0102T.gdf B0103T.gdf B0104E.gdf B0105E.gdf ... B0905E.gdf    2b
    <root>/B0101T.mat ... B0905E.mat                      2b: true labels (``classlabel``, 1-2)

The files may sit in sub-folders of ``<root>`` (``BCICIV_2a_gdf/``, ``true_labels/``, ...): every
file is found by its name anywhere under ``<root>``. ``T`` is the training session, ``E`` the
evaluation session, whose cues are all ``783`` (cue unknown) in the GDF file: their classes come
from the ``.mat`` file of the same name (``classlabel``, one entry per trial in file order).
The official split trains on the ``T`` sessions (2b: sessions 1-3) and evaluates on the ``E``
sessions (2b: 4-5).

* **2a**: 22 EEG channels + 3 EOG (``EOG-left``, ``EOG-central``, ``EOG-right``), 250 Hz,
  0.5-100 Hz band-pass, 50 Hz notch; 4 classes: cues 769 left hand, 770 right hand, 771 feet,
  772 tongue. The EEG channels are labelled ``EEG-Fz``, ``EEG-0`` ... ``EEG-16``, ``EEG-C3``,
  ``EEG-Cz``, ``EEG-C4``, ``EEG-Pz`` in the files; :data:`CHANNELS_2A` maps them onto the 10-20
  positions of the montage in the data set description (``EEG-0`` is FC3, ... ``EEG-16`` POz).
* **2b**: 3 bipolar EEG channels ``EEG:C3``, ``EEG:Cz``, ``EEG:C4`` (each recorded between two
  electrodes 2.5 cm in front of and behind that position; keyed as the position itself) + 3 EOG
  (``EOG:ch01``-``EOG:ch03``), 250 Hz; 2 classes: cues 769 left hand, 770 right hand; 5 sessions
  per subject (1-2 without feedback, 3-5 with smiley feedback, event 781).

EOG channels are typed ``eog`` (so the EEG windows leave them out). Trials marked rejected by the
organisers (event 1023 at the trial start, 768) are kept unless ``reject_trials=True``; each
window says whether its trial was rejected (:attr:`BCIIVDataset.window_rejected`).

Nothing is ever downloaded (the data need a registration): a missing folder or file raises
:class:`BCIIVMissingError` describing the expected layout and where to get it.
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
from chanformer.datasets.base import ChannelDataModule, stratified_split
from chanformer.datasets.eeg.readers import EEGWindowDataset, read_recording
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "BCI_IV_LABELS_URL",
    "BCI_IV_URL",
    "CHANNELS_2A",
    "CHANNELS_2B",
    "CLASSES_2A",
    "CLASSES_2B",
    "EOG_2A",
    "EOG_2B",
    "EVENT_CODES",
    "BCIIV2aDataset",
    "BCIIV2bDataset",
    "BCIIVDataModule",
    "BCIIVDataset",
    "BCIIVMissingError",
    "bci_iv_path",
]

BCI_IV_URL = "https://www.bbci.de/competition/iv/#download"
BCI_IV_LABELS_URL = "https://www.bbci.de/competition/iv/results/index.html#labels"
N_SUBJECTS = 9
SFREQ = 250.0

#: File label of each 2a EEG channel -> its 10-05 electrode (data set description, figure 3).
CHANNELS_2A: dict[str, str] = {
    "EEG-Fz": "Fz", "EEG-0": "FC3", "EEG-1": "FC1", "EEG-2": "FCz", "EEG-3": "FC2", "EEG-4": "FC4",
    "EEG-5": "C5", "EEG-C3": "C3", "EEG-6": "C1", "EEG-Cz": "Cz", "EEG-7": "C2", "EEG-C4": "C4",
    "EEG-8": "C6", "EEG-9": "CP3", "EEG-10": "CP1", "EEG-11": "CPz", "EEG-12": "CP2", "EEG-13": "CP4",
    "EEG-14": "P1", "EEG-Pz": "Pz", "EEG-15": "P2", "EEG-16": "POz",
}  # fmt: skip
EOG_2A: tuple[str, ...] = ("EOG-left", "EOG-central", "EOG-right")
#: File label of each 2b (bipolar) EEG channel -> the electrode position it is centred on.
CHANNELS_2B: dict[str, str] = {"EEG:C3": "C3", "EEG:Cz": "Cz", "EEG:C4": "C4"}
EOG_2B: tuple[str, ...] = ("EOG:ch01", "EOG:ch02", "EOG:ch03")

#: Event codes (``TYP``) of the GDF event tables (data set descriptions, tables 2).
EVENT_CODES: dict[int, str] = {
    276: "idling_eyes_open", 277: "idling_eyes_closed", 768: "trial_start", 769: "left_hand",
    770: "right_hand", 771: "feet", 772: "tongue", 781: "feedback", 783: "cue_unknown", 1023: "rejected_trial",
    1072: "eye_movements", 1077: "horizontal_eye_movement", 1078: "vertical_eye_movement", 1079: "eye_rotation",
    1081: "eye_blinks", 32766: "new_run",
}  # fmt: skip
CLASSES_2A: tuple[str, ...] = ("left_hand", "right_hand", "feet", "tongue")
CLASSES_2B: tuple[str, ...] = ("left_hand", "right_hand")
_CUE_CODES = {769: 0, 770: 1, 771: 2, 772: 3}
_UNKNOWN_CUE, _TRIAL_START, _REJECTED = 783, 768, 1023


class BCIIVMissingError(FileNotFoundError):
    """The data folder, a GDF file or a true-label ``.mat`` file is missing; the message shows the layout."""


def _layout(dataset: str) -> str:
    if dataset == "2a":
        files = "<root>/A01T.gdf, A01E.gdf, ..., A09E.gdf and the true labels A01T.mat, A01E.mat, ..., A09E.mat"
        zip_name = "BCICIV_2a_gdf.zip"
    else:
        files = (
            "<root>/B0101T.gdf, B0102T.gdf, B0103T.gdf, B0104E.gdf, B0105E.gdf, ..., B0905E.gdf and the true "
            "labels B0101T.mat, ..., B0905E.mat"
        )
        zip_name = "BCICIV_2b_gdf.zip"
    return (
        f"expected the BCI Competition IV {dataset} layout {files} (any sub-folder of <root>); get {zip_name} "
        f"from {BCI_IV_URL} (free registration) and the true-label .mat files from {BCI_IV_LABELS_URL}; "
        "chanformer never downloads them"
    )


def _subject_number(subject: int | str, letter: str) -> int:
    if isinstance(subject, (int, np.integer)):
        n = int(subject)
    else:
        m = re.fullmatch(rf"[{letter}{letter.lower()}]?0*(\d+)", str(subject).strip())
        if not m:
            raise ValueError(f"subject must be a number 1..{N_SUBJECTS} or '{letter}01'-style, got {subject!r}")
        n = int(m.group(1))
    if not 1 <= n <= N_SUBJECTS:
        raise ValueError(f"subject must be in 1..{N_SUBJECTS}, got {subject!r}")
    return n


def bci_iv_path(root: str | os.PathLike[str], dataset: Literal["2a", "2b"], subject: int, session: str | int) -> Path:
    """``<root>/A01T.gdf`` (2a, session ``"T"``/``"E"``) or ``<root>/B0104E.gdf`` (2b, session 1-5),
    not checked for existence (the readers also look in sub-folders)."""
    if dataset == "2a":
        if session not in ("T", "E"):
            raise ValueError(f"2a sessions are 'T' and 'E', got {session!r}")
        return Path(root) / f"A{subject:02d}{session}.gdf"
    n = int(session)
    if not 1 <= n <= 5:
        raise ValueError(f"2b sessions are 1..5, got {session!r}")
    return Path(root) / f"B{subject:02d}{n:02d}{'T' if n <= 3 else 'E'}.gdf"


def _index_files(root: Path, dataset: str) -> dict[str, Path]:
    """File name -> path of every GDF / ``.mat`` file of ``dataset`` under ``root`` (recursively)."""
    pattern = re.compile(r"A0[1-9][TE]\.(gdf|mat)" if dataset == "2a" else r"B0[1-9]0[1-5][TE]\.(gdf|mat)", re.I)
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and pattern.fullmatch(path.name):
            key = path.name[:-4].upper() + path.name[-4:].lower()
            if key in found:
                raise ValueError(f"{key} occurs twice under {root}: {found[key]} and {path}; keep one copy")
            found[key] = path
    return found


def _read_classlabel(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several types for non-MAT content
        raise ValueError(f"cannot read true-label file {path}: {type(e).__name__}: {e}") from e
    if "classlabel" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no 'classlabel' variable (found {keys})")
    return np.asarray(mat["classlabel"]).astype(np.int64).ravel()


class BCIIVDataset(EEGWindowDataset):
    """Cue-locked trials of BCI Competition IV 2a or 2b (use :class:`BCIIV2aDataset` / :class:`BCIIV2bDataset`).

    Each item is a :class:`~chanformer.batch.ChannelSample`: values ``[C, T]`` in volts (22 EEG
    channels for 2a, 3 for 2b; EOG left out), 10-05 vocabulary ids and positions, and the class
    index into :attr:`classes`. Per window: :attr:`window_subjects`, :attr:`window_sessions`
    (``"T"``/``"E"`` for 2a, ``"01T"`` ... ``"05E"`` for 2b), :attr:`window_splits`
    (``"train"``/``"eval"``: the official split), :attr:`window_trials` (trial number in its file,
    from 0) and :attr:`window_rejected`; :meth:`window_info` gathers them.

    Args:
        root: the folder holding the GDF and ``.mat`` files (see the module docstring).
        subjects: subject numbers 1-9 (or ``"A01"`` / ``"B01"``); default: every subject whose
            files are under ``root``.
        sessions: 2a: ``"T"``/``"E"``; 2b: 1-5 (or ``"01T"``-style); default all.
        tmin / tmax: trial window ``[tmin, tmax)`` in seconds from the cue onset. The classic
            4-class setup cuts 0.5-2.5 s after the cue (EEGNet); "2-6 s of the trial" is 0-4 s
            after the cue in 2a (cue at 2 s) and -1 to 3 s in 2b (cue at 3 s).
        reject_trials: leave out the trials the organisers marked rejected (event 1023).
        vocab: channel vocabulary (default 10-05).
        **kwargs: passed on to :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`
            (``resample``, ``l_freq``, ``h_freq``, ``euclidean_alignment``, ...).
    """

    dataset: Literal["2a", "2b"] = "2a"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        subjects: Iterable[int | str] | None = None,
        sessions: Iterable[str | int] | None = None,
        tmin: float = 0.5,
        tmax: float = 2.5,
        reject_trials: bool = False,
        vocab: ChannelVocab | None = None,
        **kwargs: Any,
    ) -> None:
        for k in ("mode", "label_map", "recordings"):
            if k in kwargs:
                raise TypeError(f"{type(self).__name__} sets {k!r} itself")
        ds = self.dataset
        letter = "A" if ds == "2a" else "B"
        self.root = Path(root)
        if not self.root.is_dir():
            raise BCIIVMissingError(f"BCI Competition IV {ds} folder not found: {self.root}; {_layout(ds)}")
        index = _index_files(self.root, ds)
        gdf_names = [n for n in index if n.endswith(".gdf")]
        if not gdf_names:
            raise BCIIVMissingError(f"no BCI Competition IV {ds} GDF files under {self.root}; {_layout(ds)}")
        self.session_list = self._sessions(sessions)
        if subjects is None:
            subject_list = sorted({int(n[1:3]) for n in gdf_names})
        else:
            subject_list = sorted({_subject_number(s, letter) for s in subjects})
            if not subject_list:
                raise ValueError("subjects is empty")
        self.subject_list, self.reject_trials = subject_list, reject_trials
        self.classes: list[str] = list(CLASSES_2A if ds == "2a" else CLASSES_2B)

        files = [(s, sess, bci_iv_path(".", ds, s, sess).name) for s in subject_list for sess in self.session_list]
        missing = [name for _, _, name in files if name not in index]
        # evaluation sessions need their true labels; training sessions carry them as events
        missing += [name[:-4] + ".mat" for _, _, name in files if name[-5] == "E" and name[:-4] + ".mat" not in index]
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise BCIIVMissingError(
                f"{len(missing)} BCI Competition IV {ds} file(s) missing under {self.root} (partial download, or "
                f"the true-label .mat files not unpacked?): {shown}; {_layout(ds)}"
            )

        raws: list[mne.io.BaseRaw] = []
        self._trial_meta: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # cue onsets, labels, rejected
        for _, _, name in files:
            raw = self._read(index[name])
            mat = index.get(name[:-4] + ".mat")
            onsets, labels, rejected = self._trials(raw, index[name], mat)
            keep = ~rejected if reject_trials else np.ones(len(onsets), bool)
            self._set_cue_annotations(raw, onsets[keep], labels[keep])
            raws.append(raw)
            self._trial_meta.append((onsets, labels, rejected))
        present = {self.classes[int(y)] for _, labels, _ in self._trial_meta for y in labels}
        label_map = {c: i for i, c in enumerate(self.classes) if c in present}
        if not label_map:
            raise ValueError(f"no cues (events 769-772/783) in {len(files)} BCI IV {ds} file(s) under {self.root}")
        super().__init__(raws, mode="events", label_map=label_map, tmin=tmin, tmax=tmax,
                         vocab=vocab if vocab is not None else eeg_1005_vocab(), **kwargs)  # fmt: skip
        self.sources = [str(index[name]) for _, _, name in files]
        self.recording_subjects = [s for s, _, _ in files]
        self.recording_sessions = [name[3:-4] for _, _, name in files]  # "T"/"E" (2a), "01T".."05E" (2b)
        self._window_metadata()

    # -- per dataset ------------------------------------------------------------------------
    def _sessions(self, sessions: Iterable[str | int] | None) -> list[str | int]:
        raise NotImplementedError

    def _read(self, path: Path) -> mne.io.BaseRaw:
        raw = read_recording(path)
        eog, names = (EOG_2A, CHANNELS_2A) if self.dataset == "2a" else (EOG_2B, CHANNELS_2B)
        unexpected = [n for n in raw.ch_names if n not in names and n not in eog]
        absent = [n for n in [*names, *eog] if n not in raw.ch_names]
        if unexpected or absent:
            raise ValueError(
                f"{path}: not the BCI Competition IV {self.dataset} channel set (unexpected: {unexpected or 'none'}; "
                f"absent: {absent or 'none'})"
            )
        raw.set_channel_types(dict.fromkeys(eog, "eog"), verbose="error")
        raw.rename_channels(dict(names), verbose="error")
        return raw

    def _trials(self, raw: mne.io.BaseRaw, path: Path, mat: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cue onsets (s), class indices and rejected flags of one file's trials, in file order."""
        ann = raw.annotations
        codes = np.array([int(d) if str(d).isdigit() else -1 for d in ann.description])
        onsets = np.asarray(ann.onset, dtype=float)
        is_cue = np.isin(codes, [*_CUE_CODES, _UNKNOWN_CUE])
        cue_on, cue_codes = onsets[is_cue], codes[is_cue]
        order = np.argsort(cue_on, kind="stable")
        cue_on, cue_codes = cue_on[order], cue_codes[order]
        known = cue_codes != _UNKNOWN_CUE
        if known.any() and not known.all():
            raise ValueError(f"{path}: mixes known cues (769-772) and unknown cues (783)")
        labels = np.array([_CUE_CODES.get(int(c), -1) for c in cue_codes], dtype=np.int64)
        if len(self.classes) == 2 and (labels >= 2).any():
            raise ValueError(f"{path}: cues 771/772 (feet/tongue) in a 2-class (2b) file")
        true = _read_classlabel(mat) if mat is not None else None
        if true is not None:
            if len(true) != len(cue_on):
                raise ValueError(
                    f"{mat}: {len(true)} class labels for the {len(cue_on)} cues of {path}; the label file "
                    "does not belong to this recording"
                )
            bad = sorted(set(true.tolist()) - set(range(1, len(self.classes) + 1)))
            if bad:
                raise ValueError(f"{mat}: classlabel values {bad} outside 1..{len(self.classes)}")
            if known.all() and not np.array_equal(true - 1, labels):
                n = int((true - 1 != labels).sum())
                raise ValueError(f"{mat}: {n} class label(s) disagree with the cue events of {path}")
            labels = true - 1
        elif not known.all():
            raise BCIIVMissingError(f"{path}: cues are unknown (783) and no true-label file {path.stem}.mat was found")
        starts = np.sort(onsets[codes == _TRIAL_START])
        rejects = onsets[codes == _REJECTED]
        rejected = np.zeros(len(cue_on), bool)
        for i, t in enumerate(cue_on):
            prior = starts[starts <= t + 1e-9]
            start = prior[-1] if len(prior) and t - prior[-1] < 5.0 else t - 3.5
            rejected[i] = bool(((rejects >= start - 1e-9) & (rejects <= t + 1e-9)).any())
        return cue_on, labels, rejected

    def _set_cue_annotations(self, raw: mne.io.BaseRaw, onsets: np.ndarray, labels: np.ndarray) -> None:
        import mne

        desc = [self.classes[int(y)] for y in labels]
        ann = mne.Annotations(onsets, np.zeros(len(onsets)), desc, orig_time=raw.annotations.orig_time)
        raw.set_annotations(ann, verbose="error")

    def _window_metadata(self) -> None:
        subj, sess, trial, rejected = [], [], [], []
        for rec, (onsets, _, rej) in enumerate(self._trial_meta):
            cue = np.asarray(self.onsets[rec]) - self.tmin
            j = np.abs(cue[:, None] - onsets[None, :]).argmin(axis=1) if len(cue) else np.zeros(0, int)
            trial.append(j)
            rejected.append(rej[j])
            subj.append(np.full(len(j), self.recording_subjects[rec]))
            sess.append(np.full(len(j), self.recording_sessions[rec], dtype=object))
        self.window_subjects = np.concatenate(subj).astype(int)
        self.window_sessions = np.concatenate(sess).astype(str)
        self.window_trials = np.concatenate(trial).astype(int)
        self.window_rejected = np.concatenate(rejected).astype(bool)
        self.window_splits = np.where(np.char.endswith(self.window_sessions, "T"), "train", "eval")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def window_info(self, idx: int) -> dict[str, Any]:
        """Subject, session, official split, trial, rejected flag, class name, cue onset (s) and file."""
        idx, rec, j = self.locate(idx)
        return {
            "subject": int(self.window_subjects[idx]),
            "session": str(self.window_sessions[idx]),
            "split": str(self.window_splits[idx]),
            "trial": int(self.window_trials[idx]),
            "rejected": bool(self.window_rejected[idx]),
            "label": self.classes[int(self.labels[rec][j])],
            "cue_onset": float(self.onsets[rec][j] - self.tmin),
            "file": self.sources[rec],
        }


class BCIIV2aDataset(BCIIVDataset):
    """BCI Competition IV 2a: 9 subjects, sessions ``T``/``E``, 22 EEG channels, 4 classes
    (left hand, right hand, feet, tongue). See :class:`BCIIVDataset` for the arguments."""

    dataset = "2a"

    def _sessions(self, sessions: Iterable[str | int] | None) -> list[str | int]:
        if sessions is None:
            return ["T", "E"]
        given = [str(s).strip().upper() for s in sessions]
        if not given or any(s not in ("T", "E") for s in given):
            raise ValueError(f"2a sessions are 'T' (training) and 'E' (evaluation), got {given}")
        return [s for s in ("T", "E") if s in given]


class BCIIV2bDataset(BCIIVDataset):
    """BCI Competition IV 2b: 9 subjects, sessions 1-5 (1-3 training, 4-5 evaluation), 3 bipolar
    EEG channels (C3, Cz, C4), 2 classes (left hand, right hand). See :class:`BCIIVDataset`."""

    dataset = "2b"

    def _sessions(self, sessions: Iterable[str | int] | None) -> list[str | int]:
        if sessions is None:
            return [1, 2, 3, 4, 5]
        out: set[int] = set()
        for s in sessions:
            m = re.fullmatch(r"0*([1-5])[TEte]?", str(s).strip())
            if m is None:
                raise ValueError(f"2b sessions are 1..5 (or '01T'...'05E'), got {s!r}")
            out.add(int(m.group(1)))
        if not out:
            raise ValueError("sessions is empty")
        return sorted(out)


# -- datamodule -------------------------------------------------------------------------------------
class BCIIVDataModule(ChannelDataModule):
    """BCI Competition IV 2a / 2b trials (:class:`BCIIV2aDataset` / :class:`BCIIV2bDataset`) for training.

    ``split="official"`` (default): training sessions (2a ``T``, 2b 1-3) are split into train and
    val (``val_fraction`` of each subject's trials, stratified by class), the evaluation sessions
    (2a ``E``, 2b 4-5, labelled from the true-label files) are the test set. ``"cross_subject"``:
    the last ``test_subjects`` subjects (both sessions) are the test set; val is a stratified share
    of the other subjects' training-session trials.

    Trials ``[tmin, tmax)`` s after the cue are band-passed ``l_freq``-``h_freq``, resampled to
    ``resample`` Hz, optionally Euclidean-aligned per recording (each session file whitened by its
    mean spatial covariance; unsupervised, so it may use the evaluation session's trials), and
    multiplied by ``scale`` (default 1 with alignment, 1e5 without: volts -> units of 10 uV).

    Args:
        root: the folder with the GDF and true-label ``.mat`` files (the one argument to set).
        dataset: ``"2a"`` (4 classes, 22 channels) or ``"2b"`` (2 classes, 3 channels).
        subjects: subject numbers (default: every subject found under ``root``).
        reject_trials: leave out trials marked rejected (event 1023).

    """

    def __init__(
        self,
        root: str,
        dataset: Literal["2a", "2b"] = "2a",
        subjects: list[int] | None = None,
        split: Literal["official", "cross_subject"] = "official",
        test_subjects: int = 1,
        val_fraction: float = 0.15,
        tmin: float = 0.5,
        tmax: float = 2.5,
        resample: float | None = 128.0,
        l_freq: float | None = 4.0,
        h_freq: float | None = 40.0,
        euclidean_alignment: bool = True,
        scale: float | None = None,
        reject_trials: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=eeg_1005_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        if dataset not in ("2a", "2b"):
            raise ValueError(f"dataset must be '2a' or '2b', got {dataset!r}")
        if split not in ("official", "cross_subject"):
            raise ValueError(f"split must be 'official' or 'cross_subject', got {split!r}")
        self.save_hyperparameters()
        self.root, self.dataset_name, self.subjects = root, dataset, subjects
        self.split, self.test_subjects, self.val_fraction = split, test_subjects, val_fraction
        self.tmin, self.tmax, self.resample = tmin, tmax, resample
        self.l_freq, self.h_freq, self.ea, self.scale = l_freq, h_freq, euclidean_alignment, scale
        self.reject_trials = reject_trials
        self.dataset: BCIIVDataset | None = None

    @property
    def classes(self) -> list[str]:
        return list(CLASSES_2A if self.dataset_name == "2a" else CLASSES_2B)

    @property
    def channels(self) -> list[str]:
        """Vocabulary keys of the EEG channels, in file order."""
        names = CHANNELS_2A if self.dataset_name == "2a" else CHANNELS_2B
        return [f"eeg/{self.vocab.resolve(n, 'eeg/').split('/', 1)[1]}" for n in names.values()]  # type: ignore[union-attr]

    @property
    def sfreq(self) -> float:
        return float(self.resample) if self.resample is not None else SFREQ

    @property
    def n_times(self) -> int:
        return int(round((self.tmax - self.tmin) * self.sfreq))

    @property
    def _scale(self) -> float:
        return self.scale if self.scale is not None else (1.0 if self.ea else 1e5)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.sfreq, num_classes=len(self.classes),
                        class_names=self.classes)  # fmt: skip

    def input_contract(self) -> InputContract:
        """The trials' preprocessing for the pretrained export: rate, band-pass, trial span, alignment, scale."""
        scale = self._scale
        return InputContract(
            modality="eeg", channels=[k for k in self.vocab.keys if k in set(self.channels)], key_prefix="eeg/",
            sfreq=self.sfreq, l_freq=self.l_freq, h_freq=self.h_freq, window_s=self.tmax - self.tmin,
            n_times=self.n_times, alignment="euclidean" if self.ea else "none", scale=scale if scale != 1.0 else None,
            units="V" if scale == 1.0 else f"V x {scale:g}", picks=["eeg"],
            extra={"mode": "events", "tmin": self.tmin, "tmax": self.tmax, "classes": self.classes,
                   "dataset": f"BCI Competition IV {self.dataset_name}", "cue_aligned": True},
        )  # fmt: skip

    def build_dataset(self) -> BCIIVDataset:
        cls = BCIIV2aDataset if self.dataset_name == "2a" else BCIIV2bDataset
        ds = cls(
            self.root, subjects=self.subjects, tmin=self.tmin, tmax=self.tmax, reject_trials=self.reject_trials,
            vocab=self.vocab, resample=self.resample, l_freq=self.l_freq, h_freq=self.h_freq,
            euclidean_alignment=self.ea,
        )  # fmt: skip
        if self._scale != 1.0:
            ds.values = [v * np.float32(self._scale) for v in ds.values]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = self.build_dataset()
        y, subj, official = ds.targets, ds.window_subjects, ds.window_splits
        idx = np.arange(len(ds))
        if self.split == "official":
            test = idx[official == "eval"]
            pool = [idx[(official == "train") & (subj == s)] for s in np.unique(subj)]
        else:
            ids = np.unique(subj)
            if len(ids) <= self.test_subjects:
                raise ValueError(
                    f"cross_subject split needs more than test_subjects={self.test_subjects} subjects, got {len(ids)}"
                )
            held = np.isin(subj, ids[-self.test_subjects :])
            test = idx[held]
            pool = [idx[~held & (official == "train") & (subj == s)] for s in ids[: -self.test_subjects]]
        train_parts, val_parts = [], []
        for p in pool:
            if not len(p):
                continue
            tr, va = stratified_split(y[p], self.val_fraction, self.seed)
            train_parts.append(p[tr])
            val_parts.append(p[va])
        if not train_parts:
            raise ValueError(f"no training-session trials under {self.root} (split={self.split!r})")
        train, val = np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))
        self.train_dataset = Subset(ds, train.tolist())
        self.val_dataset = Subset(ds, val.tolist()) if len(val) else None
        self.test_dataset = Subset(ds, test.tolist()) if len(test) else None
