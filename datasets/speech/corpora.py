"""Public speech corpora read from the folders their publishers distribute.

* **VoiceBank-DEMAND** (Valentini-Botinhao et al. 2016, Edinburgh DataShare 10283/2791, CC BY 4.0)::

      <root>/clean_trainset_28spk_wav/p226_001.wav ...   11572 files, 28 speakers, 48 kHz
      <root>/noisy_trainset_28spk_wav/p226_001.wav ...   the same names, noise at 0/5/10/15 dB
      <root>/clean_testset_wav/p232_001.wav ...          824 files, speakers p232 and p257
      <root>/noisy_testset_wav/p232_001.wav ...          noise at 2.5/7.5/12.5/17.5 dB
      <root>/logfiles/log_trainset_28spk.txt             optional: "p226_001 cafeteria 10" per line
      <root>/logfiles/log_testset.txt                    (also accepted directly in <root>)

  ``n_speakers=56`` reads ``*_trainset_56spk_wav`` instead. The usual validation split holds out
  speakers ``p226`` and ``p287`` of the training set (``val_speakers``).

* **DNS Challenge** (Reddy et al. 2020, microsoft/DNS-Challenge, CC BY 4.0): the synthetic test
  set ``<root>/datasets/test_set/synthetic/{no_reverb,with_reverb}/{clean,noisy}/`` (also
  ``<root>/test_set/...``), whose files pair by the ``fileid_<N>`` at the end of their names
  (``clean/clean_fileid_0.wav`` <-> ``noisy/<clean>_<noise>_snr<k>_..._fileid_0.wav``), and the
  training data either as the synthesiser's output ``<root>/training_set/{clean,noisy}/`` (same
  pairing) or as the raw ``<root>/datasets/clean/`` + ``<root>/datasets/noise/``, mixed on the
  fly at a random SNR in ``snr_range`` (the synthesiser's default 0..40 dB).

* **VoxCeleb1/2** (Nagrani et al. 2017, Chung et al. 2018, CC BY 4.0)::

      <root>/wav/id10001/1zcIwhmdeo4/00001.wav          VoxCeleb1: <speaker>/<video>/<n>.wav, 16 kHz
      <root>/veri_test2.txt                             "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav"
      <root>/iden_split.txt                             "3 id10003/na8-QEFmj44/00003.wav" (1 train, 2 val, 3 test)

  ``vox1_dev_wav/wav`` and ``vox1_test_wav/wav`` (the two archives unpacked side by side) are
  read as one ``wav/``. VoxCeleb2 ships ``aac/<id>/<video>/<n>.m4a``; AAC needs ffmpeg, which
  this package does not use, so VoxCeleb2 is read only after conversion to ``wav/`` (same tree,
  ``.wav`` files); an ``aac/`` folder alone raises :class:`SpeechCorpusMissingError` saying so.

Nothing is ever downloaded: a missing folder or file raises :class:`SpeechCorpusMissingError`
describing the expected layout and where to get the data. Audio is resampled to the model rate
(``sample_rate``) on reading.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from chanformer.batch import ChannelSample
from chanformer.channels import ChannelVocab
from chanformer.datasets.speech.audio import _audio_files, mic_vocab, read_audio
from chanformer.datasets.speech.augment import mix_at_snr, random_crop
from chanformer.datasets.speech.datamodules import EnhancementDataModule, SpeakerVerificationDataModule
from chanformer.datasets.speech.datasets import NoisyCleanDataset, SpeakerFolderDataset, UtteranceDataset
from chanformer.datasets.speech.trials import VerificationTrials

__all__ = [
    "DNS_URL",
    "VOICEBANK_URL",
    "VOXCELEB_URL",
    "DNSChallengeDataModule",
    "DNSMixingDataset",
    "PairListDataset",
    "SpeechCorpusMissingError",
    "VoiceBankDEMANDDataModule",
    "VoxCelebDataModule",
    "VoxCelebDataset",
    "dns_pairs",
    "read_iden_split",
    "read_voicebank_log",
    "voicebank_demand_pairs",
    "voxceleb_files",
]

VOICEBANK_URL = "https://datashare.ed.ac.uk/handle/10283/2791"
DNS_URL = "https://github.com/microsoft/DNS-Challenge (branch interspeech2020/master, datasets/)"
VOXCELEB_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/"


class SpeechCorpusMissingError(FileNotFoundError):
    """A corpus folder, list or file is missing (or unreadable here); the message shows the layout."""


# -- paired enhancement data ----------------------------------------------------------------------------------
class PairListDataset(NoisyCleanDataset):
    """:class:`NoisyCleanDataset` over an explicit list of ``(noisy, clean)`` files (names may differ).

    Items: ``values`` noisy ``[1, S]``, ``target`` clean ``[1, S]``, resampled to ``sample_rate`` and
    cut to ``segment_seconds`` (random window when ``train``, else the start; ``None`` = whole file).
    ``ids`` names each pair (file id).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], ids: Sequence[str] | None = None, sample_rate: int = 16000,
                 segment_seconds: float | None = 2.0, train: bool = False, channels: int | None = 1,
                 vocab: ChannelVocab | None = None) -> None:  # fmt: skip
        if not pairs:
            raise ValueError("PairListDataset: no (noisy, clean) pairs")
        self.pairs = [(Path(n), Path(c)) for n, c in pairs]
        self.ids = list(ids) if ids is not None else [n.stem for n, _ in self.pairs]
        self.names = [n.name for n, _ in self.pairs]
        self.noisy_dir, self.clean_dir = self.pairs[0][0].parent, self.pairs[0][1].parent
        self.sample_rate, self.train, self.channels = sample_rate, train, channels
        self.segment = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.vocab = vocab or mic_vocab(channels or 1)

    def load_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        noisy_path, clean_path = self.pairs[i]
        noisy, _ = read_audio(noisy_path, self.sample_rate, channels=self.channels)
        clean, _ = read_audio(clean_path, self.sample_rate, channels=self.channels)
        if noisy.shape != clean.shape:
            from chanformer.datasets.speech.audio import AudioReadError

            raise AudioReadError(f"{noisy_path} has shape {noisy.shape} but {clean_path} has {clean.shape}")
        return noisy, clean


