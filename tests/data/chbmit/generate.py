"""Write a miniature CHB-MIT Scalp EEG Database folder (PhysioNet ``chbmit/1.0.0``).

Same layout and formats as the published data (https://physionet.org/content/chbmit/1.0.0/)::

    <root>/RECORDS                      one "chbNN/chbNN_MM.edf" per line
    <root>/RECORDS-WITH-SEIZURES        the files with at least one seizure
    <root>/chb01/chb01-summary.txt      sampling rate, channel list, per-file seizure times
    <root>/chb01/chb01_01.edf           plain EDF (not EDF+), 256 Hz, bipolar montage labels
    <root>/chb01/chb01_03.edf.seizures  binary seizure annotation (content not modelled; readers
                                        use the summary)

The EDF files are written byte by byte: 1 s data records of 256 int16 samples per channel,
physical dimension ``uV``. ``chb01`` uses the 23-channel montage whose last channel repeats
``T8-P8``; ``chb12`` files hold the dash-only placeholder channels (``-``) between the chains
and, after a "Channels changed:" block in its summary, a montage with ``ECG``, ``VNS`` and
``LOC-ROC`` channels. The summaries use both spellings of the seizure lines
(``Seizure Start Time: X seconds`` and ``Seizure 1 Start Time: X seconds``). Recordings are
minutes instead of hours; during a seizure every EEG channel carries a 3 Hz, 150 uV rhythm so the
labelled windows are recognisable.

Run ``python tests/data/chbmit/generate.py OUT`` to write it; the tests call :func:`generate`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SFREQ = 256
PHYS_MIN, PHYS_MAX = -800.0, 800.0  # uV
DIG_MIN, DIG_MAX = -32768, 32767
NOISE_UV, SEIZURE_UV = 20.0, 150.0

#: The 23-channel montage of most files (the last channel repeats T8-P8).
MONTAGE_23: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4", "C4-P4",
    "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9", "FT9-FT10", "FT10-T8",
    "T8-P8",
)  # fmt: skip
#: A montage with dash-only placeholder channels between the chains.
MONTAGE_28: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "-", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "-", "FP2-F4", "F4-C4",
    "C4-P4", "P4-O2", "-", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "-", "FZ-CZ", "CZ-PZ", "-", "P7-T7", "T7-FT9",
    "FT9-FT10", "FT10-T8", "T8-P8",
)  # fmt: skip
#: The changed montage: no placeholders, non-EEG channels at the end.
MONTAGE_CHANGED: tuple[str, ...] = (*MONTAGE_23[:-1], "ECG", "VNS", "LOC-ROC")

#: subject -> [(file number, montage, duration s, seizures [(start, end) s], "numbered" seizure lines)]
RECORDINGS: dict[str, list[tuple[int, tuple[str, ...], int, list[tuple[int, int]], bool]]] = {
    "chb01": [
        (1, MONTAGE_23, 120, [], False),
        (3, MONTAGE_23, 180, [(60, 84)], False),
    ],
    "chb12": [
        (6, MONTAGE_28, 120, [(20, 44), (80, 96)], True),
        (8, MONTAGE_CHANGED, 120, [], True),
        (9, MONTAGE_CHANGED, 120, [(30, 50)], False),
    ],
}
CLOCK = {"chb01": (11, 42, 54), "chb12": (16, 7, 1)}


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"EDF header field {text!r} longer than {width}")
    return text.ljust(width).encode("ascii")


def write_edf(path: Path, data_uv: np.ndarray, labels: tuple[str, ...]) -> None:
    """Plain EDF (reserved field empty, as in CHB-MIT) of ``data_uv`` ``[C, n]`` in microvolts."""
    n_ch, n = data_uv.shape
    if n % SFREQ:
        raise ValueError("the miniature writes whole 1 s records")
    n_records = n // SFREQ
    header = b"".join([
        _field("0", 8), _field("", 80), _field("", 80), _field("01.01.76", 8), _field("11.42.54", 8),
        _field(256 * (n_ch + 1), 8), _field("", 44), _field(n_records, 8), _field(1, 8), _field(n_ch, 4),
    ])  # fmt: skip
    sig = b"".join(_field(lab, 16) for lab in labels)
    sig += b"".join(_field("", 80) for _ in labels)
    sig += b"".join(_field("uV", 8) for _ in labels)
    sig += b"".join(_field(f"{PHYS_MIN:g}", 8) for _ in labels)
    sig += b"".join(_field(f"{PHYS_MAX:g}", 8) for _ in labels)
    sig += b"".join(_field(DIG_MIN, 8) for _ in labels)
    sig += b"".join(_field(DIG_MAX, 8) for _ in labels)
    sig += b"".join(_field("", 80) for _ in labels)
    sig += b"".join(_field(SFREQ, 8) for _ in labels)
    sig += b"".join(_field("", 32) for _ in labels)
    if len(header) + len(sig) != 256 * (n_ch + 1):
        raise AssertionError("EDF header size")
    scale = (DIG_MAX - DIG_MIN) / (PHYS_MAX - PHYS_MIN)
    digital = np.clip(np.round((data_uv - PHYS_MIN) * scale + DIG_MIN), DIG_MIN, DIG_MAX).astype("<i2")
    records = digital.reshape(n_ch, n_records, SFREQ).transpose(1, 0, 2)
    path.write_bytes(header + sig + records.tobytes())


def _signal(labels: tuple[str, ...], duration: int, seizures: list[tuple[int, int]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = duration * SFREQ
    data = rng.normal(0.0, NOISE_UV, size=(len(labels), n))
    t = np.arange(n) / SFREQ
    for start, end in seizures:
        inside = (t >= start) & (t < end)
        data[:, inside] += SEIZURE_UV * np.sin(2 * np.pi * 3.0 * t[inside])
    for i, lab in enumerate(labels):
        if lab == "-":
            data[i] = 0.0  # placeholders hold no signal
        elif lab == "VNS":
            data[i] = rng.normal(0.0, 1.0, n)
    if labels.count("T8-P8") == 2:  # the repeated channel is a copy
        first, second = (i for i, lab in enumerate(labels) if lab == "T8-P8")
        data[second] = data[first]
    return data


def _clock(start: tuple[int, int, int], offset_s: int) -> str:
    h, m, s = start
    total = h * 3600 + m * 60 + s + offset_s
    return f"{total // 3600 % 24:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


def _channel_block(title: str, labels: tuple[str, ...]) -> list[str]:
    return [title, "*" * len(title), *(f"Channel {i + 1}: {lab}" for i, lab in enumerate(labels)), ""]


def write_summary(path: Path, subject: str) -> None:
    lines = ["Data Sampling Rate: 256 Hz", "*************************", ""]
    montage: tuple[str, ...] | None = None
    offset = 0
    for number, labels, duration, seizures, numbered in RECORDINGS[subject]:
        if labels != montage:
            lines += _channel_block("Channels in EDF Files:" if montage is None else "Channels changed:", labels)
            montage = labels
        lines += [
            f"File Name: {subject}_{number:02d}.edf",
            f"File Start Time: {_clock(CLOCK[subject], offset)}",
            f"File End Time: {_clock(CLOCK[subject], offset + duration)}",
            f"Number of Seizures in File: {len(seizures)}",
        ]
        for k, (start, end) in enumerate(seizures, 1):
            tag = f"Seizure {k}" if numbered else "Seizure"
            lines += [f"{tag} Start Time: {start} seconds", f"{tag} End Time: {end} seconds"]
        lines.append("")
        offset += duration + 10
    path.write_text("\n".join(lines) + "\n")


def generate(root: str | Path, subjects: tuple[str, ...] = tuple(RECORDINGS)) -> Path:
    """Write the miniature for ``subjects`` into ``root``; returns ``root``."""
    root = Path(root)
    records, with_seizures = [], []
    for subject in subjects:
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        write_summary(folder / f"{subject}-summary.txt", subject)
        for number, labels, duration, seizures, _ in RECORDINGS[subject]:
            name = f"{subject}_{number:02d}.edf"
            seed = int(subject[3:]) * 100 + number
            write_edf(folder / name, _signal(labels, duration, seizures, seed), labels)
            records.append(f"{subject}/{name}")
            if seizures:
                with_seizures.append(f"{subject}/{name}")
                (folder / f"{name}.seizures").write_bytes(b"\x00" * 16)
    (root / "RECORDS").write_text("\n".join(records) + "\n")
    (root / "RECORDS-WITH-SEIZURES").write_text("\n".join(with_seizures) + "\n")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
