"""Multi-head Gaussian Adaptive Attention (GAAM).

Ioannides et al. 2024, "Gaussian Adaptive Attention is All You Need" (official code:
gioannides/Gaussian-Adaptive-Attention).

GAAM reweights a tensor along one axis (``norm_axis``) by a Gaussian density of each entry
under that axis's own statistics. Per head ``h`` (a contiguous chunk of ``head_axis``, which
defaults to ``norm_axis`` as in the paper's code) and entry ``x``::

    mean, var = mean and UNBIASED variance (N - 1) of x over norm_axis;  var += eps
    y_g = (x - (mean + mean_offsets[h, g])) / sqrt(var)                   for g < G
    mixture = prod_g exp(-y_g^2 / (2 c[h, g]^2)) / sqrt(2 pi c[h, g]^2)
    weight = mixture / max(sum of mixture over norm_axis, eps)
    out = x * weight

There is no residual, no affine transform and no softmax. The chunk size along
``head_axis`` is ``size // num_heads`` and the last head takes the remainder.

Masking, two mechanisms:

* ``padding_value`` (the original's behaviour, kept exactly): entries equal to it are
  zeroed for the statistics but still counted in ``N``; their Gaussian is evaluated on the
  raw value, they enter the normalising sum, and their output is ``x`` unchanged.
* ``mask`` (ours, e.g. the ``[B, C]`` channel mask of a :class:`~chanformer.ChannelBatch`):
  entries where it is False are fully excluded. They do not count in ``N`` or in the
  normalising sum, their weight is 0 and their output is ``x`` unchanged, so the outputs of
  present entries never depend on the masked ones.

Degenerate case: with a single (present) entry along ``norm_axis`` the unbiased variance's
denominator is clamped to 1 (the original returns NaN there).

``stable=True`` (ours; used by the GAT encoder) computes the same weights as a softmax over
``norm_axis`` of ``-sum_g y_g^2 / (2 c_g^2)``, so they cannot underflow to 0 and always sum
to 1 over the present entries; the default keeps the original's product-and-clamp numerics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from chanformer.registry import register_spec

__all__ = ["GaussianBlock", "MultiHeadGaussianAdaptiveAttention", "expand_mask"]


def expand_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Broadcast a boolean mask onto ``x``; a mask over ``x``'s leading dims gains trailing dims.

    Args:
        mask: bool tensor, True = present; shape ``x.shape[:k]`` (e.g. ``[B, C]`` for
            ``x [B, C, D]``) or any shape broadcastable to ``x``.
        x: the tensor the mask refers to.

    Returns:
        A bool view of shape ``x.shape``.

    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.ndim > x.ndim:
        raise ValueError(f"mask of shape {tuple(mask.shape)} has more dims than x {tuple(x.shape)}")
    if mask.ndim < x.ndim and tuple(mask.shape) == tuple(x.shape[: mask.ndim]):
        mask = mask.reshape(*mask.shape, *([1] * (x.ndim - mask.ndim)))
    try:
        return mask.expand(x.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to x {tuple(x.shape)}"
        ) from None


def _axis(axis: int, ndim: int, name: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an input with {ndim} dims")
    return axis % ndim


def _sum(terms: list[Tensor]) -> Tensor:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _head_sizes(size: int, num_heads: int) -> list[int]:
    if size < num_heads:
        raise ValueError(f"num_heads={num_heads} heads cannot split an axis of size {size}")
    chunk = size // num_heads
    return [chunk] * (num_heads - 1) + [size - chunk * (num_heads - 1)]


class MultiHeadGaussianAdaptiveAttention(nn.Module):
    """Multi-head GAAM along one axis: ``x [*] -> x * weight`` (same shape).

    Args:
        norm_axis: axis over which the mean/variance and the weight normalisation run.
        num_heads: number of heads; each owns a contiguous chunk of ``head_axis`` and its
            own ``num_gaussians`` mean offsets and variance scales.
        num_gaussians: Gaussians per head whose densities are multiplied.
        padding_value: entries exactly equal to it are treated as padding (original
            semantics, see the module docstring); ``None`` disables it.
        eps: added to the variance and lower bound of the normalising sum. (The original
            class never forwards its ``eps`` to the heads, which always use 1e-8; the
            converter reproduces that.)
        head_axis: axis split into heads; ``None`` = ``norm_axis`` (the original). Use a
            different axis (e.g. features) to keep the statistics over the whole
            ``norm_axis``, which a variable channel axis needs.
        stable: normalise in log space (a softmax over ``norm_axis`` of the log of the
            Gaussian product). Mathematically the same weights, but they never underflow to
            0 (the original's product does for far-out entries and for constant chunks), so
            they always sum to 1 over the present entries. Off by default (original numerics).

    Learnable parameters:
        mean_offsets: ``[num_heads, num_gaussians]``, initialised to 0.
        scales: ``[num_heads, num_gaussians]`` variance scales ``c`` (only ``c^2`` is used),
            initialised to ``exp(randn)``.

    """

    def __init__(
        self,
        norm_axis: int,
        num_heads: int,
        num_gaussians: int,
        padding_value: float | None = None,
        eps: float = 1e-8,
        head_axis: int | None = None,
        stable: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for arg, val in (("num_heads", num_heads), ("num_gaussians", num_gaussians)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(
                    f"MultiHeadGaussianAdaptiveAttention({arg}={val!r}): must be a positive integer"
                )
        for arg, axis in (("norm_axis", norm_axis), ("head_axis", head_axis)):
            if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool)):
                raise TypeError(f"MultiHeadGaussianAdaptiveAttention({arg}={axis!r}): must be an int")
        if not eps > 0:
            raise ValueError(f"MultiHeadGaussianAdaptiveAttention(eps={eps}): must be > 0")
        self.norm_axis = norm_axis
        self.head_axis = head_axis
        self.num_heads = num_heads
        self.num_gaussians = num_gaussians
        self.padding_value = None if padding_value is None else float(padding_value)
        self.eps = float(eps)
        self.stable = bool(stable)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.mean_offsets = nn.Parameter(torch.zeros(num_heads, num_gaussians, **kw))
        self.scales = nn.Parameter(torch.randn(num_heads, num_gaussians, **kw).exp())

    def extra_repr(self) -> str:
        return (
            f"norm_axis={self.norm_axis}, num_heads={self.num_heads}, num_gaussians={self.num_gaussians}, "
            f"padding_value={self.padding_value}, eps={self.eps}, head_axis={self.head_axis}, "
            f"stable={self.stable}"
        )

    def pretrained_spec(self) -> dict[str, Any]:
        return {
            "kind": "gaam",
            "kwargs": {
                "norm_axis": self.norm_axis,
                "num_heads": self.num_heads,
                "num_gaussians": self.num_gaussians,
                "padding_value": self.padding_value,
                "eps": self.eps,
                "head_axis": self.head_axis,
                "stable": self.stable,
            },
        }

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Reweight ``x`` along ``norm_axis``.

        Args:
            x: any float tensor with ``norm_axis`` and ``head_axis`` in range, e.g.
                ``[B, T, D]`` or channel tokens ``[B, C, D]``.
            mask: optional bool mask, True = present (see :func:`expand_mask` for shapes,
                e.g. ``[B, C]``); absent entries are excluded from the statistics and the
                normalisation, get weight 0 and pass through unchanged.
            return_attention: also return the weights.

        Returns:
            ``out`` (shape of ``x``), or ``(out, weights)`` with ``weights`` the normalised
            Gaussian weights, per-head chunks concatenated along ``head_axis``.

        """
        ax = _axis(self.norm_axis, x.ndim, "norm_axis")
        hax = ax if self.head_axis is None else _axis(self.head_axis, x.ndim, "head_axis")
        size, heads = x.shape[hax], self.num_heads
        sizes = _head_sizes(size, heads)
        m = None if mask is None else expand_mask(mask.to(x.device), x)
        pad = None if self.padding_value is None else x != self.padding_value
        if size % heads == 0:
            # even split: one pass with a head axis; parameters broadcast as [H, 1, ..., 1]
            def split(t: Tensor) -> Tensor:
                return t.unflatten(hax, (heads, size // heads))

            ax_h = ax + 1 if ax >= hax else ax  # ax == hax: statistics over the chunk
            shape = (heads,) + (1,) * (x.ndim - hax)
            out, w = self._head(
                split(x),
                [self.mean_offsets[:, g].reshape(shape) for g in range(self.num_gaussians)],
                [self.scales[:, g].reshape(shape) for g in range(self.num_gaussians)],
                ax_h,
                None if m is None else split(m),
                None if pad is None else split(pad),
            )
            out, w = out.flatten(hax, hax + 1), w.flatten(hax, hax + 1)
        else:
            xs = x.split(sizes, hax)
            ms = [None] * heads if m is None else m.split(sizes, hax)
            ps = [None] * heads if pad is None else pad.split(sizes, hax)
            parts = [
                self._head(xs[h], list(self.mean_offsets[h]), list(self.scales[h]), ax, ms[h], ps[h])
                for h in range(heads)
            ]
            out = torch.cat([o for o, _ in parts], hax)
            w = torch.cat([w for _, w in parts], hax)
        return (out, w) if return_attention else out

    def _head(
        self,
        x: Tensor,
        offsets: list[Tensor],
        scales: list[Tensor],
        ax: int,
        m: Tensor | None,
        pad: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Weights and output of one head (or of all heads stacked on an axis of their own)."""
        xm = x if pad is None else x.masked_fill(~pad, 0.0)
        if m is None:
            n = torch.tensor(float(x.shape[ax]), dtype=x.dtype, device=x.device)
            mean = xm.mean(ax, keepdim=True)
            centred = xm - mean
        else:
            mf = m.to(x.dtype)
            n = mf.sum(ax, keepdim=True)
            mean = (xm * mf).sum(ax, keepdim=True) / n.clamp_min(1.0)
            centred = (xm - mean) * mf
        var = centred.square().sum(ax, keepdim=True) / (n - 1.0).clamp_min(1.0) + self.eps
        # The G Gaussians share x, mean and var, so the exponent of their product is one quadratic
        # in x: sum_g k_g (x - mean - o_g)^2 / var = A (x - mean - s)^2 / var + P / var, with
        # k_g = 1 / (2 c_g^2), A = sum k_g, s = sum k_g o_g / A and P = sum k_g (s - o_g)^2 >= 0
        # (completed square: no cancellation). A, s and P are parameter-sized, so the full-size
        # tensor sees a handful of elementwise ops instead of ~8 per Gaussian, forward and backward.
        k = [0.5 / c.square() for c in scales]
        a = _sum(k)
        s = _sum([kg * o for kg, o in zip(k, offsets)]) / a
        quad = ((x - (mean + s)) * (a / var).sqrt()).square()
        if self.stable:
            # log of the Gaussian product up to terms constant along ax, normalised by a softmax
            logit = -quad
            if m is not None:
                any_present = m.any(ax, keepdim=True)
                logit = torch.where(any_present, logit.masked_fill(~m, float("-inf")), 0.0)
            weight = torch.softmax(logit, ax)
            if m is not None:
                weight = weight.masked_fill(~m, 0.0)
        else:
            # the original's product of normalised densities, as one exp (same value up to rounding)
            p = _sum([kg * (s - o).square() for kg, o in zip(k, offsets)])
            log_norm = _sum([0.5 * torch.log(2.0 * math.pi * c.square()) for c in scales])
            mixture = torch.exp(-(quad + (p / var + log_norm)))
            if m is not None:
                mixture = mixture.masked_fill(~m, 0.0)
            weight = mixture / mixture.sum(ax, keepdim=True).clamp_min(self.eps)
        out = x * weight
        keep = pad if m is None else (m if pad is None else pad & m)
        if keep is not None:
            out = torch.where(keep, out, x)
        return out, weight


class GaussianBlock(nn.Module):
    """Stack of GAAM layers with residuals: ``x = gaam_l(x) + x`` for each layer.

    Args:
        norm_axes: ``norm_axis`` of each layer.
        num_heads: heads of each layer.
        num_gaussians: Gaussians per head of each layer.
        num_layers: number of layers (defaults to ``len(norm_axes)``; must match the lists).
        padding_value: see :class:`MultiHeadGaussianAdaptiveAttention`; compared with each
            layer's own input, so after the first residual padded entries (now
            ``2 * padding_value``) are no longer treated as padding, as in the original.
        eps: see :class:`MultiHeadGaussianAdaptiveAttention`.
        head_axes: optional ``head_axis`` of each layer.
        stable: see :class:`MultiHeadGaussianAdaptiveAttention`.

    """

    def __init__(
        self,
        norm_axes: Sequence[int],
        num_heads: Sequence[int],
        num_gaussians: Sequence[int],
        num_layers: int | None = None,
        padding_value: float | None = None,
        eps: float = 1e-8,
        head_axes: Sequence[int | None] | None = None,
        stable: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_layers = len(norm_axes) if num_layers is None else num_layers
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"GaussianBlock(num_layers={num_layers!r}): must be a positive integer")
        head_axes = [None] * num_layers if head_axes is None else list(head_axes)
        for arg, val in (("norm_axes", norm_axes), ("num_heads", num_heads), ("num_gaussians", num_gaussians),
                         ("head_axes", head_axes)):  # fmt: skip
            if len(val) != num_layers:
                raise ValueError(f"GaussianBlock({arg}={list(val)}): needs num_layers={num_layers} entries")
        self.norm_axes = [int(a) for a in norm_axes]
        self.num_heads = [int(h) for h in num_heads]
        self.num_gaussians = [int(g) for g in num_gaussians]
        self.head_axes = head_axes
        self.padding_value = None if padding_value is None else float(padding_value)
        self.eps = float(eps)
        self.stable = bool(stable)
        self.layers = nn.ModuleList(
            MultiHeadGaussianAdaptiveAttention(
                a, h, g, padding_value, eps, ha, stable, device=device, dtype=dtype
            )
            for a, h, g, ha in zip(self.norm_axes, self.num_heads, self.num_gaussians, head_axes)
        )

    def pretrained_spec(self) -> dict[str, Any]:
        return {
            "kind": "gaussian_block",
            "kwargs": {
                "norm_axes": self.norm_axes,
                "num_heads": self.num_heads,
                "num_gaussians": self.num_gaussians,
                "padding_value": self.padding_value,
                "eps": self.eps,
                "head_axes": self.head_axes,
                "stable": self.stable,
            },
        }

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``x`` -> same shape; with ``return_attention`` also each layer's weights (a list).

        ``mask`` (True = present) is applied in every layer, see
        :meth:`MultiHeadGaussianAdaptiveAttention.forward`.
        """
        weights = []
        for layer in self.layers:
            y, w = layer(x, mask, return_attention=True)
            x = y + x
            weights.append(w)
        return (x, weights) if return_attention else x


@register_spec("gaam")
def _build_gaam(spec: dict[str, Any]) -> nn.Module:
    return MultiHeadGaussianAdaptiveAttention(**spec["kwargs"])


@register_spec("gaussian_block")
def _build_gaussian_block(spec: dict[str, Any]) -> nn.Module:
    return GaussianBlock(**spec["kwargs"])