# -- VoiceBank-DEMAND -----------------------------------------------------------------------------------------
_VB_LAYOUT = (
    "expected the VoiceBank-DEMAND layout <root>/clean_trainset_28spk_wav/, <root>/noisy_trainset_28spk_wav/, "
    "<root>/clean_testset_wav/, <root>/noisy_testset_wav/ (p226_001.wav ...; optional logfiles/log_testset.txt); "
    f"download the zips from {VOICEBANK_URL} and unpack them into <root>; chanformer never downloads them"
)


def read_voicebank_log(path: str | Path) -> dict[str, tuple[str, float]]:
    """A VoiceBank-DEMAND log file (``<file id> <noise type> <SNR dB>`` per line) as
    ``{file_id: (noise, snr)}``. A malformed line raises naming the file and line."""
    path = Path(path)
    out: dict[str, tuple[str, float]] = {}
    for no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            out[parts[0]] = (parts[1], float(parts[2]))
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{no}: expected '<file id> <noise type> <SNR>', got {line!r}") from None
    return out


def voicebank_demand_pairs(root: str | Path, split: Literal["train", "test"] = "train",
                           n_speakers: Literal[28, 56] = 28) -> list[tuple[str, Path, Path]]:  # fmt: skip
    """``(file_id, noisy, clean)`` of one official split, sorted by file id."""
    root = Path(root)
    if not root.is_dir():
        raise SpeechCorpusMissingError(f"VoiceBank-DEMAND root folder not found: {root}; {_VB_LAYOUT}")
    tag = f"trainset_{n_speakers}spk" if split == "train" else "testset"
    noisy_dir, clean_dir = root / f"noisy_{tag}_wav", root / f"clean_{tag}_wav"
    for d in (noisy_dir, clean_dir):
        if not d.is_dir():
            raise SpeechCorpusMissingError(f"VoiceBank-DEMAND: {d} not found; {_VB_LAYOUT}")
    noisy = {p.stem: p for p in _audio_files(noisy_dir)}
    clean = {p.stem: p for p in _audio_files(clean_dir)}
    for fid in sorted(set(noisy) ^ set(clean)):
        have, lack = (noisy_dir, clean_dir) if fid in noisy else (clean_dir, noisy_dir)
        raise SpeechCorpusMissingError(f"VoiceBank-DEMAND: {have / fid}.wav has no counterpart in {lack} (partial unzip?)")
    if not noisy:
        raise SpeechCorpusMissingError(f"VoiceBank-DEMAND: no .wav files in {noisy_dir}; {_VB_LAYOUT}")
    return [(fid, noisy[fid], clean[fid]) for fid in sorted(noisy)]


