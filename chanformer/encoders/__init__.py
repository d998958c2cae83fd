"""Channel-adaptive encoders, registered by variant name (see :func:`create_encoder`)."""

# Importing an encoder module registers its builders.
from chanformer.encoders import (
    _extra,  # noqa: E402,F401,I001
    softs,  # noqa: E402,F401,I001
)
from chanformer.encoders._registry import create_encoder, encoder_entrypoint, list_encoders, register_encoder
from chanformer.encoders.base import Encoder, masked_mean

__all__ = ["Encoder", "create_encoder", "encoder_entrypoint", "list_encoders", "masked_mean", "register_encoder"]
