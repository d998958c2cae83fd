"""Speaker-verification trial lists: VoxCeleb-style ``label enrol test`` lines.

:class:`VerificationTrials` reads one; :func:`all_pairs_trials` writes every pair of the
utterances under a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from chanformer.datasets.speech.audio import _audio_files

__all__ = ["VerificationTrials", "all_pairs_trials"]


def all_pairs_trials(root: str | Path, out: str | Path) -> Path:
    """Write every pair of the utterances under ``root/<speaker>/`` as a trial list (same speaker
    = 1): ``n (n - 1) / 2`` trials for ``n`` files (100 files -> 4,950 trials), enrol before test
    in sorted order. Paths are relative to ``root``."""
    root = Path(root)
    files = [(d.name, f"{d.name}/{p.name}") for d in sorted(root.iterdir()) if d.is_dir() for p in _audio_files(d)]
    if len(files) < 2:
        raise ValueError(f"all_pairs_trials: fewer than two utterances under {root} (expected <speaker>/<utterance>.flac)")
    trials = [(int(sa == sb), a, b) for i, (sa, a) in enumerate(files) for sb, b in files[i + 1:]]
    return VerificationTrials.write(out, trials)


class VerificationTrials:
    """A VoxCeleb-style trial list: lines ``label enrol test`` (label 1 = same speaker, 0 = not),
    paths relative to ``root``. Every named file must exist (the error names it and the line)."""

    def __init__(self, path: str | Path, root: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"trial list not found: {self.path}")
        self.root = Path(root) if root is not None else self.path.parent
        self.labels: list[int] = []
        self.pairs: list[tuple[str, str]] = []
        for no, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ValueError(f"{self.path}:{no}: expected 'label enrol test' with label 0 or 1, got {line!r}")
            for f in parts[1:]:
                if not (self.root / f).is_file():
                    raise FileNotFoundError(f"{self.path}:{no}: trial names a missing audio file {self.root / f}")
            self.labels.append(int(parts[0]))
            self.pairs.append((parts[1], parts[2]))
        if not self.pairs:
            raise ValueError(f"trial list {self.path} holds no trials")
        self.files = sorted({f for p in self.pairs for f in p})
        self.index = {f: i for i, f in enumerate(self.files)}

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(enrol_idx, test_idx, labels)`` indexing :attr:`files`."""
        e = torch.tensor([self.index[a] for a, _ in self.pairs])
        t = torch.tensor([self.index[b] for _, b in self.pairs])
        return e, t, torch.tensor(self.labels)

    @staticmethod
    def write(path: str | Path, trials: Sequence[tuple[int, str, str]]) -> Path:
        path = Path(path)
        path.write_text("".join(f"{lab} {a} {b}\n" for lab, a, b in trials))
        return path


def _all_trials(root: Path, out: Path, seed: int) -> Path:
    """Every same-speaker pair and an equal number of random different-speaker pairs."""
    rng = np.random.default_rng(seed)
    files = {d.name: [f"{d.name}/{p.name}" for p in _audio_files(d)] for d in sorted(root.iterdir()) if d.is_dir()}
    spk = sorted(files)
    same = [(1, a, b) for s in spk for i, a in enumerate(files[s]) for b in files[s][i + 1:]]
    diff: list[tuple[int, str, str]] = []
    while len(diff) < len(same):
        s1, s2 = rng.choice(len(spk), 2, replace=False)
        diff.append((0, str(rng.choice(files[spk[s1]])), str(rng.choice(files[spk[s2]]))))
    return VerificationTrials.write(out, same + diff)
