"""Speech enhancement with MambAttention: the MP-SENet/SEMamba/MambAttention generator losses,
SI-SDR / PESQ (wideband) / ESTOI on the whole validation set, evaluation of file pairs and the
real-time factor.

The metric discriminator (MetricGAN-style PESQ predictor) of the paper is **not** implemented:
``metric`` loss weight 0.05 is left out, the generator is trained with the other five losses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.contract import InputContract
from chanformer.encoders.mambattention import MambAttention
from chanformer.hub import load_pretrained
from chanformer.registry import create_model, list_models
from chanformer.spec import DataSpec
from chanformer.tasks.base import ChannelTask, OptimizerCallable, SchedulerCallable, _default_optimizer

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "EnhancementTask",
    "anti_wrapping",
    "enhancement_metrics",
    "evaluate_pairs",
    "generator_losses",
    "phase_losses",
    "real_time_factor",
    "si_sdr",
]

DEFAULT_LOSS_WEIGHTS = {"magnitude": 0.9, "phase": 0.3, "complex": 0.1, "time": 0.2, "consistency": 0.1}
"""SEMamba/MambAttention generator loss weights (the metric-discriminator term, 0.05, is not used)."""


def si_sdr(estimate: Tensor, reference: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB over the last axis (Le Roux et al. 2019):
    ``10 log10(|a r|^2 / |a r - e|^2)``, ``a = <e, r> / <r, r>`` (after removing means)."""
    e, r = estimate.double(), reference.double()
    if e.shape != r.shape:
        raise ValueError(f"si_sdr: estimate {tuple(e.shape)} and reference {tuple(r.shape)} differ")
    if zero_mean:
        e, r = e - e.mean(-1, keepdim=True), r - r.mean(-1, keepdim=True)
    a = (e * r).sum(-1, keepdim=True) / (r.pow(2).sum(-1, keepdim=True) + eps)
    target = a * r
    return (10 * torch.log10(target.pow(2).sum(-1) / ((target - e).pow(2).sum(-1) + eps) + eps)).to(estimate.dtype)


def anti_wrapping(x: Tensor) -> Tensor:
    """``|x - round(x / 2 pi) 2 pi|``: the distance of a phase difference to the nearest multiple of 2 pi."""
    return torch.abs(x - torch.round(x / (2 * math.pi)) * 2 * math.pi)


