"""EEG / iEEG recordings (any format mne reads) as windows of :class:`~chanformer.batch.ChannelSample`.

* :func:`read_recording` reads a file with ``mne.io.read_raw``; errors name the file.
* :func:`channel_map` / :func:`channel_keys` give each data channel its vocabulary key: scalp
  EEG onto the 10-05 vocabulary (``FP1``, ``Fp1``, ``EEG Fp1-Ref`` -> ``eeg/Fp1``), scalp bipolar
  derivations of two 10-05 electrodes onto ``eeg/<A>-<B>`` keys added to the vocabulary at the
  electrodes' midpoint (``FP1-F7`` -> ``eeg/Fp1-F7``, :func:`scalp_bipolar_key`), sEEG/ECoG
  contacts onto subject-scoped keys ``ieeg/<subject>/<name>`` added to the vocabulary.
* :class:`EEGWindowDataset` cuts event-locked trials or fixed-length windows (dropping windows
  that overlap ``BAD_*`` annotations) from a list of recordings; values in volts, optionally
  re-referenced (common average, or bipolar pairs of neighbouring contacts, :func:`bipolar_pairs`).
* :class:`EEGDataModule` splits them by recording or by window.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError, eeg_1005_vocab

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "EEGWindowDataset",
    "TruncatedRecordingError",
    "bipolar_pairs",
    "channel_keys",
    "channel_map",
    "euclidean_alignment",
    "read_recording",
    "scalp_bipolar_key",
    "subject_of",
]

DATA_TYPES = ("eeg", "seeg", "ecog")
IEEG_TYPES = ("seeg", "ecog")
REFERENCES = ("none", "average", "bipolar")
_CONTACT = re.compile(r"^(?P<prefix>.*\D)(?P<index>\d+)$")


def read_recording(path: str | os.PathLike[str], *, preload: bool = True) -> mne.io.BaseRaw:
    """Read one recording with ``mne.io.read_raw`` (EDF/BDF, BrainVision, EEGLAB, Nihon Kohden, ...).

    A missing file raises ``FileNotFoundError``; a file mne cannot read raises ``ValueError``;
    both name the path. An EDF/BDF file shorter than its header declares (``n_records`` x
    record duration; mne would read the remainder as a shorter recording) raises
    :class:`TruncatedRecordingError` with the declared and actual length. Annotations that mne
    drops because they lie outside the data are counted and reported in one ``UserWarning``
    naming the file.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EEG recording not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = mne.io.read_raw(path, preload=preload, verbose="warning")
        except Exception as e:  # mne raises many types for unreadable/corrupt headers
            raise ValueError(f"cannot read EEG recording {path}: {type(e).__name__}: {e}") from e
    if path.suffix.lower() in (".edf", ".bdf"):
        _check_edf_length(path)
    dropped = limited = 0
    for w in caught:
        m = re.match(r"(Omitted|Limited) (\d+) annotation", str(w.message))
        if m:
            n = int(m.group(2))
            dropped, limited = (dropped + n, limited) if m.group(1) == "Omitted" else (dropped, limited + n)
    if dropped or limited:
        parts = [f"{dropped} annotation(s) outside the data were dropped"] if dropped else []
        parts += [f"{limited} annotation(s) extending past the data were clipped"] if limited else []
        warnings.warn(
            f"{path}: {' and '.join(parts)} (recording: {raw.n_times / raw.info['sfreq']:g} s)",
            UserWarning,
            stacklevel=2,
        )
    return raw


class TruncatedRecordingError(ValueError):
    """A recording file holds less data than its header declares; the message names the file."""


