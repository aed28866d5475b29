"""The FastAPI dependency at its published import path (it lives in ``driving/fastapi.py``)."""

from keyledger.adapters.driving.fastapi import require_api_key

__all__ = ["require_api_key"]
