"""SIMULATED labelled EEG and iEEG, for recipes, tests and docs that must run offline.

Nothing here is real data. The generators produce ``mne.io.RawArray`` recordings (volts) with
annotations, so they go through the same loaders (:class:`~chanformer.datasets.eeg.readers.EEGWindowDataset`)
as files do:

* :func:`simulate_motor_imagery`: scalp EEG on a 10-20 montage (default: the 22 electrodes of
  BNCI2014-001), 1/f background noise per channel plus two 8-13 Hz mu-rhythm sources over the
  left and right sensorimotor cortex (under C3 and C4), smeared over the scalp with a Gaussian of
  the electrode distance. During an imagined-hand trial the mu source CONTRALATERAL to the hand
  loses amplitude (event-related desynchronisation, ERD). Subjects differ in mu frequency, gains,
  sampling rate (250 / 256 Hz) and some lack a few electrodes.
* :func:`simulate_ieeg_seizures`: multi-contact sEEG (depth shafts with subject-scoped contact
  names), 1/f background plus seizures of rhythmic 3-8 Hz high-amplitude discharges that start on a
  few contacts and spread to a subset of others, annotated ``seizure``.

:class:`SimulatedMIDataModule` and :class:`SimulatedIEEGDataModule` wrap them for the recipes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.utils.data import Subset

from chanformer.batch import ChannelSample
from chanformer.channels import eeg_1005_vocab
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule, stratified_split
from chanformer.datasets.eeg.readers import EEGWindowDataset
from chanformer.spec import DataSpec

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "MI_CHANNELS",
    "SeizureWindowDataset",
    "SimulatedIEEGDataModule",
    "SimulatedMIDataModule",
    "pink_noise",
    "simulate_ieeg_seizures",
    "simulate_motor_imagery",
]

#: The 22 EEG electrodes of BNCI2014-001 (BCI competition IV 2a), 10-20 extended names.
MI_CHANNELS: tuple[str, ...] = (
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2",
    "C4", "C6", "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
)  # fmt: skip
MI_CLASSES = ("left_hand", "right_hand")
_KEEP = {"C3", "C4", "Cz"}  # never dropped from a subject's montage


def _name_source(raw: mne.io.BaseRaw, name: str) -> None:
    """Give an in-memory Raw a BIDS-like source name (no such file exists) so the loaders find its
    subject label (``sub-<label>``) and name it in messages. mne's public setter requires an
    existing file, hence the private attribute.
    """
    raw._filenames = [Path(name)]


def pink_noise(n_channels: int, n_times: int, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """Independent 1/f^exponent noise ``[n_channels, n_times]`` with unit standard deviation per channel."""
    spec = rng.standard_normal((n_channels, n_times // 2 + 1)) + 1j * rng.standard_normal((n_channels, n_times // 2 + 1))
    f = np.arange(n_times // 2 + 1, dtype=float)
    f[0] = 1.0
    spec = spec / f ** (exponent / 2)
    spec[:, 0] = 0.0
    x = np.fft.irfft(spec, n=n_times, axis=-1)
    return x / x.std(axis=-1, keepdims=True)


def _narrowband(n_times: int, sfreq: float, f0: float, bw: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise band-limited around ``f0`` Hz (Gaussian spectral window of width ``bw``)."""
    spec = np.fft.rfft(rng.standard_normal(n_times))
    f = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    x = np.fft.irfft(spec * np.exp(-0.5 * ((f - f0) / bw) ** 2), n=n_times)
    return x / x.std()


def _ramp_envelope(n_times: int, sfreq: float, spans: Sequence[tuple[float, float]], level: float, ramp_s: float) -> np.ndarray:
    """1 outside ``spans`` (seconds), ``level`` inside, with raised-cosine ramps of ``ramp_s``."""
    env = np.ones(n_times)
    t = np.arange(n_times) / sfreq
    for start, stop in spans:
        up = np.clip((t - start) / ramp_s, 0, 1)
        down = np.clip((stop - t) / ramp_s, 0, 1)
        w = 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))
        env = env * (1 - w * (1 - level))
    return env


