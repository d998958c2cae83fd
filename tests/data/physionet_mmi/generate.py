"""Write a miniature PhysioNet EEG Motor Movement/Imagery (EEGMMIDB) folder.

Same layout and file format as the published data (``<root>/S001/S001R04.edf``), EDF+C files
written byte by byte (no EDF library needed): the 64 EEG channels with PhysioNet's dot-padded
labels (``Fc5.``, ``C3..``), 160 Hz, 1 s data records, physical unit ``uV``, and an
``EDF Annotations`` signal carrying ``T0``/``T1``/``T2`` with durations 4.2/4.1 s like the
originals. Only the number of trials is smaller (a few per run instead of 30).

Run ``python tests/data/physionet_mmi/generate.py OUT`` to write 2 subjects x runs 1, 4, 5 into
``OUT``; the tests call :func:`generate` with ``tmp_path`` (nothing binary is committed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

#: The 64 labels, in the order of the EEGMMIDB files.
CHANNELS: tuple[str, ...] = tuple(
    "Fc5. Fc3. Fc1. Fcz. Fc2. Fc4. Fc6. C5.. C3.. C1.. Cz.. C2.. C4.. C6.. Cp5. Cp3. Cp1. Cpz. "
    "Cp2. Cp4. Cp6. Fp1. Fpz. Fp2. Af7. Af3. Afz. Af4. Af8. F7.. F5.. F3.. F1.. Fz.. F2.. F4.. "
    "F6.. F8.. Ft7. Ft8. T7.. T8.. T9.. T10. Tp7. Tp8. P7.. P5.. P3.. P1.. Pz.. P2.. P4.. P6.. "
    "P8.. Po7. Po3. Poz. Po4. Po8. O1.. Oz.. O2.. Iz..".split()
)
SFREQ = 160
PHYS_MIN, PHYS_MAX = -8092.0, 8092.0  # uV
DIG_MIN, DIG_MAX = -32768, 32767
ANN_SAMPLES = 60  # 2-byte samples of the annotation signal per record (120 bytes of TALs)
BASELINE_S = 10  # runs 1/2: one T0 over the whole run (60 s in the originals)

#: The cue sequence of the task runs (3-14) in the miniature, per subject: T0 between cues.
CUES: dict[int, tuple[str, ...]] = {
    1: ("T1", "T2", "T2", "T1"),
    2: ("T2", "T1", "T1"),
    3: ("T1", "T1", "T2", "T2"),  # subjects 3-4: for splits across subjects
    4: ("T2", "T1", "T2", "T1"),
}


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"EDF header field {text!r} longer than {width}")
    return text.ljust(width).encode("ascii")


def _num(x: float) -> str:
    text = f"{x:g}"
    return text if len(text) <= 8 else f"{x:.6g}"[:8]


def events_of(subject: int, run: int) -> list[tuple[float, float, str]]:
    """``(onset, duration, code)`` annotations of one miniature run."""
    if run in (1, 2):
        return [(0.0, float(BASELINE_S), "T0")]
    out: list[tuple[float, float, str]] = []
    t = 0.0
    for cue in CUES[subject]:
        out.append((round(t, 1), 4.2, "T0"))
        t += 4.2
        out.append((round(t, 1), 4.1, cue))
        t += 4.1
    out.append((round(t, 1), 4.2, "T0"))
    return out


def write_edf(path: Path, data_uv: np.ndarray, events: list[tuple[float, float, str]], *, subject: int) -> None:
    """Write ``data_uv`` ``[64, n_records * 160]`` (microvolts) and ``events`` as EDF+C."""
    n_ch, n = data_uv.shape
    if n % SFREQ:
        raise ValueError("the miniature writes whole 1 s records")
    n_records = n // SFREQ
    n_signals = n_ch + 1
    # one timekeeping TAL per record, each event TAL in the record of its onset
    tals = [[f"+{r}\x14\x14\x00".encode()] for r in range(n_records)]
    for onset, duration, code in events:
        tals[min(int(onset), n_records - 1)].append(f"+{onset:g}\x15{duration:g}\x14{code}\x14\x00".encode())
    ann_bytes = ANN_SAMPLES * 2
    blocks = []
    for parts in tals:
        block = b"".join(parts)
        if len(block) > ann_bytes:
            raise ValueError("too many annotations in one record for ANN_SAMPLES")
        blocks.append(block.ljust(ann_bytes, b"\x00"))

    header = b"".join([
        _field("0", 8),
        _field(f"X X X S{subject:03d}", 80),
        _field("Startdate 12-AUG-2009 X X BCI2000", 80),
        _field("12.08.09", 8),
        _field("16.15.00", 8),
        _field(256 * (n_signals + 1), 8),
        _field("EDF+C", 44),
        _field(n_records, 8),
        _field(1, 8),
        _field(n_signals, 4),
    ])  # fmt: skip
    labels = [*CHANNELS[:n_ch], "EDF Annotations"]
    sig = b"".join(_field(lab, 16) for lab in labels)
    sig += b"".join(_field("", 80) for _ in labels)
    sig += b"".join(_field("uV", 8) for _ in CHANNELS[:n_ch]) + _field("", 8)
    sig += b"".join(_field(_num(PHYS_MIN), 8) for _ in CHANNELS[:n_ch]) + _field(-1, 8)
    sig += b"".join(_field(_num(PHYS_MAX), 8) for _ in CHANNELS[:n_ch]) + _field(1, 8)
    sig += b"".join(_field(DIG_MIN, 8) for _ in labels)
    sig += b"".join(_field(DIG_MAX, 8) for _ in labels)
    sig += b"".join(_field("HP:0Hz LP:0Hz N:0Hz", 80) for _ in CHANNELS[:n_ch]) + _field("", 80)
    sig += b"".join(_field(SFREQ, 8) for _ in CHANNELS[:n_ch]) + _field(ANN_SAMPLES, 8)
    sig += b"".join(_field("", 32) for _ in labels)
    if len(header) + len(sig) != 256 * (n_signals + 1):
        raise AssertionError("EDF header size")

    scale = (DIG_MAX - DIG_MIN) / (PHYS_MAX - PHYS_MIN)
    digital = np.clip(np.round((data_uv - PHYS_MIN) * scale + DIG_MIN), DIG_MIN, DIG_MAX).astype("<i2")
    with open(path, "wb") as f:
        f.write(header + sig)
        for r in range(n_records):
            f.write(digital[:, r * SFREQ : (r + 1) * SFREQ].tobytes())
            f.write(blocks[r])


def generate(root: str | Path, subjects: tuple[int, ...] = (1, 2), runs: tuple[int, ...] = (1, 4, 5)) -> Path:
    """Write ``<root>/S###/S###R##.edf`` for ``subjects`` x ``runs``; returns ``root``."""
    root = Path(root)
    for s in subjects:
        (root / f"S{s:03d}").mkdir(parents=True, exist_ok=True)
        for r in runs:
            events = events_of(s, r)
            seconds = int(np.ceil(max(o + d for o, d, _ in events)))
            rng = np.random.default_rng(1000 * s + r)
            data = rng.normal(0.0, 20.0, size=(len(CHANNELS), seconds * SFREQ))  # microvolts
            write_edf(root / f"S{s:03d}" / f"S{s:03d}R{r:02d}.edf", data, events, subject=s)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
