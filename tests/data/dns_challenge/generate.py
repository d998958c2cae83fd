"""Write a miniature DNS Challenge (Interspeech 2020) checkout: test set, synthesised training
set and raw training material, with the published folder names and file naming.

::

    <out>/datasets/test_set/synthetic/no_reverb/clean/clean_fileid_<N>.wav
    <out>/datasets/test_set/synthetic/no_reverb/noisy/clnsp<k>_<noise>_<id>_snr<s>_tl-<l>_fileid_<N>.wav
    <out>/datasets/test_set/synthetic/with_reverb/{clean,noisy}/...   (same naming)
    <out>/training_set/clean/clean_fileid_<N>.wav                     (noisyspeech_synthesizer output)
    <out>/training_set/noise/noise_fileid_<N>.wav
    <out>/training_set/noisy/book_<b>_chp_<c>_reader_<r>_<k>_<noise>_snr<s>_fileid_<N>.wav
    <out>/datasets/clean/book_<b>_chp_<c>_reader_<r>_<k>.wav          (raw clean speech)
    <out>/datasets/noise/<noise>_<id>.wav                              (raw noise)

16 kHz 16-bit mono, 1 s per file (the originals: 10 s test clips, 30 s training clips). With
``training_set=False`` only the test set and the raw material are written. Noisy = clean +
noise at exactly the SNR in the name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
TEST_IDS = {"no_reverb": (3, 7, 12), "with_reverb": (1, 5)}
TRAIN_IDS = tuple(range(6))
SNRS = (0, 5, 10, 15, 20, 40)
NOISES = ("traffic", "AirConditioner", "Babble", "CopyMachine")


def speech(n: int) -> np.ndarray:
    t = np.arange(SR) / SR
    f0 = 110.0 + 7 * n
    x = sum((np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)), np.zeros_like(t))
    return (0.1 * x).astype(np.float32)


def _noise(rng: np.random.Generator, clean: np.ndarray, snr: float) -> np.ndarray:
    w = rng.standard_normal(clean.size).astype(np.float32)
    return w * np.sqrt(np.sum(clean**2) / np.sum(w**2) / 10 ** (snr / 10))


def _wav(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, subtype="PCM_16")


def generate(out: str | Path, training_set: bool = True) -> Path:
    out = Path(out)
    rng = np.random.default_rng(0)
    for reverb, ids in TEST_IDS.items():
        base = out / "datasets" / "test_set" / "synthetic" / reverb
        for j, fid in enumerate(ids):
            clean, snr = speech(fid), SNRS[j % 4]
            _wav(base / "clean" / f"clean_fileid_{fid}.wav", clean)
            noisy = clean + _noise(rng, clean, snr)
            _wav(base / "noisy" / f"clnsp{fid}_{NOISES[j % 4]}_{100 + fid}_snr{snr}_tl-{20 + j}_fileid_{fid}.wav", noisy)
    for k in TRAIN_IDS:
        clean_name = f"book_{k:05d}_chp_0009_reader_{6700 + k:05d}_{k}"
        clean = speech(20 + k)
        _wav(out / "datasets" / "clean" / f"{clean_name}.wav", clean)
        noise = _noise(rng, clean, 0.0)
        _wav(out / "datasets" / "noise" / f"{NOISES[k % 4]}_{k}.wav", noise)
        if training_set:
            snr = SNRS[k]
            n = _noise(rng, clean, snr)
            _wav(out / "training_set" / "clean" / f"clean_fileid_{k}.wav", clean)
            _wav(out / "training_set" / "noise" / f"noise_fileid_{k}.wav", n)
            _wav(out / "training_set" / "noisy" / f"{clean_name}_{NOISES[k % 4]}_snr{snr}_fileid_{k}.wav", clean + n)
    return out


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else "dns-challenge-miniature"))
