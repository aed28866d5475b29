"""The WSGI middleware at its published import path (it lives in ``driving/wsgi.py``)."""

from keyledger.adapters.driving.wsgi import PRINCIPAL_KEY, ApiKeyMiddleware

__all__ = ["PRINCIPAL_KEY", "ApiKeyMiddleware"]
