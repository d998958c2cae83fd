"""Write miniature BCI Competition IV data sets 2a and 2b (GDF files + true-label ``.mat`` files).

Same names and file format as the published data (https://www.bbci.de/competition/iv/):

* 2a: ``A01T.gdf``/``A01E.gdf`` ... (``T`` training session, ``E`` evaluation session), 22 EEG
  channels labelled ``EEG-Fz``, ``EEG-0`` ... ``EEG-16``, ``EEG-C3``, ``EEG-Cz``, ``EEG-C4``,
  ``EEG-Pz`` plus ``EOG-left``/``EOG-central``/``EOG-right``, 250 Hz; true labels ``A01T.mat`` /
  ``A01E.mat`` (``classlabel``, 1-4).
* 2b: ``B0101T.gdf`` ... ``B0105E.gdf`` (sessions 1-3 training, 4-5 evaluation), ``EEG:C3``,
  ``EEG:Cz``, ``EEG:C4`` plus ``EOG:ch01``-``EOG:ch03``, 250 Hz; true labels ``B0104E.mat`` ...
  (``classlabel``, 1-2).

The GDF files are GDF 2.10 written byte by byte (mne cannot write GDF): fixed header of 256 bytes,
a 256-byte variable header per channel (label, physical dimension code 4275 = uV, physical range
+-100 uV over the int16 digital range, the 0.5-100 Hz band-pass and 50 Hz notch of the
recordings, samples per record, data type 3 = int16), 1 s data records, and the event table after
the data (mode 3: ``POS`` 1-based sample, ``TYP`` code, ``CHN``, ``DUR`` in samples) with the
competition's codes: 276/277 idling eyes open/closed, 768 trial start, 769-772 cues
left/right/foot/tongue, 781 feedback (2b), 783 cue unknown (evaluation sessions), 1023 rejected
trial, 1072 / 1077-1081 eye movements, 32766 new run. Only the number of trials is smaller.

To make cue alignment and label order checkable, channel ``EEG-Fz`` (2a) / ``EEG:Cz`` (2b) carries
an offset of ``MARK_UV * (class + 1)`` microvolts during the first second after each cue.

Run ``python tests/data/bci_iv/generate.py OUT`` to write both miniatures into ``OUT/2a`` and
``OUT/2b``; the tests call :func:`generate_2a` / :func:`generate_2b` with ``tmp_path``.
"""

from __future__ import annotations

import struct
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

SFREQ = 250
#: The labels of the 2a files, in file order.
CHANNELS_2A: tuple[str, ...] = (
    "EEG-Fz", "EEG-0", "EEG-1", "EEG-2", "EEG-3", "EEG-4", "EEG-5", "EEG-C3", "EEG-6", "EEG-Cz", "EEG-7",
    "EEG-C4", "EEG-8", "EEG-9", "EEG-10", "EEG-11", "EEG-12", "EEG-13", "EEG-14", "EEG-Pz", "EEG-15", "EEG-16",
    "EOG-left", "EOG-central", "EOG-right",
)  # fmt: skip
CHANNELS_2B: tuple[str, ...] = ("EEG:C3", "EEG:Cz", "EEG:C4", "EOG:ch01", "EOG:ch02", "EOG:ch03")
PHYS_MIN, PHYS_MAX = -100.0, 100.0  # uV
DIG_MIN, DIG_MAX = -32768, 32767
MARK_UV = 10.0
NOISE_UV = 2.0

#: Cue sequences (class index 0..3) per (subject, session) of the miniature.
CUES_2A: dict[tuple[int, str], tuple[int, ...]] = {
    (1, "T"): (0, 1, 2, 3, 3, 2, 1, 0),
    (1, "E"): (2, 0, 3, 1, 1, 2),
    (2, "T"): (1, 0, 3, 2, 0, 1),
    (2, "E"): (3, 3, 0, 1, 2, 0),
}
#: The trial (0-based, per file) marked rejected (event 1023) in each file of the miniature.
REJECTED_2A: dict[tuple[int, str], int] = {(1, "T"): 2, (1, "E"): 4, (2, "T"): 0, (2, "E"): 1}
CUES_2B: dict[tuple[int, int], tuple[int, ...]] = {
    (1, 1): (0, 1, 1, 0),
    (1, 2): (1, 0, 0, 1),
    (1, 3): (0, 0, 1, 1),
    (1, 4): (1, 0, 1, 0),
    (1, 5): (0, 1, 0, 1),
    (2, 1): (1, 1, 0, 0),
    (2, 2): (0, 1, 0, 1),
    (2, 3): (1, 0, 0, 1),
    (2, 4): (0, 1, 1, 0),
    (2, 5): (1, 1, 0, 0),
}
REJECTED_2B: dict[tuple[int, int], int] = {(1, 1): 3, (1, 4): 0}