def phase_losses(phase_ref: Tensor, phase_est: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Anti-wrapping instantaneous phase, group delay (along frequency) and instantaneous angular
    frequency (along time) losses of MP-SENet for phases ``[B, F, T]``."""
    ip = anti_wrapping(phase_ref - phase_est).mean()
    gd = anti_wrapping(torch.diff(phase_ref, dim=1) - torch.diff(phase_est, dim=1)).mean()
    iaf = anti_wrapping(torch.diff(phase_ref, dim=2) - torch.diff(phase_est, dim=2)).mean()
    return ip, gd, iaf


def generator_losses(model: MambAttention, noisy: Tensor, clean: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """The generator losses for waveforms ``noisy, clean [B, L]`` (both scaled by the noisy
    utterance's unit-RMS factor, as the original training script does).

    Returns ``({"magnitude", "phase", "complex", "time", "consistency"}, enhanced [B, L])``:
    MSE of compressed magnitudes, the sum of the three anti-wrapping phase losses, 2 x MSE of
    compressed complex spectra, L1 of waveforms, and 2 x MSE between the estimated complex
    spectrum and the spectrum of its own inverse STFT (consistency).
    """
    length = noisy.shape[-1]
    norm = torch.sqrt(length / noisy.pow(2).sum(-1, keepdim=True).clamp_min(1e-10))
    noisy, clean = noisy * norm, clean * norm
    c_mag, c_pha, c_com = model.stft(clean)
    n_mag, n_pha, _ = model.stft(noisy)
    g_mag, g_pha, g_com = model.forward_spectrum(n_mag, n_pha)
    audio_g = model.istft(g_mag, g_pha, length)
    _, _, g_com_hat = model.stft(audio_g)
    ip, gd, iaf = phase_losses(c_pha, g_pha)
    losses = {
        "magnitude": F.mse_loss(g_mag, c_mag),
        "phase": ip + gd + iaf,
        "complex": 2 * F.mse_loss(g_com, c_com),
        "time": F.l1_loss(audio_g, clean),
        "consistency": 2 * F.mse_loss(g_com, g_com_hat),
    }
    return losses, audio_g / norm


def enhancement_metrics(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000,
                        pesq: bool = True, estoi: bool = True) -> dict[str, float]:
    """SI-SDR (dB), PESQ wideband (``pesq`` package; NaN when it finds no utterance) and ESTOI
    (``pystoi``, extended) of one 1-D ``enhanced`` signal against ``clean``."""
    e, c = np.asarray(enhanced, np.float64), np.asarray(clean, np.float64)
    out = {"si_sdr": float(si_sdr(torch.from_numpy(e), torch.from_numpy(c)))}
    if pesq:
        from pesq import pesq as _pesq

        try:
            out["pesq"] = float(_pesq(sample_rate, np.asarray(clean, np.float64), np.asarray(enhanced, np.float64), "wb"))
        except Exception:  # pesq.NoUtterancesError and friends on silence-only clips
            out["pesq"] = float("nan")
    if estoi:
        from pystoi import stoi

        out["estoi"] = float(stoi(np.asarray(clean, np.float64), np.asarray(enhanced, np.float64), sample_rate, extended=True))
    return out


class EnhancementTask(ChannelTask):
    """MambAttention trained on noisy/clean waveform pairs (``values`` noisy ``[B, C, L]``,
    ``target`` clean ``[B, C, L]``; every present microphone is a training utterance and is
    enhanced through ``model(batch)``).

    Validation and test report, over the whole set at epoch end, ``si_sdr`` of the enhanced
    speech, ``si_sdr_noisy`` of the input, their difference ``si_sdri``, and (if enabled)
    ``pesq``/``pesq_noisy`` (wideband) and ``estoi``/``estoi_noisy``.

    Args:
        model: ``"mambattention"`` (published 2.33M configuration) or ``"mambattention_test"``.
        model_kwargs: overrides of the chosen configuration.
        loss_weights: weights of :data:`DEFAULT_LOSS_WEIGHTS` to override.
        val_pesq / val_estoi: compute PESQ / ESTOI in validation and test (CPU, per utterance).
        pretrained: a ``save_pretrained`` folder of a MambAttention to start from.
    """

    def __init__(
        self,
        model: str = "mambattention_test",
        model_kwargs: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        val_pesq: bool = True,
        val_estoi: bool = True,
        data_spec: DataSpec | None = None,
        pretrained: str | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: SchedulerCallable | None = None,
        export_dir: str | None = None,
    ) -> None:
        unknown = set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS)
        if unknown:
            known = sorted(DEFAULT_LOSS_WEIGHTS)
            raise ValueError(f"EnhancementTask(loss_weights=...): unknown losses {sorted(unknown)}; known {known}")
        self.model_name = model
        self.loss_weights = DEFAULT_LOSS_WEIGHTS | (loss_weights or {})
        self.val_pesq, self.val_estoi = val_pesq, val_estoi
        self._rows: dict[str, list[dict[str, float]]] = {"val": [], "test": []}
        self.last_metrics: dict[str, dict[str, float]] = {}
        super().__init__(encoder=None, data_spec=data_spec, pretrained=pretrained, optimizer=optimizer,
                         lr_scheduler=lr_scheduler, export_dir=export_dir)  # fmt: skip

    def configure_models(self) -> None:
        """MambAttention from the registry's ``enhancement`` family; its sample rate must match the data's."""
        if self.model_name not in list_models("enhancement"):
            raise ValueError(f"EnhancementTask(model={self.model_name!r}): use one of {list_models('enhancement')}")
        self.model: MambAttention = create_model(self.model_name, **(self.hparams.get("model_kwargs") or {}))
        sr = self.data_spec.sfreq
        if sr is not None and int(sr) != self.model.config["sampling_rate"]:
            raise ValueError(f"data sample rate {sr} Hz differs from the model's {self.model.config['sampling_rate']} Hz")

    def load_pretrained_weights(self, path: str) -> None:
        """Initialise from a ``save_pretrained`` folder of a MambAttention."""
        src = load_pretrained(path)
        if not isinstance(src, MambAttention):
            raise TypeError(f"pretrained={path!r} holds a {type(src).__name__}, not a MambAttention")
        self.model.load_state_dict(src.state_dict())

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({})  # SI-SDR/PESQ/ESTOI are computed over whole sets at epoch end

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        pass

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        noisy, clean = self._pair(batch)
        losses, enhanced = generator_losses(self.model, noisy, clean)
        loss = sum(self.loss_weights[k] * v for k, v in losses.items())
        return loss, enhanced, clean  # type: ignore[return-value]

    @staticmethod
    def _pair(batch: ChannelBatch) -> tuple[Tensor, Tensor]:
        """Noisy and clean ``[N, L]``: one row per present microphone of every sample."""
        if batch.target is None or batch.target.shape != batch.values.shape:
            got = None if batch.target is None else tuple(batch.target.shape)
            want = tuple(batch.values.shape)
            raise ValueError(f"EnhancementTask needs clean target waveforms shaped like values {want}, got {got}")
        if batch.lengths is not None and bool((batch.lengths != batch.values.shape[-1]).any()):
            raise ValueError("EnhancementTask trains on equal-length segments (set the datamodule's segment_seconds)")
        batch.require_present("channel")
        return batch.values[batch.mask].float(), batch.target[batch.mask].float()

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Enhanced waveforms ``[B, C, L]`` of a noisy waveform batch (see :meth:`MambAttention.forward`)."""
        return self.model(batch)

    def _eval_step(self, batch: ChannelBatch, stage: str) -> None:
        noisy, clean = self._pair(batch)
        loss, _, _ = self.compute(batch)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=batch.batch_size)
        enhanced = self.model(batch)[batch.mask]
        sr = self.model.config["sampling_rate"]
        for e, n, c in zip(enhanced.cpu().double().numpy(), noisy.cpu().double().numpy(), clean.cpu().double().numpy()):
            row = {k: v for k, v in enhancement_metrics(e, c, sr, self.val_pesq, self.val_estoi).items()}
            row |= {f"{k}_noisy": v for k, v in enhancement_metrics(n, c, sr, self.val_pesq, self.val_estoi).items()}
            self._rows[stage].append(row)

    def validation_step(self, batch: ChannelBatch, batch_idx: int) -> None:  # type: ignore[override]
        self._eval_step(batch, "val")

    def test_step(self, batch: ChannelBatch, batch_idx: int) -> None:  # type: ignore[override]
        self._eval_step(batch, "test")

    def _finish(self, stage: str) -> None:
        rows, self._rows[stage] = self._rows[stage], []
        if not rows:
            return
        means = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
        means["si_sdri"] = means["si_sdr"] - means["si_sdr_noisy"]
        self.last_metrics[stage] = means
        for k, v in means.items():
            self.log(f"{stage}/{k}", v, prog_bar=k == "si_sdri", sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self.model(batch)

    def exportable(self) -> MambAttention:
        return self.model

    def input_contract(self) -> InputContract | None:
        """The datamodule's contract plus the compressed STFT the model computes itself
        (``features["stft"]``: ``n_fft``, ``hop_size``, ``win_size``, ``compress_factor``,
        ``sampling_rate``), recorded for people to read."""
        contract = super().input_contract()
        if contract is None:
            return None
        names = ("n_fft", "hop_size", "win_size", "compress_factor", "sampling_rate")
        stft = {k: self.model.config[k] for k in names if k in self.model.config}
        return contract.merged(modality="audio", features={"stft": stft})

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            path = self.export_pretrained(self.model, None)
            self.print(f"exported MambAttention to {path}")


# -- evaluation on file pairs and speed ------------------------------------------------------------------
@torch.no_grad()
def evaluate_pairs(model: MambAttention, noisy_files: Sequence[str | Path], clean_files: Sequence[str | Path],
                   sample_rate: int = 16000) -> dict[str, Any]:
    """Enhance each noisy file (whole utterance) and score noisy and enhanced against the clean
    file: per-file rows and means of ``si_sdr``, ``pesq``, ``estoi`` (``*_noisy`` for the input)."""
    from chanformer.datasets.speech.audio import read_audio

    model.eval()
    rows = []
    for nf, cf in zip(noisy_files, clean_files, strict=True):
        noisy, _ = read_audio(nf, sample_rate, channels=1)
        clean, _ = read_audio(cf, sample_rate, channels=1)
        if noisy.shape != clean.shape:
            raise ValueError(f"{nf} has {noisy.shape[-1]} samples but {cf} has {clean.shape[-1]}")
        enhanced = model.enhance(torch.from_numpy(noisy[0])[None].float())[0].double().numpy()
        row: dict[str, Any] = {"file": Path(nf).name}
        row |= enhancement_metrics(enhanced, clean[0], sample_rate)
        row |= {f"{k}_noisy": v for k, v in enhancement_metrics(noisy[0], clean[0], sample_rate).items()}
        rows.append(row)
    keys = [k for k in rows[0] if k != "file"]
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    return {"rows": rows, "mean": mean}


@torch.no_grad()
def real_time_factor(model: MambAttention, seconds: float = 4.0, repeats: int = 3, sample_rate: int = 16000) -> float:
    """Processing time / audio duration of :meth:`MambAttention.enhance` on one utterance
    (median of ``repeats`` after one warm-up), on the model's device and the current threads."""
    model.eval()
    p = next(model.parameters())
    wav = torch.randn(1, int(seconds * sample_rate), device=p.device, dtype=p.dtype) * 0.1
    model.enhance(wav)
    times = []
    for _ in range(repeats):
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.enhance(wav)
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) / seconds)
