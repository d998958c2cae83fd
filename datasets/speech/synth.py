"""Synthetic speech: Debian's ``espeak-ng`` voices as speakers, and noisy/clean mixtures.

:func:`generate_espeak_corpus` writes ``<voice>/<i>.wav`` corpora; :func:`make_noisy_clean_pairs`
mixes speech with coloured noise or babble at random SNRs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chanformer.datasets.speech.audio import read_audio, resample
from chanformer.datasets.speech.augment import babble, coloured_noise, mix_at_snr, random_crop, rms_normalize
from chanformer.io import safe_id

__all__ = ["espeak_available", "espeak_voices", "generate_espeak_corpus", "make_noisy_clean_pairs"]


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
