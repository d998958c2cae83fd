"""Any BIDS-EEG (or BIDS-iEEG) data set, read through mne-bids.

A BIDS root (https://bids-specification.readthedocs.io/, EEG: Pernet et al. 2019) holds
``dataset_description.json`` and ``sub-<label>/[ses-<label>/]eeg/`` folders with one recording per
``sub-<label>[_ses-<label>]_task-<label>[_run-<index>]_eeg.<edf|bdf|vhdr|set>`` plus sidecars:

* ``*_events.tsv``: ``onset``, ``duration``, ``trial_type`` -> the trial labels (``mode="events"``);
* ``*_channels.tsv``: channel ``type`` (EEG, EOG, ECG, SEEG, ECOG, MISC ...) and ``status``
  (``good``/``bad``) -> channels marked ``bad`` are left out (``drop_bads=True``), listed in
  :attr:`BIDSEEGDataset.marked_bad_channels`;
* ``*_electrodes.tsv`` (optional): positions, used when present.

:class:`BIDSEEGDataset` finds the recordings with ``mne_bids.find_matching_paths`` (subjects,
sessions, tasks, runs), reads each with ``mne_bids.read_raw_bids`` and cuts windows with
:class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`. mne-bids is an optional dependency
(the ``data`` extra: ``pip install chanformer[data]``). :class:`BIDSEEGDataModule` splits the
labelled trials across (or within) subjects for training.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch.utils.data import Subset

from chanformer.channels import ChannelVocab, eeg_1005_vocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.eeg.readers import EEGWindowDataset
from chanformer.datasets.eeg.splits import subject_split
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = ["BIDSEEGDataModule", "BIDSEEGDataset", "BIDSMissingError"]

_EXTENSIONS = (".edf", ".bdf", ".vhdr", ".set", ".fif")
_LAYOUT = (
    "expected a BIDS root with dataset_description.json and sub-<label>/[ses-<label>/]{datatype}/"
    "sub-<label>[_ses-<label>]_task-<label>[_run-<index>]_{datatype}.<edf|bdf|vhdr|set> recordings with their "
    "_channels.tsv and _events.tsv sidecars (https://bids-specification.readthedocs.io/)"
)


class BIDSMissingError(FileNotFoundError):
    """The BIDS root, its ``dataset_description.json`` or the selected recordings are missing."""


def _labels(values: Iterable[str | int] | None, key: str) -> list[str] | None:
    if values is None:
        return None
    out = [re.sub(rf"^{key}-", "", str(v).strip()) for v in values]
    if not out:
        raise ValueError(f"{key} selection is empty")
    return out


class BIDSEEGDataset(EEGWindowDataset):
    """Windows or event-locked trials of the recordings of a BIDS-EEG / BIDS-iEEG data set.

    ``mode="events"`` (default) cuts ``[tmin, tmax)`` around each event of ``*_events.tsv`` whose
    ``trial_type`` is in ``trial_types`` (default: every trial type found, sorted; the class
    index is the position in :attr:`classes`); ``mode="windows"`` cuts fixed windows. Channels
    marked ``bad`` in ``*_channels.tsv`` are left out (``drop_bads``); channel types come from
    ``*_channels.tsv`` (EOG/ECG/MISC channels are not data channels and are left out).
    Per window: :attr:`window_subjects`, :attr:`window_sessions`, :attr:`window_tasks`,
    :attr:`window_runs` (``""`` where the entity is absent) and :meth:`window_info`.

    Args:
        root: the BIDS root (holding ``dataset_description.json``).
        subjects / sessions / tasks / runs: entity labels to keep (``"01"`` or ``"sub-01"``);
            default every one found.
        datatype: ``"eeg"`` or ``"ieeg"`` (sEEG/ECoG contacts get subject-scoped keys).
        mode / trial_types / tmin / tmax: what to cut (``window_s=``/``stride_s=`` of
            ``mode="windows"`` go with the other keyword arguments).
        drop_bads: leave out the channels whose ``status`` is ``bad``.
        vocab: channel vocabulary (default 10-05).
        **kwargs: passed on to :class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        subjects: Iterable[str | int] | None = None,
        sessions: Iterable[str | int] | None = None,
        tasks: Iterable[str] | None = None,
        runs: Iterable[str | int] | None = None,
        datatype: Literal["eeg", "ieeg"] = "eeg",
        mode: Literal["events", "windows"] = "events",
        trial_types: Iterable[str] | None = None,
        tmin: float = 0.0,
        tmax: float = 1.0,
        drop_bads: bool = True,
        vocab: ChannelVocab | None = None,
        **kwargs: Any,
    ) -> None:
        for k in ("label_map", "recordings"):
            if k in kwargs:
                raise TypeError(f"BIDSEEGDataset sets {k!r} itself")
        if datatype not in ("eeg", "ieeg"):
            raise ValueError(f"datatype must be 'eeg' or 'ieeg', got {datatype!r}")
        try:
            import mne_bids
        except ImportError as e:  # pragma: no cover - the data extra installs it
            raise ImportError("BIDSEEGDataset needs mne-bids: pip install 'chanformer[data]'") from e
        layout = _LAYOUT.format(datatype=datatype)
        self.root = Path(root)
        if not self.root.is_dir():
            raise BIDSMissingError(f"BIDS root not found: {self.root}; {layout}")
        if not (self.root / "dataset_description.json").is_file():
            raise BIDSMissingError(f"{self.root} is not a BIDS root: no dataset_description.json; {layout}")
        select = {
            "subjects": _labels(subjects, "sub"), "sessions": _labels(sessions, "ses"),
            "tasks": _labels(tasks, "task"), "runs": _labels(runs, "run"),
        }  # fmt: skip
        paths = mne_bids.find_matching_paths(
            self.root, **select, datatypes=datatype, suffixes=datatype, extensions=list(_EXTENSIONS)
        )  # type: ignore[arg-type]
        # BrainVision and FIF come as several files; mne-bids reads the header one
        paths = sorted({p for p in paths if p.extension != ".fif" or p.split is None}, key=lambda p: str(p.fpath))
        if not paths:
            found = {k: mne_bids.get_entity_vals(self.root, k) for k in ("subject", "session", "task", "run")}
            shown = "; ".join(f"{k}s: {v or 'none'}" for k, v in found.items())
            wanted = ", ".join(f"{k}={v}" for k, v in select.items() if v is not None) or "everything"
            raise BIDSMissingError(f"no {datatype} recordings under {self.root} for {wanted} (the tree has {shown}); {layout}")

        raws: list[mne.io.BaseRaw] = []
        self.marked_bad_channels: dict[str, list[str]] = {}
        for bp in paths:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(electrodes|coordsystem|Converting data files).*")
                try:
                    raw = mne_bids.read_raw_bids(bp, verbose="error")
                except Exception as e:  # mne-bids raises many types for broken sidecars
                    raise ValueError(f"cannot read BIDS recording {bp.fpath}: {type(e).__name__}: {e}") from e
            bads = list(raw.info["bads"])
            self.marked_bad_channels[str(bp.fpath)] = bads
            if drop_bads and bads:
                raw.drop_channels(bads)
            raws.append(raw)

        self.classes: list[str] = []
        label_map: dict[str, int] | None = None
        if mode == "events":
            descriptions = {str(d) for r in raws for d in r.annotations.description}
            found_types = sorted(d for d in descriptions if not d.upper().startswith("BAD"))
            if trial_types is None:
                self.classes = found_types
            else:
                self.classes = list(dict.fromkeys(str(t) for t in trial_types))
                unknown = [t for t in self.classes if t not in found_types]
                if unknown:
                    raise ValueError(f"trial_type(s) {unknown} occur in no events.tsv of the selection; found {found_types}")
            if not self.classes:
                raise ValueError(
                    f"no trial_type events in the {len(raws)} selected recording(s) under {self.root}; pass "
                    "mode='windows' to cut fixed windows"
                )
            label_map = {t: i for i, t in enumerate(self.classes)}
            raws = [self._keep_trial_types(r, label_map) for r in raws]
        super().__init__(raws, mode=mode, label_map=label_map, tmin=tmin, tmax=tmax, vocab=vocab, **kwargs)
        self.sources = [str(bp.fpath) for bp in paths]
        self.bids_paths = paths
        ent = [(bp.subject or "", bp.session or "", bp.task or "", bp.run or "") for bp in paths]
        self.window_subjects, self.window_sessions, self.window_tasks, self.window_runs = (
            np.asarray([e[i] for e in ent])[self.recording_of] for i in range(4)
        )

    @staticmethod
    def _keep_trial_types(raw: mne.io.BaseRaw, label_map: dict[str, int]) -> mne.io.BaseRaw:
        """Leave only the selected trial types (and BAD spans) as annotations, so others are not reported."""
        ann = raw.annotations
        keep = [i for i, d in enumerate(ann.description) if str(d) in label_map or str(d).upper().startswith("BAD")]
        raw.set_annotations(ann[keep] if keep else ann[[]], verbose="error")
        return raw

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.mode == "events" else None

    def window_info(self, idx: int) -> dict[str, Any]:
        """Subject, session, task, run, label (events mode), onset (s) and file of window ``idx``."""
        idx, rec, j = self.locate(idx)
        out: dict[str, Any] = {
            "subject": str(self.window_subjects[idx]),
            "session": str(self.window_sessions[idx]),
            "task": str(self.window_tasks[idx]),
            "run": str(self.window_runs[idx]),
            "onset": float(self.onsets[rec][j]),
            "file": self.sources[rec],
        }
        if self.mode == "events":
            out["label"] = self.classes[int(self.labels[rec][j])]
        return out