def _voicebank_log(root: Path, split: str, n_speakers: int) -> dict[str, tuple[str, float]]:
    name = f"log_trainset_{n_speakers}spk.txt" if split == "train" else "log_testset.txt"
    for cand in (root / "logfiles" / name, root / name):
        if cand.is_file():
            return read_voicebank_log(cand)
    return {}


class VoiceBankDEMANDDataModule(EnhancementDataModule):
    """VoiceBank-DEMAND noisy/clean pairs: train (minus ``val_speakers``), val (those speakers), test.

    Args:
        root: the folder holding ``clean_trainset_28spk_wav/`` ... (see the module docstring).
        n_speakers: 28 (the usual training set) or 56.
        val_speakers: training speakers held out for validation (``p226``, ``p287`` as in
            MetricGAN/CMGAN); ``[]`` for none.
        sample_rate: model rate; the 48 kHz files are resampled on reading.
        segment_seconds / eval_seconds: training crop and evaluation length (``None``: whole file).

    ``file_ids``, ``noise_types`` and ``snrs`` per split (from the log files when present, else
    ``None``) are in :attr:`info`.
    """

    def __init__(self, root: str = "data/VoiceBank-DEMAND", n_speakers: Literal[28, 56] = 28,
                 val_speakers: list[str] | None = None, sample_rate: int = 16000, segment_seconds: float = 2.0,
                 eval_seconds: float | None = 4.0, batch_size: int = 8, num_workers: int = 0, seed: int = 0) -> None:  # fmt: skip
        val_speakers = ["p226", "p287"] if val_speakers is None else list(val_speakers)
        super().__init__(source="folders", train_dir=root, sample_rate=sample_rate, segment_seconds=segment_seconds,
                         eval_seconds=eval_seconds or 0.0, batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip
        self.save_hyperparameters()
        self.root, self.n_speakers, self.val_speakers = Path(root), n_speakers, val_speakers
        self.eval_seconds = eval_seconds  # type: ignore[assignment]
        train = voicebank_demand_pairs(self.root, "train", n_speakers)
        test = voicebank_demand_pairs(self.root, "test")
        logs = {"train": _voicebank_log(self.root, "train", n_speakers), "test": _voicebank_log(self.root, "test", 28)}
        held = set(val_speakers)
        self.splits = {
            "train": [t for t in train if t[0].split("_")[0] not in held],
            "val": [t for t in train if t[0].split("_")[0] in held],
            "test": test,
        }
        self.info: dict[str, dict[str, list]] = {}
        for s, items in self.splits.items():
            log = logs["test" if s == "test" else "train"]
            self.info[s] = {"file_ids": [fid for fid, _, _ in items],
                            "noise_types": [log.get(fid, (None, None))[0] for fid, _, _ in items],
                            "snrs": [log.get(fid, (None, None))[1] for fid, _, _ in items]}  # fmt: skip

    def _dataset(self, split: str, train: bool) -> PairListDataset | None:  # type: ignore[override]
        items = self.splits[split]
        if not items:
            return None
        seg = self.segment_seconds if train else self.eval_seconds
        return PairListDataset([(n, c) for _, n, c in items], [fid for fid, _, _ in items], self.sample_rate, seg, train)


# -- DNS Challenge ----------------------------------------------------------------------------------------------
_FILEID = re.compile(r"fileid_(\d+)$")
_DNS_LAYOUT = (
    "expected the DNS Challenge layout <root>/datasets/test_set/synthetic/{no_reverb,with_reverb}/{clean,noisy}/ "
    "(files ending in fileid_<N>.wav) and <root>/training_set/{clean,noisy}/ (the synthesiser's output) or "
    f"<root>/datasets/{{clean,noise}}/; clone {DNS_URL} (git lfs) and point root at it; chanformer never downloads it"
)


def dns_pairs(folder: str | Path) -> list[tuple[int, Path, Path]]:
    """``(fileid, noisy, clean)`` for ``folder/noisy`` and ``folder/clean``, paired by the
    ``fileid_<N>`` that ends each file name; sorted by file id."""
    folder = Path(folder)
    maps: dict[str, dict[int, Path]] = {}
    for kind in ("noisy", "clean"):
        d = folder / kind
        if not d.is_dir():
            raise SpeechCorpusMissingError(f"DNS Challenge: {d} not found; {_DNS_LAYOUT}")
        m: dict[int, Path] = {}
        for p in _audio_files(d):
            hit = _FILEID.search(p.stem)
            if hit is None:
                raise ValueError(f"DNS Challenge: {p} does not end in fileid_<N> (how noisy and clean files pair)")
            m[int(hit.group(1))] = p
        maps[kind] = m
    noisy, clean = maps["noisy"], maps["clean"]
    for fid in sorted(set(noisy) ^ set(clean)):
        have = noisy.get(fid) or clean.get(fid)
        raise SpeechCorpusMissingError(f"DNS Challenge: {have} (fileid {fid}) has no counterpart in {folder}")
    if not noisy:
        raise SpeechCorpusMissingError(f"DNS Challenge: no audio files in {folder / 'noisy'}; {_DNS_LAYOUT}")
    return [(fid, noisy[fid], clean[fid]) for fid in sorted(noisy)]


class DNSMixingDataset(Dataset[ChannelSample]):
    """Clean speech of ``clean_dir`` mixed with a random file of ``noise_dir`` at a random SNR in
    ``snr_range`` (dB), each ``segment_seconds`` long; ``values`` noisy ``[1, S]``, ``target`` clean.
    The draw depends only on ``(seed, index)`` unless ``train`` (then on torch's RNG)."""

    def __init__(self, clean_dir: str | Path, noise_dir: str | Path, sample_rate: int = 16000,
                 segment_seconds: float = 2.0, snr_range: tuple[float, float] = (0.0, 40.0), train: bool = True,
                 seed: int = 0) -> None:  # fmt: skip
        self.clean = _audio_files(Path(clean_dir)) if Path(clean_dir).is_dir() else []
        self.noise = _audio_files(Path(noise_dir)) if Path(noise_dir).is_dir() else []
        if not self.clean or not self.noise:
            raise SpeechCorpusMissingError(f"DNS Challenge: no audio in {clean_dir} or {noise_dir}; {_DNS_LAYOUT}")
        self.sample_rate, self.length = sample_rate, int(round(segment_seconds * sample_rate))
        self.snr_range, self.train, self.seed = snr_range, train, seed
        self.vocab = mic_vocab(1)

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, i: int) -> ChannelSample:
        seed = int(torch.randint(0, 2**31, (1,))) if self.train else self.seed * 1_000_003 + i
        rng = np.random.default_rng(seed)
        clean = random_crop(read_audio(self.clean[i], self.sample_rate, channels=1)[0], self.length, rng)
        noise_path = self.noise[int(rng.integers(len(self.noise)))]
        noise = random_crop(read_audio(noise_path, self.sample_rate, channels=1)[0], self.length, rng)
        noisy, _ = mix_at_snr(clean, noise, float(rng.uniform(*self.snr_range)))
        peak = float(np.abs(noisy).max())
        if peak > 0.99:  # keep the mixture in full scale, clean scaled alike
            noisy, clean = noisy * (0.99 / peak), clean * (0.99 / peak)
        return ChannelSample(values=torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32)),
                             channel_ids=torch.zeros(1, dtype=torch.long),
                             target=torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)))  # fmt: skip


