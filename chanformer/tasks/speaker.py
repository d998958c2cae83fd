"""Speaker verification: ECAPA-TDNN on log-mel features, additive angular margin softmax,
cosine scoring of trial lists (EER, minDCF, optional s-norm) at the end of val/test epochs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from chanformer.batch import ChannelBatch
from chanformer.contract import InputContract
from chanformer.encoders import masked_mean
from chanformer.eval.verification import compute_eer, compute_min_dcf, cosine_scores, s_norm
from chanformer.tasks.base import ChannelTask
from chanformer.transforms.audio import Fbank, sentence_mean_norm

__all__ = ["AAMSoftmax", "SpeakerVerificationTask", "utterance_statistics", "warmup_cosine_factor"]


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, floor: float = 0.0) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based) of a schedule that rises
    linearly from ``1 / (warmup_steps + 1)`` to 1 over ``warmup_steps`` steps, then follows half a
    cosine from 1 down to ``floor`` at ``total_steps`` (and stays at ``floor`` after it)."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine_factor: need 0 <= warmup_steps ({warmup_steps}) < total_steps ({total_steps})")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def utterance_statistics(wav: Tensor, fbank: Fbank | None = None) -> Tensor:
    """A classical, training-free speaker vector of one utterance ``wav [L]``: the standard
    deviation over frames of its log-mel features (:class:`Fbank`, 80 mel bins by default,
    after sentence mean normalisation) concatenated with the standard deviation of their
    frame-to-frame differences (first-order deltas), ``[2 n_mels]``. Scored with cosine
    similarity it is the reference point of the real-speech verification results."""
    fbank = fbank or Fbank(n_mels=80)
    feats = sentence_mean_norm(fbank(wav.float()[None]))[0]  # [T, n_mels]
    if feats.shape[0] < 3:
        raise ValueError(f"utterance_statistics: {wav.shape[-1]} samples give fewer than 3 frames")
    return torch.cat([feats.std(0), torch.diff(feats, dim=0).std(0)])


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace; SpeechBrain's ``AdditiveAngularMargin`` with
    ``easy_margin=False``): target logit ``s cos(theta + m)``, others ``s cos(theta)``, where
    ``theta`` is the angle between the normalised embedding and the normalised class weight.
    Past ``theta > pi - m`` the target logit is ``s (cos theta - m sin m)`` to stay monotonic.
    """

    def __init__(self, embed_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = float(margin), float(scale)

    def cosine(self, emb: Tensor) -> Tensor:
        return F.linear(F.normalize(emb, dim=-1), F.normalize(self.weight, dim=-1))

    def logits(self, emb: Tensor, target: Tensor | None = None) -> Tensor:
        cos = self.cosine(emb)
        if target is None or self.margin == 0:
            return self.scale * cos
        m = self.margin
        sin = torch.sqrt((1.0 - cos.pow(2)).clamp(0.0, 1.0))
        phi = cos * math.cos(m) - sin * math.sin(m)
        phi = torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
        onehot = F.one_hot(target, cos.shape[1]).to(cos.dtype)
        return self.scale * (onehot * phi + (1 - onehot) * cos)

    def forward(self, emb: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(emb, target), target)


class SpeakerVerificationTask(ChannelTask):
    """ECAPA-TDNN speaker embeddings trained with AAM-softmax on speaker identities.

    Batches hold waveforms ``[B, C, L]`` (microphones as channels, optional typed ``lengths``).
    Log-mel features (:class:`~chanformer.transforms.audio.Fbank`, ``n_mels`` = the encoder's
    ``input_size``, SpeechBrain conventions) and sentence mean normalisation over each
    utterance's real frames are computed on the batch's device; every present microphone is
    embedded through ``encoder(batch)`` (a mel-bin :class:`ChannelBatch` with typed frame
    lengths) and a sample's embedding is the mean over its present microphones.

    Validation/test batches carry utterance indices of the datamodule's ``val_trials`` /
    ``test_trials`` (:class:`~chanformer.datasets.speech.trials.VerificationTrials`); at epoch end the
    trials are cosine-scored and ``eer``, ``min_dcf`` (and with ``score_norm="snorm"``
    ``eer_snorm``, ``min_dcf_snorm``) are logged. The s-norm cohort is the AAM class weights,
    i.e. one prototype per training speaker.

    With ``stats_baseline=True`` every val/test utterance is also described by
    :func:`utterance_statistics` (80-mel Fbank statistics, no training) and the same trials are
    cosine-scored with it: ``eer_stats`` / ``min_dcf_stats`` are logged beside the model's, a
    baseline measured in the same run.

    Args:
        margin / scale: AAM-softmax margin (radians) and scale.
        p_target / c_miss / c_fa: minDCF operating point.
        score_norm: ``"none"`` or ``"snorm"`` (also report s-normalised scores).
        cohort_top_k: adaptive s-norm: keep the ``top_k`` highest cohort scores.
        stats_baseline: also score the trials with :func:`utterance_statistics`.
        lr_schedule: ``"none"`` (the optimiser's learning rate, or ``lr_scheduler`` stepped per
            epoch) or ``"warmup_cosine"``: stepped every optimiser step, a linear warmup over
            ``warmup_epochs`` epochs, then a cosine decay to ``lr_floor`` x the base rate at the
            end of ``trainer.max_epochs`` (:func:`warmup_cosine_factor`; the trainer's
            ``estimated_stepping_batches`` sets the length).
        warmup_epochs / lr_floor: see ``lr_schedule``.
        **kwargs: see :class:`ChannelTask` (``encoder`` defaults to ``ecapa_tdnn_test``).
    """

    def __init__(self, *args: Any, num_classes: int | None = None, margin: float = 0.2, scale: float = 30.0,
                 p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0, score_norm: str = "snorm",
                 cohort_top_k: int | None = None, sample_rate: int = 16000, stats_baseline: bool = False,
                 lr_schedule: str = "none", warmup_epochs: float = 1.0, lr_floor: float = 0.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("encoder", "ecapa_tdnn_test")
        self._num_classes_arg = num_classes
        self.margin, self.scale = margin, scale
        self.p_target, self.c_miss, self.c_fa = p_target, c_miss, c_fa
        if score_norm not in ("none", "snorm"):
            raise ValueError(f"score_norm={score_norm!r}: use 'none' or 'snorm'")
        self.score_norm, self.cohort_top_k = score_norm, cohort_top_k
        self.sample_rate = int(sample_rate)
        self.stats_baseline = bool(stats_baseline)
        if lr_schedule not in ("none", "warmup_cosine"):
            raise ValueError(f"lr_schedule={lr_schedule!r}: use 'none' or 'warmup_cosine'")
        if lr_schedule == "warmup_cosine" and kwargs.get("lr_scheduler") is not None:
            raise ValueError("lr_schedule='warmup_cosine' replaces lr_scheduler: set only one")
        if warmup_epochs < 0 or not 0.0 <= lr_floor <= 1.0:
            raise ValueError(f"warmup_epochs={warmup_epochs} must be >= 0 and lr_floor={lr_floor} in [0, 1]")
        self.lr_schedule, self.warmup_epochs, self.lr_floor = lr_schedule, float(warmup_epochs), float(lr_floor)
        super().__init__(*args, **kwargs)
        self.fbank = Fbank(sample_rate=self.sample_rate, n_mels=int(getattr(self.encoder, "input_size", 80)))
        self.stats_fbank = Fbank(sample_rate=self.sample_rate, n_mels=80)
        self._emb: dict[str, list[tuple[Tensor, Tensor]]] = {"val": [], "test": []}
        self._stats: dict[str, list[Tensor]] = {"val": [], "test": []}
        self.last_scores: dict[str, dict[str, Tensor]] = {}

    @property
    def num_classes(self) -> int:
        n = self._num_classes_arg or self.data_spec.num_classes
        if not n or n < 2:
            raise ValueError("SpeakerVerificationTask needs num_classes >= 2 training speakers "
                             "(set num_classes= or link data.spec)")
        return int(n)

    def configure_head(self) -> None:
        self.aam = AAMSoftmax(self.encoder.embed_dim, self.num_classes, self.margin, self.scale)

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({})

    def configure_optimizers(self) -> Any:
        if self.lr_schedule == "none":
            return super().configure_optimizers()
        opt = self.optimizer_factory(self.parameters())
        total = int(self.trainer.estimated_stepping_batches)
        epochs = self.trainer.max_epochs
        if not epochs or epochs < 1 or total < 1:
            raise ValueError("lr_schedule='warmup_cosine' needs a finite trainer.max_epochs")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.warmup_cosine(opt, total, total / epochs),
                                                   "interval": "step"}}

    def warmup_cosine(self, opt: torch.optim.Optimizer, total_steps: int,
                      steps_per_epoch: float) -> torch.optim.lr_scheduler.LambdaLR:
        """The ``"warmup_cosine"`` schedule of ``opt`` over ``total_steps`` optimiser steps."""
        warmup = min(int(round(self.warmup_epochs * steps_per_epoch)), total_steps - 1)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine_factor(step, warmup, total_steps, self.lr_floor))

    # -- features and embeddings -------------------------------------------------------------------
    def feature_batch(self, batch: ChannelBatch) -> ChannelBatch:
        """Waveforms ``[B, C, L]`` -> one mel-bin batch ``[N, n_mels, T]`` for the ``N`` present
        microphones (sample-major), mean-normalised over real frames, with typed frame lengths."""
        if batch.values.ndim != 3:
            raise ValueError(f"SpeakerVerificationTask expects waveforms [B, C, L], got {tuple(batch.values.shape)}")
        batch.require_present("microphone")
        batch = batch.padding_zeroed()
        wav = batch.values[batch.mask].float()  # [N, L]
        relative = None
        if batch.lengths is not None:
            per_mic = batch.lengths[:, None].expand_as(batch.mask)[batch.mask]
            relative = per_mic.to(torch.float32) / batch.values.shape[-1]
        feats = sentence_mean_norm(self.fbank(wav), relative)
        if not torch.isfinite(feats).all():
            raise ValueError("non-finite Fbank features (NaN/Inf) in this batch")
        return self.encoder.batch_from_features(feats.transpose(1, 2), relative)  # type: ignore[operator]

    def embed_waveforms(self, wav: Tensor) -> Tensor:
        """``wav [B, L]`` (one microphone) -> speaker embeddings ``[B, D]``."""
        ids = torch.zeros(wav.shape[0], 1, dtype=torch.long, device=wav.device)
        return self(ChannelBatch(wav[:, None], ids, torch.ones_like(ids, dtype=torch.bool)))

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Speaker embeddings ``[B, D]``: the mean over each sample's present microphones."""
        per_mic = self.encoder(self.feature_batch(batch))  # [N, D]
        out = per_mic.new_zeros(*batch.mask.shape, per_mic.shape[-1])
        out[batch.mask] = per_mic
        return masked_mean(out, batch.mask)

    def compute(self, batch: ChannelBatch) -> tuple[Tensor, Tensor, Tensor]:
        emb = self(batch)
        target = batch.target.long()  # type: ignore[union-attr]
        return self.aam(emb, target), emb, target

    def update_metrics(self, metrics: MetricCollection, preds: Tensor, target: Tensor, batch: ChannelBatch) -> None:
        pass

    # -- verification ---------------------------------------------------------------------------------
    def _collect(self, batch: ChannelBatch, stage: str) -> None:
        with torch.no_grad():
            self._emb[stage].append((batch.target.long().cpu(), self(batch).float().cpu()))  # type: ignore[union-attr]
            if self.stats_baseline:
                self._stats[stage].append(self.statistics(batch).cpu())

    def statistics(self, batch: ChannelBatch) -> Tensor:
        """:func:`utterance_statistics` of each sample's real samples, mean over its present
        microphones: ``[B, 160]``."""
        length = batch.values.shape[-1]
        out = []
        for b in range(batch.batch_size):
            n = length if batch.lengths is None else int(batch.lengths[b])
            mics = [utterance_statistics(batch.values[b, c, :n], self.stats_fbank) for c in torch.nonzero(batch.mask[b])[:, 0]]
            out.append(torch.stack(mics).mean(0))
        return torch.stack(out)

    def validation_step(self, batch: ChannelBatch, batch_idx: int) -> None:  # type: ignore[override]
        self._collect(batch, "val")

    def test_step(self, batch: ChannelBatch, batch_idx: int) -> None:  # type: ignore[override]
        self._collect(batch, "test")

    def score_trials(self, emb: Tensor, trials: Any) -> dict[str, float]:
        """EER/minDCF of ``trials`` (:class:`VerificationTrials`) given embeddings ``[N_files, D]``."""
        e, t, y = trials.pair_indices()
        out: dict[str, Tensor] = {"raw": cosine_scores(emb[e], emb[t])}
        if self.score_norm == "snorm":
            out["snorm"] = s_norm(emb[e], emb[t], self.aam.weight.detach().float().cpu(), self.cohort_top_k)
        res: dict[str, float] = {}
        for name, s in out.items():
            sfx = "" if name == "raw" else "_snorm"
            res["eer" + sfx] = compute_eer(s, y)[0]
            res["min_dcf" + sfx] = compute_min_dcf(s, y, self.p_target, self.c_miss, self.c_fa)[0]
        self.last_scores[getattr(trials, "path", "trials").__str__()] = out | {"labels": y}
        return res

    def _finish(self, stage: str) -> None:
        items, self._emb[stage] = self._emb[stage], []
        stats, self._stats[stage] = self._stats[stage], []
        dm = getattr(self.trainer, "datamodule", None)
        trials = getattr(dm, f"{stage}_trials", None)
        if not items or trials is None:
            return
        idx = torch.cat([i for i, _ in items])
        emb = torch.cat([x for _, x in items])
        full = torch.zeros(len(trials.files), emb.shape[1])
        seen = torch.zeros(len(trials.files), dtype=torch.bool)
        full[idx], seen[idx] = emb, True
        if not bool(seen.all()):  # sanity-check runs see only part of the files
            e, t, _ = trials.pair_indices()
            if not bool((seen[e] & seen[t]).any()):
                return
        scored = _SubsetTrials(trials, seen) if not bool(seen.all()) else trials
        try:
            res = self.score_trials(full, scored)
            if stats:
                vec = torch.zeros(len(trials.files), stats[0].shape[1])
                vec[idx] = torch.cat(stats)
                e, t, y = scored.pair_indices()
                s = cosine_scores(vec[e], vec[t])
                res["eer_stats"] = compute_eer(s, y)[0]
                res["min_dcf_stats"] = compute_min_dcf(s, y, self.p_target, self.c_miss, self.c_fa)[0]
        except ValueError:  # a partial pass (sanity check) may lack target or non-target trials
            if bool(seen.all()):
                raise
            return
        for k, v in res.items():
            self.log(f"{stage}/{k}", v, prog_bar=k == "eer", sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def predict_step(self, batch: ChannelBatch, batch_idx: int) -> Tensor:
        return self(batch)

    def input_contract(self) -> InputContract | None:
        """The datamodule's contract (rate, centre crop, loudness) plus this task's log-mel front
        end: ``features = {"fbank": Fbank kwargs, "normalise": "sentence_mean"}``, which
        :class:`~chanformer.pipelines.Pipeline` applies before the encoder."""
        contract = super().input_contract()
        if contract is None:
            return None
        return contract.merged(modality="audio",
                               features={"fbank": self.fbank.config(), "normalise": "sentence_mean"})  # fmt: skip

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:  # the encoder reads mel bins, so export its mel vocabulary
            path = self.export_pretrained(self.encoder, self.encoder.vocab)
            self.print(f"exported {type(self.encoder).__name__} to {path}")


class _SubsetTrials:
    """Trials restricted to pairs whose two files were embedded (Lightning's sanity check)."""

    def __init__(self, trials: Any, seen: Tensor) -> None:
        e, t, y = trials.pair_indices()
        keep = seen[e] & seen[t]
        self._idx = (e[keep], t[keep], y[keep])
        self.path = trials.path

    def pair_indices(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._idx
