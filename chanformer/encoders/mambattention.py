"""MambAttention speech enhancement generator (Kühne et al., "MambAttention: Mamba with
Multi-Head Attention for Generalizable Single-Channel Speech Enhancement", 2025).

Not a ``[B, D]`` encoder: :class:`MambAttention` maps a waveform :class:`~chanformer.batch.ChannelBatch`
(microphones as channels, each enhanced as a single-channel signal) to enhanced waveforms
(``forward``; the STFT front-end is inside the model). :meth:`MambAttention.forward_spectrum`
(compressed magnitude and phase in, denoised out) and :meth:`MambAttention.enhance` (``[B, L]``
waveforms) are the thin tensor interfaces kept for converters, losses and fixtures.
It lives here, next to the encoders, and is saved/loaded with
:func:`chanformer.hub.save_pretrained` / :func:`chanformer.hub.load_pretrained` as model
kind ``"mambattention"``.

Pipeline (``[B, C, T, F]`` layout inside the network, ``F = n_fft // 2 + 1``):

1. ``[compressed magnitude; phase]`` -> ``[B, 2, T, F]``.
2. Dense encoder: 1x1 conv, a 4-layer dilated DenseBlock (dilation ``2^i`` along time),
   a ``(1, 3)`` conv with frequency stride 2 -> ``[B, H, T, F']``, ``F' = (F - 3) // 2 + 1``.
3. ``num_tfmamba`` blocks; each, along time and then along frequency, applies
   ``x = MHA(LayerNorm(x)) + x`` (ONE attention module shared by both axes) and
   ``x = Linear_{2H -> H}(BiMamba(x)) + x``.
4. Magnitude decoder: DenseBlock, transposed conv back to ``F`` bins, a 1x1 conv head and a
   learnable sigmoid ``beta * sigmoid(slope_f * x)`` giving a mask multiplied onto the noisy
   magnitude. Phase decoder: DenseBlock, transposed conv, ``atan2`` of two 1x1 convs.

The noisy phase is a network input, so bins on the +-pi branch cut make the output depend on
FFT rounding: the first frame of a centred, reflect-padded Hann STFT is exactly real, and the
sign of its imaginary rounding noise picks +pi or -pi. Reproducing a recorded run bit for bit
therefore needs the same FFT code path (for the shared reference fixture, MKL with
``MKL_CBWR=COMPATIBLE`` set before the process's first FFT).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.batch import ChannelBatch
from chanformer.nn.attention import MultiHeadSelfAttention
from chanformer.nn.mamba import BidirectionalMamba
from chanformer.nn.state_keys import RenamedKeys
from chanformer.registry import register_model, register_spec
from chanformer.transforms.audio import mag_phase_istft, mag_phase_stft

__all__ = ["MambAttention", "mambattention", "mambattention_test"]


def _conv_norm_act(conv: nn.Module, channels: int, kw: dict[str, Any]) -> nn.Sequential:
    return nn.Sequential(conv, nn.InstanceNorm2d(channels, affine=True, **kw), nn.PReLU(channels, **kw))


class DenseBlock(nn.Module):
    """Dilated dense block ``[B, H, T, F] -> [B, H, T, F]``: layer ``i`` sees the concatenation
    of all previous outputs and the input (``H (i + 1)`` channels), dilation ``2^i`` along time.
    """

    def __init__(self, channels: int, depth: int = 4, kernel_size: tuple[int, int] = (3, 3), **kw: Any) -> None:
        super().__init__()
        layers = []
        for i in range(depth):
            dil = 2**i
            pad = (dil * (kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
            conv = nn.Conv2d(channels * (i + 1), channels, kernel_size, dilation=(dil, 1), padding=pad, **kw)
            layers.append(_conv_norm_act(conv, channels, kw))
        self.dense_block = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        skip = x
        for layer in self.dense_block:
            x = layer(skip)
            skip = torch.cat([x, skip], dim=1)
        return x


class DenseEncoder(nn.Module):
    """``[B, C_in, T, F] -> [B, H, T, (F - 3) // 2 + 1]``."""

    def __init__(self, in_channels: int, channels: int, **kw: Any) -> None:
        super().__init__()
        self.dense_conv_1 = _conv_norm_act(nn.Conv2d(in_channels, channels, (1, 1), **kw), channels, kw)
        self.dense_block = DenseBlock(channels, 4, **kw)
        self.dense_conv_2 = _conv_norm_act(nn.Conv2d(channels, channels, (1, 3), stride=(1, 2), **kw), channels, kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense_conv_2(self.dense_block(self.dense_conv_1(x)))


class LearnableSigmoid2d(nn.Module):
    """``beta * sigmoid(slope[f] * x)`` for ``x [B, F, T]``; ``slope [F, 1]`` starts at one."""

    def __init__(self, n_freqs: int, beta: float = 2.0, **kw: Any) -> None:
        super().__init__()
        self.beta = float(beta)
        self.slope = nn.Parameter(torch.ones(n_freqs, 1, **kw))

    def forward(self, x: Tensor) -> Tensor:
        return self.beta * torch.sigmoid(self.slope * x)


class MaskDecoder(nn.Module):
    """``[B, H, T, F'] -> mask [B, 1, T, F]`` in ``(0, beta)``."""

    def __init__(self, channels: int, n_freqs: int, beta: float, **kw: Any) -> None:
        super().__init__()
        self.dense_block = DenseBlock(channels, 4, **kw)
        self.mask_conv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, (1, 3), stride=(1, 2), **kw),
            nn.Conv2d(channels, 1, (1, 1), **kw),
            nn.InstanceNorm2d(1, affine=True, **kw),
            nn.PReLU(1, **kw),
            nn.Conv2d(1, 1, (1, 1), **kw),
        )
        self.lsigmoid = LearnableSigmoid2d(n_freqs, beta, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mask_conv(self.dense_block(x))[:, 0]  # [B, T, F]
        return self.lsigmoid(x.transpose(1, 2)).transpose(1, 2)[:, None]


class PhaseDecoder(nn.Module):
    """``[B, H, T, F'] -> phase [B, 1, T, F]`` in ``(-pi, pi]``."""

    def __init__(self, channels: int, **kw: Any) -> None:
        super().__init__()
        self.dense_block = DenseBlock(channels, 4, **kw)
        self.phase_conv = _conv_norm_act(nn.ConvTranspose2d(channels, channels, (1, 3), stride=(1, 2), **kw), channels, kw)
        self.phase_conv_r = nn.Conv2d(channels, 1, (1, 1), **kw)
        self.phase_conv_i = nn.Conv2d(channels, 1, (1, 1), **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = self.phase_conv(self.dense_block(x))
        return torch.atan2(self.phase_conv_i(x), self.phase_conv_r(x))


class AxisAttention(RenamedKeys):
    """``MHA(LayerNorm(x))`` over sequences ``[N, L, H] -> [N, L, H]`` (no residual).

    The attention is :class:`chanformer.nn.attention.MultiHeadSelfAttention` with
    ``nn.MultiheadAttention``'s scale ``1 / sqrt(head_dim)``: the original's
    ``attn.in_proj_weight`` / ``attn.in_proj_bias`` / ``attn.out_proj`` are ``attn.qkv`` /
    ``attn.proj`` here (checkpoints saved with the old names are renamed when loaded).
    """

    renamed_keys: ClassVar[dict[str, str]] = {
        "attn.in_proj_weight": "attn.qkv.weight",
        "attn.in_proj_bias": "attn.qkv.bias",
        "attn.out_proj.": "attn.proj.",
    }

    def __init__(self, dim: int, n_heads: int = 8, **kw: Any) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention width {dim} must be divisible by n_heads={n_heads}")
        self.layernorm = nn.LayerNorm(dim, **kw)
        with torch.random.fork_rng(devices=[]):  # draw nothing here: the CPU draws are the ones below
            self.attn = MultiHeadSelfAttention(dim, n_heads, qk_scale=1 / math.sqrt(dim // n_heads), **kw)
        # nn.MultiheadAttention's initialisation, with its random draws in its order
        self.attn.proj.reset_parameters()
        nn.init.xavier_uniform_(self.attn.qkv.weight)
        nn.init.zeros_(self.attn.qkv.bias)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.attn(self.layernorm(x))  # type: ignore[no-any-return]


class MambAttentionBlock(nn.Module):
    """Shared time/frequency attention + bidirectional Mamba, ``[B, H, T, F'] -> same``."""

    def __init__(self, channels: int, n_heads: int, mamba_kwargs: dict[str, Any], **kw: Any) -> None:
        super().__init__()
        self.attention = AxisAttention(channels, n_heads, **kw)
        self.time_mamba = BidirectionalMamba(channels, **mamba_kwargs, **kw)
        self.freq_mamba = BidirectionalMamba(channels, **mamba_kwargs, **kw)
        self.tlinear = nn.ConvTranspose1d(2 * channels, channels, 1, **kw)
        self.flinear = nn.ConvTranspose1d(2 * channels, channels, 1, **kw)

    @staticmethod
    def _project(proj: nn.ConvTranspose1d, x: Tensor) -> Tensor:
        # A kernel-1 transposed convolution is a linear map: weight [2H, H, 1].
        return F.linear(x, proj.weight[:, :, 0].T, proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, f = x.shape
        x = x.permute(0, 3, 2, 1).reshape(b * f, t, c)  # sequences over time
        x = self.attention(x) + x
        x = self._project(self.tlinear, self.time_mamba(x)) + x
        x = x.view(b, f, t, c).transpose(1, 2).reshape(b * t, f, c)  # sequences over frequency
        x = self.attention(x) + x
        x = self._project(self.flinear, self.freq_mamba(x)) + x
        return x.view(b, t, f, c).permute(0, 3, 1, 2)


class MambAttention(nn.Module):
    """MambAttention generator on compressed magnitude/phase spectrograms.

    Args:
        hid_feature: channel width ``H`` of the dense blocks and sequence models.
        num_tfmamba: number of MambAttention blocks.
        d_state, d_conv, expand: Mamba state size, conv width and expansion.
        norm_epsilon: RMSNorm epsilon inside the Mamba layers.
        beta: upper bound of the learnable sigmoid mask.
        n_heads: attention heads (8 in the original).
        compress_factor: magnitude compression exponent of the STFT front-end.
        n_fft, hop_size, win_size, sampling_rate: STFT configuration (``F = n_fft // 2 + 1``
            must be odd so that the stride-2 encoder and decoders round-trip).
        scan: passed through :class:`chanformer.nn.mamba.Mamba` to the scan dispatch
            (:func:`chanformer.kernels.selective_scan.selective_scan`, ``implementation``): ``"auto"``
            (the kernel switch decides; on CPU without autograd, the stepwise inference scan),
            ``"chunked"``, ``"stepwise"`` (inference only) or ``"reference"``. Saved in the config;
            every value saved so far is accepted.
    """

    def __init__(
        self,
        hid_feature: int = 64,
        num_tfmamba: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 4,
        norm_epsilon: float = 1e-5,
        beta: float = 2.0,
        n_heads: int = 8,
        compress_factor: float = 0.3,
        n_fft: int = 400,
        hop_size: int = 100,
        win_size: int = 400,
        sampling_rate: int = 16000,
        scan: str = "auto",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("hid_feature", hid_feature), ("n_fft", n_fft), ("hop_size", hop_size), ("win_size", win_size)):
            if int(val) < 1:
                raise ValueError(f"MambAttention({arg}={val}): must be a positive integer")
        if num_tfmamba < 0:
            raise ValueError(f"MambAttention(num_tfmamba={num_tfmamba}): must be >= 0")
        n_freqs = n_fft // 2 + 1
        if n_freqs % 2 == 0 or n_freqs < 3:
            raise ValueError(
                f"MambAttention(n_fft={n_fft}): n_fft // 2 + 1 = {n_freqs} must be odd and >= 3 "
                "(the stride-2 encoder/decoders must restore the frequency count)"
            )
        if win_size > n_fft:
            raise ValueError(f"MambAttention(win_size={win_size}): must be <= n_fft={n_fft}")
        if compress_factor <= 0:
            raise ValueError(f"MambAttention(compress_factor={compress_factor}): must be positive")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.config: dict[str, Any] = {
            "hid_feature": int(hid_feature),
            "num_tfmamba": int(num_tfmamba),
            "d_state": int(d_state),
            "d_conv": int(d_conv),
            "expand": expand,
            "norm_epsilon": float(norm_epsilon),
            "beta": float(beta),
            "n_heads": int(n_heads),
            "compress_factor": float(compress_factor),
            "n_fft": int(n_fft),
            "hop_size": int(hop_size),
            "win_size": int(win_size),
            "sampling_rate": int(sampling_rate),
            "scan": scan,
        }
        self.n_freqs = n_freqs
        mamba_kwargs = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "norm_eps": norm_epsilon, "scan": scan}
        self.dense_encoder = DenseEncoder(2, hid_feature, **kw)
        self.blocks = nn.ModuleList(MambAttentionBlock(hid_feature, n_heads, mamba_kwargs, **kw) for _ in range(num_tfmamba))
        self.mask_decoder = MaskDecoder(hid_feature, n_freqs, beta, **kw)
        self.phase_decoder = PhaseDecoder(hid_feature, **kw)

    def forward(self, batch: ChannelBatch) -> Tensor:
        """Enhance noisy waveforms ``batch.values [B, C, L]`` -> ``[B, C, L]``.

        Every present channel (microphone) is enhanced on its own (the model is single-channel);
        padded channels and samples past ``batch.lengths`` come back as zeros, and each
        utterance is enhanced at its own length (samples of different lengths are processed one
        by one), so the output never depends on padding.
        """
        if not isinstance(batch, ChannelBatch):
            raise TypeError(f"MambAttention takes a waveform ChannelBatch [B, C, L], got {type(batch).__name__}")
        if batch.values.ndim != 3:
            raise ValueError(f"MambAttention takes waveforms [B, C, L], got values of shape {tuple(batch.values.shape)}")
        if batch.sfreq is not None and int(batch.sfreq) != self.config["sampling_rate"]:
            raise ValueError(f"batch sampled at {batch.sfreq} Hz; MambAttention expects {self.config['sampling_rate']} Hz")
        batch.require_present("channel")
        batch = batch.padding_zeroed()
        b, c, n = batch.values.shape
        out = torch.zeros_like(batch.values)
        lengths = [n] * b if batch.lengths is None else [int(x) for x in batch.lengths]
        for length in sorted(set(lengths)):
            rows = [i for i in range(b) if lengths[i] == length]
            sel = batch.mask[rows]  # [b', C]
            wav = batch.values[rows][..., :length][sel]  # [present, length]
            enhanced = self.enhance(wav)
            block = torch.zeros(len(rows), c, length, dtype=out.dtype, device=out.device)
            block[sel] = enhanced.to(out.dtype)
            out[rows, :, :length] = block
        return out

    def forward_spectrum(self, noisy_mag: Tensor, noisy_pha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Denoise a compressed spectrogram (the original's generator interface).

        Args:
            noisy_mag: ``[B, F, T]`` compressed magnitude.
            noisy_pha: ``[B, F, T]`` phase.

        Returns:
            ``denoised_mag [B, F, T]``, ``denoised_pha [B, F, T]`` and the compressed complex
            spectrum ``denoised_com [B, F, T, 2]``.
        """
        if noisy_mag.ndim != 3 or noisy_mag.shape[1] != self.n_freqs:
            raise ValueError(f"MambAttention expects noisy_mag [B, F={self.n_freqs}, T], got {tuple(noisy_mag.shape)}")
        if noisy_pha.shape != noisy_mag.shape:
            raise ValueError(f"noisy_pha {tuple(noisy_pha.shape)} must match noisy_mag {tuple(noisy_mag.shape)}")
        mag = noisy_mag.transpose(1, 2)[:, None]  # [B, 1, T, F]
        x = torch.cat([mag, noisy_pha.transpose(1, 2)[:, None]], dim=1)
        x = self.dense_encoder(x)
        for block in self.blocks:
            x = block(x)
        den_mag = (self.mask_decoder(x) * mag)[:, 0].transpose(1, 2)
        den_pha = self.phase_decoder(x)[:, 0].transpose(1, 2)
        den_com = torch.stack([den_mag * torch.cos(den_pha), den_mag * torch.sin(den_pha)], dim=-1)
        return den_mag, den_pha, den_com

    def stft(self, wav: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``wav [B, L]`` -> compressed ``mag, pha [B, F, T]``, ``com [B, F, T, 2]``."""
        c = self.config
        return mag_phase_stft(wav, c["n_fft"], c["hop_size"], c["win_size"], c["compress_factor"])

    def istft(self, mag: Tensor, pha: Tensor, length: int | None = None) -> Tensor:
        """Compressed ``mag, pha [B, F, T]`` -> ``wav [B, L]``."""
        c = self.config
        return mag_phase_istft(mag, pha, c["n_fft"], c["hop_size"], c["win_size"], c["compress_factor"], True, length)

    def enhance(self, wav: Tensor) -> Tensor:
        """Denoise waveforms ``[B, L]`` (or ``[L]``) -> ``[B, L]``.

        Each utterance is scaled to unit RMS (``wav * sqrt(L / sum(wav^2))``), enhanced in the
        STFT domain and scaled back, as the original inference script does.
        """
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2:
            raise ValueError(f"MambAttention.enhance expects wav [B, L] or [L], got {tuple(wav.shape)}")
        length = wav.shape[-1]
        if length <= self.config["n_fft"] // 2:
            raise ValueError(f"MambAttention.enhance: {length} samples is too short for n_fft={self.config['n_fft']}")
        norm = torch.sqrt(length / wav.pow(2).sum(-1, keepdim=True).clamp_min(torch.finfo(wav.dtype).tiny))
        mag, pha, _ = self.stft(wav * norm)
        den_mag, den_pha, _ = self.forward_spectrum(mag, pha)
        return self.istft(den_mag, den_pha, length) / norm

    def pretrained_spec(self) -> dict[str, Any]:
        """JSON-able spec for :func:`chanformer.hub.save_pretrained` (kind ``"mambattention"``)."""
        return {"kind": "mambattention", "kwargs": dict(self.config)}


@register_spec("mambattention")
def _build_mambattention(spec: dict[str, Any]) -> nn.Module:
    return MambAttention(**spec.get("kwargs", {}))


@register_model("enhancement")
def mambattention(**kw: Any) -> MambAttention:
    """The published configuration (VoiceBank-DEMAND-Ex): 64 channels, 4 blocks, d_state 16, expand 4."""
    return MambAttention(**({"hid_feature": 64, "num_tfmamba": 4, "d_state": 16, "expand": 4} | kw))


@register_model("enhancement")
def mambattention_test(**kw: Any) -> MambAttention:
    """Tiny MambAttention for tests: 16 channels, 1 block, d_state 4, n_fft 64 (33 bins)."""
    cfg: dict[str, Any] = {
        "hid_feature": 16,
        "num_tfmamba": 1,
        "d_state": 4,
        "expand": 2,
        "n_fft": 64,
        "hop_size": 16,
        "win_size": 64,
    }
    return MambAttention(**(cfg | kw))