def _first_dir(cands: Iterable[Path]) -> Path | None:
    return next((c for c in cands if c.is_dir()), None)


class DNSChallengeDataModule(EnhancementDataModule):
    """DNS Challenge: training pairs (or on-the-fly mixing), a held-out validation share, and the
    synthetic test set (``reverb``: ``"no_reverb"`` or ``"with_reverb"``) as test.

    Args:
        root: the DNS-Challenge checkout (see the module docstring).
        val_fraction: share of the training pairs (or clean files) held out for validation, by file id.
        snr_range: SNRs (dB) of the on-the-fly mixtures (raw ``datasets/clean`` + ``datasets/noise``).
        sample_rate / segment_seconds / eval_seconds: as for :class:`EnhancementDataModule`.

    The file ids per split are in :attr:`file_ids`.
    """

    def __init__(self, root: str = "data/DNS-Challenge", reverb: Literal["no_reverb", "with_reverb"] = "no_reverb",
                 val_fraction: float = 0.05, snr_range: tuple[float, float] = (0.0, 40.0), sample_rate: int = 16000,
                 segment_seconds: float = 2.0, eval_seconds: float | None = 10.0, batch_size: int = 8,
                 num_workers: int = 0, seed: int = 0) -> None:  # fmt: skip
        super().__init__(source="folders", train_dir=root, sample_rate=sample_rate, segment_seconds=segment_seconds,
                         eval_seconds=eval_seconds or 0.0, batch_size=batch_size, num_workers=num_workers, seed=seed)  # fmt: skip
        self.save_hyperparameters()
        self.root, self.reverb, self.snr_range = Path(root), reverb, snr_range
        self.eval_seconds = eval_seconds  # type: ignore[assignment]
        if not self.root.is_dir():
            raise SpeechCorpusMissingError(f"DNS Challenge root folder not found: {self.root}; {_DNS_LAYOUT}")
        test_dir = _first_dir(self.root / p / "synthetic" / reverb for p in ("datasets/test_set", "test_set"))
        if test_dir is None:
            raise SpeechCorpusMissingError(f"DNS Challenge: no test_set/synthetic/{reverb}/ under {self.root}; {_DNS_LAYOUT}")
        self.test_pairs = dns_pairs(test_dir)
        train_dir = _first_dir(self.root / p for p in ("training_set", "datasets/training_set"))
        rng = np.random.default_rng(seed)
        if train_dir is not None and (train_dir / "noisy").is_dir():
            pairs = dns_pairs(train_dir)
            order = rng.permutation(len(pairs))
            n_val = int(round(val_fraction * len(pairs)))
            val_idx = set(order[:n_val].tolist())
            self.train_pairs = [p for i, p in enumerate(pairs) if i not in val_idx]
            self.val_pairs = [p for i, p in enumerate(pairs) if i in val_idx]
            self.mixing: tuple[Path, Path] | None = None
        else:
            clean, noise = self.root / "datasets" / "clean", self.root / "datasets" / "noise"
            if not (clean.is_dir() and noise.is_dir()):
                raise SpeechCorpusMissingError(f"DNS Challenge: neither training_set/{{clean,noisy}}/ nor "
                                               f"datasets/{{clean,noise}}/ under {self.root}; {_DNS_LAYOUT}")  # fmt: skip
            self.mixing, self.train_pairs, self.val_pairs = (clean, noise), [], []
        self.file_ids = {"train": [f for f, _, _ in self.train_pairs], "val": [f for f, _, _ in self.val_pairs],
                         "test": [f for f, _, _ in self.test_pairs]}  # fmt: skip

    def _dataset(self, split: str, train: bool) -> Dataset[ChannelSample] | None:  # type: ignore[override]
        seg = self.segment_seconds if train else self.eval_seconds
        if split == "train" and self.mixing is not None:
            return DNSMixingDataset(*self.mixing, self.sample_rate, self.segment_seconds, self.snr_range, True, self.seed)
        items = {"train": self.train_pairs, "val": self.val_pairs, "test": self.test_pairs}[split]
        if not items:
            return None
        return PairListDataset([(n, c) for _, n, c in items], [f"fileid_{f}" for f, _, _ in items], self.sample_rate,
                               seg, train)  # fmt: skip


