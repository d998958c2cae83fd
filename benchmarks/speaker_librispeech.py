"""Score a trained speaker-verification checkpoint on the real LibriSpeech trials.

``python -m benchmarks.speaker_librispeech CKPT [--root ../shared/data/librispeech-subset]``

Rebuilds the checkpoint's :class:`SpeakerVerificationTask` (its encoder configuration and AAM
class count, whatever data it was trained on, e.g. the espeak-only ``speaker-ecapa`` recipe) and
tests it on every pair of the 100 LibriSpeech test-other utterances (4,950 trials, whole
utterances), with the training-free Fbank-statistics baseline (``test/eer_stats``) scored on the
same trials in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import torch

from chanformer.datasets.speech.datamodules import SpeakerVerificationDataModule
from chanformer.tasks.speaker import SpeakerVerificationTask

LIBRI = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-subset"


def run(ckpt: str, root: str | Path = LIBRI, cache_dir: str = "runs/data/librispeech-speakers") -> dict[str, float]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # a local Lightning checkpoint the user names
    hp = state["hyper_parameters"]
    task = SpeakerVerificationTask(num_classes=int(state["state_dict"]["aam.weight"].shape[0]), encoder=hp["encoder"],
                                   encoder_kwargs=hp.get("encoder_kwargs"), margin=hp.get("margin", 0.2),
                                   scale=hp.get("scale", 30.0), score_norm=hp.get("score_norm", "snorm"), stats_baseline=True)
    task.load_state_dict(state["state_dict"])
    dm = SpeakerVerificationDataModule(source="librispeech", root=str(root), cache_dir=cache_dir, n_val_speakers=0,
                                       eval_seconds=None, batch_size=16)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    t0 = time.perf_counter()
    out = {k: float(v) for k, v in trainer.test(task, datamodule=dm, verbose=False)[0].items()}
    out["wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speaker_librispeech")
    ap.add_argument("ckpt", help="a SpeakerVerificationTask Lightning checkpoint (.ckpt)")
    ap.add_argument("--root", default=str(LIBRI), help="the LibriSpeech subset folder")
    ap.add_argument("--cache-dir", default="runs/data/librispeech-speakers")
    args = ap.parse_args()
    for k, v in run(args.ckpt, args.root, args.cache_dir).items():
        print(f"{k:22s} {v:.4f}")


if __name__ == "__main__":
    main()
