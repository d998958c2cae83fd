"""Channel identities: who each channel is, and a stable key -> id vocabulary.

A :class:`Channel` is a key such as ``eeg/C3``, ``s2/B08``, ``stain/DAPI``,
``ieeg/sub-01/LA1``, ``mel/17`` or ``series/OT`` with optional metadata. A
:class:`ChannelVocab` assigns every key a stable integer id; row ``k`` of a
channel-embedding table always means the same channel, in every checkpoint and
pretrained export that carries the vocabulary.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from chanformer.io import write_text_atomic

__all__ = [
    "Channel",
    "ChannelVocab",
    "UnknownChannelError",
    "eeg_1005_vocab",
    "sentinel2_vocab",
    "series_vocab",
]


class UnknownChannelError(KeyError):
    """A channel key is not in the vocabulary; the message names every unknown key."""

    def __init__(self, keys: Sequence[str], vocab_name: str = "vocabulary") -> None:
        self.keys = list(keys)
        super().__init__(f"unknown channel(s) {', '.join(map(repr, self.keys))} in {vocab_name}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Channel:
    """One channel identity with optional metadata.

    Attributes:
        key: unique name, namespaced by modality, e.g. ``"eeg/C3"`` or ``"s2/B08"``.
        kind: modality, e.g. ``"eeg"``, ``"seeg"``, ``"band"``, ``"stain"``, ``"series"``.
        position: 3-D position in metres (electrodes), or ``None``.
        wavelength_nm: centre wavelength in nanometres (spectral bands, stains), or ``None``.
        unit: physical unit of the values, e.g. ``"V"`` or ``"reflectance"``.
    """

    key: str
    kind: str = ""
    position: tuple[float, float, float] | None = None
    wavelength_nm: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"Channel key must be a non-empty string, got {self.key!r}")
        if self.position is not None:
            pos = tuple(float(p) for p in self.position)
            if len(pos) != 3:
                raise ValueError(f"channel {self.key!r}: position must have 3 coordinates, got {pos}")
            object.__setattr__(self, "position", pos)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Channel:
        pos = data.get("position")
        return cls(
            key=data["key"],
            kind=data.get("kind", ""),
            position=tuple(pos) if pos is not None else None,  # type: ignore[arg-type]
            wavelength_nm=data.get("wavelength_nm"),
            unit=data.get("unit", ""),
        )


@dataclass
class ChannelVocab:
    """Stable mapping from channel keys to integer ids, growable and JSON round-trippable.

    Ids are assigned in insertion order and never change; :meth:`add` appends new keys.
    Look-ups can be case-insensitive through :meth:`resolve`, which also understands
    aliases (e.g. ``"EEG Fp1-Ref"`` -> ``"eeg/Fp1"``) registered with ``aliases``.
    """

    name: str = "vocab"
    channels: list[Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: dict[str, int] = {}
        self._folded: dict[str, int] = {}
        channels, self.channels = self.channels, []
        for ch in channels:
            self.add(ch)

    # -- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self.channels)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __getitem__(self, key: str | int) -> Channel:
        if isinstance(key, int):
            return self.channels[key]
        return self.channels[self.id(key)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChannelVocab) and self.channels == other.channels

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.channels]

    # -- building -------------------------------------------------------------------------
    def add(self, channel: Channel | str, **meta: Any) -> int:
        """Add a channel (or return the id of an existing one with the same key)."""
        ch = Channel(channel, **meta) if isinstance(channel, str) else channel
        if ch.key in self._index:
            return self._index[ch.key]
        idx = len(self.channels)
        self.channels.append(ch)
        self._index[ch.key] = idx
        self._folded.setdefault(ch.key.casefold(), idx)
        return idx

    def extend(self, channels: Iterable[Channel | str]) -> list[int]:
        """Add several channels; returns their ids in order."""
        return [self.add(c) for c in channels]

    # -- look-up --------------------------------------------------------------------------
    def id(self, key: str) -> int:
        """Exact id of ``key``; raises :class:`UnknownChannelError` naming the key."""
        try:
            return self._index[key]
        except KeyError:
            raise UnknownChannelError([key], self.name) from None

    def ids(self, keys: Sequence[str]) -> list[int]:
        """Ids of ``keys``; one error names every unknown key at once."""
        missing = [k for k in keys if k not in self._index]
        if missing:
            raise UnknownChannelError(missing, self.name)
        return [self._index[k] for k in keys]

    def resolve(self, name: str, prefix: str = "", aliases: Mapping[str, str] | None = None) -> str | None:
        """Case-insensitive look-up of a loosely written name, returning the canonical key.

        Tries, in order: ``aliases`` (name -> key, case-insensitive, also for the undecorated
        name), ``name``, ``prefix + name``; then the core token with the usual recording
        decorations removed: a leading ``EEG``/``POL``/``ECG``/``EOG`` type word, a trailing
        reference (``-Ref``, ``-LE``, ``-AR``, ``-AVG``, ``-A1``, ``-M2``, ...) and PhysioNet's
        padding dots (``Fc5.``, ``C3..``); finally the old 10-20 names and their 10-10 synonyms
        (``T3`` <-> ``T7``, ``T4`` <-> ``T8``, ``T5`` <-> ``P7``, ``T6`` <-> ``P8``), so a model
        trained on either spelling finds the other. Returns ``None`` when nothing matches.
        """
        cands = _candidates(name, prefix)
        if aliases:
            folded_aliases = {str(k).strip().casefold(): v for k, v in aliases.items()}
            for cand in cands:
                hit = folded_aliases.get(cand.casefold())
                if hit is not None and hit in self._index:
                    return hit
        for cand in cands:
            idx = self._folded.get(cand.casefold())
            if idx is not None:
                return self.channels[idx].key
        return None

    # -- serialisation --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "channels": [c.to_json() for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelVocab:
        if "channels" not in data:
            raise ValueError("vocabulary JSON has no 'channels' list")
        return cls(name=data.get("name", "vocab"), channels=[Channel.from_json(c) for c in data["channels"]])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON, atomically."""
        write_text_atomic(Path(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChannelVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"channel vocabulary file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"channel vocabulary file {path} is not valid JSON: {e}") from None
        return cls.from_json(data)


#: Old 10-20 temporal names and their 10-10 replacements (both directions are tried).
EEG_SYNONYMS: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
_SYNONYMS_FOLDED = {**{k.casefold(): v for k, v in EEG_SYNONYMS.items()},
                    **{v.casefold(): k for k, v in EEG_SYNONYMS.items()}}  # fmt: skip
_LEADS = ("EEG ", "EEG-", "EEG_", "EEG:", "POL ", "ECG ", "EOG ", "EMG ", "SEEG ", "ECOG ", "IEEG ")
_TAILS = ("-REF", "-LE", "-RE", "-AR", "-AVG", "-AV", "-CAR", "-A1", "-A2", "-M1", "-M2", "-A12", "-A1A2", "-LR")


def _strip_decorations(core: str) -> str:
    stripped = core
    for lead in _LEADS:
        if stripped.upper().startswith(lead):
            stripped = stripped[len(lead) :].strip()
            break
    for tail in _TAILS:
        if stripped.upper().endswith(tail) and len(stripped) > len(tail):
            stripped = stripped[: -len(tail)]
            break
    # PhysioNet EDF labels pad names to 4 characters with dots: "Fc5.", "C3..", "Fp1."
    return stripped.rstrip(".").strip()


def _candidates(name: str, prefix: str) -> list[str]:
    core = str(name).strip()
    out = [core, prefix + core]
    stripped = _strip_decorations(core)
    if stripped and stripped != core:
        out += [stripped, prefix + stripped]
    base = (stripped or core).split("/")[-1]
    synonym = _SYNONYMS_FOLDED.get(base.casefold())
    if synonym is not None:
        out += [synonym, prefix + synonym]
    return list(dict.fromkeys(out))


# -- standard vocabularies ----------------------------------------------------------------
@cache
def _eeg_1005_channels() -> tuple[Channel, ...]:
    import mne

    # mne >= 1.12 renamed the template montage; the positions are the same.
    name = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    montage = mne.channels.make_standard_montage(name)
    pos = montage.get_positions()["ch_pos"]
    return tuple(Channel(f"eeg/{name}", kind="eeg", position=tuple(xyz), unit="V") for name, xyz in pos.items())


def eeg_1005_vocab() -> ChannelVocab:
    """EEG 10-05 electrode vocabulary with positions (metres) from mne's standard 10-05 montage
    (``standard_1005``, called ``colin27_1005`` since mne 1.12).
    """
    return ChannelVocab("eeg_1005", list(_eeg_1005_channels()))


# Sentinel-2 MSI bands and their central wavelengths (nm), S2A values from ESA's spectral response.
SENTINEL2_BANDS: dict[str, float] = {
    "B01": 442.7, "B02": 492.4, "B03": 559.8, "B04": 664.6, "B05": 704.1, "B06": 740.5,
    "B07": 782.8, "B08": 832.8, "B8A": 864.7, "B09": 945.1, "B10": 1373.5, "B11": 1613.7, "B12": 2202.4,
}  # fmt: skip


def sentinel2_vocab() -> ChannelVocab:
    """Sentinel-2 MSI band vocabulary (``s2/B01`` ... ``s2/B12``) with centre wavelengths in nm."""
    return ChannelVocab(
        "sentinel2",
        [Channel(f"s2/{b}", kind="band", wavelength_nm=w, unit="reflectance") for b, w in SENTINEL2_BANDS.items()],
    )


def series_vocab(names: Iterable[str], name: str = "series") -> ChannelVocab:
    """Vocabulary for named time series (``series/<name>``), e.g. the columns of a CSV."""
    return ChannelVocab(name, [Channel(f"series/{n}", kind="series") for n in names])


def is_finite_position(pos: tuple[float, float, float] | None) -> bool:
    return pos is not None and all(math.isfinite(p) for p in pos)
