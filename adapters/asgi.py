"""The ASGI middleware at its published import path (it lives in ``driving/asgi.py``)."""

from keyledger.adapters.driving.asgi import PRINCIPAL_KEY, ApiKeyMiddleware, Verifier

__all__ = ["PRINCIPAL_KEY", "ApiKeyMiddleware", "Verifier"]