# trial timing (s from the trial start, event 768)
CUE_AT_2A, TRIAL_2A = 2.0, 7.5  # fixation at 0, cue at 2 s (1.25 s long), imagery until 6 s
CUE_AT_2B, TRIAL_2B = 3.0, 7.5  # cue at 3 s; feedback (781) from 3.5 s in sessions 3-5


# -- GDF 2.10 writer ------------------------------------------------------------------------------
def _gdf_time(t: datetime) -> int:
    """GDF time: days since 0000-01-01 as a 32.32 fixed-point number (what mne decodes)."""
    days = (t - datetime(1, 1, 1)).total_seconds() / 86400 + 367
    return int(round(days * 2**32))


def _text(value: str, width: int) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) > width:
        raise ValueError(f"GDF header field {value!r} longer than {width}")
    return raw.ljust(width, b"\x00")


def write_gdf(
    path: Path,
    data_uv: np.ndarray,
    labels: tuple[str, ...],
    events: list[tuple[int, int, int]],
    *,
    patient: str,
    recorded: datetime = datetime(2005, 6, 1, 12, 0, 0),
    sfreq: int = SFREQ,
) -> None:
    """Write ``data_uv`` ``[C, n]`` (microvolts, ``n`` a multiple of ``sfreq``) as GDF 2.10 with
    1 s int16 records and an event table of ``(pos, typ, dur)`` (0-based sample, code, samples)."""
    n_ch, n = data_uv.shape
    if n % sfreq:
        raise ValueError("the miniature writes whole 1 s records")
    if len(labels) != n_ch:
        raise ValueError("one label per channel")
    n_records = n // sfreq
    head = b"".join([
        b"GDF 2.10",
        _text(f"{patient} X", 66),             # patient id (mne: "<id> <name>")
        bytes(10),                             # reserved
        bytes([0, 0, 0, 0]),                   # smoking.., weight, height, sex/handedness
        _text("BCI Competition IV (miniature)", 64),
        bytes(4),                              # location: version/size/precision
        struct.pack("<IIi", 0, 0, 0),          # latitude, longitude, altitude
        struct.pack("<Q", _gdf_time(recorded)),
        struct.pack("<Q", 0),                  # birthday unknown
        struct.pack("<H", n_ch + 1),           # header length in 256-byte blocks
        bytes(6),                              # patient ICD
        bytes(8),                              # equipment provider
        bytes(6),                              # IP address
        struct.pack("<3H", 0, 0, 0),           # head size
        struct.pack("<3f", 0, 0, 0),           # reference electrode position
        struct.pack("<3f", 0, 0, 0),           # ground electrode position
        struct.pack("<q", n_records),
        struct.pack("<II", 1, 1),              # record duration 1/1 s
        struct.pack("<H", n_ch),
        bytes(2),
    ])  # fmt: skip
    if len(head) != 256:
        raise AssertionError(f"GDF fixed header is {len(head)} bytes")
    var = b"".join([
        b"".join(_text(lab, 16) for lab in labels),
        bytes(80 * n_ch),                                      # transducer
        b"".join(_text("uV", 6) for _ in labels),              # physical dimension (obsolete text)
        struct.pack(f"<{n_ch}H", *([4275] * n_ch)),            # physical dimension code: uV
        struct.pack(f"<{n_ch}d", *([PHYS_MIN] * n_ch)),
        struct.pack(f"<{n_ch}d", *([PHYS_MAX] * n_ch)),
        struct.pack(f"<{n_ch}d", *([float(DIG_MIN)] * n_ch)),
        struct.pack(f"<{n_ch}d", *([float(DIG_MAX)] * n_ch)),
        bytes(68 * n_ch),                                      # pre-filtering text (obsolete)
        struct.pack(f"<{n_ch}f", *([100.0] * n_ch)),           # low-pass
        struct.pack(f"<{n_ch}f", *([0.5] * n_ch)),             # high-pass
        struct.pack(f"<{n_ch}f", *([50.0] * n_ch)),            # notch
        struct.pack(f"<{n_ch}i", *([sfreq] * n_ch)),           # samples per record
        struct.pack(f"<{n_ch}i", *([3] * n_ch)),               # data type 3: int16
        struct.pack(f"<{3 * n_ch}f", *([0.0] * (3 * n_ch))),   # sensor positions
        bytes([255] * n_ch),                                   # impedance unknown
        bytes(19 * n_ch),
    ])  # fmt: skip
    if len(var) != 256 * n_ch:
        raise AssertionError(f"GDF variable header is {len(var)} bytes")
    scale = (DIG_MAX - DIG_MIN) / (PHYS_MAX - PHYS_MIN)
    digital = np.clip(np.round((data_uv - PHYS_MIN) * scale + DIG_MIN), DIG_MIN, DIG_MAX).astype("<i2")
    # each record holds channel 0's samples, then channel 1's, ...
    records = digital.reshape(n_ch, n_records, sfreq).transpose(1, 0, 2)
    pos = np.array([p + 1 for p, _, _ in events], dtype="<u4")  # 1-based
    typ = np.array([t for _, t, _ in events], dtype="<u2")
    dur = np.array([d for _, _, d in events], dtype="<u4")
    n_ev = len(events)
    table = bytes([3]) + n_ev.to_bytes(3, "little") + struct.pack("<f", float(sfreq))
    table += pos.tobytes() + typ.tobytes() + np.zeros(n_ev, "<u2").tobytes() + dur.tobytes()
    with open(path, "wb") as f:
        f.write(head + var + records.tobytes() + table)


