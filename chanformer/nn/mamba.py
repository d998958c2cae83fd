"""Mamba (selective state-space) blocks.

:class:`Mamba` is the mixer of Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces" (2023), with the parameter names of mamba-ssm's ``Mamba`` (``in_proj``,
``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``) so its checkpoints load
unchanged. The scan is the one dispatch function :func:`chanformer.kernels.selective_scan.selective_scan`
(the chunked PyTorch scan, or the Triton kernels when forced); the depthwise convolution is
left-causal (padding ``d_conv - 1``, cropped to the input length).

:class:`MambaLayer` is a pre-norm residual layer ``x + Mamba(RMSNorm(x))`` (mamba-ssm's
``Block`` with ``norm``/``mixer`` children), and :class:`BidirectionalMamba` runs a stack
forward in time and another on the time-reversed sequence and concatenates them.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chanformer.kernels.selective_scan import IMPLEMENTATIONS, selective_scan

__all__ = ["BidirectionalMamba", "Mamba", "MambaLayer"]



class Mamba(nn.Module):
    """Selective state-space mixer ``[B, L, d_model] -> [B, L, d_model]``.

    Args:
        d_model: token width.
        d_state: SSM state size ``N`` per inner channel.
        d_conv: depthwise causal convolution width.
        expand: inner width ``d_inner = expand * d_model``.
        dt_rank: rank of the step-size projection (``"auto"`` = ``ceil(d_model / 16)``).
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        dt_init: ``"random"`` (uniform ``dt_proj`` weights) or ``"constant"``.
        dt_scale: scale of the ``dt_proj`` weight initialisation.
        dt_init_floor: lower bound of the initial step sizes.
        conv_bias: bias in the depthwise convolution.
        bias: biases in ``in_proj``/``out_proj``.
        scan: passed to the scan dispatch as ``implementation``: ``"auto"`` (the kernel switch
            decides: the Triton kernels when forced with ``CHANFORMER_KERNELS=triton``; else, for
            CPU inference with a state of at least 4,096 values, the stepwise in-place scan; else
            the chunked PyTorch scan), ``"chunked"``, ``"stepwise"`` (inference only) or
            ``"reference"`` (the per-step loop, for checks). The chunked scan beat the loop at every
            measured CPU shape, inference and training: 1.1-4x; the stepwise scan beats the chunked
            one 2-7x at the full MambAttention's inference shapes, ``docs/performance.md``.
        chunk_size: chunk length of the chunked PyTorch scan (passed to the dispatch).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan: str = "auto",
        chunk_size: int = 32,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv)):
            if int(val) < 1:
                raise ValueError(f"Mamba({arg}={val}): must be a positive integer")
        if scan not in IMPLEMENTATIONS:
            raise ValueError(f"Mamba(scan={scan!r}): use one of {IMPLEMENTATIONS}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"Mamba(dt_init={dt_init!r}): use 'random' or 'constant'")
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv = int(d_model), int(d_state), int(d_conv)
        self.d_inner = int(expand * d_model)
        if self.d_inner < 1:
            raise ValueError(f"Mamba(expand={expand}): d_inner = expand * d_model must be >= 1")
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan, self.chunk_size = scan, int(chunk_size)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **kw)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias, **kw)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False, **kw)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **kw)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **kw)
        a = torch.arange(1, self.d_state + 1, dtype=dtype or torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(self.d_inner, dtype=dtype or torch.float32, device=device))
        self._init_dt(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_init: str, dt_scale: float, floor: float) -> None:
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        u = torch.rand(self.d_inner, device=self.dt_proj.bias.device)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def forward(self, hidden: Tensor) -> Tensor:
        """``hidden [B, L, d_model]`` -> ``[B, L, d_model]`` (causal in ``L``)."""
        if hidden.ndim != 3 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"Mamba expects [B, L, d_model={self.d_model}], got {tuple(hidden.shape)}")
        length = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # [B, 2 * d_inner, L]
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])
        dt, b, c = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # [B, d_inner, L], bias added in the scan
        y = selective_scan(
            x,
            dt,
            -torch.exp(self.A_log),
            b.transpose(1, 2),
            c.transpose(1, 2),
            self.D,
            z=z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            implementation=self.scan,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(cast(Tensor, y).transpose(1, 2))


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba layer: ``x + Mamba(RMSNorm(x))``, ``[B, L, D] -> [B, L, D]``.

    Args:
        d_model: token width.
        norm_eps: RMSNorm epsilon.
        **mamba_kwargs: forwarded to :class:`Mamba`.
    """

    def __init__(self, d_model: int, norm_eps: float = 1e-5, **mamba_kwargs: Any) -> None:
        super().__init__()
        kw = {k: mamba_kwargs[k] for k in ("device", "dtype") if k in mamba_kwargs}
        self.norm = nn.RMSNorm(d_model, eps=norm_eps, **kw)
        self.mixer = Mamba(d_model, **mamba_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mixer(self.norm(x))


class BidirectionalMamba(nn.Module):
    """Forward and time-reversed Mamba stacks, concatenated: ``[B, L, D] -> [B, L, 2 D]``.

    Output ``[..., :D]`` is the forward stack on ``x``; ``[..., D:]`` is the backward stack run
    on ``x`` flipped in time and flipped back.

    Args:
        d_model: token width ``D``.
        n_layer: :class:`MambaLayer` count per direction.
        norm_eps: RMSNorm epsilon.
        **mamba_kwargs: forwarded to :class:`Mamba`.
    """

    def __init__(self, d_model: int, n_layer: int = 1, norm_eps: float = 1e-5, **mamba_kwargs: Any) -> None:
        super().__init__()
        if n_layer < 1:
            raise ValueError(f"BidirectionalMamba(n_layer={n_layer}): must be >= 1")
        self.forward_blocks = nn.ModuleList(MambaLayer(d_model, norm_eps, **mamba_kwargs) for _ in range(n_layer))
        self.backward_blocks = nn.ModuleList(MambaLayer(d_model, norm_eps, **mamba_kwargs) for _ in range(n_layer))
        with torch.no_grad():  # residual branches start small, as in mamba-ssm's initialisation
            for layer in [*self.forward_blocks, *self.backward_blocks]:
                layer.mixer.out_proj.weight.div_(math.sqrt(n_layer))

    def forward(self, x: Tensor) -> Tensor:
        fwd, bwd = x, x.flip(1)
        for layer in self.forward_blocks:
            fwd = layer(fwd)
        for layer in self.backward_blocks:
            bwd = layer(bwd)
        return torch.cat([fwd, bwd.flip(1)], dim=-1)
