"""Imports the converter modules beyond SOFTS; each model family adds its import here."""
# ruff: noqa: F401, I001
from chanformer.hub.converters import acmil, chadavit, channelvit, dbconformer, gaam, mvpformer
from chanformer.hub.converters import ecapa_tdnn, mambattention
