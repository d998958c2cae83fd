"""ECAPA-TDNN speaker encoder (Desplanques et al., "ECAPA-TDNN: Emphasized Channel Attention,
Propagation and Aggregation in TDNN Based Speaker Verification", Interspeech 2020), as in
SpeechBrain's ``speechbrain/lobes/models/ECAPA_TDNN.py:ECAPA_TDNN``.

Fixed input layout: the channels are the ``F`` mel bins ``mel/0 ... mel/{F-1}`` (vocabulary
:func:`mel_vocab`, id ``i`` = ``mel/i``, unless another vocabulary holding those keys is
attached as ``encoder.vocab``) of log-mel features such as
:class:`chanformer.transforms.audio.Fbank` produces (transposed to ``[B, F, T]``), so
``batch.values`` is ``[B, F, T]``. Batches may list the bins in any order and carry padded
slots; a missing bin raises an error naming it. Utterances of different durations are
zero-padded in time and described by the batch's typed ``lengths`` (``[B]`` real frames;
:meth:`ECAPA_TDNN.batch_from_features` converts SpeechBrain's relative lengths, frames
``t < rel * T``), which mask the squeeze-excitation means and the attentive statistics pooling
as in SpeechBrain.

Architecture: TDNN block (Conv1d with reflect "same" padding -> activation -> BatchNorm),
``len(channels) - 2`` SE-Res2Net blocks, multi-layer feature aggregation (concatenated block
outputs -> TDNN), attentive statistics pooling with global context, BatchNorm and a final
1x1 convolution to ``lin_neurons``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.channels import Channel, ChannelVocab
from chanformer.encoders._registry import register_encoder
from chanformer.encoders.base import Encoder
from chanformer.nn.pooling import AttentiveStatisticsPooling
from chanformer.nn.tdnn import TDNNBlock, activation_name

__all__ = [
    "ECAPA_TDNN",
    "AttentiveStatisticsPooling",
    "SERes2NetBlock",
    "TDNNBlock",
    "activation_name",
    "ecapa_tdnn",
    "ecapa_tdnn_512",
    "ecapa_tdnn_test",
    "mel_vocab",
]


def mel_vocab(n_mels: int = 80) -> ChannelVocab:
    """Vocabulary ``mel/0 ... mel/{n_mels-1}`` (id ``i`` is mel bin ``i``)."""
    return ChannelVocab(f"mel{n_mels}", [Channel(f"mel/{i}", kind="mel") for i in range(n_mels)])


def frame_mask(lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor:
    """``[B, T]`` bool, True for real frames ``t < lengths * T`` (SpeechBrain's convention)."""
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be relative lengths of shape [B]=[{batch}], got {tuple(lengths.shape)}")
    if bool(((lengths <= 0) | (lengths > 1)).any()):
        raise ValueError(f"lengths must be relative lengths in (0, 1], got {lengths.tolist()}")
    return torch.arange(steps, device=device, dtype=lengths.dtype)[None] < (lengths * steps)[:, None]


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` chunks; chunk 0 passes through, chunk 1 goes through a
    TDNN, chunk ``i > 1`` adds the previous chunk's output before its TDNN; concatenate."""

    def __init__(
        self, in_channels: int, out_channels: int, scale: int, kernel_size: int, dilation: int, dropout: float, **kw: Any
    ) -> None:
        super().__init__()
        if in_channels % scale or out_channels % scale:
            raise ValueError(f"Res2Net channels ({in_channels}, {out_channels}) must be divisible by res2net_scale={scale}")
        self.scale = scale
        self.blocks = nn.ModuleList(
            TDNNBlock(in_channels // scale, out_channels // scale, kernel_size, dilation, dropout=dropout, **kw)
            for _ in range(scale - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for i, chunk in enumerate(torch.chunk(x, self.scale, dim=1)):
            if i == 0:
                y = chunk
            elif i == 1:
                y = self.blocks[0](chunk)
            else:
                y = self.blocks[i - 1](chunk + y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SEBlock(nn.Module):
    """Squeeze-excitation with a length-masked time mean: ``x * sigmoid(W2 relu(W1 mean_t x))``."""

    def __init__(self, in_channels: int, se_channels: int, out_channels: int, **kw: Any) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, se_channels, 1, **kw)
        self.conv2 = nn.Conv1d(se_channels, out_channels, 1, **kw)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            s = x.mean(dim=2, keepdim=True)
        else:
            m = mask[:, None].to(x.dtype)
            s = (x * m).sum(dim=2, keepdim=True) / m.sum(dim=2, keepdim=True)
        s = torch.sigmoid(self.conv2(torch.relu(self.conv1(s))))
        return s * x


class SERes2NetBlock(nn.Module):
    """TDNN(1x1) -> Res2Net -> TDNN(1x1) -> SE, plus a (1x1-projected) residual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        res2net_scale: int,
        se_channels: int,
        kernel_size: int,
        dilation: int,
        activation: str = "ReLU",
        groups: int = 1,
        dropout: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.tdnn1 = TDNNBlock(in_channels, out_channels, 1, 1, activation, groups, dropout, **kw)
        self.res2net_block = Res2NetBlock(out_channels, out_channels, res2net_scale, kernel_size, dilation, dropout, **kw)
        self.tdnn2 = TDNNBlock(out_channels, out_channels, 1, 1, activation, groups, dropout, **kw)
        self.se_block = SEBlock(out_channels, se_channels, out_channels, **kw)
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1, **kw) if in_channels != out_channels else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        x = self.tdnn2(self.res2net_block(self.tdnn1(x)))
        return self.se_block(x, mask) + residual


class ECAPA_TDNN(Encoder):  # noqa: N801 - the published model's name
    """ECAPA-TDNN: mel filterbank frames ``[B, F, T]`` -> speaker embedding ``[B, lin_neurons]``.

    Args:
        input_size: number of mel bins ``F`` (= input channels ``mel/0 ... mel/{F-1}``).
        channels: widths of the first TDNN, the SE-Res2Net blocks and the aggregation layer.
        kernel_sizes, dilations: per entry of ``channels``.
        attention_channels: bottleneck of the attentive statistics pooling.
        res2net_scale: Res2Net chunk count (divides the SE-Res2Net widths).
        se_channels: squeeze-excitation bottleneck.
        lin_neurons: embedding size ``D`` (= ``embed_dim``).
        global_context: give the pooling attention the utterance mean/std.
        groups: convolution groups of the first TDNN, SE-Res2Net 1x1 TDNNs and aggregation.
        activation: activation name of those TDNNs (``"ReLU"``; Res2Net/pooling TDNNs use ReLU).
        dropout: channel dropout after each TDNN block.
    """

    def __init__(
        self,
        input_size: int = 80,
        channels: Sequence[int] = (512, 512, 512, 512, 1536),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        lin_neurons: int = 192,
        global_context: bool = True,
        groups: Sequence[int] | None = None,
        activation: str = "ReLU",
        dropout: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels, kernel_sizes, dilations = list(channels), list(kernel_sizes), list(dilations)
        groups = [1] * len(channels) if groups is None else list(groups)
        if len(channels) < 3:
            raise ValueError(f"ECAPA_TDNN(channels={channels}): need at least 3 entries (TDNN, SE-Res2Net..., aggregation)")
        for arg, val in (("kernel_sizes", kernel_sizes), ("dilations", dilations), ("groups", groups)):
            if len(val) != len(channels):
                raise ValueError(f"ECAPA_TDNN({arg}={val}): needs one entry per channels entry ({len(channels)})")
        for arg, size in (
            ("input_size", input_size),
            ("attention_channels", attention_channels),
            ("res2net_scale", res2net_scale),
            ("se_channels", se_channels),
            ("lin_neurons", lin_neurons),
        ):
            if int(size) < 1:
                raise ValueError(f"ECAPA_TDNN({arg}={size}): must be a positive integer")
        if any(int(c) < 1 for c in channels) or any(int(k) < 1 for k in kernel_sizes) or any(int(d) < 1 for d in dilations):
            raise ValueError(
                f"ECAPA_TDNN: channels/kernel_sizes/dilations must be positive, got {channels}, {kernel_sizes}, {dilations}"
            )
        act = activation_name(activation)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.input_size = int(input_size)
        self.embed_dim = int(lin_neurons)
        self.vocab = mel_vocab(self.input_size)
        self.input_channels = self.vocab.keys

        blocks: list[nn.Module] = [
            TDNNBlock(input_size, channels[0], kernel_sizes[0], dilations[0], act, groups[0], dropout, **kw)
        ]
        for i in range(1, len(channels) - 1):
            blocks.append(
                SERes2NetBlock(
                    channels[i - 1],
                    channels[i],
                    res2net_scale,
                    se_channels,
                    kernel_sizes[i],
                    dilations[i],
                    act,
                    groups[i],
                    dropout,
                    **kw,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.mfa = TDNNBlock(sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1], act, groups[-1], dropout, **kw)
        self.asp = AttentiveStatisticsPooling(channels[-1], attention_channels, global_context, **kw)
        self.asp_bn = nn.BatchNorm1d(channels[-1] * 2, **kw)
        self.fc = nn.Conv1d(channels[-1] * 2, lin_neurons, 1, **kw)

    # -- ChannelBatch interface -----------------------------------------------------------------
    def required_channels(self) -> list[str]:
        """The ``F`` mel-bin keys ``mel/0 ... mel/{F-1}``, the fixed input layout."""
        return list(self.input_channels)

    def layout_ids(self) -> list[int]:
        """Vocabulary ids of ``mel/0 ... mel/{F-1}`` in ``self.vocab`` (by default :func:`mel_vocab`,
        where they are ``0 ... F-1``; attach a dataset's vocabulary to read its ids instead)."""
        if self.vocab is None:
            raise ValueError("ECAPA_TDNN has no vocabulary: set encoder.vocab to the ChannelVocab the batch ids index")
        unknown = [k for k in self.input_channels if k not in self.vocab]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ValueError(f"ECAPA_TDNN input channels {shown} are not in vocabulary {self.vocab.name!r}")
        return self.vocab.ids(self.input_channels)

    def batch_from_features(self, feats: Tensor, lengths: Tensor | None = None) -> ChannelBatch:
        """Wrap ``feats [B, F, T]`` (mel bins as channels, in order) and optional SpeechBrain
        relative ``lengths [B]`` (in (0, 1]) into a :class:`ChannelBatch` (ids from
        :meth:`layout_ids`; ``batch.lengths`` = the real frame counts ``ceil(rel * T)``)."""
        if feats.ndim != 3 or feats.shape[1] != self.input_size:
            raise ValueError(f"ECAPA_TDNN expects features [B, F={self.input_size}, T], got {tuple(feats.shape)}")
        ids = torch.tensor(self.layout_ids(), device=feats.device).expand(feats.shape[0], -1)
        frames = None
        if lengths is not None:
            frames = frame_mask(lengths, feats.shape[0], feats.shape[-1], feats.device).sum(1)
        mask = torch.ones(ids.shape, dtype=torch.bool, device=feats.device)
        return ChannelBatch(feats, ids, mask, lengths=frames)

    def _features(self, batch: ChannelBatch) -> Tensor:
        values = batch.values
        if values.ndim != 3:
            raise ValueError(f"ECAPA_TDNN takes mel features [B, F, T], got values of shape {tuple(values.shape)}")
        want = torch.tensor(self.layout_ids(), device=values.device)
        if values.shape[1] == self.input_size and bool(batch.mask.all()) and bool((batch.channel_ids == want).all()):
            return values
        picked = batch.select(want)
        if not bool(picked.mask.all()):
            lacking = [self.input_channels[j] for j in sorted(set((~picked.mask).nonzero()[:, 1].tolist()))]
            raise ValueError(f"ECAPA_TDNN needs all {self.input_size} mel channels; missing: {', '.join(lacking)}")
        return picked.values

    def forward_features(self, batch: ChannelBatch) -> Tensor:
        """Frame features after multi-layer aggregation: ``[B, T', channels[-1]]``.

        ``batch.values [B, C, T]`` holds the ``F`` mel bins in any order (plus padded slots);
        the output does not depend on ``C`` or the order. ``T' = T`` for odd kernel sizes.
        """
        feats = self._features(batch)
        mask = None if batch.lengths is None else self._batch_frame_mask(batch, feats.shape[-1])
        return self.frames(feats, mask).transpose(1, 2)

    def channel_order_invariant(self) -> bool:
        return True

    def example_batch(self, batch_size: int = 2, seed: int = 0) -> ChannelBatch:
        """All ``F`` mel bins, ``[B, F, 40]`` frames, every other utterance 28 frames long (typed lengths)."""
        ids = self.layout_ids()
        return self._example_batch((40,), self.input_size, batch_size, seed, ids=ids, ragged=False, durations=[40, 28])

    def pool(self, features: Tensor, batch: ChannelBatch) -> Tensor:
        """Attentive statistics pooling over real frames, BatchNorm, linear -> ``[B, lin_neurons]``."""
        x = features.transpose(1, 2)
        return self.embed_frames(x, self._batch_frame_mask(batch, x.shape[-1]))

    @staticmethod
    def _batch_frame_mask(batch: ChannelBatch, steps: int) -> Tensor:
        """Real frames ``[B, steps]`` from ``batch.lengths`` (rescaled when the network changed ``T``)."""
        mask = batch.time_mask()
        if steps == mask.shape[1]:
            return mask
        return frame_mask(mask.sum(1).to(torch.float32) / mask.shape[1], batch.batch_size, steps, batch.device)

    # -- tensor interface -----------------------------------------------------------------------
    def _mask(self, lengths: Tensor | None, x: Tensor) -> Tensor:
        return frame_mask(lengths, x.shape[0], x.shape[-1], x.device)

    def frames(self, feats: Tensor, mask: Tensor | None = None) -> Tensor:
        """``feats [B, F, T]`` -> aggregated frame features ``[B, channels[-1], T]``."""
        x = feats
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x) if i == 0 else block(x, mask)
            outs.append(x)
        return self.mfa(torch.cat(outs[1:], dim=1))

    def embed_frames(self, x: Tensor, mask: Tensor) -> Tensor:
        """Aggregated frames ``[B, C, T]`` + real-frame ``mask [B, T]`` -> ``[B, lin_neurons]``."""
        return self.fc(self.asp_bn(self.asp(x, mask)))[..., 0]

    def embed(self, feats: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``feats [B, F, T]`` with relative ``lengths [B]`` -> embeddings ``[B, lin_neurons]``."""
        mask = self._mask(lengths, feats)
        return self.embed_frames(self.frames(feats, mask if lengths is not None else None), mask)


@register_encoder
def ecapa_tdnn(**kw: Any) -> ECAPA_TDNN:
    """SpeechBrain's VoxCeleb speaker-verification ECAPA-TDNN (C = 1024, 192-d embeddings)."""
    cfg: dict[str, Any] = {
        "input_size": 80,
        "channels": [1024, 1024, 1024, 1024, 3072],
        "kernel_sizes": [5, 3, 3, 3, 1],
        "dilations": [1, 2, 3, 4, 1],
        "attention_channels": 128,
        "res2net_scale": 8,
        "se_channels": 128,
        "lin_neurons": 192,
    }
    return ECAPA_TDNN(**(cfg | kw))


@register_encoder
def ecapa_tdnn_512(**kw: Any) -> ECAPA_TDNN:
    """The paper's smaller ECAPA-TDNN (C = 512)."""
    cfg: dict[str, Any] = {"input_size": 80, "channels": [512, 512, 512, 512, 1536], "lin_neurons": 192}
    return ECAPA_TDNN(**(cfg | kw))


@register_encoder
def ecapa_tdnn_test(**kw: Any) -> ECAPA_TDNN:
    """Tiny ECAPA-TDNN for tests: 20 mel bins, 16-wide blocks, scale 4, 12-d embeddings."""
    cfg: dict[str, Any] = {
        "input_size": 20,
        "channels": [16, 16, 16, 48],
        "kernel_sizes": [5, 3, 3, 1],
        "dilations": [1, 2, 3, 1],
        "attention_channels": 8,
        "res2net_scale": 4,
        "se_channels": 8,
        "lin_neurons": 12,
    }
    return ECAPA_TDNN(**(cfg | kw))
