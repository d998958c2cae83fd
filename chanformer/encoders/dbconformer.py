"""DBConformer: a dual-branch Conformer for fixed-montage EEG.

Wang et al., "DBConformer: Dual-Branch Convolutional Transformer for EEG Decoding": a temporal
Conformer over patch tokens of the whole montage and a spatial Conformer over one token per
electrode, fused by averaging the temporal tokens and attention-pooling the channel tokens.

A FIXED-MONTAGE model: its weights (the temporal stem's channel mixing, the spatial positional
embedding) are tied to one electrode list, declared as vocabulary keys in ``channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder
from chanformer.encoders.montage import interpolate_montage
from chanformer.nn.pooling import ChannelAttentionPool
from chanformer.nn.transformer import MaskedTransformerBlock, run_blocks
from chanformer.spec import DataSpec

__all__ = ["DBConformer", "dbconformer", "dbconformer_test"]

BRANCHES = ("all", "temporal", "spatial")


class TemporalStem(nn.Module):
    """Patch embedding of the whole montage: ``[B, C, T] -> [B, P, E]`` with ``P = T // patch``.

    1x1 conv (channel mixing, no bias) -> BatchNorm -> depthwise temporal conv (``kernel``, "same"
    padding, no bias) -> BatchNorm -> [drop the last time step] -> GELU -> AvgPool(``patch``) -> dropout.
    """

    def __init__(
        self,
        n_chans: int,
        emb: int,
        kernel: int,
        patch: int,
        drop: float,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.pointwise = nn.Conv1d(n_chans, emb, 1, bias=False, **kw)
        self.bn1 = nn.BatchNorm1d(emb, **kw)
        self.depthwise = nn.Conv1d(emb, emb, kernel, padding=kernel // 2, groups=emb, bias=False, **kw)
        self.bn2 = nn.BatchNorm1d(emb, **kw)
        self.act = nn.GELU()
        self.pool = nn.AvgPool1d(patch)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, drop_last: bool = False) -> Tensor:
        x = self.bn2(self._depthwise(self.bn1(self.pointwise(x))))
        if drop_last:
            x = x[..., :-1]
        return self.drop(self.pool(self.act(x))).transpose(1, 2)

    def _depthwise(self, x: Tensor) -> Tensor:
        """``self.depthwise`` computed as a 2-d convolution over ``[B, E, T, 1]`` in channels-last layout.

        Same weights, same result up to float32 summation order; on CPU oneDNN runs this depthwise
        convolution (forward + backward) about 5x faster than the 1-d one (63 taps over 1001 samples:
        14 ms instead of 72 ms on one core), the largest single cost of a DBConformer training step.
        The channels-last layout matters twice: with torch 2.13's oneDNN the same 2-d convolution on a
        plain contiguous ``[B, E, T, 1]`` returns wrong weight gradients for long kernels
        (``test_temporal_stem_depthwise_matches_conv1d``).
        """
        conv = self.depthwise
        if x.requires_grad:  # the gradient comes back channels-last; bn1's backward is 3x faster on a contiguous one
            x.register_hook(torch.Tensor.contiguous)
        x = x.unsqueeze(-1).contiguous(memory_format=torch.channels_last)
        pad = conv.kernel_size[0] // 2
        y = F.conv2d(x, conv.weight.unsqueeze(-1), padding=(pad, 0), groups=conv.groups)
        return y.squeeze(-1).contiguous()  # BatchNorm1d is several times slower on the strided layout


class ChannelSeriesEmbed(nn.Module):
    """One token per channel from its own series: ``[B, C, T] -> [B, C, E]``.

    Conv1d(1, ``hidden``, ``kernel``, ``stride``, padding ``kernel // 2``) -> ELU -> mean over time
    -> Linear(``hidden``, E), shared by all channels.
    """

    def __init__(
        self, hidden: int, emb: int, kernel: int, stride: int, **kw: Any
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, hidden, kernel, stride=stride, padding=kernel // 2, **kw)
        self.act = nn.ELU()
        self.proj = nn.Linear(hidden, emb, **kw)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        h = self.act(self.conv(x.reshape(b * c, 1, t))).mean(-1)
        return self.proj(h).view(b, c, -1)


class DBConformer(Encoder):
    """Dual-branch Conformer for fixed-montage EEG: ``[B, C, T] -> [B, D]``.

    * temporal branch: :class:`TemporalStem` patch tokens ``[B, P, E]`` (+ positional embedding)
      -> ``temporal_depth`` pre-LN transformer blocks;
    * spatial branch: :class:`ChannelSeriesEmbed` channel tokens ``[B, C, E]`` (+ per-electrode
      embedding) -> ``spatial_depth`` pre-LN transformer blocks;
    * fusion: mean of the temporal tokens ++ channel-attention pooling of the spatial tokens, so
      ``D = 2 E`` (``E`` for a single ``branch``).

    Attention logits are scaled by ``E ** -0.5`` (the full width, not the head width), as in the
    original; feed-forward width ``4 E`` with exact GELU; LayerNorm eps 1e-5.

    Input mapping. With ``channels`` (vocabulary keys such as ``"eeg/C3"``), the encoder needs
    ``self.vocab`` (set by ``create_encoder(..., data_spec=...)``, by ``load_pretrained`` from a saved
    ``vocab.json``, or by hand) and reorders every batch onto its montage with
    :meth:`ChannelBatch.select`; a sample lacking any montage electrode raises a ``ValueError`` naming
    them, unless ``interpolate_missing=True``: then they are interpolated from the sample's present
    montage electrodes (spherical splines on the vocabulary positions,
    :func:`chanformer.encoders.montage.interpolate_montage`). Without ``channels``, a batch must
    hold exactly ``n_chans`` present channels, in the montage's order.

    Classifier. With ``n_outputs``, the original's head (``2E -> 64 -> ELU -> 32 -> ELU -> n_outputs``,
    dropout after each ELU) is part of the encoder: :meth:`forward_logits` gives class logits, while
    :meth:`forward` still returns the fused ``[B, D]`` features.

    Args:
        n_chans: montage size ``C`` (taken from ``channels`` when given).
        n_times: samples per trial ``T``.
        channels: the montage as vocabulary keys, in the order the weights expect.
        emb_size: token width ``E``.
        temporal_depth / spatial_depth: transformer blocks per branch.
        num_heads: attention heads (original: 10).
        patch_size: temporal pooling window; ``P = (T - drop_last_sample) // patch_size`` tokens.
        temporal_kernel: depthwise temporal conv length (odd; original 63).
        spatial_dim: hidden width of the per-channel embedding (original ``spa_dim``).
        spatial_kernel / spatial_stride: per-channel conv (original 25 / 5).
        drop_last_sample: the temporal stem drops its last time step before pooling (the original
            does this for every dataset but ``MI1-7``). The convolutions still see every sample, and
            with ``n_times % patch_size != 0`` the pooling discards that step anyway; the spatial
            branch always uses all samples.
        pos_embed: learned positional embeddings on both token sets (original ``posemb_flag``).
        channel_attention: attention pooling of the spatial tokens; False = plain mean
            (original ``chn_atten_flag``).
        branch: ``"all"``, ``"temporal"`` or ``"spatial"`` (which features are produced).
        n_outputs: classes of the built-in classifier head, or ``None`` for none.
        drop_rate: dropout in the stem, the transformer blocks and the classifier head.
        interpolate_missing: interpolate absent montage electrodes instead of raising.

    """

    data_args = {"n_times": "n_times"}

    @classmethod
    def data_kwargs(cls, spec: DataSpec, given: dict[str, Any]) -> dict[str, Any]:
        """Besides ``n_times``: a build given neither ``channels`` nor ``n_chans`` takes the data's
        fixed montage (``spec.channels``), so one recipe serves archives of any channel set."""
        out = super().data_kwargs(spec, given)
        if given.get("channels") is None and given.get("n_chans") is None and spec.channels:
            out["channels"] = list(spec.channels)
        return out

    def __init__(
        self,
        n_chans: int | None = None,
        n_times: int = 1000,
        channels: Sequence[str] | None = None,
        emb_size: int = 40,
        temporal_depth: int = 2,
        spatial_depth: int = 2,
        num_heads: int = 10,
        patch_size: int = 125,
        temporal_kernel: int = 63,
        spatial_dim: int = 16,
        spatial_kernel: int = 25,
        spatial_stride: int = 5,
        drop_last_sample: bool = False,
        pos_embed: bool = True,
        channel_attention: bool = True,
        branch: str = "all",
        n_outputs: int | None = None,
        drop_rate: float = 0.25,
        interpolate_missing: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels is not None:
            channels = [str(k) for k in channels]
            if len(set(channels)) != len(channels):
                raise ValueError(f"DBConformer(channels=...): duplicate keys in {channels}")
            if n_chans is not None and n_chans != len(channels):
                raise ValueError(
                    f"DBConformer(n_chans={n_chans}): differs from len(channels)={len(channels)}"
                )
            n_chans = len(channels)
        if n_chans is None:
            raise ValueError("DBConformer: give the montage as channels=[...] or its size as n_chans")
        for arg, val in (
            ("n_chans", n_chans),
            ("n_times", n_times),
            ("emb_size", emb_size),
            ("num_heads", num_heads),
            ("patch_size", patch_size),
            ("spatial_dim", spatial_dim),
            ("spatial_kernel", spatial_kernel),
            ("spatial_stride", spatial_stride),
        ):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"DBConformer({arg}={val!r}): must be a positive integer")
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(
                f"DBConformer(temporal_kernel={temporal_kernel}): must be a positive odd integer"
            )
        if branch not in BRANCHES:
            raise ValueError(f"DBConformer(branch={branch!r}): expected one of {BRANCHES}")
        if emb_size % num_heads:
            raise ValueError(f"DBConformer(num_heads={num_heads}): must divide emb_size={emb_size}")
        n_tokens = (n_times - int(drop_last_sample)) // patch_size
        if branch != "spatial" and n_tokens < 1:
            raise ValueError(
                f"DBConformer(n_times={n_times}): shorter than one patch of {patch_size} samples"
            )
        if n_outputs is not None and n_outputs < 1:
            raise ValueError(f"DBConformer(n_outputs={n_outputs}): must be positive or None")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.channels = channels
        self.interpolate_missing = bool(interpolate_missing)
        self.n_chans, self.n_times, self.n_tokens = n_chans, n_times, n_tokens
        self.drop_last_sample = bool(drop_last_sample)
        self.branch = branch
        self.embed_dim = emb_size * (2 if branch == "all" else 1)

        def blocks(depth: int) -> nn.ModuleList:
            return nn.ModuleList(
                MaskedTransformerBlock(
                    emb_size,
                    num_heads,
                    4 * emb_size,
                    qk_scale=emb_size**-0.5,
                    norm_eps=1e-5,
                    drop=drop_rate,
                    attn_drop=drop_rate,
                    **kw,
                )
                for _ in range(depth)
            )

        self.temporal_stem: TemporalStem | None = None
        self.temporal_pos: nn.Parameter | None = None
        self.temporal_blocks: nn.ModuleList | None = None
        if branch != "spatial":
            self.temporal_stem = TemporalStem(n_chans, emb_size, temporal_kernel, patch_size, drop_rate, **kw)
            self.temporal_pos = nn.Parameter(torch.zeros(1, n_tokens, emb_size, **kw)) if pos_embed else None
            self.temporal_blocks = blocks(temporal_depth)
        self.spatial_embed: ChannelSeriesEmbed | None = None
        self.spatial_pos: nn.Parameter | None = None
        self.spatial_blocks: nn.ModuleList | None = None
        self.channel_pool: ChannelAttentionPool | None = None
        if branch != "temporal":
            self.spatial_embed = ChannelSeriesEmbed(
                spatial_dim, emb_size, spatial_kernel, spatial_stride, **kw
            )
            self.spatial_pos = nn.Parameter(torch.zeros(1, n_chans, emb_size, **kw)) if pos_embed else None
            self.spatial_blocks = blocks(spatial_depth)
            self.channel_pool = ChannelAttentionPool(emb_size, **kw) if channel_attention else None
        self.classifier: nn.Sequential | None = None
        if n_outputs is not None:
            self.classifier = nn.Sequential(
                nn.Linear(self.embed_dim, 64, **kw),
                nn.ELU(),
                nn.Dropout(drop_rate),
                nn.Linear(64, 32, **kw),
                nn.ELU(),
                nn.Dropout(drop_rate),
                nn.Linear(32, n_outputs, **kw),
            )
        for pos in (self.temporal_pos, self.spatial_pos):
            if pos is not None:
                nn.init.trunc_normal_(pos, std=0.02)

    # -- input mapping ------------------------------------------------------------------------
    def required_channels(self) -> list[str]:
        """The montage keys the weights are tied to (``[]`` without declared ``channels``)."""
        return list(self.channels or [])

    def montage_values(self, batch: ChannelBatch) -> Tensor:
        """Map the batch onto this encoder's montage: ``[B, n_chans, T]``; errors name what is missing."""
        if batch.values.ndim != 3:
            raise ValueError(
                f"DBConformer takes EEG [B, C, T], got values of shape {tuple(batch.values.shape)}"
            )
        if self.channels is not None:
            if self.vocab is None:
                raise ValueError(
                    "DBConformer declares its montage as channel keys but has no vocabulary: set "
                    "`encoder.vocab` to the ChannelVocab whose ids the batch uses (create_encoder(..., "
                    "data_spec=...) does this)"
                )
            unknown = [k for k in self.channels if k not in self.vocab]
            if unknown:
                raise ValueError(
                    f"DBConformer montage channel(s) {unknown} are not in vocabulary {self.vocab.name!r}"
                )
            if self.interpolate_missing:
                batch = interpolate_montage(batch, self.channels, self.vocab)
            batch = batch.select(self.vocab.ids(self.channels))
            if not bool(batch.mask.all()):
                lacking = (~batch.mask).any(0).nonzero().flatten().tolist()
                samples = (~batch.mask).any(1).nonzero().flatten().tolist()
                raise ValueError(
                    f"DBConformer needs montage channel(s) {[self.channels[i] for i in lacking]} that batch "
                    f"sample(s) {samples} lack; pass interpolate_missing=True to interpolate them"
                )
        elif batch.n_channels != self.n_chans or not bool(batch.mask.all()):
            raise ValueError(
                f"DBConformer without declared channels needs all {self.n_chans} montage channels present in "
                f"order; got {batch.n_channels} channel slots with {int(batch.mask.sum(1).min())} present"
            )
        if batch.values.shape[-1] != self.n_times:
            raise ValueError(
                f"DBConformer expects n_times={self.n_times} samples, got {batch.values.shape[-1]}"
            )
        return batch.values

    # -- model -----------------------------------------------------------------------------------
    def tokens(self, x: Tensor) -> Tensor:
        """Tokens of ``x [B, C, T]`` (on the montage) -> ``[B, P + C, E]``.

        Temporal tokens first, then channel tokens (only one group for a single ``branch``).
        """
        out = []
        if self.temporal_stem is not None:
            t = self.temporal_stem(x, self.drop_last_sample)
            if self.temporal_pos is not None:
                t = t + self.temporal_pos
            assert self.temporal_blocks is not None  # built together with temporal_stem
            out.append(run_blocks(self.temporal_blocks, t, None))
        if self.spatial_embed is not None:
            s = self.spatial_embed(x)
            if self.spatial_pos is not None:
                s = s + self.spatial_pos
            assert self.spatial_blocks is not None  # built together with spatial_embed
            out.append(run_blocks(self.spatial_blocks, s, None))
        return torch.cat(out, dim=1)

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """Tokens ``[B, P + n_chans, E]`` of ``batch.values [B, C', T]``.

        ``P`` temporal patch tokens, then one token per montage electrode in montage order; the
        batch's own channel order and extra channels do not matter.
        """
        return self.tokens(self.montage_values(batch))

    def _fuse(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        parts, weights = [], None
        if self.temporal_stem is not None:
            parts.append(features[:, : self.n_tokens].mean(1))
        if self.spatial_embed is not None:
            spatial = features[:, features.shape[1] - self.n_chans :]
            if self.channel_pool is not None:
                pooled, weights = self.channel_pool(spatial)
            else:
                pooled = spatial.mean(1)
            parts.append(pooled)
        return torch.cat(parts, dim=-1), weights

    def channel_order_invariant(self) -> bool:
        """Batches are mapped onto the montage by channel id when ``channels`` are declared."""
        return self.channels is not None

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """Every montage channel, ``[B, n_chans, n_times]`` (ids of ``channels`` in ``vocab`` when declared)."""
        ids = self.vocab.ids(self.channels) if self.channels is not None and self.vocab is not None else None
        return self._example_batch((self.n_times,), self.n_chans, batch_size, seed, ids=ids, ragged=False)

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Mean temporal token ++ channel-attention-pooled spatial token -> ``[B, D]``."""
        return self._fuse(features)[0]

    def channel_weights(self, batch: ChannelBatch) -> Tensor:
        """Channel-attention weights ``[B, n_chans]`` (sum to 1, montage order) for topomaps."""
        if self.channel_pool is None:
            raise ValueError(
                "DBConformer has no channel attention (branch='temporal' or channel_attention=False)"
            )
        return self._fuse(self.forward_features(batch))[1]  # type: ignore[return-value]

    def native_channel_importance(self, batch: ChannelBatch) -> Tensor:
        """:func:`chanformer.importance.channel_importance` protocol: :meth:`channel_weights` mapped back
        onto the batch's channel slots ``[B, C]`` (slots outside the montage get 0)."""
        w = self.channel_weights(batch)
        if self.channels is None:
            return w
        montage = torch.tensor(self.vocab.ids(self.channels), device=w.device)  # type: ignore[union-attr]
        match = (batch.channel_ids[:, :, None] == montage[None, None, :]) & batch.mask[:, :, None]
        return torch.einsum("bcm,bm->bc", match.to(w.dtype), w)

    def forward_logits(self, batch: ChannelBatch) -> Tensor:
        """Class logits ``[B, n_outputs]`` from the built-in classifier head."""
        if self.classifier is None:
            raise ValueError("DBConformer was built without a classifier head; pass n_outputs=...")
        return self.classifier(self(batch))


@register_encoder
def dbconformer(**kw) -> DBConformer:  # type: ignore[no-untyped-def]
    """DBConformer as in the paper's motor-imagery runs.

    40 wide, 2 + 2 blocks, 10 heads, patch 125; 22 channels (BNCI2014-001 montage size) x 1000
    samples unless overridden.
    """
    cfg = {
        "n_chans": None if "channels" in kw else 22,
        "n_times": 1000,
        "emb_size": 40,
        "temporal_depth": 2,
        "spatial_depth": 2,
        "num_heads": 10,
        "patch_size": 125,
    } | kw
    return DBConformer(**cfg)


@register_encoder
def dbconformer_test(**kw) -> DBConformer:  # type: ignore[no-untyped-def]
    """Tiny DBConformer for tests and docs (4 channels x 64 samples, 8 wide, 1 + 1 blocks)."""
    cfg = {
        "n_chans": None if "channels" in kw else 4,
        "n_times": 64,
        "emb_size": 8,
        "temporal_depth": 1,
        "spatial_depth": 1,
        "num_heads": 2,
        "patch_size": 16,
        "temporal_kernel": 7,
        "spatial_dim": 4,
        "spatial_kernel": 5,
        "spatial_stride": 2,
    } | kw
    return DBConformer(**cfg)
