"""Speech datasets emitting :class:`~chanformer.batch.ChannelSample` of waveforms.

:class:`SpeakerFolderDataset` (``<speaker>/<utterance>.wav``, split by utterance, or LibriSpeech's
flat ``<speaker>-<rest>`` names, :func:`flat_speaker_files`), :class:`UtteranceDataset` (whole
utterances of a trial list) and :class:`NoisyCleanDataset` (parallel ``noisy/`` and ``clean/``
folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.datasets.speech.audio import AUDIO_SUFFIXES, AudioReadError, _audio_files, mic_vocab, read_audio
from chanformer.datasets.speech.augment import random_crop, rms_normalize, speed_perturb, volume_perturb
from chanformer.io import safe_id

__all__ = ["NoisyCleanDataset", "SpeakerFolderDataset", "UtteranceDataset", "flat_speaker_files"]


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
