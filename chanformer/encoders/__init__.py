"""Channel-adaptive encoders, registered by variant name (see :func:`create_encoder`).

Each family module registers its variants in the core registry (:mod:`chanformer.registry`)
when imported; the registry imports them on the first look-up.
"""

from chanformer.encoders._registry import create_encoder, encoder_class, encoder_entrypoint, list_encoders, register_encoder
from chanformer.encoders.base import Encoder, masked_mean

__all__ = [
    "Encoder",
    "create_encoder",
    "encoder_class",
    "encoder_entrypoint",
    "list_encoders",
    "masked_mean",
    "register_encoder",
]
