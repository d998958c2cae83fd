"""chanformer: channel-adaptive deep learning for multichannel signals and images."""

import os

# OpenMP threads that wait for work by spinning burn the cores other processes need: on a shared
# 2-core machine the default `chanformer fit` took 75 s (74 s CPU) with spinning threads and 12 s
# with passive ones, same result. libgomp reads this once, when torch loads it, so it only takes
# effect when chanformer is imported before torch (the CLI always is); OMP_WAIT_POLICY=ACTIVE
# in the environment keeps spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from chanformer.batch import ChannelBatch, ChannelSample  # noqa: E402
from chanformer.channels import Channel, ChannelVocab, UnknownChannelError  # noqa: E402
from chanformer.encoders import Encoder, create_encoder, list_encoders  # noqa: E402
from chanformer.hub import load_pretrained, save_pretrained  # noqa: E402

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
