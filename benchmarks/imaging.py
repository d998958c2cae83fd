"""Imaging measurements (CPU): HCS vs no HCS partial-channel accuracy, SSL 1-NN macro-F1, throughput/memory.

Usage: python benchmarks/imaging.py {hcs,ssl,speed,speed-one} [options]; prints JSON lines.
The labelled images are SYNTHETIC (chanformer.datasets.imaging.sim): the class shows in stain/Mito only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import lightning as L
import torch


def _trainer(epochs: int, root: str) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", deterministic=True, default_root_dir=root)


def hcs(epochs: int, seed: int) -> None:
    from chanformer.datasets import ImageDataModule
    from chanformer.eval import evaluate_channel_subsets
    from chanformer.tasks import ClassificationTask

    for use_hcs in (False, True):
        L.seed_everything(seed)
        dm = ImageDataModule(hcs=use_hcs, batch_size=16, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            task = ClassificationTask(encoder="channelvit_small_p8", encoder_kwargs=dict(embed_dim=64, depth=2, num_heads=4),
                                      data_spec=dm.spec, export_dir=tmp + "/export",
                                      optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05))
            t = time.time()
            _trainer(epochs, tmp).fit(task, dm)
            fit_s = time.time() - t
        res = evaluate_channel_subsets(task, dm, verbose=False)
        with_mito = [r["accuracy"] for r in res.rows if "stain/Mito" in r["channels"]]
        without = [r["accuracy"] for r in res.rows if "stain/Mito" not in r["channels"]]
        print(json.dumps({"exp": "hcs", "hcs": use_hcs, "epochs": epochs, "seed": seed, "fit_s": round(fit_s, 1),
                          "full": res.full_accuracy, "by_k": {r["k"]: round(r["mean"], 4) for r in res.by_k()},
                          "with_mito_mean": sum(with_mito) / len(with_mito), "without_mito_mean": sum(without) / len(without),
                          "mito_only": next(r["accuracy"] for r in res.rows if r["channels"] == ("stain/Mito",))}), flush=True)


def ssl(epochs: int, seed: int) -> None:
    from chanformer.datasets import ImageDataModule
    from chanformer.eval import knn_evaluate
    from chanformer.tasks import MaskedChannelPretrainTask

    kw = dict(patch_size=8, embed_dim=96, depth=4, num_heads=4, dim_feedforward=192)
    L.seed_everything(seed)
    dm = ImageDataModule(batch_size=16, seed=seed, num_val=100)
    with tempfile.TemporaryDirectory() as tmp:
        task = MaskedChannelPretrainTask(encoder="chadavit_small", encoder_kwargs=kw, data_spec=dm.spec,
                                         channel_mask_ratio=0.4, patch_mask_ratio=0.3, channel_drop=0.1, decoder_dim=96,
                                         export_dir=tmp + "/export",
                                         optimizer=lambda p: torch.optim.AdamW(p, lr=5e-4, weight_decay=0.05))
        before = knn_evaluate(task.encoder, dm)
        t = time.time()
        tr = _trainer(epochs, tmp)
        tr.fit(task, dm)
        fit_s = time.time() - t
        after = knn_evaluate(task.encoder, dm)
    print(json.dumps({"exp": "ssl", "epochs": epochs, "seed": seed, "fit_s": round(fit_s, 1), "knn_f1_before": before,
                      "knn_f1_after": after, "chance": 0.25}), flush=True)


def speed_one(name: str, ckpt: bool, iters: int) -> None:
    from chanformer.batch import ChannelBatch
    from chanformer.encoders import create_encoder

    torch.manual_seed(0)
    enc = create_encoder(name, img_size=64, grad_checkpointing=ckpt,
                         **({"num_channels": 5} if name.startswith("channelvit") else {}))
    x = torch.randn(32, 5, 64, 64)
    ids = torch.arange(5).expand(32, -1).clone()
    batch = ChannelBatch(x, ids, torch.ones(32, 5, dtype=torch.bool))
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        enc(batch).sum().backward()  # warm-up, counts saved activations once
    act = saved[0]
    t = time.time()
    for _ in range(iters):
        enc.zero_grad()
        enc(batch).sum().backward()
    dt = (time.time() - t) / iters
    print(json.dumps({"exp": "speed", "encoder": name, "grad_checkpointing": ckpt, "threads": torch.get_num_threads(),
                      "images_per_s": round(32 / dt, 1), "saved_activation_MB": round(act / 2**20, 1),
                      "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}), flush=True)


def speed(iters: int) -> None:
    for name in ("channelvit_small_p16", "chadavit_small"):
        for ckpt in (False, True):
            subprocess.run([sys.executable, __file__, "speed-one", "--encoder", name, "--iters", str(iters)]
                           + (["--ckpt"] if ckpt else []), check=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["hcs", "ssl", "speed", "speed-one"])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--encoder", default="channelvit_small_p16")
    ap.add_argument("--ckpt", action="store_true")
    a = ap.parse_args()
    if a.what == "hcs":
        hcs(a.epochs, a.seed)
    elif a.what == "ssl":
        ssl(a.epochs, a.seed)
    elif a.what == "speed":
        speed(a.iters)
    else:
        speed_one(a.encoder, a.ckpt, a.iters)
