"""Write a miniature BIDS-EEG data set with ``mne_bids.write_raw_bids``.

Each recording starts as a small synthetic EDF (written byte by byte, so no EDF export library is
needed: BIDS-EEG accepts EDF as is and mne-bids copies it) read back with mne, given channel types,
``line_freq``, a marked bad channel and trial annotations, then written into the BIDS tree by
``mne_bids.write_raw_bids``, which also writes ``dataset_description.json``, ``participants.tsv``,
``*_eeg.json``, ``*_channels.tsv`` (type and ``status``), ``*_events.tsv`` (``trial_type``) and
``*_scans.tsv``::

    <root>/sub-01/ses-01/eeg/sub-01_ses-01_task-motor_run-1_eeg.edf (+ sidecars)
    <root>/sub-01/ses-01/eeg/sub-01_ses-01_task-motor_run-2_eeg.edf
    <root>/sub-01/ses-01/eeg/sub-01_ses-01_task-rest_eeg.edf          (no events)
    <root>/sub-02/ses-01/eeg/sub-02_ses-01_task-motor_run-1_eeg.edf   (C4 marked bad)

Trials of the ``motor`` task are ``left``/``right`` (``trial_type``) with 2 s duration; during each
trial channel C3 carries an offset of ``MARK_UV * (class + 1)`` so windows can be checked.

Run ``python tests/data/bids_eeg/generate.py OUT``; the tests call :func:`generate`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

SFREQ = 200
CHANNELS = ("Fz", "C3", "Cz", "C4", "Pz", "EOG")
CLASSES = ("left", "right")
MARK_UV, NOISE_UV = 40.0, 5.0
PHYS = 1000.0  # +- uV

#: (subject, session, task, run, cue classes (0/1) or None, bad channels)
Recording = tuple[str, str, str, int | None, tuple[int, ...] | None, tuple[str, ...]]
RECORDINGS: tuple[Recording, ...] = (
    ("01", "01", "motor", 1, (0, 1, 1, 0), ()),
    ("01", "01", "motor", 2, (1, 0, 1), ()),
    ("01", "01", "rest", None, None, ()),
    ("02", "01", "motor", 1, (1, 1, 0, 0, 1), ("C4",)),
)


def _field(value: object, width: int) -> bytes:
    return str(value).ljust(width).encode("ascii")[:width]


def _write_edf(path: Path, data_uv: np.ndarray) -> None:
    n_ch, n = data_uv.shape
    n_rec = n // SFREQ
    head = b"".join([
        _field("0", 8), _field("X X X X", 80), _field("Startdate 01-JAN-2020 X X X", 80), _field("01.01.20", 8),
        _field("10.00.00", 8), _field(256 * (n_ch + 1), 8), _field("", 44), _field(n_rec, 8), _field(1, 8),
        _field(n_ch, 4),
    ])  # fmt: skip
    sig = b"".join(_field(c, 16) for c in CHANNELS) + b"".join(_field("", 80) for _ in CHANNELS)
    sig += b"".join(_field("uV", 8) for _ in CHANNELS) + b"".join(_field(-PHYS, 8) for _ in CHANNELS)
    sig += b"".join(_field(PHYS, 8) for _ in CHANNELS) + b"".join(_field(-32768, 8) for _ in CHANNELS)
    sig += b"".join(_field(32767, 8) for _ in CHANNELS) + b"".join(_field("", 80) for _ in CHANNELS)
    sig += b"".join(_field(SFREQ, 8) for _ in CHANNELS) + b"".join(_field("", 32) for _ in CHANNELS)
    digital = np.clip(np.round((data_uv + PHYS) * 65535 / (2 * PHYS) - 32768), -32768, 32767).astype("<i2")
    path.write_bytes(head + sig + digital.reshape(n_ch, n_rec, SFREQ).transpose(1, 0, 2).tobytes())


#: A third subject (Fz marked bad) for splits across subjects: ``generate(root, RECORDINGS + EXTRA_SUBJECT)``.
EXTRA_SUBJECT: tuple[Recording, ...] = (("03", "01", "motor", 1, (0, 1, 0, 1, 1, 0), ("Fz",)),)


def generate(root: str | Path, recordings: tuple[Recording, ...] = RECORDINGS) -> Path:
    """Write the miniature BIDS tree of ``recordings`` (default :data:`RECORDINGS`) into ``root``; returns ``root``."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids

    root = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        for k, (sub, ses, task, run, cues, bads) in enumerate(recordings):
            rng = np.random.default_rng(k)
            onsets = [2.0 + 4.0 * i for i in range(len(cues or ()))]
            seconds = int(max(onsets, default=0.0)) + 6 if cues else 20
            data = rng.normal(0.0, NOISE_UV, size=(len(CHANNELS), seconds * SFREQ))
            for t, c in zip(onsets, cues or ()):
                data[1, int(t * SFREQ) : int((t + 2.0) * SFREQ)] += MARK_UV * (c + 1)
            src = Path(tmp) / f"rec{k}.edf"
            _write_edf(src, data)
            raw = mne.io.read_raw_edf(src, verbose="error")
            raw.set_channel_types({"EOG": "eog"}, verbose="error")
            raw.info["line_freq"] = 50.0
            raw.info["bads"] = list(bads)
            if cues:
                raw.set_annotations(mne.Annotations(onsets, [2.0] * len(cues), [CLASSES[c] for c in cues]))
            path = BIDSPath(subject=sub, session=ses, task=task, run=run, datatype="eeg", root=root)
            write_raw_bids(raw, path, overwrite=True, verbose="error")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))
