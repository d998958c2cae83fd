"""Imports the encoder modules beyond SOFTS; each model family adds its import here."""
# ruff: noqa: F401, I001
from chanformer.encoders import chadavit, channelvit, dbconformer, gat, mvpformer
from chanformer.encoders import ecapa_tdnn, mambattention
