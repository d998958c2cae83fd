"""Shared building blocks; encoders import them and never redefine a block."""

from chanformer.nn.attention import MultiHeadSelfAttention
from chanformer.nn.instance_norm import InstanceNorm
from chanformer.nn.mlp import Mlp
from chanformer.nn.pooling import AttentiveStatisticsPooling, ChannelAttentionPool, GatedAttention, masked_mean
from chanformer.nn.star import STAR, STARLayer
from chanformer.nn.tdnn import TDNNBlock

__all__ = [
    "STAR",
    "AttentiveStatisticsPooling",
    "ChannelAttentionPool",
    "GatedAttention",
    "InstanceNorm",
    "Mlp",
    "MultiHeadSelfAttention",
    "STARLayer",
    "TDNNBlock",
    "masked_mean",
]
