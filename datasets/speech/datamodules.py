"""Speech datamodules: speaker verification and speech enhancement.

:class:`SpeakerVerificationDataModule` (speaker-identification training, verification trials on
held-out speakers) and :class:`EnhancementDataModule` (noisy/clean pairs); both read real folders
or synthesise a corpus with espeak-ng (:mod:`chanformer.datasets.speech.synth`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import DataLoader, Dataset

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.contract import InputContract
from chanformer.datasets.base import ChannelDataModule
from chanformer.datasets.speech.audio import AUDIO_SUFFIXES, _audio_files, mic_vocab, read_audio
from chanformer.datasets.speech.datasets import NoisyCleanDataset, SpeakerFolderDataset, UtteranceDataset, flat_speaker_files
from chanformer.datasets.speech.synth import espeak_voices, generate_espeak_corpus, make_noisy_clean_pairs
from chanformer.datasets.speech.trials import VerificationTrials, _all_trials, all_pairs_trials
from chanformer.spec import DataSpec

__all__ = ["EnhancementDataModule", "SpeakerVerificationDataModule"]


#: RMS level (dB full scale) every evaluation utterance is scaled to (:func:`~chanformer.datasets.speech.augment.rms_normalize`).
EVAL_LOUDNESS_DB = -25.0


def _speech_contract(sample_rate: int, eval_seconds: float | None, **kw: Any) -> InputContract:
    """Mono microphone ``mic/0`` at ``sample_rate``; with ``eval_seconds`` the centre window of that
    length (shorter inputs tiled), as the val/test datasets cut it."""
    eval_seconds = eval_seconds or None
    n = None if eval_seconds is None else int(round(eval_seconds * sample_rate))
    return InputContract(modality="audio", channels=["mic/0"], key_prefix="mic/", sfreq=float(sample_rate),
                         window_s=eval_seconds, n_times=n, crop="centre", pad="wrap", units="full scale",
                         **kw)  # fmt: skip


def _cache_key(**kw: Any) -> str:
    return hashlib.sha1(json.dumps(kw, sort_keys=True).encode()).hexdigest()[:10]


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

    def input_contract(self) -> InputContract:
        """What the exported encoder reads: mono audio resampled to ``sample_rate``, the centre
        ``eval_seconds`` of an utterance (tiled when shorter; the whole utterance when ``None``),
        scaled to -25 dBFS RMS, as the val/test utterances. The log-mel front end belongs to the
        task (:meth:`~chanformer.tasks.speaker.SpeakerVerificationTask.input_contract` adds it)."""
        return _speech_contract(self.sample_rate, self.eval_seconds, loudness_db=EVAL_LOUDNESS_DB,
                                extra={"source": self.source, "crop_seconds": self.crop_seconds})  # fmt: skip

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
        val: str | None
        test: str | None
        val_root: str | None
        test_root: str | None
        if self._plan is not None:
            val, test, _ = self._synthesise()
            val_root = str(Path(val).parent / "val")
            test_root = str(Path(test).parent / "test")
        elif self._libri is not None:
            val, test, val_root, test_root = self._librispeech_trials()
        else:
            val, test, root = self._trial_paths
            val_root = test_root = root
        train = SpeakerFolderDataset(self.train_dir, "all", 0.0, self.seed, self.sample_rate, self.crop_seconds,
                                     self.speakers, augment=self.augment_audio, layout=self.layout,  # type: ignore[arg-type]
                                     repeats=self.repeats)
        train.train = True
        self.train_dataset = train
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

    def input_contract(self) -> InputContract:
        """What the exported model reads: mono noisy audio at ``sample_rate``, as recorded (no
        loudness normalisation); evaluation reads the first ``eval_seconds`` (training
        ``segment_seconds`` crops). The STFT belongs to the model (the enhancement task records it)."""
        seconds = self.eval_seconds or None  # the corpora's None: whole files
        n = int(round(seconds * self.sample_rate)) if seconds is not None else None
        return InputContract(modality="audio", channels=["mic/0"], key_prefix="mic/", sfreq=float(self.sample_rate),
                             window_s=seconds, n_times=n, crop="start", pad="wrap", units="full scale",
                             extra={"source": self.source, "segment_seconds": self.segment_seconds})  # fmt: skip

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
