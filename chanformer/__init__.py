"""chanformer: channel-adaptive deep learning for multichannel signals and images."""

from chanformer.batch import ChannelBatch, ChannelSample
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError
from chanformer.encoders import Encoder, create_encoder, list_encoders
from chanformer.hub import load_pretrained, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "ChannelBatch",
    "ChannelSample",
    "ChannelVocab",
    "Encoder",
    "UnknownChannelError",
    "create_encoder",
    "list_encoders",
    "load_pretrained",
    "save_pretrained",
]
