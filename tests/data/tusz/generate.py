"""Write a miniature TUH EEG Seizure Corpus (TUSZ v2.0.x) folder.

Same layout and formats as the corpus (https://isip.piconepress.com/projects/nedc/html/tuh_eeg/)::

    <root>/edf/{train,dev,eval}/<subject>/<session>/<montage>/<subject>_<session>_<token>.edf
                                                                ... .csv     (per-channel events)
                                                                ... .csv_bi  (term-based bckg/seiz)

e.g. ``edf/train/aaaaaaac/s001_2002/02_tcp_le/aaaaaaac_s001_t000.edf``. The EDF files are written
byte by byte (plain EDF, 1 s records, ``uV``) with the corpus's channel labels: ``EEG FP1-REF`` ...
for the averaged-reference montages (``01_tcp_ar``, ``03_tcp_ar_a``; the ``_a`` variant lacks
A1/A2), ``EEG FP1-LE`` ... for linked ears (``02_tcp_le``), plus the non-EEG channels the corpus
carries (``EEG EKG1-REF``, ``EEG ROC-REF``, ``EEG T1-REF``, ``PHOTIC-REF``, ``IBI``, ``BURSTS``,
``SUPPR``). Sampling rates differ between files (250 and 256 Hz), as in the corpus. The
annotation files have the ``# version = csv_v1.0.0`` comment header then
``channel,start_time,stop_time,label,confidence`` rows: ``TERM`` rows labelled ``bckg``/``seiz``
in ``.csv_bi``, per-TCP-channel rows with seizure types (``cpsz``, ``gnsz`` ...) in ``.csv``.
Recordings are minutes long; during a seizure every EEG electrode carries a 3 Hz rhythm of 30-270 uV
(a different amplitude per electrode, so the bipolar TCP derivations keep it).

Run ``python tests/data/tusz/generate.py OUT``; the tests call :func:`generate`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PHYS_MIN, PHYS_MAX = -5000.0, 5000.0  # uV
DIG_MIN, DIG_MAX = -32768, 32767
NOISE_UV, SEIZURE_UV = 20.0, 150.0
ELECTRODES = ("FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6",
              "A1", "A2", "FZ", "CZ", "PZ")  # fmt: skip
EXTRA = ("EEG ROC-{ref}", "EEG LOC-{ref}", "EEG EKG1-{ref}", "EEG T1-{ref}", "EEG T2-{ref}", "PHOTIC-REF", "IBI",
         "BURSTS", "SUPPR")  # fmt: skip
#: The TCP montage the annotations refer to (22 channels; the ``_a`` montages lack the A1/A2 ones).
TCP: tuple[tuple[str, str], ...] = (
    ("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"), ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"),
    ("T6", "O2"), ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"), ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"),
    ("P4", "O2"),
)  # fmt: skip

#: (split, subject, session, montage, token, sfreq, duration s, [(start, stop, type)] seizures)
RECORDINGS: tuple[tuple[str, str, str, str, str, int, int, list[tuple[float, float, str]]], ...] = (
    ("train", "aaaaaaac", "s001_2002", "02_tcp_le", "t000", 250, 120, [(36.8868, 70.3055, "cpsz")]),
    ("train", "aaaaaaac", "s001_2002", "02_tcp_le", "t001", 250, 60, []),
    ("train", "aaaaaajy", "s003_2010", "01_tcp_ar", "t000", 256, 90, [(10.0, 30.5, "gnsz"), (60.0, 75.0, "gnsz")]),
    ("dev", "aaaaaaaq", "s002_2003", "01_tcp_ar", "t002", 256, 90, [(40.0, 62.0, "fnsz")]),
    ("dev", "aaaaaaaq", "s002_2003", "01_tcp_ar", "t003", 256, 60, []),
    ("eval", "aaaaaaaw", "s001_2011", "03_tcp_ar_a", "t000", 250, 90, [(20.25, 51.0, "absz")]),
    ("eval", "aaaaaaaw", "s001_2011", "03_tcp_ar_a", "t001", 250, 60, []),
)


def labels_of(montage: str) -> list[str]:
    ref = "LE" if "_le" in montage else "REF"
    elec = [e for e in ELECTRODES if not (montage.endswith("_a") and e in ("A1", "A2"))]
    return [f"EEG {e}-{ref}" for e in elec] + [x.format(ref=ref) for x in EXTRA]


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"EDF header field {text!r} longer than {width}")
    return text.ljust(width).encode("ascii")


def write_edf(path: Path, data_uv: np.ndarray, labels: list[str], sfreq: int, subject: str) -> None:
    """Plain EDF of ``data_uv`` ``[C, n]`` (microvolts), 1 s records of ``sfreq`` samples."""
    n_ch, n = data_uv.shape
    if n % sfreq:
        raise ValueError("the miniature writes whole 1 s records")
    n_records = n // sfreq
    header = b"".join([
        _field("0", 8), _field(f"{subject} M 01-JAN-1950 {subject} Age:52", 80),
        _field("Startdate 01-JAN-2002 00:00:00 TUH EEG miniature", 80), _field("01.01.02", 8),
        _field("10.11.12", 8), _field(256 * (n_ch + 1), 8), _field("", 44), _field(n_records, 8), _field(1, 8),
        _field(n_ch, 4),
    ])  # fmt: skip
    sig = b"".join(_field(lab, 16) for lab in labels)
    sig += b"".join(_field("", 80) for _ in labels)
    sig += b"".join(_field("uV", 8) for _ in labels)
    sig += b"".join(_field(f"{PHYS_MIN:g}", 8) for _ in labels)
    sig += b"".join(_field(f"{PHYS_MAX:g}", 8) for _ in labels)
    sig += b"".join(_field(DIG_MIN, 8) for _ in labels)
    sig += b"".join(_field(DIG_MAX, 8) for _ in labels)
    sig += b"".join(_field("HP:0.000 Hz LP:0.0 Hz N:0.0", 80) for _ in labels)
    sig += b"".join(_field(sfreq, 8) for _ in labels)
    sig += b"".join(_field("", 32) for _ in labels)
    if len(header) + len(sig) != 256 * (n_ch + 1):
        raise AssertionError("EDF header size")
    scale = (DIG_MAX - DIG_MIN) / (PHYS_MAX - PHYS_MIN)
    digital = np.clip(np.round((data_uv - PHYS_MIN) * scale + DIG_MIN), DIG_MIN, DIG_MAX).astype("<i2")
    records = digital.reshape(n_ch, n_records, sfreq).transpose(1, 0, 2)
    path.write_bytes(header + sig + records.tobytes())


def _csv_header(bname: str, duration: int) -> list[str]:
    return [
        "# version = csv_v1.0.0",
        f"# bname = {bname}",
        f"# duration = {duration:.2f} secs",
        "# montage_file = $NEDC_NFC/lib/nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]


def write_annotations(stem: Path, duration: int, seizures: list[tuple[float, float, str]], montage: str) -> None:
    """``<stem>.csv_bi`` (TERM rows, bckg/seiz covering the recording) and ``<stem>.csv``."""
    rows, t = [], 0.0
    for start, stop, _ in seizures:
        if start > t:
            rows.append(f"TERM,{t:.4f},{start:.4f},bckg,1.0000")
        rows.append(f"TERM,{start:.4f},{stop:.4f},seiz,1.0000")
        t = stop
    if t < duration:
        rows.append(f"TERM,{t:.4f},{float(duration):.4f},bckg,1.0000")
    stem.with_suffix(".csv_bi").write_text("\n".join(_csv_header(stem.name, duration) + rows) + "\n")
    pairs = [p for p in TCP if not (montage.endswith("_a") and ("A1" in p or "A2" in p))]
    per_channel = []
    for a, b in pairs:
        t = 0.0
        for start, stop, kind in seizures:
            per_channel += [f"{a}-{b},{t:.4f},{start:.4f},bckg,1.0000", f"{a}-{b},{start:.4f},{stop:.4f},{kind},1.0000"]
            t = stop
        per_channel.append(f"{a}-{b},{t:.4f},{float(duration):.4f},bckg,1.0000")
    stem.with_suffix(".csv").write_text("\n".join(_csv_header(stem.name, duration) + per_channel) + "\n")


def generate(root: str | Path) -> Path:
    """Write the miniature corpus into ``root`` (``root/edf/...``); returns ``root``."""
    root = Path(root)
    for k, (split, subject, session, montage, token, sfreq, duration, seizures) in enumerate(RECORDINGS):
        folder = root / "edf" / split / subject / session / montage
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{subject}_{session.split('_')[0]}_{token}"
        labels = labels_of(montage)
        rng = np.random.default_rng(k)
        n = duration * sfreq
        data = rng.normal(0.0, NOISE_UV, size=(len(labels), n))
        t = np.arange(n) / sfreq
        eeg = [i for i, lab in enumerate(labels) if lab.split(" ")[-1].split("-")[0] in ELECTRODES]
        gains = np.linspace(0.2, 1.8, len(eeg))[rng.permutation(len(eeg))]  # so bipolar derivations keep it
        for start, stop, _ in seizures:
            inside = np.flatnonzero((t >= start) & (t < stop))
            data[np.ix_(eeg, inside)] += SEIZURE_UV * gains[:, None] * np.sin(2 * np.pi * 3.0 * t[inside])[None]
        write_edf(stem.with_suffix(".edf"), data, labels, sfreq, subject)
        write_annotations(stem, duration, seizures, montage)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
