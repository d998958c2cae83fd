"""Shared building blocks; encoders import them and never redefine a block."""

from chanformer.nn.instance_norm import InstanceNorm
from chanformer.nn.star import STAR, STARLayer

__all__ = ["STAR", "InstanceNorm", "STARLayer"]
