"""The ``chanformer`` command line."""

from chanformer.cli.main import main

__all__ = ["main"]
