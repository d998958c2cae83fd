"""Imports the encoder modules beyond SOFTS; each model family adds its import here."""