# -- VoxCeleb -------------------------------------------------------------------------------------------------------
_VOX_LAYOUT = (
    "expected the VoxCeleb layout <root>/wav/<speaker id>/<video id>/<00001>.wav (VoxCeleb1: id10001 ...; VoxCeleb2 "
    "converted from aac/*.m4a to wav/*.wav) with <root>/veri_test2.txt and <root>/iden_split.txt beside it "
    f"(or vox1_dev_wav/wav + vox1_test_wav/wav); get it from {VOXCELEB_URL}; chanformer never downloads it"
)


def _wav_roots(root: Path) -> list[Path]:
    roots = [d for d in (root / "wav", root / "vox1_dev_wav" / "wav", root / "vox1_test_wav" / "wav",
                         root / "dev" / "wav", root / "test" / "wav") if d.is_dir()]  # fmt: skip
    if not roots:
        if not root.is_dir():
            raise SpeechCorpusMissingError(f"VoxCeleb root folder not found: {root}; {_VOX_LAYOUT}")
        if any((root / d).is_dir() for d in ("aac", "dev/aac", "test/aac")):
            raise SpeechCorpusMissingError(
                f"VoxCeleb: {root} holds VoxCeleb2's aac/ (.m4a) only; AAC is not read here (it needs ffmpeg): convert "
                "each file to 16 kHz mono WAV into wav/<id>/<video>/<n>.wav first, e.g. `ffmpeg -i x.m4a -ac 1 -ar "
                f"16000 x.wav`; {_VOX_LAYOUT}"
            )
        raise SpeechCorpusMissingError(f"VoxCeleb: no wav/ folder under {root}; {_VOX_LAYOUT}")
    return roots


