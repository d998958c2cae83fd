"""Multiple instance learning heads over bags of instance features (slides, recordings)."""

from chanformer.mil.acmil import (
    ABMIL,
    ACMIL,
    ABMILOutput,
    ACMILOutput,
    GatedAttention,
    acmil_loss,
    stkim_mask,
)
from chanformer.mil.base import MILHead
from chanformer.mil.meanpool import MeanPoolMIL, MeanPoolOutput

__all__ = [
    "ABMIL", "ACMIL", "ABMILOutput", "ACMILOutput", "GatedAttention", "MILHead", "MeanPoolMIL", "MeanPoolOutput", "acmil_loss",
    "stkim_mask",
]  # fmt: skip