def _edf_int(field: bytes) -> int | None:
    try:
        return int(field.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None


def _check_edf_length(path: Path) -> None:
    """Compare an EDF/BDF file's size with its header: ``n_records`` data records of
    ``sum(samples per record) x 2`` (3 for BDF) bytes after ``256 x (n_signals + 1)`` bytes.
    """
    with open(path, "rb") as f:
        head = f.read(256)
        n_signals = _edf_int(head[252:256]) if len(head) == 256 else None
        if not n_signals or n_signals < 1:
            return
        f.seek(256 + n_signals * 216)
        counts = [_edf_int(f.read(8)) for _ in range(n_signals)]
    n_records = _edf_int(head[236:244])
    try:
        duration = float(head[244:252].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return
    if n_records is None or n_records < 0 or any(c is None or c < 0 for c in counts):
        return  # n_records -1: unknown (recording not closed); mne infers it from the size
    width = 3 if head[:1] == b"\xff" else 2
    record = sum(c for c in counts if c is not None) * width
    data = path.stat().st_size - 256 * (n_signals + 1)
    if record == 0 or data >= n_records * record:
        return
    whole = max(data, 0) // record
    raise TruncatedRecordingError(
        f"{path}: truncated recording: the header declares {n_records} records x {duration:g} s = "
        f"{n_records * duration:g} s ({n_records * record + 256 * (n_signals + 1)} bytes) but the file has "
        f"{path.stat().st_size} bytes, {whole} complete record(s) = {whole * duration:g} s; "
        "re-export or re-copy the file (reading it would silently give a shorter recording)"
    )


def _source_name(raw: mne.io.BaseRaw) -> str:
    files = [f for f in (raw.filenames or ()) if f is not None]
    return str(files[0]) if files else "<in-memory Raw>"


def subject_of(raw: mne.io.BaseRaw, default: str = "sub", source: str | None = None) -> str:
    """Subject label for iEEG keys: the BIDS ``sub-<label>`` in the file name, else its stem."""
    src = source or _source_name(raw)
    m = re.search(r"sub-([A-Za-z0-9]+)", Path(src).name)
    if m:
        return m.group(1)
    return Path(src).stem if src != "<in-memory Raw>" else default


_BIPOLAR_LEAD = re.compile(r"^(EEG|POL)[ _:]+", re.IGNORECASE)


def scalp_bipolar_key(name: str, vocab: ChannelVocab, *, add: bool = True) -> str | None:
    """Vocabulary key of a scalp bipolar derivation ``A-B`` of two 10-05 electrodes, or ``None``.

    ``FP1-F7``, ``EEG T7-P7``, ``fz-cz`` -> ``eeg/Fp1-F7``, ``eeg/T7-P7``, ``eeg/Fz-Cz``: both
    electrodes are resolved like monopolar names (case-insensitive, old 10-20 names such as ``T3``
    accepted) and written with the vocabulary's spelling, anode first; ``P7-T7`` and ``T7-P7``
    are different keys (opposite polarity). With ``add`` a new key joins ``vocab`` as a
    :class:`~chanformer.channels.Channel` of kind ``eeg`` at the midpoint of the two electrode
    positions (unset when either has none), unit ``V``. Names that are not exactly two resolvable
    electrodes joined by one ``-`` (``FP1-REF``, ``T8-P8-0``, ``-``) give ``None``.
    """
    core = _BIPOLAR_LEAD.sub("", str(name).strip())
    parts = core.split("-")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        return None
    ends = [vocab.resolve(p.strip(), "eeg/") for p in parts]
    if any(e is None or not e.startswith("eeg/") or "-" in e for e in ends) or ends[0] == ends[1]:
        return None
    a, b = (str(e) for e in ends)
    key = f"eeg/{a[4:]}-{b[4:]}"
    if key in vocab or not add:
        return key
    pa, pb = vocab[a].position, vocab[b].position
    pos = None if pa is None or pb is None else tuple((np.asarray(pa) + np.asarray(pb)) / 2)
    vocab.add(Channel(key, kind="eeg", position=pos, unit="V"))  # type: ignore[arg-type]
    return key


def channel_map(
    raw: mne.io.BaseRaw,
    vocab: ChannelVocab,
    *,
    subject: str | None = None,
    on_unknown: Literal["raise", "drop"] = "raise",
    picks: Sequence[str] = DATA_TYPES,
    source: str | None = None,
) -> dict[str, str]:
    """Map each data channel of ``raw`` (types in ``picks``) to a vocabulary key, in file order.

    EEG names resolve case-insensitively to ``eeg/<name>``; a bipolar derivation of two 10-05
    electrodes (``FP1-F7``) gets ``eeg/Fp1-F7``, added to ``vocab`` at the electrodes' midpoint
    (:func:`scalp_bipolar_key`); names that do not resolve raise :class:`UnknownChannelError`
    listing them (``on_unknown="drop"``: warn and leave them out).
    sEEG/ECoG contacts get ``ieeg/<subject>/<name>``, added to ``vocab`` (kind ``seeg``/``ecog``)
    with the file's position when it is finite. Other types (stim, EOG, ...) are skipped.
    ``source`` names the file in messages (default: the Raw's file).
    """
    bad_picks = set(picks) - set(DATA_TYPES)
    if bad_picks:
        raise ValueError(f"picks must be channel types among {DATA_TYPES}, got {sorted(bad_picks)}")
    src = source or _source_name(raw)
    subject = subject or subject_of(raw, source=src)
    out: dict[str, str] = {}
    unknown: list[str] = []
    for name, kind, ch in zip(raw.ch_names, raw.get_channel_types(), raw.info["chs"]):
        if kind not in picks:
            continue
        if kind == "eeg":
            key = vocab.resolve(name, "eeg/") or scalp_bipolar_key(name, vocab)
            if key is None:
                unknown.append(name)
                continue
        else:
            key = f"ieeg/{subject}/{name}"
            loc = np.asarray(ch["loc"][:3], dtype=float)
            pos = tuple(loc) if np.isfinite(loc).all() and loc.any() else None
            if key not in vocab:
                vocab.add(Channel(key, kind=kind, position=pos, unit="V"))  # type: ignore[arg-type]
        if key in out.values():
            raise ValueError(f"{src}: channels {name!r} and another both map to {key!r}")
        out[name] = key
    if unknown:
        if on_unknown == "raise":
            raise UnknownChannelError(unknown, f"{vocab.name} (recording {src})")
        msg = f"{src}: dropping {len(unknown)} EEG channel(s) not in {vocab.name}: {', '.join(unknown)}"
        warnings.warn(msg, stacklevel=2)
    return out


def channel_keys(
    raw: mne.io.BaseRaw,
    vocab: ChannelVocab,
    *,
    subject: str | None = None,
    on_unknown: Literal["raise", "drop"] = "raise",
    picks: Sequence[str] = DATA_TYPES,
) -> list[str]:
    """Vocabulary keys of the data channels of ``raw`` kept by :func:`channel_map`, in file order."""
    return list(channel_map(raw, vocab, subject=subject, on_unknown=on_unknown, picks=picks).values())


def bipolar_pairs(ch_names: Sequence[str]) -> list[tuple[str, str]]:
    """Neighbouring contacts ``(anode, cathode)`` on the same shaft/grid, inferred from names.

    A name is a prefix containing a letter followed by an integer index (``LA1``, ``POL X12``,
    ``RH01``); contact ``n`` pairs with ``n + 1`` of the same prefix (``LA1-LA2``, ``LA2-LA3``,
    ...). Gaps break the chain; names without an index are left out. Pairs come grouped by
    prefix (in order of first appearance), by index within a prefix.
    """
    by_prefix: dict[str, dict[int, str]] = {}
    for name in ch_names:
        m = _CONTACT.match(name.strip())
        if m is None or not re.search(r"[A-Za-z]", m["prefix"]):
            continue
        by_prefix.setdefault(m["prefix"], {}).setdefault(int(m["index"]), name)
    pairs: list[tuple[str, str]] = []
    for contacts in by_prefix.values():
        pairs += [(contacts[i], contacts[i + 1]) for i in sorted(contacts) if i + 1 in contacts]
    return pairs


def _finite_loc(ch: dict) -> np.ndarray | None:
    loc = np.asarray(ch["loc"][:3], dtype=float)
    return loc if np.isfinite(loc).all() and loc.any() else None


def _bipolar_reference(raw: mne.io.BaseRaw, picks: Sequence[str], src: str) -> mne.io.BaseRaw:
    """Replace the sEEG/ECoG contacts of ``raw`` (types in ``picks``) by bipolar pairs ``A-B``.

    Each new channel keeps the anode's type; its position is the midpoint of the two contacts
    when both have one, else unset. Contacts in no pair are dropped with a warning.
    """
    import mne

    types = dict(zip(raw.ch_names, raw.get_channel_types()))
    contacts = [n for n in raw.ch_names if types[n] in IEEG_TYPES and types[n] in picks]
    if not contacts:
        return raw
    pairs = [(a, b) for a, b in bipolar_pairs(contacts) if types[a] == types[b]]
    paired = {n for p in pairs for n in p}
    unpaired = [n for n in contacts if n not in paired]
    if unpaired:
        warnings.warn(f"{src}: dropping iEEG contact(s) in no bipolar pair: {', '.join(unpaired)}", stacklevel=4)
        raw.drop_channels(unpaired)
    if not pairs:
        return raw
    chs = {c["ch_name"]: c for c in raw.info["chs"]}
    infos = []
    for a, b in pairs:
        la, lb = _finite_loc(chs[a]), _finite_loc(chs[b])
        loc = np.full(12, np.nan)
        if la is not None and lb is not None:
            loc[:3] = (la + lb) / 2
        infos.append({"loc": loc})
    names = [f"{a}-{b}" for a, b in pairs]
    clash = sorted(set(names) & set(raw.ch_names))
    if clash:
        raise ValueError(f"{src}: bipolar channel name(s) {clash} already exist in the recording")
    return mne.set_bipolar_reference(
        raw, [a for a, _ in pairs], [b for _, b in pairs], ch_name=names, ch_info=infos,
        drop_refs=True, copy=False, on_bad="ignore", verbose="error",
    )  # fmt: skip


def _check_integer_samples(sfreq: float, **durations: float | None) -> None:
    for name, sec in durations.items():
        if sec is None:
            continue
        n = sec * sfreq
        if abs(n - round(n)) > 1e-6:
            raise ValueError(
                f"{name}={sec} s is {n:g} samples at {sfreq:g} Hz, not a whole number; choose a window "
                f"length or resample= rate for which {name} * rate is an integer"
            )


def _stim_to_annotations(raw: mne.io.BaseRaw) -> None:
    """Add stim-channel events (``mne.find_events``) as annotations described by their code."""
    import mne

    if "stim" not in raw.get_channel_types():
        return
    events = mne.find_events(raw, shortest_event=1, verbose="error")
    if len(events) == 0:
        return
    # onsets count from meas_date when annotations carry orig_time, else from the first sample
    first = 0 if raw.annotations.orig_time is not None else raw.first_samp
    onsets = (events[:, 0] - first) / raw.info["sfreq"]
    desc = [str(int(c)) for c in events[:, 2]]
    annot = mne.Annotations(onsets, np.zeros(len(events)), desc, orig_time=raw.annotations.orig_time)
    raw.set_annotations(raw.annotations + annot)


def euclidean_alignment(windows: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Align ``[N, C, T]`` windows of one recording: ``X <- R^{-1/2} X``, ``R = mean(X X^T)``.

    Eigenvalues below ``eps * max`` are floored there (rank-deficient references).
    """
    x = windows.astype(np.float64)
    r = np.einsum("nct,ndt->cd", x, x) / (len(x) * x.shape[-1])
    w, v = np.linalg.eigh(r)
    w = np.maximum(w, eps * max(float(w.max()), np.finfo(float).tiny))
    r_isqrt = (v / np.sqrt(w)) @ v.T
    return np.einsum("cd,ndt->nct", r_isqrt, x).astype(np.float32)


class EEGWindowDataset(Dataset[ChannelSample]):
    """Windows ``[C, T]`` (volts) cut from EEG/iEEG recordings, with vocabulary ids and positions.

    Args:
        recordings: file paths (read with :func:`read_recording`) or ``mne.io.Raw`` objects.
        mode: ``"events"`` (trials locked to annotations / stim-channel events, labelled through
            ``label_map`` over ``[tmin, tmax]``) or ``"windows"`` (fixed ``window_s`` windows every
            ``stride_s`` seconds; windows overlapping ``BAD_*`` annotations are dropped).
        label_map: annotation description -> class index (stim events are described by their
            code, e.g. ``"1"``). Descriptions absent from the map are ignored and reported once;
            map keys that occur in no recording raise.
        vocab: vocabulary (default :func:`eeg_1005_vocab`); iEEG contacts are added to it.
        picks: channel types to keep, among ``eeg``/``seeg``/``ecog``.
        ch_types: ``{channel name: type}`` applied where the name exists (e.g. ECoG contacts a
            file stores as ``eeg``).
        resample: target rate in Hz (required when the recordings' rates differ).
        l_freq / h_freq: band-pass edges in Hz (``raw.filter``).
        euclidean_alignment: whiten each recording's windows by its mean spatial covariance.
        on_unknown: ``"raise"`` or ``"drop"`` EEG channels not in the vocabulary.
        bad_channels: flat (std == 0) or NaN channels ``"raise"`` naming channel and file, or
            ``"drop"`` with a warning.
        require_positions: raise when a channel has no position (neither in the file nor in the
            vocabulary); otherwise missing positions are NaN in ``coords``.
        reference: ``"none"`` (as recorded), ``"average"`` (common average of the kept channels,
            computed per type among eeg/seeg/ecog, after bad channels are dropped) or
            ``"bipolar"`` (sEEG/ECoG contacts replaced by neighbouring pairs from
            :func:`bipolar_pairs`, keys ``ieeg/<subject>/<A>-<B>`` at the contacts' midpoint;
            unpaired contacts dropped with a warning; scalp EEG is left as recorded). Applied
            before filtering, resampling and windowing.
        out_of_range: events (``mode="events"``) whose ``[tmin, tmax)`` window does not fit in
            the recording are left out with a ``UserWarning`` naming the file, their count and
            onsets (``"warn"``), or raise ``ValueError`` (``"raise"``); counts per file are kept
            in :attr:`out_of_range_counts`. Annotations mne drops while reading a file (outside
            the data) are reported by :func:`read_recording`.

    """

    def __init__(
        self,
        recordings: Sequence[str | os.PathLike[str] | mne.io.BaseRaw],
        *,
        mode: Literal["events", "windows"] = "windows",
        label_map: dict[str, int] | None = None,
        tmin: float = 0.0,
        tmax: float = 1.0,
        window_s: float = 2.0,
        stride_s: float | None = None,
        vocab: ChannelVocab | None = None,
        picks: Sequence[str] = DATA_TYPES,
        ch_types: dict[str, str] | None = None,
        resample: float | None = None,
        l_freq: float | None = None,
        h_freq: float | None = None,
        euclidean_alignment: bool = False,
        on_unknown: Literal["raise", "drop"] = "raise",
        bad_channels: Literal["raise", "drop"] = "raise",
        require_positions: bool = False,
        reference: Literal["none", "average", "bipolar"] = "none",
        out_of_range: Literal["warn", "raise"] = "warn",
    ) -> None:
        if out_of_range not in ("warn", "raise"):
            raise ValueError(f"out_of_range must be 'warn' or 'raise', got {out_of_range!r}")
        self.out_of_range = out_of_range
        self.out_of_range_counts: dict[str, int] = {}
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        if mode not in ("events", "windows"):
            raise ValueError(f"mode must be 'events' or 'windows', got {mode!r}")
        if mode == "events" and not label_map:
            raise ValueError("mode='events' needs label_map={annotation description: class index}")
        if mode == "events" and not tmax > tmin:
            raise ValueError(f"tmax ({tmax}) must be greater than tmin ({tmin})")
        stride_s = window_s if stride_s is None else stride_s
        if mode == "windows" and (window_s <= 0 or stride_s <= 0):
            raise ValueError(f"window_s and stride_s must be > 0, got {window_s}, {stride_s}")
        if not recordings:
            raise ValueError("EEGWindowDataset needs at least one recording")
        self.vocab = vocab if vocab is not None else eeg_1005_vocab()
        self.mode, self.label_map = mode, dict(label_map or {})
        self.tmin, self.tmax, self.window_s, self.stride_s = tmin, tmax, window_s, stride_s
        self.picks, self.ch_types, self.resample = tuple(picks), dict(ch_types or {}), resample
        self.l_freq, self.h_freq, self.ea = l_freq, h_freq, euclidean_alignment
        self.on_unknown, self.bad_channels = on_unknown, bad_channels
        self.require_positions, self.reference = require_positions, reference

        raws = [r if not isinstance(r, (str, os.PathLike)) else read_recording(r) for r in recordings]
        self.sources = [str(r) if isinstance(r, (str, os.PathLike)) else _source_name(r) for r in recordings]
        rates = {s: float(r.info["sfreq"]) for s, r in zip(self.sources, raws)}
        if resample is None and len(set(rates.values())) > 1:
            listing = ", ".join(f"{s} ({f:g} Hz)" for s, f in rates.items())
            raise ValueError(f"recordings have different sampling rates: {listing}; pass resample=<Hz>")
        self.sfreq = float(resample) if resample is not None else next(iter(rates.values()))
        if mode == "windows":
            _check_integer_samples(self.sfreq, window_s=window_s, stride_s=stride_s)
        else:
            _check_integer_samples(self.sfreq, tmin=tmin, tmax=tmax)

        self.values: list[np.ndarray] = []  # per recording [N, C, T] float32
        self.ids: list[torch.Tensor] = []
        self.coords: list[torch.Tensor] = []
        self.labels: list[np.ndarray] = []
        self.channel_keys: list[list[str]] = []
        self.event_counts: list[dict[str, int]] = []
        self.onsets: list[np.ndarray] = []  # per recording, window start in seconds from the first sample
        unmapped: dict[str, list[str]] = {}
        for raw, src in zip(raws, self.sources):
            self._add_recording(raw, src, unmapped)
        if mode == "events":
            seen = {d for counts in self.event_counts for d in counts}
            never = sorted(set(self.label_map) - seen)
            if never:
                raise ValueError(
                    f"label_map key(s) {never} occur in no recording ({', '.join(self.sources)}); "
                    f"descriptions found: {sorted(seen | set(unmapped))}"
                )
            if unmapped:
                listing = "; ".join(f"{d!r} in {', '.join(s)}" for d, s in sorted(unmapped.items()))
                warnings.warn(f"annotations not in label_map were ignored: {listing}", stacklevel=2)
        lengths = {v.shape[-1] for v in self.values if len(v)}
        if len(lengths) > 1:
            raise ValueError(f"windows of different lengths {sorted(lengths)} samples across recordings")
        self.n_times = lengths.pop() if lengths else 0
        self.recording_of = np.concatenate([np.full(len(v), i, dtype=int) for i, v in enumerate(self.values)])
        self.offsets = np.concatenate([[0], np.cumsum([len(v) for v in self.values])]).astype(int)
        if len(self) == 0:
            raise ValueError(f"no windows could be cut from {', '.join(self.sources)}")

    # -- per recording ---------------------------------------------------------------------
    def _add_recording(self, raw: mne.io.BaseRaw, src: str, unmapped: dict[str, list[str]]) -> None:
        import mne

        raw = raw.copy().load_data(verbose="error")
        types = {n: t for n, t in self.ch_types.items() if n in raw.ch_names}
        if types:
            raw.set_channel_types(types, on_unit_change="ignore", verbose="error")
        if self.mode == "events":
            _stim_to_annotations(raw)
        if self.reference == "bipolar":
            raw = _bipolar_reference(raw, self.picks, src)
        cmap = channel_map(raw, self.vocab, on_unknown=self.on_unknown, picks=self.picks, source=src)
        if not cmap:
            raise ValueError(f"{src}: no channels of type {'/'.join(self.picks)} with a known identity")
        raw.pick(list(cmap), verbose="error")
        cmap = self._check_bad_channels(raw, src, cmap)
        if self.reference == "average":
            present = set(raw.get_channel_types())
            for kind in (k for k in DATA_TYPES if k in present):
                raw.set_eeg_reference("average", ch_type=kind, projection=False, verbose="error")
        if self.l_freq is not None or self.h_freq is not None:
            raw.filter(self.l_freq, self.h_freq, picks="all", verbose="error")
        if raw.info["sfreq"] != self.sfreq:
            raw.resample(self.sfreq, verbose="error")
        sf = self.sfreq
        if self.mode == "windows":
            n_win, n_step = round(self.window_s * sf), round(self.stride_s * sf)
            starts = np.arange(0, raw.n_times - n_win + 1, n_step) + raw.first_samp
            events = np.column_stack([starts, np.zeros_like(starts), np.ones_like(starts)]).astype(int)
            tmin, tmax, event_id = 0.0, (n_win - 1) / sf, {"window": 1}
            counts: dict[str, int] = {}
        else:
            events, found = mne.events_from_annotations(raw, verbose="error")
            counts = {d: int((events[:, 2] == c).sum()) for d, c in found.items()}
            for d in found:
                if d not in self.label_map:
                    unmapped.setdefault(d, []).append(src)
            event_id = {d: c for d, c in found.items() if d in self.label_map}
            events = events[np.isin(events[:, 2], list(event_id.values()))]
            tmin, tmax = self.tmin, self.tmax - 1 / sf  # [tmin, tmax) -> (tmax - tmin) * sf samples
            events = self._drop_out_of_range(raw, events, event_id, src)
        self.event_counts.append(counts)
        if len(events):
            epochs = mne.Epochs(
                raw, events, event_id, tmin=tmin, tmax=tmax, baseline=None, reject_by_annotation=True,
                preload=True, on_missing="ignore", verbose="error",
            )  # fmt: skip
            data = epochs.get_data(copy=False).astype(np.float32)
            code_to_label = {c: self.label_map.get(d, -1) for d, c in event_id.items()}
            labels = np.array([code_to_label[c] for c in epochs.events[:, 2]], dtype=np.int64)
            onsets = (epochs.events[:, 0] - raw.first_samp) / sf + tmin
        else:
            data = np.zeros((0, len(raw.ch_names), 0), np.float32)
            labels = np.zeros(0, np.int64)
            onsets = np.zeros(0)
        self.onsets.append(onsets)
        if self.ea and len(data):
            data = euclidean_alignment(data)
        keys = [cmap[n] for n in raw.ch_names]
        self.values.append(data)
        self.labels.append(labels)
        self.channel_keys.append(keys)
        self.ids.append(torch.tensor(self.vocab.ids(keys), dtype=torch.long))
        self.coords.append(self._positions(raw, keys, src))

    def _drop_out_of_range(
        self, raw: mne.io.BaseRaw, events: np.ndarray, event_id: dict[str, int], src: str
    ) -> np.ndarray:
        """Events whose ``[tmin, tmax)`` window does not fit in the recording: counted, reported
        (``out_of_range="warn"``, a ``UserWarning`` naming file, count and onsets) or refused
        (``"raise"``), and left out; mne would drop them without a word.
        """
        sf = self.sfreq
        start = events[:, 0] - raw.first_samp + round(self.tmin * sf)
        stop = start + round((self.tmax - self.tmin) * sf)
        out = (start < 0) | (stop > raw.n_times)
        if not out.any():
            return events
        names = {c: d for d, c in event_id.items()}
        onsets = ", ".join(
            f"{names[int(c)]!r} at {(s - raw.first_samp) / sf:g} s" for s, c in events[out][:5, [0, 2]]
        )
        more = f" and {int(out.sum()) - 5} more" if out.sum() > 5 else ""
        msg = (
            f"{src}: {int(out.sum())} of {len(events)} event(s) have a window [{self.tmin:g}, {self.tmax:g}) s "
            f"outside the recording (0 to {raw.n_times / sf:g} s): {onsets}{more}"
        )
        self.out_of_range_counts[src] = self.out_of_range_counts.get(src, 0) + int(out.sum())
        if self.out_of_range == "raise":
            raise ValueError(f"{msg}; pass out_of_range='warn' to leave them out")
        warnings.warn(f"{msg}; they were left out", UserWarning, stacklevel=4)
        return events[~out]

    def _check_bad_channels(self, raw: mne.io.BaseRaw, src: str, cmap: dict[str, str]) -> dict[str, str]:
        data = raw.get_data()
        nan = ~np.isfinite(data).all(axis=1)
        flat = ~nan & (np.where(nan[:, None], 1.0, data).std(axis=1) == 0)
        names = raw.ch_names
        bad = [f"{n} ({'NaN/Inf' if b else 'flat'})" for n, b, f in zip(names, nan, flat) if b or f]
        if not bad:
            return cmap
        if self.bad_channels == "raise":
            raise ValueError(f"{src}: bad channel(s) {', '.join(bad)}; pass bad_channels='drop' to leave them out")
        drop = [n for n, b in zip(raw.ch_names, nan | flat) if b]
        if len(drop) == len(raw.ch_names):
            raise ValueError(f"{src}: every channel is flat or NaN: {', '.join(bad)}")
        warnings.warn(f"{src}: dropping bad channel(s) {', '.join(bad)}", stacklevel=3)
        raw.drop_channels(drop)
        return {n: k for n, k in cmap.items() if n not in drop}

    def _positions(self, raw: mne.io.BaseRaw, keys: list[str], src: str) -> torch.Tensor:
        """File positions where finite and non-zero, else the vocabulary's, else NaN."""
        pos = np.full((len(keys), 3), np.nan, dtype=np.float32)
        for i, (ch, key) in enumerate(zip(raw.info["chs"], keys)):
            loc = np.asarray(ch["loc"][:3], dtype=float)
            if np.isfinite(loc).all() and loc.any():
                pos[i] = loc
            elif self.vocab[key].position is not None:
                pos[i] = self.vocab[key].position
        missing = [n for n, p in zip(raw.ch_names, pos) if np.isnan(p).any()]
        if missing and self.require_positions:
            raise ValueError(f"{src}: no position for channel(s) {', '.join(missing)} (require_positions)")
        return torch.from_numpy(pos)

    # -- dataset protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_classes(self) -> int | None:
        return max(self.label_map.values()) + 1 if self.mode == "events" else None

    @property
    def targets(self) -> np.ndarray:
        return np.concatenate(self.labels)

    def locate(self, idx: int) -> tuple[int, int, int]:
        """Window ``idx`` (negative counts from the end) as ``(idx, recording, window j in it)``."""
        idx = int(idx) % len(self)
        rec = int(self.recording_of[idx])
        return idx, rec, idx - int(self.offsets[rec])

    def describe_sample(self, idx: int) -> str:
        """``FILE, window j at 12.5 s``: where window ``idx`` was cut (for error messages)."""
        idx, rec, j = self.locate(idx)
        return f"{self.sources[rec]}, window {j} at {float(self.onsets[rec][j]):.3f} s"

    def __getitem__(self, idx: int) -> ChannelSample:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"window {idx} out of range for {len(self)} windows")
        idx, rec, j = self.locate(idx)
        target = torch.tensor(int(self.labels[rec][j])) if self.mode == "events" else None
        return ChannelSample(
            values=torch.from_numpy(self.values[rec][j]),
            channel_ids=self.ids[rec],
            coords=self.coords[rec],
            target=target,
        )