def voxceleb_files(root: str | Path) -> dict[str, list[str]]:
    """Speaker id -> utterances ``<id>/<video>/<n>.wav`` (relative to their ``wav/``), sorted."""
    out: dict[str, list[str]] = {}
    for base in _wav_roots(Path(root)):
        for spk in sorted(p for p in base.iterdir() if p.is_dir()):
            for video in sorted(p for p in spk.iterdir() if p.is_dir()):
                out.setdefault(spk.name, []).extend(f"{spk.name}/{video.name}/{f.name}" for f in _audio_files(video))
    return {k: sorted(v) for k, v in sorted(out.items()) if v}


def _resolve(root: Path, rel: str) -> Path:
    for base in _wav_roots(root):
        if (base / rel).is_file():
            return base / rel
    raise SpeechCorpusMissingError(f"VoxCeleb: {rel} is listed but not found under {', '.join(map(str, _wav_roots(root)))}")


def read_iden_split(path: str | Path) -> dict[str, list[str]]:
    """VoxCeleb1's ``iden_split.txt`` (``<1|2|3> <id>/<video>/<n>.wav``) as ``{"train", "val", "test"} -> files``."""
    path = Path(path)
    if not path.is_file():
        raise SpeechCorpusMissingError(f"VoxCeleb: identification split {path} not found; {_VOX_LAYOUT}")
    names = {"1": "train", "2": "val", "3": "test"}
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in names:
            raise ValueError(f"{path}:{no}: expected '<1|2|3> <id>/<video>/<n>.wav', got {line!r}")
        out[names[parts[0]]].append(parts[1])
    return out


