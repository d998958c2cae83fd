"""Write a miniature VoxCeleb1 folder (dev and test archives unpacked into one ``wav/``).

::

    <out>/wav/id10001/1zcIwhmdeo4/00001.wav ...   <speaker id>/<YouTube video id>/<n>.wav, 16 kHz 16-bit mono
    <out>/veri_test2.txt                          "<1|0> <enrol> <test>" among the test speakers id10270, id10271
    <out>/iden_split.txt                          "<1|2|3> <id>/<video>/<n>.wav" (1 train, 2 val, 3 test)

Dev speakers id10001..id10004 (2 videos x 2 utterances), test speakers id10270, id10271 (2 videos
x 2); 0.4 s per utterance. Each speaker speaks at their own pitch (what makes verification work).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
DEV = ("id10001", "id10002", "id10003", "id10004")
TEST = ("id10270", "id10271")
VIDEOS = ("1zcIwhmdeo4", "7gWzIy6yIIk", "x6uYqmx31kE", "8jEAjG6SegY", "Y8hIVOBuels", "cpt-YEDvCrs")


def utterances(speaker: str) -> list[str]:
    k = (DEV + TEST).index(speaker)
    return [f"{speaker}/{VIDEOS[(k + v) % len(VIDEOS)]}/{n:05d}.wav" for v in range(2) for n in (1, 2)]


def trials() -> list[tuple[int, str, str]]:
    """The miniature veri_test2.txt: every pair among the test speakers' utterances."""
    files = [f for s in TEST for f in utterances(s)]
    return [(int(a[:7] == b[:7]), a, b) for i, a in enumerate(files) for b in files[i + 1 :]]


def iden_split() -> list[tuple[int, str]]:
    """Per speaker: first two utterances train (1), third val (2), fourth test (3)."""
    return [(j if j >= 2 else 1, f) for s in DEV + TEST for j, f in enumerate(utterances(s))]


def generate(out: str | Path) -> Path:
    out = Path(out)
    rng = np.random.default_rng(0)
    t = np.arange(int(0.4 * SR)) / SR
    for k, spk in enumerate(DEV + TEST):
        f0 = 90.0 + 35 * k
        for f in utterances(spk):
            x = 0.1 * sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6)) + 0.005 * rng.standard_normal(t.size)
            path = out / "wav" / f
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    (out / "veri_test2.txt").write_text("".join(f"{lab} {a} {b}\n" for lab, a, b in trials()))
    (out / "iden_split.txt").write_text("".join(f"{s} {f}\n" for s, f in iden_split()))
    return out


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else "voxceleb-miniature"))