class BIDSEEGDataModule(ChannelDataModule):
    """Trials of a BIDS-EEG / BIDS-iEEG data set labelled by ``trial_type`` (:class:`BIDSEEGDataset`).

    Trials ``[tmin, tmax)`` seconds from each event of ``*_events.tsv`` whose ``trial_type`` is in
    ``trial_types`` (default every one found, sorted) are band-passed ``l_freq``-``h_freq``,
    resampled to ``resample`` Hz (one rate, so recordings of different rates give trials of one
    length), optionally re-referenced and Euclidean-aligned per recording, and multiplied by
    ``scale`` (default 1 with alignment, 1e5 without: volts -> units of 10 uV).

    **Split.** ``"cross_subject"`` (default): ``test_fraction`` of the subjects (or those named in
    ``test_subjects``) are the test set and ``val_fraction`` of the subjects the validation set,
    drawn with ``seed``; no subject is in two splits. ``"within_subject"``: every subject's trials
    are split, stratified by class.

    **Channels.** Each recording keeps its own channels (those of ``channels.tsv`` of a data type,
    less the ones marked ``bad``), so the channel set may differ between subjects: ``spec.channels``
    is the common montage when every recording has the same channels in the same order, else
    ``None`` (use a channel-adaptive encoder, as the ``bids-eeg-softs`` recipe does). The files are
    read when ``setup``, ``vocab`` or ``spec`` is first used (iEEG contacts join the vocabulary then).

    Args:
        root: the BIDS root (the one argument to set).
        subjects / sessions / tasks / runs / datatype / trial_types / drop_bads: as for
            :class:`BIDSEEGDataset`.
        on_unknown: ``"raise"`` or ``"drop"`` EEG channels whose names are not in the 10-05 vocabulary.

    """

    def __init__(
        self,
        root: str,
        subjects: list[str] | None = None,
        sessions: list[str] | None = None,
        tasks: list[str] | None = None,
        runs: list[str] | None = None,
        datatype: Literal["eeg", "ieeg"] = "eeg",
        trial_types: list[str] | None = None,
        tmin: float = 0.0,
        tmax: float = 1.0,
        split: Literal["cross_subject", "within_subject"] = "cross_subject",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        test_subjects: list[str] | None = None,
        resample: float | None = 128.0,
        l_freq: float | None = 0.5,
        h_freq: float | None = 40.0,
        reference: Literal["none", "average", "bipolar"] = "none",
        euclidean_alignment: bool = False,
        scale: float | None = None,
        drop_bads: bool = True,
        on_unknown: Literal["raise", "drop"] = "raise",
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed)
        if split not in ("cross_subject", "within_subject"):
            raise ValueError(f"split must be 'cross_subject' or 'within_subject', got {split!r}")
        if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise ValueError(f"need val_fraction, test_fraction >= 0 summing to < 1, got {val_fraction}, {test_fraction}")
        self.save_hyperparameters()
        self.root = root
        self.select: dict[str, Any] = {"subjects": subjects, "sessions": sessions, "tasks": tasks, "runs": runs}
        self.split, self.val_fraction, self.test_fraction = split, val_fraction, test_fraction
        self.test_subjects = None if test_subjects is None else _labels(test_subjects, "sub")
        self.tmin, self.tmax = tmin, tmax
        self.scale, self.ea = scale, euclidean_alignment
        self._kw: dict[str, Any] = dict(
            datatype=datatype, trial_types=trial_types, tmin=tmin, tmax=tmax, drop_bads=drop_bads,
            resample=resample, l_freq=l_freq, h_freq=h_freq, reference=reference,
            euclidean_alignment=euclidean_alignment, on_unknown=on_unknown,
            picks=("eeg",) if datatype == "eeg" else ("seeg", "ecog"),
        )  # fmt: skip
        self._vocab_1005 = eeg_1005_vocab()
        self._dataset: BIDSEEGDataset | None = None

    @property
    def _scale(self) -> float:
        return self.scale if self.scale is not None else (1.0 if self.ea else 1e5)

    @property
    def dataset(self) -> BIDSEEGDataset:
        """The trials of the selection (read on first use)."""
        if self._dataset is None:
            ds = BIDSEEGDataset(self.root, **self.select, mode="events", vocab=self._vocab_1005, **self._kw)
            if self._scale != 1.0:
                ds.values = [v * np.float32(self._scale) for v in ds.values]
            self._dataset = ds
        return self._dataset

    @property
    def vocab(self) -> ChannelVocab:
        return self.dataset.vocab

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    @property
    def channels(self) -> list[str] | None:
        """The recordings' common channel keys in file order, or ``None`` when they differ."""
        sets = {tuple(keys) for keys in self.dataset.channel_keys}
        return list(next(iter(sets))) if len(sets) == 1 else None

    @property
    def spec(self) -> DataSpec:
        ds = self.dataset
        return DataSpec(vocab=ds.vocab, n_times=ds.n_times, sfreq=ds.sfreq, num_classes=len(ds.classes),
                        class_names=list(ds.classes), channels=self.channels)  # fmt: skip

    def input_contract(self) -> InputContract:
        """The trials' preprocessing for the pretrained export: rate, band-pass, reference, trial span,
        alignment, scale and every channel seen."""
        ds, kw, scale = self.dataset, self._kw, self._scale
        used = {k for keys in ds.channel_keys for k in keys}
        return InputContract(
            modality="eeg", channels=[k for k in ds.vocab.keys if k in used],
            key_prefix="eeg/", sfreq=ds.sfreq, l_freq=kw["l_freq"], h_freq=kw["h_freq"], reference=kw["reference"],
            window_s=self.tmax - self.tmin, n_times=ds.n_times or None, alignment="euclidean" if self.ea else "none",
            scale=scale if scale != 1.0 else None, units="V" if scale == 1.0 else f"V x {scale:g}",
            picks=list(kw["picks"]),
            extra={"mode": "events", "tmin": self.tmin, "tmax": self.tmax, "classes": list(ds.classes),
                   "dataset": f"BIDS ({Path(self.root).name})"},
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset
        train, val, test = subject_split(ds.window_subjects, ds.targets, self.split, self.val_fraction,
                                         self.test_fraction, self.seed, self.test_subjects)  # fmt: skip
        if not len(train):
            raise ValueError(f"no training trials under {self.root} (split={self.split!r})")
        self.train_dataset = Subset(ds, train.tolist())
        self.val_dataset = Subset(ds, val.tolist()) if len(val) else None
        self.test_dataset = Subset(ds, test.tolist()) if len(test) else None
