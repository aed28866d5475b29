"""The web console at its published import path (it lives in ``driving/console/``)."""

from keyledger.adapters.driving.console import console

__all__ = ["console"]
