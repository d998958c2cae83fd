"""Time-delay (1-D convolution) block of ECAPA-TDNN, with SpeechBrain's padding and activation names."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["TDNNBlock", "activation_name"]

_ACTIVATIONS = {
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,
    "GELU": nn.GELU,
    "ELU": nn.ELU,
    "SiLU": nn.SiLU,
    "Tanh": nn.Tanh,
    "Sigmoid": nn.Sigmoid,
}


def activation_name(activation: Any) -> str:
    """Canonical name (``"ReLU"``, ...) of an activation given as a name, dotted path or class."""
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        activation = activation.__name__
    name = str(activation).strip("<>'\" ").split(".")[-1].split("'")[0]
    match = {k.lower(): k for k in _ACTIVATIONS}.get(name.lower())
    if match is None:
        raise ValueError(f"ECAPA_TDNN(activation={activation!r}): use one of {sorted(_ACTIVATIONS)}")
    return match


class TDNNBlock(nn.Module):
    """Conv1d ("same" reflect padding) -> activation -> BatchNorm1d -> channel dropout.

    ``[B, C_in, T] -> [B, C_out, T']`` with ``T' = T`` when ``dilation * (kernel_size - 1)`` is
    even (one frame shorter otherwise, as SpeechBrain's padding rule gives). Reflect padding
    needs ``T > dilation * (kernel_size - 1) / 2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        activation: str = "ReLU",
        groups: int = 1,
        dropout: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups, **kw)
        self.activation = _ACTIVATIONS[activation]()
        self.norm = nn.BatchNorm1d(out_channels, **kw)
        self.dropout = nn.Dropout1d(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x [B, C_x, T]``; ``context [B, C_in - C_x]``: further input channels that are constant over
        time, as if appended to ``x``'s channels tiled over the frames (ECAPA's pooling appends the
        utterance mean and std). Their share of the convolution is the same for every frame, so it is
        computed once per sequence, not per frame (weights summed over the taps: the reflect-padded
        constant stays constant)."""
        if self.pad:
            if x.shape[-1] <= self.pad:
                raise ValueError(f"TDNN block needs more than {self.pad} frames for reflect padding, got {x.shape[-1]}")
            x = nn.functional.pad(x, (self.pad, self.pad), mode="reflect")
        if context is None:
            y = self.conv(x)
        else:
            if self.conv.groups != 1 or x.shape[1] + context.shape[1] != self.conv.in_channels:
                raise ValueError(
                    f"TDNNBlock(context=...): needs groups=1 and {self.conv.in_channels} input channels in all, "
                    f"got {x.shape[1]} + {context.shape[1]}"
                )
            w_x, w_ctx = self.conv.weight.split([x.shape[1], context.shape[1]], dim=1)
            y = nn.functional.conv1d(x, w_x, self.conv.bias, dilation=self.conv.dilation)
            y = y + (context @ w_ctx.sum(-1).t())[..., None]
        return self.dropout(self.norm(self.activation(y)))