class VoxCelebDataset(SpeakerFolderDataset):
    """VoxCeleb utterances with speaker-index targets (crops as :class:`SpeakerFolderDataset`).

    Args:
        root: the VoxCeleb folder (``wav/<id>/<video>/<n>.wav``).
        files: utterances to use (``<id>/<video>/<n>.wav``); default every one under ``wav/``.
        iden_split: ``"train"``/``"val"``/``"test"``: the files of that part of ``iden_split.txt``
            (identification over all 1251 VoxCeleb1 speakers); excludes ``files``.
        exclude_speakers: speakers left out (e.g. the 40 verification test speakers).
        speakers: the class order (default: the speakers of the chosen files, sorted).
        sample_rate / crop_seconds / augment / repeats: as for :class:`SpeakerFolderDataset`.

    :attr:`videos` gives the video id of each item (sessions: one video = one recording session).
    """

    def __init__(self, root: str | Path, files: Sequence[str] | None = None,
                 iden_split: Literal["train", "val", "test"] | None = None, exclude_speakers: Iterable[str] = (),
                 speakers: Sequence[str] | None = None, sample_rate: int = 16000, crop_seconds: float = 2.0,
                 augment: bool = False, train: bool = False, repeats: int = 1) -> None:  # fmt: skip
        self.root = Path(root)
        if files is not None and iden_split is not None:
            raise ValueError("VoxCelebDataset: pass files= or iden_split=, not both")
        if iden_split is not None:
            files = read_iden_split(self.root / "iden_split.txt")[iden_split]
        if files is None:
            files = [f for fs in voxceleb_files(self.root).values() for f in fs]
        drop = set(exclude_speakers)
        files = [f for f in files if f.split("/")[0] not in drop]
        if not files:
            raise SpeechCorpusMissingError(f"VoxCeleb: no utterances selected under {self.root}; {_VOX_LAYOUT}")
        self.speakers = list(speakers) if speakers is not None else sorted({f.split("/")[0] for f in files})
        index = {s: k for k, s in enumerate(self.speakers)}
        self.items = [(_resolve(self.root, f), index[f.split("/")[0]]) for f in files]
        self.files, self.videos = list(files), [f.split("/")[1] for f in files]
        self.sample_rate, self.crop = sample_rate, int(round(crop_seconds * sample_rate))
        self.train, self.augment, self.channels, self.repeats = train, augment, 1, int(repeats)
        self.vocab = mic_vocab(1)


