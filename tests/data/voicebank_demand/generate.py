"""Write a miniature VoiceBank-DEMAND folder (Edinburgh DataShare 10283/2791), as unpacked.

Same folder and file names, 48 kHz 16-bit mono WAV, the transcript folders and the log files
(``logfiles/log_trainset_28spk.txt``, ``logfiles/log_testset.txt``: ``<file id> <noise> <SNR>``)::

    <out>/clean_trainset_28spk_wav/p226_001.wav ...   speakers p226, p227, p287 (2 utterances each)
    <out>/noisy_trainset_28spk_wav/...                noise at 0/5/10/15 dB
    <out>/clean_testset_wav/p232_001.wav ...          speakers p232, p257 (2 utterances each)
    <out>/noisy_testset_wav/...                       noise at 2.5/7.5/12.5/17.5 dB
    <out>/trainset_28spk_txt/p226_001.txt, <out>/testset_txt/p232_001.txt

Only the numbers of speakers, utterances and seconds (0.5 s) are smaller. Clean speech is a
harmonic tone per speaker; noisy = clean + white noise at exactly the logged SNR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 48000
SECONDS = 0.5
TRAIN = {"p226": ("cafeteria", "car"), "p227": ("kitchen", "ssn"), "p287": ("metro", "babble")}
TEST = {"p232": ("bus", "living"), "p257": ("office", "psquare")}
TRAIN_SNRS, TEST_SNRS = (0.0, 5.0, 10.0, 15.0), (2.5, 7.5, 12.5, 17.5)


def clean_of(speaker: str, n: int) -> np.ndarray:
    t = np.arange(int(SR * SECONDS)) / SR
    f0 = 100.0 + int(speaker[1:]) % 100 + 10 * n
    x = sum((np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)), np.zeros_like(t))
    return (0.1 * x).astype(np.float32)


def entries(split: str) -> list[tuple[str, str, float]]:
    """``(file id, noise type, SNR)`` of the miniature, in file order."""
    spk, snrs = (TRAIN, TRAIN_SNRS) if split == "train" else (TEST, TEST_SNRS)
    out = []
    for i, (s, noises) in enumerate(spk.items()):
        for n, noise in enumerate(noises, 1):
            out.append((f"{s}_{n:03d}", noise, snrs[(i + n) % 4]))
    return out


def generate(out: str | Path) -> Path:
    out = Path(out)
    rng = np.random.default_rng(0)
    for split, tag, txt in (("train", "trainset_28spk", "trainset_28spk_txt"), ("test", "testset", "testset_txt")):
        log = []
        for fid, noise, snr in entries(split):
            clean = clean_of(fid[:4], int(fid[5:]))
            w = rng.standard_normal(clean.size).astype(np.float32)
            w *= np.sqrt(np.sum(clean**2) / np.sum(w**2) / 10 ** (snr / 10))
            for kind, x in (("clean", clean), ("noisy", clean + w)):
                (out / f"{kind}_{tag}_wav").mkdir(parents=True, exist_ok=True)
                sf.write(out / f"{kind}_{tag}_wav" / f"{fid}.wav", x, SR, subtype="PCM_16")
            (out / txt).mkdir(parents=True, exist_ok=True)
            (out / txt / f"{fid}.txt").write_text("Please call Stella.\n")
            log.append(f"{fid} {noise} {snr:g}\n")
        (out / "logfiles").mkdir(exist_ok=True)
        (out / "logfiles" / f"log_{tag}.txt").write_text("".join(log))
    return out


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else "voicebank-demand-miniature"))
