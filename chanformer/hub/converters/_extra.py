"""Imports the converter modules beyond SOFTS; each model family adds its import here."""
from chanformer.hub.converters import channelvit  # noqa: F401,I001
from chanformer.hub.converters import chadavit  # noqa: F401,I001
