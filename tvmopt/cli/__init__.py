"""The ``tvmopt`` command line, one module per command (see ``main``)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
