"""The command line at its published entry point, ``keyledger.adapters.cli:main`` (it
lives in ``driving/cli.py``)."""

from keyledger.adapters.driving.cli import app, main

__all__ = ["app", "main"]
