"""Speech loaders: audio files -> :class:`~chanformer.batch.ChannelSample` of waveforms.

Microphones are channels (vocabulary keys ``mic/0 ... mic/{n-1}``, :func:`mic_vocab`); a
multi-channel file keeps its channels. Waveforms are ``float32 [C, L]``.

* :func:`read_audio` -- WAV/FLAC/OGG through ``soundfile``, resampling (``resample_poly``),
  and the checks that name the file at fault (:class:`AudioReadError`): empty, silent or
  non-finite audio, a sample-rate mismatch when resampling is off, a channel-count mismatch
  (mono expected, stereo found and the reverse). Clipped audio (more than ``clip_fraction`` of
  samples at full scale) warns by default (``on_clip="warn"``), or raises (``"error"``), or
  passes (``"ignore"``): clipped recordings are common in the wild and still useful for
  training, but they bias enhancement metrics, so evaluation code should use ``"error"``.
* Signal helpers: :func:`resample`, :func:`rms_normalize`, :func:`random_crop`,
  :func:`mix_at_snr` (exact SNR), :func:`speed_perturb`, :func:`volume_perturb`,
  :func:`coloured_noise`, :func:`babble`.
* Datasets: :class:`SpeakerFolderDataset` (``<speaker>/<utterance>.wav``, split by utterance),
  :class:`VerificationTrials` (VoxCeleb ``label enrol test`` lines) + :class:`UtteranceDataset`,
  :class:`NoisyCleanDataset` (parallel ``noisy/`` and ``clean/`` folders).
* Synthetic speech: :func:`generate_espeak_corpus` (Debian's ``espeak-ng`` voices as speakers)
  and :func:`make_noisy_clean_pairs`.
* Datamodules: :class:`SpeakerVerificationDataModule`, :class:`EnhancementDataModule`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import Channel, ChannelVocab
from chanformer.datasets.base import ChannelDataModule
from chanformer.io import safe_id
from chanformer.spec import DataSpec

__all__ = [
    "AUDIO_SUFFIXES",
    "AudioReadError",
    "EnhancementDataModule",
    "NoisyCleanDataset",
    "SpeakerFolderDataset",
    "SpeakerVerificationDataModule",
    "UtteranceDataset",
    "VerificationTrials",
    "all_pairs_trials",
    "babble",
    "coloured_noise",
    "espeak_available",
    "flat_speaker_files",
    "generate_espeak_corpus",
    "make_noisy_clean_pairs",
    "mic_vocab",
    "mix_at_snr",
    "random_crop",
    "read_audio",
    "resample",
    "rms_normalize",
    "speed_perturb",
    "volume_perturb",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioReadError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def mic_vocab(n: int = 1) -> ChannelVocab:
    """Vocabulary ``mic/0 ... mic/{n-1}`` (id ``i`` is microphone ``i``)."""
    return ChannelVocab(f"mic{n}", [Channel(f"mic/{i}", kind="mic") for i in range(n)])


# -- signal helpers -------------------------------------------------------------------------------
def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly``)."""
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(x, int(target_sr) // g, int(orig_sr) // g, axis=-1).astype(x.dtype, copy=False)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def rms_normalize(x: np.ndarray, target_db: float = -25.0, eps: float = 1e-12) -> np.ndarray:
    """Scale so the RMS over all channels is ``10^(target_db / 20)`` (full scale = 1)."""
    return (x * (10 ** (target_db / 20) / max(_rms(x), eps))).astype(x.dtype, copy=False)


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A random ``length``-sample window of ``x [..., L]``; shorter signals are tiled (wrapped)
    to ``length``. ``rng=None`` takes the centre window (deterministic evaluation)."""
    n = x.shape[-1]
    if n == 0:
        raise ValueError("random_crop: empty signal")
    if n < length:
        x = np.concatenate([x] * (length // n + 1), axis=-1)
        n = x.shape[-1]
        start = 0
    else:
        start = (n - length) // 2 if rng is None else int(rng.integers(0, n - length + 1))
    return x[..., start : start + length]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``(clean + g * noise, g * noise)`` with ``g`` chosen so that
    ``10 log10(sum clean^2 / sum (g noise)^2) == snr_db`` exactly (up to float rounding).

    ``noise`` is tiled or centre-cropped to the length of ``clean`` first.
    """
    length = clean.shape[-1]
    noise = random_crop(noise, length) if noise.shape[-1] != length else noise
    pc, pn = float(np.sum(np.square(clean, dtype=np.float64))), float(np.sum(np.square(noise, dtype=np.float64)))
    if pc <= 0 or pn <= 0:
        raise ValueError("mix_at_snr: clean and noise must both have non-zero energy")
    gain = math.sqrt(pc / (pn * 10 ** (snr_db / 10)))
    scaled = (noise.astype(np.float64) * gain).astype(clean.dtype)
    return clean + scaled, scaled


def speed_perturb(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch shifts too, as Kaldi/SpeechBrain speed perturbation):
    resample by ``1 / factor`` and keep the sample rate."""
    if factor <= 0:
        raise ValueError(f"speed_perturb(factor={factor}): must be positive")
    frac = Fraction(factor).limit_denominator(100)
    if frac == 1:
        return x
    from scipy.signal import resample_poly

    return resample_poly(x, frac.denominator, frac.numerator, axis=-1).astype(x.dtype, copy=False)


def volume_perturb(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Multiply by ``10^(gain_db / 20)``."""
    return (x * 10 ** (gain_db / 20)).astype(x.dtype, copy=False)


def coloured_noise(n: int, exponent: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Unit-RMS noise with power spectrum ``~ 1 / f^exponent`` (0 white, 1 pink, 2 brown), ``float32 [n]``."""
    rng = rng or np.random.default_rng()
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return (x / max(_rms(x), 1e-12)).astype(np.float32)


def babble(voices: Sequence[np.ndarray], n: int, n_talkers: int = 4, rng: np.random.Generator | None = None) -> np.ndarray:
    """Unit-RMS babble ``float32 [n]``: the sum of ``n_talkers`` random crops of random ``voices``
    (1-D waveforms), each RMS-normalised first."""
    rng = rng or np.random.default_rng()
    if not voices:
        raise ValueError("babble: no voices given")
    out = np.zeros(n, dtype=np.float64)
    for _ in range(n_talkers):
        v = np.asarray(voices[int(rng.integers(len(voices)))], dtype=np.float64)
        out += rms_normalize(random_crop(v, n, rng), 0.0)
    return (out / max(_rms(out), 1e-12)).astype(np.float32)


# -- reading files ---------------------------------------------------------------------------------
def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    resample_to_rate: bool = True,
    channels: int | None = None,
    on_clip: Literal["warn", "error", "ignore"] = "warn",
    clip_fraction: float = 1e-3,
    silence_rms: float = 1e-5,
) -> tuple[np.ndarray, int]:
    """Read an audio file as ``float32 [C, L]`` (channels kept) and its sample rate.

    Args:
        path: WAV, FLAC or OGG file.
        sample_rate: wanted rate; ``None`` keeps the file's.
        resample_to_rate: resample to ``sample_rate`` (True) or raise on a mismatch (False).
        channels: expected channel count (1 = mono); ``None`` accepts any.
        on_clip: what to do when more than ``clip_fraction`` of the samples sit at full scale
            (``|x| >= 0.999``): ``"warn"``, ``"error"`` or ``"ignore"``.
        silence_rms: audio whose RMS is below this is "silent" and raises.

    Raises:
        AudioReadError: naming the file, for unreadable, empty, silent, non-finite or clipped
            (``on_clip="error"``) audio, a rate mismatch, or a channel-count mismatch.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioReadError(f"cannot read audio file {path}: {e}") from e
    x = np.ascontiguousarray(data.T)  # [C, L]
    if x.shape[1] == 0:
        raise AudioReadError(f"audio file {path} is empty (0 samples)")
    if not np.isfinite(x).all():
        raise AudioReadError(f"audio file {path} holds non-finite samples (NaN/Inf)")
    if channels is not None and x.shape[0] != channels:
        def kind(c: int) -> str:
            return {1: "mono", 2: "stereo"}.get(c, f"{c}-channel")
        raise AudioReadError(f"audio file {path} is {kind(x.shape[0])} but {kind(channels)} audio was expected "
                             f"({x.shape[0]} channels, expected {channels})")
    if _rms(x) < silence_rms:
        raise AudioReadError(f"audio file {path} is silent (RMS {_rms(x):.2e} < {silence_rms:g})")
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if on_clip != "ignore" and clipped > clip_fraction:
        msg = f"audio file {path} is clipped: {clipped:.2%} of samples at full scale (> {clip_fraction:.2%})"
        if on_clip == "error":
            raise AudioReadError(msg)
        warnings.warn(msg, stacklevel=2)
    if sample_rate is not None and sr != sample_rate:
        if not resample_to_rate:
            raise AudioReadError(f"audio file {path} has sample rate {sr} Hz, expected {sample_rate} Hz")
        x, sr = resample(x, sr, sample_rate), sample_rate
    return x, int(sr)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _sample(x: np.ndarray, vocab: ChannelVocab, target: Any) -> ChannelSample:
    n = x.shape[0]
    if n > len(vocab):
        raise ValueError(f"{n} microphone channels but vocabulary {vocab.name!r} has {len(vocab)}")
    return ChannelSample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                         torch.tensor(vocab.ids([f"mic/{i}" for i in range(n)])), target=target)


class SpeakerFolderDataset(Dataset[ChannelSample]):
    """Speaker identification from ``root/<speaker>/<utterance>.{wav,flac,ogg}``.

    Utterances of every speaker are split into train/val (``val_fraction`` of each speaker's
    files, at least one kept for training; ``seed`` fixes the draw). Each item is a crop of
    ``crop_seconds`` (random when ``train``; centre otherwise; short files are tiled) with
    target = speaker index (speakers sorted by folder name, or ``speakers``).

    Args:
        augment: training-time speed (0.9/1.0/1.1) and volume (+-6 dB) perturbation and RMS
            normalisation to -25 dBFS otherwise.
        layout: ``"folders"`` (one sub-folder per speaker) or ``"flat"``: audio files directly
            in ``root`` named ``<speaker>-<rest>`` (LibriSpeech's ``<speaker>-<chapter>-<n>.flac``).
        repeats: each file appears this many times per epoch (several random crops of one
            utterance per epoch when there are few utterances per speaker).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "all"] = "all",
        val_fraction: float = 0.0,
        seed: int = 0,
        sample_rate: int = 16000,
        crop_seconds: float = 2.0,
        speakers: Sequence[str] | None = None,
        augment: bool = False,
        channels: int | None = 1,
        vocab: ChannelVocab | None = None,
        layout: Literal["folders", "flat"] = "folders",
        repeats: int = 1,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"speaker folder not found: {self.root}")
        if layout not in ("folders", "flat"):
            raise ValueError(f"SpeakerFolderDataset(layout={layout!r}): use 'folders' or 'flat'")
        if repeats < 1:
            raise ValueError(f"SpeakerFolderDataset(repeats={repeats}): must be >= 1")
        by_speaker = flat_speaker_files(self.root) if layout == "flat" else None
        found = sorted(by_speaker) if by_speaker is not None else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.speakers = list(speakers) if speakers is not None else found
        for spk in self.speakers:  # names become folders under root: no '..', separators, ...
            safe_id(spk, f"SpeakerFolderDataset({self.root}): speaker")
        if not self.speakers:
            expected = "<speaker>-<utterance>.flac files" if layout == "flat" else "<speaker>/<utterance>.wav"
            raise ValueError(f"no speakers in {self.root} (expected {expected})")
        rng = np.random.default_rng(seed)
        self.items: list[tuple[Path, int]] = []
        for k, spk in enumerate(self.speakers):
            if by_speaker is not None:
                files = by_speaker.get(spk, [])
                if not files:
                    raise ValueError(f"{self.root} holds no {'/'.join(AUDIO_SUFFIXES)} files of speaker {spk!r} "
                                     f"(expected {spk}-<utterance> names)")
            else:
                files = _audio_files(self.root / spk) if (self.root / spk).is_dir() else []
            if not files:
                raise ValueError(f"speaker folder {self.root / spk} holds no {'/'.join(AUDIO_SUFFIXES)} files")
            order = rng.permutation(len(files))
            n_val = min(round(val_fraction * len(files)), len(files) - 1)
            keep = order[:n_val] if split == "val" else order[n_val:] if split == "train" else order
            self.items += [(files[i], k) for i in sorted(keep)]
        self.sample_rate, self.crop = sample_rate, int(round(crop_seconds * sample_rate))
        self.train, self.augment, self.channels = split == "train", augment, channels
        self.repeats = int(repeats)
        self.vocab = vocab or mic_vocab(channels or 1)

    def __len__(self) -> int:
        return len(self.items) * self.repeats

    def load(self, i: int) -> np.ndarray:
        return read_audio(self.items[i % len(self.items)][0], self.sample_rate, channels=self.channels)[0]

    def __getitem__(self, i: int) -> ChannelSample:
        i = i % len(self.items)
        x = self.load(i)
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,)))) if self.train else None
        if self.augment and rng is not None:
            x = speed_perturb(x, float(rng.choice([0.9, 1.0, 1.1])))
        x = rms_normalize(random_crop(x, self.crop, rng))
        if self.augment and rng is not None:
            x = volume_perturb(x, float(rng.uniform(-6, 6)))
        return _sample(x, self.vocab, torch.tensor(self.items[i][1]))


def flat_speaker_files(folder: str | Path) -> dict[str, list[Path]]:
    """Audio files directly in ``folder`` grouped by speaker, the speaker being the part of the
    file name before its first ``-`` (LibriSpeech ``<speaker>-<chapter>-<n>.flac``). A file name
    without ``-`` raises naming the file."""
    out: dict[str, list[Path]] = {}
    for p in _audio_files(Path(folder)):
        spk, sep, _ = p.stem.partition("-")
        if not sep or not spk:
            raise ValueError(f"{p}: expected a <speaker>-<utterance> file name (LibriSpeech naming)")
        out.setdefault(spk, []).append(p)
    return out


def all_pairs_trials(root: str | Path, out: str | Path) -> Path:
    """Write every pair of the utterances under ``root/<speaker>/`` as a trial list (same speaker
    = 1): ``n (n - 1) / 2`` trials for ``n`` files (100 files -> 4,950 trials), enrol before test
    in sorted order. Paths are relative to ``root``."""
    root = Path(root)
    files = [(d.name, f"{d.name}/{p.name}") for d in sorted(root.iterdir()) if d.is_dir() for p in _audio_files(d)]
    if len(files) < 2:
        raise ValueError(f"all_pairs_trials: fewer than two utterances under {root} (expected <speaker>/<utterance>.flac)")
    trials = [(int(sa == sb), a, b) for i, (sa, a) in enumerate(files) for sb, b in files[i + 1:]]
    return VerificationTrials.write(out, trials)


class VerificationTrials:
    """A VoxCeleb-style trial list: lines ``label enrol test`` (label 1 = same speaker, 0 = not),
    paths relative to ``root``. Every named file must exist (the error names it and the line)."""

    def __init__(self, path: str | Path, root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"trial list not found: {self.path}")
        self.root = Path(root) if root is not None else self.path.parent
        self.labels: list[int] = []
        self.pairs: list[tuple[str, str]] = []
        for no, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ValueError(f"{self.path}:{no}: expected 'label enrol test' with label 0 or 1, got {line!r}")
            for f in parts[1:]:
                if not (self.root / f).is_file():
                    raise FileNotFoundError(f"{self.path}:{no}: trial names a missing audio file {self.root / f}")
            self.labels.append(int(parts[0]))
            self.pairs.append((parts[1], parts[2]))
        if not self.pairs:
            raise ValueError(f"trial list {self.path} holds no trials")
        self.files = sorted({f for p in self.pairs for f in p})
        self.index = {f: i for i, f in enumerate(self.files)}

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(enrol_idx, test_idx, labels)`` indexing :attr:`files`."""
        e = torch.tensor([self.index[a] for a, _ in self.pairs])
        t = torch.tensor([self.index[b] for _, b in self.pairs])
        return e, t, torch.tensor(self.labels)

    @staticmethod
    def write(path: str | Path, trials: Sequence[tuple[int, str, str]]) -> Path:
        path = Path(path)
        path.write_text("".join(f"{lab} {a} {b}\n" for lab, a, b in trials))
        return path


class UtteranceDataset(Dataset[ChannelSample]):
    """Whole utterances for embedding extraction: ``files`` under ``root``, each cut (centre) or
    tiled to ``max_seconds`` (``None``: the whole utterance; batch them with
    ``ChannelBatch.collate(..., pad_time=True)``), RMS-normalised; target = the file's index."""

    def __init__(self, files: Sequence[str], root: str | Path, sample_rate: int = 16000,
                 max_seconds: float | None = 3.0, channels: int | None = 1, vocab: ChannelVocab | None = None) -> None:
        self.files, self.root = list(files), Path(root)
        self.length = None if max_seconds is None else int(round(max_seconds * sample_rate))
        self.sample_rate, self.channels = sample_rate, channels
        self.vocab = vocab or mic_vocab(channels or 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> ChannelSample:
        x, _ = read_audio(self.root / self.files[i], self.sample_rate, channels=self.channels)
        if self.length is not None:
            x = random_crop(x, self.length)
        return _sample(rms_normalize(x), self.vocab, torch.tensor(i))


class NoisyCleanDataset(Dataset[ChannelSample]):
    """Parallel folders ``noisy_dir/<name>`` and ``clean_dir/<name>`` of the same utterance.

    Items: ``values`` = noisy ``[C, S]``, ``target`` = clean ``[C, S]``, both cut to the same
    ``segment_seconds`` window (random when ``train``, else the start; ``None`` = whole file,
    batch size 1 then unless all files share a length). A file without its counterpart, pairs
    of different lengths or channel counts raise naming the files.
    """

    def __init__(self, noisy_dir: str | Path, clean_dir: str | Path, sample_rate: int = 16000,
                 segment_seconds: float | None = 2.0, train: bool = False, channels: int | None = 1,
                 vocab: ChannelVocab | None = None) -> None:
        self.noisy_dir, self.clean_dir = Path(noisy_dir), Path(clean_dir)
        for d in (self.noisy_dir, self.clean_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"folder not found: {d}")
        noisy = {p.name for p in _audio_files(self.noisy_dir)}
        clean = {p.name for p in _audio_files(self.clean_dir)}
        for name in sorted(noisy ^ clean):
            have, lack = (self.noisy_dir, self.clean_dir) if name in noisy else (self.clean_dir, self.noisy_dir)
            raise FileNotFoundError(f"{have / name} has no counterpart {lack / name}")
        if not noisy:
            raise ValueError(f"no audio files in {self.noisy_dir}")
        self.names = sorted(noisy)
        self.sample_rate, self.train, self.channels = sample_rate, train, channels
        self.segment = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.vocab = vocab or mic_vocab(channels or 1)

    def __len__(self) -> int:
        return len(self.names)

    def load_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        name = self.names[i]
        noisy, _ = read_audio(self.noisy_dir / name, self.sample_rate, channels=self.channels)
        clean, _ = read_audio(self.clean_dir / name, self.sample_rate, channels=self.channels)
        if noisy.shape != clean.shape:
            raise AudioReadError(f"{self.noisy_dir / name} has shape {noisy.shape} but {self.clean_dir / name} has {clean.shape}")
        return noisy, clean

    def __getitem__(self, i: int) -> ChannelSample:
        noisy, clean = self.load_pair(i)
        if self.segment is not None:
            n = noisy.shape[-1]
            if n < self.segment:
                noisy, clean = random_crop(noisy, self.segment), random_crop(clean, self.segment)
            else:
                start = int(torch.randint(0, n - self.segment + 1, (1,))) if self.train else 0
                noisy, clean = noisy[..., start : start + self.segment], clean[..., start : start + self.segment]
        s = _sample(noisy, self.vocab, torch.from_numpy(np.ascontiguousarray(clean)))
        return s


# -- synthetic speech with espeak-ng --------------------------------------------------------------------
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above.",
    "There is, according to legend, a boiling pot of gold at one end.",
    "People look, but no one ever finds it.",
    "A large size in stockings is hard to sell.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = ["m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7"]


def espeak_available() -> bool:
    """Whether ``espeak-ng`` is on ``PATH``."""
    return shutil.which("espeak-ng") is not None


def espeak_voices(n: int) -> list[str]:
    """``n`` distinct voices ``<accent>+<variant>``, alternating accents and variants."""
    out = [f"{ACCENTS[i % len(ACCENTS)]}+{VARIANTS[i % len(VARIANTS)]}" for i in range(len(ACCENTS) * len(VARIANTS))]
    if n > len(out):
        raise ValueError(f"at most {len(out)} espeak voices, asked for {n}")
    return out[:n]


def generate_espeak_corpus(root: str | Path, voices: Sequence[str], n_utterances: int = 8, sample_rate: int = 16000,
                           seed: int = 0) -> Path:
    """Write ``root/<voice>/<i>.wav`` (16 kHz mono): ``n_utterances`` sentences per voice, each
    with a random pitch (``-p`` 40..60) and speed (``-s`` 150..180 wpm) for within-speaker
    variability. Calls ``espeak-ng -v <voice> -p P -s S -w out.wav "<text>"``. Existing
    complete corpora (same arguments, recorded in ``root/corpus.json``) are reused.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian/Ubuntu: apt-get install -y espeak-ng)")
    import soundfile as sf

    root = Path(root)
    stamp = {"voices": list(voices), "n_utterances": n_utterances, "sample_rate": sample_rate, "seed": seed}
    marker = root / "corpus.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return root
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        for v in voices:
            out_dir = root / safe_id(v.replace("+", "_"), f"generate_espeak_corpus({root}): voice")
            out_dir.mkdir(parents=True, exist_ok=True)
            for i in range(n_utterances):
                text = SENTENCES[(i + int(rng.integers(len(SENTENCES)))) % len(SENTENCES)]
                pitch, speed = int(rng.integers(40, 61)), int(rng.integers(150, 181))
                subprocess.run([exe, "-v", v, "-p", str(pitch), "-s", str(speed), "-w", str(raw), text],
                               check=True, capture_output=True, timeout=60)
                x, sr = sf.read(str(raw), dtype="float32")
                x = resample(x, sr, sample_rate)
                sf.write(str(out_dir / f"{i:03d}.wav"), x, sample_rate, subtype="PCM_16")
    marker.write_text(json.dumps(stamp))
    return root


def make_noisy_clean_pairs(speech_files: Sequence[Path], out: str | Path, n: int, segment_seconds: float = 2.0,
                           snr_range: tuple[float, float] = (-5.0, 10.0), sample_rate: int = 16000,
                           babble_voices: Sequence[np.ndarray] = (), seed: int = 0) -> Path:
    """Write ``n`` mixtures ``out/noisy/<i>.wav`` + ``out/clean/<i>.wav``: random crops of
    ``speech_files`` mixed (:func:`mix_at_snr`, SNR uniform in ``snr_range``) with white, pink
    or brown noise, or babble of ``babble_voices`` when given. Peak-limited to 0.9 together."""
    import soundfile as sf

    out, rng, length = Path(out), np.random.default_rng(seed), int(round(segment_seconds * sample_rate))
    (out / "noisy").mkdir(parents=True, exist_ok=True)
    (out / "clean").mkdir(parents=True, exist_ok=True)
    kinds = ["white", "pink", "brown"] + (["babble"] if babble_voices else [])
    for i in range(n):
        clean = rms_normalize(random_crop(read_audio(speech_files[int(rng.integers(len(speech_files)))], sample_rate)[0][0],
                                          length, rng))
        kind = kinds[int(rng.integers(len(kinds)))]
        noise = (babble(babble_voices, length, 3, rng) if kind == "babble"
                 else coloured_noise(length, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng))
        noisy, _ = mix_at_snr(clean, noise, float(rng.uniform(*snr_range)))
        peak = max(float(np.abs(noisy).max()), float(np.abs(clean).max()))
        scale = 0.9 / peak if peak > 0.9 else 1.0
        sf.write(str(out / "noisy" / f"{i:04d}.wav"), noisy * scale, sample_rate, subtype="FLOAT")
        sf.write(str(out / "clean" / f"{i:04d}.wav"), clean * scale, sample_rate, subtype="FLOAT")
    return out


def _cache_key(**kw: Any) -> str:
    return hashlib.sha1(json.dumps(kw, sort_keys=True).encode()).hexdigest()[:10]


# -- datamodules ------------------------------------------------------------------------------------------
class SpeakerVerificationDataModule(ChannelDataModule):
    """Speaker-identification training + verification trials on held-out speakers.

    With ``train_dir`` (``<speaker>/<utterance>.wav``) and ``val_trials`` / ``test_trials``
    (``label enrol test`` lists, paths relative to ``trial_root`` or the list's folder) it reads
    real data. With ``source="espeak"`` (default) it synthesises a corpus with espeak-ng into
    ``cache_dir``: ``n_train_speakers`` voices for training and ``n_val_speakers`` +
    ``n_test_speakers`` other voices (never seen in training) for the val and test trial lists
    (every same-speaker pair and as many different-speaker pairs).

    ``source="librispeech"`` reads the real LibriSpeech subset under ``root``
    (``librispeech_train-clean-100/<speaker>-<chapter>-<n>.flac``, one or more utterances per
    speaker, and ``librispeech_test-other/<speaker>/*.flac``): the test trials are EVERY pair of
    the test-other utterances (10 speakers x 10 -> 4,950 trials, written to ``cache_dir``);
    ``n_val_speakers`` training speakers are held out of training for validation, each of their
    utterances cut into ``val_segments`` contiguous parts (written to ``cache_dir``) and every
    pair of parts is a trial (same utterance = target). Training reads the remaining speakers,
    ``crops_per_utterance`` random crops of each utterance per epoch.

    Batches hold waveforms ``[B, 1, crop]`` (``mic/0``); targets are speaker indices (train) or
    indices into ``val_trials.files`` / ``test_trials.files`` (val/test). ``eval_seconds=None``
    embeds whole utterances (val/test batches then carry typed ``lengths``).
    """

    def __init__(
        self,
        source: Literal["espeak", "folders", "librispeech"] = "espeak",
        root: str | None = None,
        train_dir: str | None = None,
        val_trials: str | None = None,
        test_trials: str | None = None,
        trial_root: str | None = None,
        cache_dir: str = "runs/data/espeak-speakers",
        n_train_speakers: int = 24,
        n_val_speakers: int = 4,
        n_test_speakers: int = 6,
        n_utterances: int = 8,
        sample_rate: int = 16000,
        crop_seconds: float = 2.0,
        eval_seconds: float | None = 3.0,
        augment: bool = True,
        crops_per_utterance: int = 1,
        val_segments: int = 3,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=mic_vocab(1), batch_size=batch_size, num_workers=num_workers, seed=seed, drop_last=True)
        self.save_hyperparameters()
        self.source, self.sample_rate, self.crop_seconds, self.eval_seconds = source, sample_rate, crop_seconds, eval_seconds
        self.augment_audio, self.repeats, self.layout = augment, crops_per_utterance, "folders"
        self.val_trials: VerificationTrials | None = None
        self.test_trials: VerificationTrials | None = None
        self._libri: tuple[Path, Path, list[str], int] | None = None
        if source == "librispeech":
            if root is None:
                raise ValueError("SpeakerVerificationDataModule(source='librispeech') needs root= "
                                 "(the LibriSpeech subset folder)")
            base = Path(root)
            train, test = base / "librispeech_train-clean-100", base / "librispeech_test-other"
            for d in (train, test):
                if not d.is_dir():
                    raise FileNotFoundError(f"LibriSpeech subset: {d} not found (expected {train.name}/ and {test.name}/ "
                                            f"under {base})")
            speakers = sorted(flat_speaker_files(train), key=lambda k: (len(k), k))
            if n_val_speakers >= len(speakers):
                raise ValueError(f"n_val_speakers={n_val_speakers} leaves no training speaker ({len(speakers)} in {train})")
            held = set(np.random.default_rng(seed).choice(len(speakers), n_val_speakers, replace=False).tolist())
            self.train_dir, self._plan, self.layout = str(train), None, "flat"
            self.speakers = [s for i, s in enumerate(speakers) if i not in held]
            key = _cache_key(root=str(base.resolve()), val=sorted(speakers[i] for i in held), k=val_segments, sr=sample_rate)
            self._libri = (base, Path(cache_dir) / f"librispeech-{key}", [speakers[i] for i in sorted(held)], val_segments)
        elif source == "espeak":
            voices = espeak_voices(n_train_speakers + n_val_speakers + n_test_speakers)
            key = _cache_key(voices=voices, n=n_utterances, sr=sample_rate, seed=seed)
            base = Path(cache_dir) / key
            self.train_dir = str(base / "train")
            self._plan = (base, voices[:n_train_speakers], voices[n_train_speakers:n_train_speakers + n_val_speakers],
                          voices[n_train_speakers + n_val_speakers:], n_utterances)
            self.speakers = [v.replace("+", "_") for v in voices[:n_train_speakers]]
        else:
            if train_dir is None:
                raise ValueError("SpeakerVerificationDataModule(source='folders') needs train_dir=")
            self.train_dir, self._plan = train_dir, None
            self.speakers = sorted(p.name for p in Path(train_dir).iterdir() if p.is_dir())
        self._trial_paths = (val_trials, test_trials, trial_root)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, sfreq=float(self.sample_rate), num_classes=len(self.speakers),
                        class_names=self.speakers)

    def _synthesise(self) -> tuple[str, str, str]:
        base, train_v, val_v, test_v, n_utt = self._plan  # type: ignore[misc]
        generate_espeak_corpus(base / "train", train_v, n_utt, self.sample_rate, self.seed)
        lists = []
        for name, voices, off in (("val", val_v, 1), ("test", test_v, 2)):
            generate_espeak_corpus(base / name, voices, n_utt, self.sample_rate, self.seed + off)
            lists.append(_all_trials(base / name, base / f"{name}_trials.txt", self.seed + off))
        return str(lists[0]), str(lists[1]), str(base)

    def _librispeech_trials(self) -> tuple[str | None, str, str | None, str]:
        """Write the validation segments and both trial lists; ``(val, test, val_root, test_root)``."""
        base, cache, held, k = self._libri  # type: ignore[misc]
        test_root = base / "librispeech_test-other"
        cache.mkdir(parents=True, exist_ok=True)
        test = all_pairs_trials(test_root, cache / "test_trials.txt")
        if not held:
            return None, str(test), None, str(test_root)
        import soundfile as sf

        val_root = cache / "val"
        if not (cache / "val_done").is_file():
            files = flat_speaker_files(base / "librispeech_train-clean-100")
            for spk in held:
                (val_root / spk).mkdir(parents=True, exist_ok=True)
                for f in files[spk]:
                    x = read_audio(f, self.sample_rate, channels=1)[0][0]
                    for j, part in enumerate(np.array_split(x, k)):
                        sf.write(str(val_root / spk / f"{f.stem}_{j}.wav"), part, self.sample_rate, subtype="FLOAT")
            (cache / "val_done").write_text("ok\n")
        val = all_pairs_trials(val_root, cache / "val_trials.txt")
        return str(val), str(test), str(val_root), str(test_root)

    def prepare_data(self) -> None:
        if self._plan is not None:
            self._synthesise()
        if self._libri is not None:
            self._librispeech_trials()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if self._plan is not None:
            val, test, _ = self._synthesise()
            val_root: str | None = str(Path(val).parent / "val")
            test_root: str | None = str(Path(test).parent / "test")
        elif self._libri is not None:
            val, test, val_root, test_root = self._librispeech_trials()  # type: ignore[assignment]
        else:
            val, test, root = self._trial_paths
            val_root = test_root = root
        self.train_dataset = SpeakerFolderDataset(self.train_dir, "all", 0.0, self.seed, self.sample_rate, self.crop_seconds,
                                                  self.speakers, augment=self.augment_audio, layout=self.layout,  # type: ignore[arg-type]
                                                  repeats=self.repeats)
        self.train_dataset.train = True
        if val:
            self.val_trials = VerificationTrials(val, val_root)
            self.val_dataset = UtteranceDataset(self.val_trials.files, self.val_trials.root, self.sample_rate, self.eval_seconds)
        if test:
            self.test_trials = VerificationTrials(test, test_root)
            self.test_dataset = UtteranceDataset(self.test_trials.files, self.test_trials.root, self.sample_rate,
                                                 self.eval_seconds)

    def _eval_loader(self, ds: Dataset[ChannelSample] | None, stage: str) -> DataLoader:
        if self.eval_seconds is not None:
            return self._loader(ds, stage)
        if ds is None:
            raise RuntimeError(f"no {stage} dataset: call setup() first")
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=functools.partial(ChannelBatch.collate, pad_time=True))

    def val_dataloader(self) -> DataLoader | list:  # type: ignore[override]
        return [] if self.val_dataset is None else self._eval_loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset, "test")


def _all_trials(root: Path, out: Path, seed: int) -> Path:
    """Every same-speaker pair and an equal number of random different-speaker pairs."""
    rng = np.random.default_rng(seed)
    files = {d.name: [f"{d.name}/{p.name}" for p in _audio_files(d)] for d in sorted(root.iterdir()) if d.is_dir()}
    spk = sorted(files)
    same = [(1, a, b) for s in spk for i, a in enumerate(files[s]) for b in files[s][i + 1:]]
    diff = []
    while len(diff) < len(same):
        s1, s2 = rng.choice(len(spk), 2, replace=False)
        diff.append((0, str(rng.choice(files[spk[s1]])), str(rng.choice(files[spk[s2]]))))
    return VerificationTrials.write(out, same + diff)


class EnhancementDataModule(ChannelDataModule):
    """Noisy/clean pairs for speech enhancement.

    ``source="folders"``: ``<split>_dir`` each holding ``noisy/`` and ``clean/`` (parallel
    names). ``source="espeak"`` (default): espeak-ng speech of ``n_train_speakers`` voices mixed
    with white/pink/brown noise and babble of other training voices at SNRs in ``snr_range``;
    validation and test use other voices and noise draws (held out). ``speech_dir`` replaces the
    espeak voices by real clean speech (every audio file under it, e.g. LibriSpeech
    ``librispeech_train-clean-100``; speaker = the name before the first ``-``): the first
    ``n_test_speakers`` speakers (sorted) give the validation/test mixtures, the others the
    training mixtures and the babble. Batches: noisy waveform ``values [B, 1, S]``, clean
    ``target [B, 1, S]``.
    """

    def __init__(
        self,
        source: Literal["espeak", "folders"] = "espeak",
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        cache_dir: str = "runs/data/espeak-enhance",
        speech_dir: str | None = None,
        n_train_speakers: int = 10,
        n_test_speakers: int = 4,
        n_utterances: int = 8,
        n_train: int = 256,
        n_val: int = 32,
        n_test: int = 32,
        snr_range: tuple[float, float] = (-5.0, 10.0),
        segment_seconds: float = 1.0,
        eval_seconds: float = 2.0,
        sample_rate: int = 16000,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(vocab=mic_vocab(1), batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.source, self.sample_rate = source, sample_rate
        self.segment_seconds, self.eval_seconds = segment_seconds, eval_seconds
        if source == "espeak":
            cfg = dict(n_train_speakers=n_train_speakers, n_test_speakers=n_test_speakers, n_utterances=n_utterances,
                       n_train=n_train, n_val=n_val, n_test=n_test, snr_range=list(snr_range), seg=segment_seconds,
                       ev=eval_seconds, sr=sample_rate, seed=seed)
            if speech_dir is not None:
                if not Path(speech_dir).is_dir():
                    raise FileNotFoundError(f"EnhancementDataModule(speech_dir={speech_dir!r}): folder not found")
                cfg["speech_dir"] = str(Path(speech_dir).resolve())
            self.base = Path(cache_dir) / _cache_key(**cfg)
            self._cfg: dict[str, Any] | None = cfg
            self.dirs = {s: str(self.base / s) for s in ("train", "val", "test")}
        else:
            if train_dir is None:
                raise ValueError("EnhancementDataModule(source='folders') needs train_dir=")
            self._cfg = None
            self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}  # type: ignore[dict-item]

    @property
    def spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, sfreq=float(self.sample_rate))

    def _synthesise(self) -> None:
        c = self._cfg
        assert c is not None
        if (self.base / "done").is_file():
            return
        if "speech_dir" in c:
            found = sorted(p for p in Path(c["speech_dir"]).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            by_spk: dict[str, list[Path]] = {}
            for f in found:
                by_spk.setdefault(f.stem.partition("-")[0], []).append(f)
            spk = sorted(by_spk)
            if len(spk) <= c["n_test_speakers"]:
                raise ValueError(f"speech_dir {c['speech_dir']}: {len(spk)} speakers, need more than "
                                 f"n_test_speakers={c['n_test_speakers']}")
            files = {"test": [f for k in spk[: c["n_test_speakers"]] for f in by_spk[k]],
                     "train": [f for k in spk[c["n_test_speakers"]:] for f in by_spk[k]]}
        else:
            voices = espeak_voices(c["n_train_speakers"] + c["n_test_speakers"])
            speech = generate_espeak_corpus(self.base / "speech", voices, c["n_utterances"], self.sample_rate, c["seed"])
            train_v = [v.replace("+", "_") for v in voices[: c["n_train_speakers"]]]
            files = {s: [f for v in vs for f in _audio_files(speech / v)]
                     for s, vs in (("train", train_v), ("test", [v.replace("+", "_") for v in voices[c["n_train_speakers"]:]]))}
        train_files = files["train"]
        # babble comes from training voices only (the utterances mixed as noise may also be targets)
        bab = [read_audio(f, self.sample_rate)[0][0] for f in train_files[:: max(1, len(train_files) // 16)]]
        make_noisy_clean_pairs(train_files, self.base / "train", c["n_train"], c["seg"], tuple(c["snr_range"]),
                               self.sample_rate, bab, c["seed"])
        test_files = files["test"]
        half = len(test_files) // 2
        make_noisy_clean_pairs(test_files[:half] if half else test_files, self.base / "val", c["n_val"], c["ev"],
                               tuple(c["snr_range"]), self.sample_rate, bab, c["seed"] + 1)
        make_noisy_clean_pairs(test_files[half:], self.base / "test", c["n_test"], c["ev"], tuple(c["snr_range"]),
                               self.sample_rate, bab, c["seed"] + 2)
        (self.base / "done").write_text("ok\n")

    def prepare_data(self) -> None:
        if self._cfg is not None:
            self._synthesise()

    def _dataset(self, split: str, train: bool) -> NoisyCleanDataset | None:
        d = self.dirs.get(split)
        if d is None:
            return None
        seg = self.segment_seconds if train else self.eval_seconds
        return NoisyCleanDataset(Path(d) / "noisy", Path(d) / "clean", self.sample_rate, seg, train=train)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if self._cfg is not None:
            self._synthesise()
        self.train_dataset = self._dataset("train", True)
        self.val_dataset = self._dataset("val", False)
        self.test_dataset = self._dataset("test", False)

    def val_dataloader(self) -> DataLoader | list:  # type: ignore[override]
        return [] if self.val_dataset is None else super().val_dataloader()