def simulate_motor_imagery(
    n_subjects: int = 6,
    n_trials: int = 60,
    sfreq: float | Sequence[float] = (250.0, 256.0),
    channels: Sequence[str] = MI_CHANNELS,
    seed: int = 0,
    *,
    trial_s: float = 4.0,
    iti_s: tuple[float, float] = (1.5, 2.5),
    erd_depth: float = 0.5,
    mu_amplitude: tuple[float, float] = (0.6, 1.0),
    smear_m: float = 0.03,
    drop_channels: int = 2,
    noise_uv: float = 10.0,
) -> list[mne.io.RawArray]:
    """SIMULATED two-class motor-imagery EEG, one ``RawArray`` (volts) per subject.

    Each trial is annotated ``left_hand`` or ``right_hand`` (balanced, shuffled) with duration
    ``trial_s``; trials are separated by random inter-trial intervals drawn from ``iti_s``.

    Signal model per subject: ``x_c(t) = g_c [noise_uv * (pink_c(t) + 0.3 common(t))
    + a * noise_uv * sum_s w_{c,s} e_s(t) mu_s(t)]`` where ``pink`` is 1/f noise, ``mu_s`` is an
    8-13 Hz narrowband source at C3 (``s = left``) / C4 (``right``) plus an unmodulated posterior
    alpha source at POz, ``w_{c,s} = exp(-d(c, s)^2 / (2 smear_m^2))`` with ``d`` the electrode
    distance on the 10-05 template, and ``e_s`` the envelope: ``erd_depth`` during (imagined) trials
    of the contralateral hand, 1 elsewhere. ``g_c`` are per-subject channel gains (log-normal, 15 %),
    ``a`` is drawn from ``mu_amplitude``.

    Args:
        n_subjects: recordings to make (one per subject).
        n_trials: trials per subject (even: half per class).
        sfreq: one rate, or rates cycled over subjects (default alternates 250 / 256 Hz).
        channels: electrode names of the 10-05 template (must include C3 and C4).
        seed: seeds everything.
        trial_s: imagery duration (s) after the cue at the annotation onset.
        iti_s: range of rest between trials (s).
        erd_depth: amplitude of the contralateral mu source during imagery (1 = no ERD).
        mu_amplitude: range of the mu amplitude relative to the background noise.
        smear_m: spatial spread of each source (metres on the template head).
        drop_channels: subjects ``1, 3, 5...`` lack up to this many electrodes (never C3/C4/Cz).
        noise_uv: background noise standard deviation in microvolts.

    """
    import mne

    vocab = eeg_1005_vocab()
    missing = [c for c in channels if vocab.resolve(c, "eeg/") is None]
    if missing:
        raise ValueError(f"simulate_motor_imagery: channel(s) {missing} are not in the 10-05 template")
    if "C3" not in channels or "C4" not in channels:
        raise ValueError("simulate_motor_imagery: channels must include C3 and C4 (the mu sources)")
    if n_trials < 2 or n_trials % 2:
        raise ValueError(f"simulate_motor_imagery(n_trials={n_trials}): must be an even number >= 2")
    rates = [float(sfreq)] if isinstance(sfreq, (int, float)) else [float(f) for f in sfreq]
    pos = {c: np.asarray(vocab[vocab.resolve(c, "eeg/")].position) for c in channels}  # type: ignore[index]
    src_pos = {"left": pos["C3"], "right": pos["C4"], "alpha": np.asarray(vocab["eeg/POz"].position)}
    raws = []
    for s in range(n_subjects):
        rng = np.random.default_rng([seed, s])
        sf = rates[s % len(rates)]
        labels = rng.permutation(np.repeat([0, 1], n_trials // 2))
        itis = rng.uniform(*iti_s, size=n_trials)
        onsets = 1.0 + np.cumsum(itis + trial_s) - trial_s
        duration = float(onsets[-1] + trial_s + iti_s[1] + 1.0)
        n = int(round(duration * sf))
        chans = list(channels)
        if drop_channels and s % 2 == 1:
            droppable = [c for c in chans if c not in _KEEP]
            k = int(rng.integers(1, drop_channels + 1))
            gone = set(rng.choice(droppable, size=min(k, len(droppable)), replace=False).tolist())
            chans = [c for c in chans if c not in gone]
        xyz = np.stack([pos[c] for c in chans])
        x = pink_noise(len(chans), n, rng) + 0.3 * pink_noise(1, n, rng)
        amp = rng.uniform(*mu_amplitude)
        f_mu = rng.uniform(9.5, 11.5)
        # imagined LEFT hand -> RIGHT hemisphere (C4) desynchronises, and vice versa
        spans = {
            "left": [(o + 0.3, o + trial_s) for o, y in zip(onsets, labels) if y == 1],
            "right": [(o + 0.3, o + trial_s) for o, y in zip(onsets, labels) if y == 0],
        }
        for name, p in src_pos.items():
            w = np.exp(-np.sum((xyz - p) ** 2, axis=1) / (2 * smear_m**2))
            src = _narrowband(n, sf, f_mu + (0.0 if name != "alpha" else rng.uniform(-1, 1)), 1.0, rng)
            env = _ramp_envelope(n, sf, spans[name], erd_depth, 0.5) if name in spans else np.ones(n)
            x += (amp * (0.8 if name == "alpha" else 1.0)) * w[:, None] * (src * env)[None]
        gains = np.exp(rng.normal(0, 0.15, size=(len(chans), 1)))
        data = x * gains * noise_uv * 1e-6
        info = mne.create_info(chans, sf, "eeg")
        raw = mne.io.RawArray(data, info, verbose="error")
        montage = mne.channels.make_dig_montage(ch_pos={c: pos[c] for c in chans}, coord_frame="head")
        raw.set_montage(montage, verbose="error")
        raw.set_annotations(mne.Annotations(onsets, np.full(n_trials, trial_s), [MI_CLASSES[y] for y in labels]))
        _name_source(raw, f"sub-{s + 1:02d}_task-imagery_sim-eeg.fif")
        raws.append(raw)
    return raws


_SHAFTS = ("LA", "LH", "RA", "RH", "LT", "RT", "LO", "RO")


def simulate_ieeg_seizures(
    n_subjects: int = 4,
    duration_s: float = 600.0,
    sfreq: float = 256.0,
    seed: int = 0,
    *,
    n_seizures: int = 4,
    seizure_s: tuple[float, float] = (20.0, 40.0),
    contacts: tuple[int, int] = (8, 14),
    amplitude: tuple[float, float] = (4.0, 7.0),
    noise_uv: float = 50.0,
) -> list[mne.io.RawArray]:
    """SIMULATED sEEG with seizures, one ``RawArray`` (volts, type ``seeg``) per subject.

    Contacts sit on 2-3 depth shafts per subject (names such as ``LA1``..``LA5``, positions 3.5 mm
    apart along a random line inside the head), so each subject has its own contact set (the
    loaders key them ``ieeg/<subject>/<name>``). Background: 1/f noise per contact plus a shared
    component. Each seizure (annotated ``seizure``) is a rhythmic spike-and-wave discharge whose
    frequency slows from ~8 to ~3 Hz; it starts on 2-3 contacts of one shaft and spreads with
    delays of 2-10 s to a random subset of the other contacts, with amplitude ``amplitude`` x the
    background, tapering with distance from the onset zone.

    Args:
        n_subjects: recordings to make.
        duration_s: length of each recording (s).
        sfreq: sampling rate (Hz).
        seed: seeds everything.
        n_seizures: seizures per recording, placed at least 30 s apart.
        seizure_s: range of seizure durations (s).
        contacts: range of the contact count per subject.
        amplitude: range of the discharge amplitude relative to the background.
        noise_uv: background standard deviation in microvolts.

    """
    import mne

    raws = []
    for s in range(n_subjects):
        rng = np.random.default_rng([seed, 1000 + s])
        n_cont = int(rng.integers(contacts[0], contacts[1] + 1))
        n_shafts = 2 if n_cont < 10 else 3
        sizes = np.diff(np.linspace(0, n_cont, n_shafts + 1).round().astype(int))
        shafts = rng.choice(_SHAFTS, size=n_shafts, replace=False)
        names, xyz, shaft_of = [], [], []
        for k, (shaft, size) in enumerate(zip(shafts, sizes)):
            start = rng.uniform(-0.05, 0.05, 3) * [1, 1, 0.5] + [0, 0, 0.03]
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            for j in range(size):
                names.append(f"{shaft}{j + 1}")
                xyz.append(start + 0.0035 * j * direction)
                shaft_of.append(k)
        xyz_arr = np.asarray(xyz)
        n = int(round(duration_s * sfreq))
        x = pink_noise(n_cont, n, rng) + 0.5 * pink_noise(1, n, rng)
        # seizure onsets, non-overlapping with 30 s gaps
        lengths = rng.uniform(*seizure_s, size=n_seizures)
        slack = duration_s - lengths.sum() - 30.0 * (n_seizures + 1)
        if slack < 0:
            raise ValueError(f"simulate_ieeg_seizures: {n_seizures} seizures of {seizure_s} s do not fit in {duration_s} s")
        gaps = rng.dirichlet(np.ones(n_seizures + 1)) * slack + 30.0
        onsets = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(lengths[:-1])])
        t = np.arange(n) / sfreq
        for onset, length in zip(onsets, lengths):
            zone_shaft = int(rng.integers(n_shafts))
            zone = [i for i in range(n_cont) if shaft_of[i] == zone_shaft][: int(rng.integers(2, 4))]
            others = [i for i in range(n_cont) if i not in zone]
            spread = rng.choice(others, size=int(rng.integers(len(others) // 3, len(others) // 2 + 2)), replace=False)
            amp = rng.uniform(*amplitude)
            # instantaneous frequency slowing from f0 to f1 across the seizure
            f0, f1 = rng.uniform(6.5, 8.0), rng.uniform(3.0, 4.0)
            local = np.clip((t - onset) / length, 0, 1)
            phase = 2 * np.pi * np.cumsum(f0 + (f1 - f0) * local) / sfreq
            spike_wave = np.sign(np.sin(phase)) * np.abs(np.sin(phase)) ** 3 + 0.4 * np.sin(phase - 1.2)
            dist = np.min(np.linalg.norm(xyz_arr[:, None] - xyz_arr[zone][None], axis=-1), axis=1)
            for i in [*zone, *spread.tolist()]:
                delay = 0.0 if i in zone else rng.uniform(2.0, 10.0)
                start, stop = onset + delay, onset + length
                if stop - start < 2.0:
                    continue
                env = 1 - _ramp_envelope(n, sfreq, [(start, stop)], 0.0, 1.5)
                taper = 1.0 if i in zone else float(np.exp(-dist[i] / 0.03)) * 0.6 + 0.4
                x[i] += amp * taper * env * spike_wave
        data = x * noise_uv * 1e-6
        info = mne.create_info(names, sfreq, "seeg")
        raw = mne.io.RawArray(data, info, verbose="error")
        montage = mne.channels.make_dig_montage(ch_pos=dict(zip(names, xyz_arr)), coord_frame="head")
        raw.set_montage(montage, verbose="error")
        raw.set_annotations(mne.Annotations(onsets, lengths, ["seizure"] * n_seizures))
        _name_source(raw, f"sub-sim{s + 1:02d}_task-monitor_sim-ieeg.fif")
        raws.append(raw)
    return raws


# -- datamodules --------------------------------------------------------------------------------
def _split_indices(
    groups: np.ndarray, labels: np.ndarray, split: str, val_fraction: float, test_fraction: float,
    test_groups: int, seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cross_subject``: the last ``test_groups`` subjects are test and val is a stratified share of
    the other subjects' windows; ``within_subject``: every subject's windows are split stratified.
    """
    idx = np.arange(len(labels))
    if split == "cross_subject":
        ids = np.unique(groups)
        if len(ids) <= test_groups:
            raise ValueError(f"cross_subject split needs more than test_subjects={test_groups} subjects, got {len(ids)}")
        test = idx[np.isin(groups, ids[-test_groups:])]
        rest = idx[~np.isin(groups, ids[-test_groups:])]
        tr, va = stratified_split(labels[rest], val_fraction, seed)
        return rest[tr], rest[va], test
    if split != "within_subject":
        raise ValueError(f"split must be 'within_subject' or 'cross_subject', got {split!r}")
    out: list[list[np.ndarray]] = [[], [], []]
    for g in np.unique(groups):
        sub = idx[groups == g]
        trva, te = stratified_split(labels[sub], test_fraction, seed)
        tr, va = stratified_split(labels[sub][trva], val_fraction / max(1e-9, 1 - test_fraction), seed + 1)
        for part, sel in zip(out, (sub[trva][tr], sub[trva][va], sub[te])):
            part.append(sel)
    return tuple(np.sort(np.concatenate(p)) for p in out)  # type: ignore[return-value]


class SimulatedMIDataModule(ChannelDataModule):
    """SIMULATED two-class motor imagery (:func:`simulate_motor_imagery`) as event-locked trials.

    Trials ``[tmin, tmax)`` after the cue are cut with :class:`EEGWindowDataset` (band-pass
    ``l_freq``-``h_freq``, resampled to ``resample`` Hz since subjects differ in rate), optionally
    Euclidean-aligned per subject (whitened: unit scale), and multiplied by ``scale`` (default 1 with
    alignment, 1e5 without: volts -> units of 10 microvolts). Subjects
    lacking electrodes keep their own channel sets (the encoder interpolates or ignores them).

    Args:
        split: ``"within_subject"`` (every subject's trials split train/val/test, stratified) or
            ``"cross_subject"`` (the last ``test_subjects`` subjects are the test set).
        n_subjects / n_trials / drop_channels / erd_depth: passed to :func:`simulate_motor_imagery`.
        sim_seed: seed of the simulation (default ``seed``).

    """

    def __init__(
        self,
        n_subjects: int = 6,
        n_trials: int = 60,
        split: Literal["within_subject", "cross_subject"] = "within_subject",
        test_subjects: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        tmin: float = 0.5,
        tmax: float = 2.5,
        resample: float = 128.0,
        l_freq: float | None = 4.0,
        h_freq: float | None = 40.0,
        euclidean_alignment: bool = True,
        scale: float | None = None,
        drop_channels: int = 2,
        erd_depth: float = 0.5,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        sim_seed: int | None = None,
    ) -> None:
        super().__init__(vocab=eeg_1005_vocab(), batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        if split not in ("within_subject", "cross_subject"):
            raise ValueError(f"split must be 'within_subject' or 'cross_subject', got {split!r}")
        self.n_subjects, self.n_trials, self.split, self.test_subjects = n_subjects, n_trials, split, test_subjects
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.tmin, self.tmax, self.resample = tmin, tmax, resample
        self.l_freq, self.h_freq, self.ea, self.scale = l_freq, h_freq, euclidean_alignment, scale
        self.drop_channels, self.erd_depth = drop_channels, erd_depth
        self.sim_seed = seed if sim_seed is None else sim_seed
        self.dataset: EEGWindowDataset | None = None

    @property
    def n_times(self) -> int:
        return int(round((self.tmax - self.tmin) * self.resample))

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.resample, num_classes=2,
                        class_names=list(MI_CLASSES))

    def input_contract(self) -> InputContract:
        """The trials' preprocessing for the pretrained export: rate, band-pass, trial span as the
        window, Euclidean alignment, the volts -> model-units scale."""
        scale = self.scale if self.scale is not None else (1.0 if self.ea else 1e5)
        return InputContract(
            modality="eeg", channels=[k for k in self.vocab.keys if k.split("/", 1)[1] in MI_CHANNELS], key_prefix="eeg/",
            sfreq=self.resample, l_freq=self.l_freq, h_freq=self.h_freq, window_s=self.tmax - self.tmin,
            n_times=self.n_times, alignment="euclidean" if self.ea else "none", scale=scale if scale != 1.0 else None,
            units="V" if scale == 1.0 else f"V x {scale:g}", picks=["eeg"],
            extra={"mode": "events", "tmin": self.tmin, "tmax": self.tmax, "classes": list(MI_CLASSES),
                   "simulated": True},
        )  # fmt: skip

    def build_dataset(self) -> EEGWindowDataset:
        raws = simulate_motor_imagery(self.n_subjects, self.n_trials, seed=self.sim_seed,
                                      drop_channels=self.drop_channels, erd_depth=self.erd_depth)
        ds = EEGWindowDataset(
            raws, mode="events", label_map={c: i for i, c in enumerate(MI_CLASSES)}, tmin=self.tmin, tmax=self.tmax,
            vocab=self.vocab, resample=self.resample, l_freq=self.l_freq, h_freq=self.h_freq,
            euclidean_alignment=self.ea,
        )  # fmt: skip
        scale = self.scale if self.scale is not None else (1.0 if self.ea else 1e5)
        ds.values = [v * np.float32(scale) for v in ds.values]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = self.build_dataset()
        tr, va, te = _split_indices(ds.recording_of, ds.targets, self.split, self.val_fraction, self.test_fraction,
                                    self.test_subjects, self.seed)
        self.train_dataset, self.val_dataset, self.test_dataset = (Subset(ds, p.tolist()) for p in (tr, va, te))


class SeizureWindowDataset(EEGWindowDataset):
    """Fixed-length windows labelled 1 when at least ``min_overlap`` of the window lies inside an
    annotation described ``label_description`` (default ``seizure``), else 0.

    Takes the arguments of :class:`EEGWindowDataset` in ``mode="windows"``; recordings must have no
    ``BAD_*`` spans (window starts are then ``0, stride, 2 stride, ...``).
    """

    def __init__(self, recordings: Sequence[mne.io.BaseRaw | str], *, label_description: str = "seizure",
                 min_overlap: float = 0.5, **kwargs: object) -> None:
        super().__init__(recordings, mode="windows", **kwargs)  # type: ignore[arg-type]
        from chanformer.datasets.eeg.readers import read_recording

        raws = [r if not isinstance(r, (str, Path)) else read_recording(r, preload=False) for r in recordings]
        n_win, n_step = round(self.window_s * self.sfreq), round(self.stride_s * self.sfreq)
        for rec, raw in enumerate(raws):
            if any(d.upper().startswith("BAD") for d in raw.annotations.description):
                raise ValueError(f"{self.sources[rec]}: SeizureWindowDataset does not support BAD_* annotations")
            starts = np.arange(len(self.values[rec])) * n_step / self.sfreq
            inside = np.zeros(len(starts))
            for a in raw.annotations:
                if a["description"] == label_description:
                    lo = np.maximum(starts, a["onset"] - raw.first_time)
                    hi = np.minimum(starts + n_win / self.sfreq, a["onset"] - raw.first_time + a["duration"])
                    inside += np.clip(hi - lo, 0, None)
            self.labels[rec] = (inside / (n_win / self.sfreq) >= min_overlap).astype(np.int64)

    @property
    def num_classes(self) -> int:
        return 2

    def __getitem__(self, idx: int) -> ChannelSample:
        sample = super().__getitem__(idx)
        _, rec, j = self.locate(idx)
        sample.target = torch.tensor(int(self.labels[rec][j]))
        return sample


class SimulatedIEEGDataModule(ChannelDataModule):
    """SIMULATED sEEG with seizures (:func:`simulate_ieeg_seizures`) as labelled fixed windows.

    Windows of ``n_segments * segment_samples`` samples at ``resample`` Hz (what MVPFormer cuts
    into ``n_segments`` segments), every ``stride_s`` seconds, labelled seizure / not
    (:class:`SeizureWindowDataset`); values scaled by ``scale`` (volts -> microvolts by default).
    Contacts are subject-scoped vocabulary keys (``ieeg/sim01/LA1``).

    Args:
        split: ``"cross_subject"`` (last ``test_subjects`` subjects are test) or ``"within_subject"``.
        n_subjects / duration_s / n_seizures: passed to :func:`simulate_ieeg_seizures`.

    """

    def __init__(
        self,
        n_subjects: int = 4,
        duration_s: float = 600.0,
        n_seizures: int = 4,
        segment_samples: int = 64,
        n_segments: int = 8,
        resample: float = 128.0,
        stride_s: float | None = None,
        split: Literal["within_subject", "cross_subject"] = "cross_subject",
        test_subjects: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        scale: float = 1e6,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        sim_seed: int | None = None,
    ) -> None:
        from chanformer.channels import ChannelVocab

        super().__init__(vocab=ChannelVocab("ieeg_sim"), batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.n_subjects, self.duration_s, self.n_seizures = n_subjects, duration_s, n_seizures
        self.segment_samples, self.n_segments, self.resample = segment_samples, n_segments, resample
        self.window_s = n_segments * segment_samples / resample
        self.stride_s = self.window_s if stride_s is None else stride_s
        self.split, self.test_subjects = split, test_subjects
        self.val_fraction, self.test_fraction, self.scale = val_fraction, test_fraction, scale
        self.sim_seed = seed if sim_seed is None else sim_seed
        self.dataset: SeizureWindowDataset | None = None

    @property
    def n_times(self) -> int:
        return self.n_segments * self.segment_samples

    @property
    def spec(self) -> DataSpec:
        # contacts join the vocabulary when the recordings are loaded (MVPFormer needs no look-up)
        return DataSpec(vocab=self.vocab, n_times=self.n_times, sfreq=self.resample, num_classes=2,
                        class_names=["background", "seizure"])

    def build_dataset(self) -> SeizureWindowDataset:
        raws = simulate_ieeg_seizures(self.n_subjects, self.duration_s, seed=self.sim_seed, n_seizures=self.n_seizures)
        ds = SeizureWindowDataset(raws, window_s=self.window_s, stride_s=self.stride_s, vocab=self.vocab,
                                  resample=self.resample)
        ds.values = [v * np.float32(self.scale) for v in ds.values]
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = self.dataset = self.build_dataset()
        tr, va, te = _split_indices(ds.recording_of, np.concatenate(ds.labels), self.split, self.val_fraction,
                                    self.test_fraction, self.test_subjects, self.seed)
        self.train_dataset, self.val_dataset, self.test_dataset = (Subset(ds, p.tolist()) for p in (tr, va, te))
