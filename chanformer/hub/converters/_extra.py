"""Imports the converter modules beyond SOFTS; each model family adds its import here."""