def write_classlabel(path: Path, labels: list[int]) -> None:
    """The true-label file: MATLAB 5 ``.mat`` with ``classlabel`` (``[n_trials, 1]`` uint8, 1-based)."""
    from scipy.io import savemat

    savemat(path, {"classlabel": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)}, format="5")


# -- one recording ----------------------------------------------------------------------------------
def _recording(
    labels: tuple[str, ...], cues: tuple[int, ...], rejected: int | None, *, evaluation: bool, cue_at: float,
    trial_s: float, mark_channel: int, feedback: bool, eye_codes: tuple[int, ...], seed: int,
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    rng = np.random.default_rng(seed)
    sf = SFREQ
    events: list[tuple[int, int, int]] = []
    # eye-movement calibration run: idling eyes open / closed, then eye movements
    t = 0
    events += [(t, 32766, 0), (t, 276, 4 * sf)]
    t += 4 * sf
    events += [(t, 277, 4 * sf)]
    t += 4 * sf
    for code in eye_codes:
        events.append((t, code, 2 * sf))
        t += 2 * sf
    # the motor-imagery run
    events.append((t, 32766, 0))
    n_trial, n_cue = round(trial_s * sf), round(1.25 * sf)
    cue_pos: list[int] = []
    for i, c in enumerate(cues):
        t += int(rng.integers(sf // 2, sf * 3 // 2))  # random break
        events.append((t, 768, n_trial))
        if i == rejected:
            events.append((t, 1023, n_trial))
        p = t + round(cue_at * sf)
        events.append((p, 783 if evaluation else 769 + c, n_cue))
        if feedback:
            events.append((p + sf // 2, 781, 4 * sf))
        cue_pos.append(p)
        t += n_trial
    n = (t // sf + 2) * sf
    data = rng.normal(0.0, NOISE_UV, size=(len(labels), n))
    for p, c in zip(cue_pos, cues):
        data[mark_channel, p : p + sf] += MARK_UV * (c + 1)
    events.sort(key=lambda e: (e[0], e[1] != 32766))
    return data, events


def generate_2a(
    root: str | Path, subjects: tuple[int, ...] = (1, 2), sessions: str = "TE", *, labels: bool = True
) -> Path:
    """Write ``<root>/A0sS.gdf`` (+ ``A0sS.mat`` true labels unless ``labels=False``); returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for s in subjects:
        for sess in sessions:
            cues = CUES_2A[(s, sess)]
            data, events = _recording(
                CHANNELS_2A, cues, REJECTED_2A.get((s, sess)), evaluation=sess == "E", cue_at=CUE_AT_2A,
                trial_s=TRIAL_2A, mark_channel=0, feedback=False, eye_codes=(1072,), seed=100 * s + ord(sess),
            )  # fmt: skip
            write_gdf(root / f"A{s:02d}{sess}.gdf", data, CHANNELS_2A, events, patient=f"A{s:02d}")
            if labels:
                write_classlabel(root / f"A{s:02d}{sess}.mat", [c + 1 for c in cues])
    return root


def generate_2b(
    root: str | Path, sessions: tuple[tuple[int, int], ...] = tuple(CUES_2B), *, labels: bool = True
) -> Path:
    """Write ``<root>/B0sNN{T,E}.gdf`` for ``(subject, session)`` pairs (+ true-label ``.mat`` files)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for s, n in sessions:
        cues = CUES_2B[(s, n)]
        kind = "T" if n <= 3 else "E"
        data, events = _recording(
            CHANNELS_2B, cues, REJECTED_2B.get((s, n)), evaluation=kind == "E", cue_at=CUE_AT_2B,
            trial_s=TRIAL_2B, mark_channel=1, feedback=n >= 3, eye_codes=(1077, 1078, 1079, 1081),
            seed=1000 * s + n,
        )  # fmt: skip
        write_gdf(root / f"B{s:02d}{n:02d}{kind}.gdf", data, CHANNELS_2B, events, patient=f"B{s:02d}")
        if labels:
            write_classlabel(root / f"B{s:02d}{n:02d}{kind}.mat", [c + 1 for c in cues])
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    out = Path(sys.argv[1])
    print(generate_2a(out / "2a"), generate_2b(out / "2b"))
