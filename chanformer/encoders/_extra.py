"""Imports the encoder modules beyond SOFTS; each model family adds its import here."""
from chanformer.encoders import channelvit  # noqa: F401,I001
from chanformer.encoders import chadavit  # noqa: F401,I001