class VoxCelebDataModule(SpeakerVerificationDataModule):
    """VoxCeleb speaker verification: train on every speaker not in the trial list, test on the
    official trials (``veri_test2.txt``, the cleaned VoxCeleb1-O; ``list_test_all2.txt`` /
    ``list_test_hard2.txt`` for -E / -H), validate on trials among ``n_val_speakers`` held-out
    training speakers (every pair of up to ``val_utterances`` utterances each, written to ``cache_dir``).

    Args:
        root: the VoxCeleb1 folder (``wav/`` + the trial list); a converted VoxCeleb2 ``wav/``
            may be given as ``train_root``.
        trials: trial list file name under ``root``.
        train_root: where the training speakers come from (default ``root``).

    The other arguments are those of :class:`SpeakerVerificationDataModule`.
    """

    # mypy checks this file by its path and cannot follow the installed base's attribute
    train_dataset: Dataset[ChannelSample] | None

    def __init__(self, root: str = "data/VoxCeleb1", trials: str = "veri_test2.txt", train_root: str | None = None,
                 cache_dir: str = "runs/data/voxceleb", n_val_speakers: int = 2, val_utterances: int = 4,
                 sample_rate: int = 16000, crop_seconds: float = 2.0, eval_seconds: float | None = 3.0,
                 augment: bool = True, crops_per_utterance: int = 1, batch_size: int = 16, num_workers: int = 0,
                 seed: int = 0) -> None:  # fmt: skip
        base = Path(root)
        trial_path = base / trials
        if not trial_path.is_file():
            _wav_roots(base)  # a missing root / wav folder is named first
            raise SpeechCorpusMissingError(f"VoxCeleb: trial list {trial_path} not found; {_VOX_LAYOUT}")
        lines = [ln.split() for ln in trial_path.read_text().splitlines() if ln.strip()]
        test_speakers = {f.split("/")[0] for parts in lines for f in parts[1:3]}
        by_spk = voxceleb_files(train_root or base)
        candidates = [s for s in by_spk if s not in test_speakers]
        if n_val_speakers == 1:
            raise ValueError("n_val_speakers=1 gives validation trials without a different-speaker pair; use 0 or >= 2")
        if n_val_speakers >= len(candidates):
            raise ValueError(f"n_val_speakers={n_val_speakers} leaves no training speaker ({len(candidates)} found)")
        rng = np.random.default_rng(seed)
        held = sorted(candidates[i] for i in rng.choice(len(candidates), n_val_speakers, replace=False))
        self.train_speakers = [s for s in candidates if s not in held]
        super().__init__(source="folders", train_dir=str(train_root or base), sample_rate=sample_rate,
                         crop_seconds=crop_seconds, eval_seconds=eval_seconds, augment=augment,
                         crops_per_utterance=crops_per_utterance, batch_size=batch_size, num_workers=num_workers,
                         seed=seed, cache_dir=cache_dir)  # fmt: skip
        self.save_hyperparameters()
        self.speakers, self.root, self.trial_path = self.train_speakers, base, trial_path
        self.train_root = Path(train_root) if train_root else base
        self.held_speakers, self.val_utterances, self.by_spk = held, val_utterances, by_spk
        self.cache = Path(cache_dir)

    def _val_trials(self) -> Path | None:
        files = [(s, f) for s in self.held_speakers for f in self.by_spk[s][: self.val_utterances]]
        if len(files) < 2:
            return None
        trials = [(int(sa == sb), a, b) for i, (sa, a) in enumerate(files) for sb, b in files[i + 1 :]]
        self.cache.mkdir(parents=True, exist_ok=True)
        return VerificationTrials.write(self.cache / f"val_trials_{'_'.join(self.held_speakers)}.txt", trials)

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        files = [f for s in self.train_speakers for f in self.by_spk[s]]
        self.train_dataset = VoxCelebDataset(self.train_root, files=files, speakers=self.train_speakers,
                                             sample_rate=self.sample_rate, crop_seconds=self.crop_seconds,
                                             augment=self.augment_audio, train=True, repeats=self.repeats)  # fmt: skip
        wav = _wav_roots(self.root)
        val = self._val_trials()
        if val is not None:
            self.val_trials = VerificationTrials(val, _wav_roots(self.train_root)[0])
            self.val_dataset = UtteranceDataset(self.val_trials.files, self.val_trials.root, self.sample_rate,
                                                self.eval_seconds)  # fmt: skip
        self.test_trials = VerificationTrials(self.trial_path, wav[0] if len(wav) == 1 else _merged_root(wav, self.cache))
        self.test_dataset = UtteranceDataset(self.test_trials.files, self.test_trials.root, self.sample_rate,
                                             self.eval_seconds)  # fmt: skip


def _merged_root(wav_roots: list[Path], cache: Path) -> Path:
    """One folder of symlinks to the speaker folders of several ``wav/`` roots (dev + test archives)."""
    merged = cache / "wav-merged"
    merged.mkdir(parents=True, exist_ok=True)
    for base in wav_roots:
        for spk in base.iterdir():
            link = merged / spk.name
            if spk.is_dir() and not link.exists():
                link.symlink_to(spk.resolve(), target_is_directory=True)
    return merged
