"""Adapters, in two subpackages: ``driven`` (what the ledger drives: stores, SQL and
in-memory views, the event encoding, account locks) and ``driving`` (what drives the
ledger: the command line, the ASGI and WSGI middleware, the FastAPI dependency).

``keyledger.adapters.asgi``, ``.wsgi``, ``.fastapi`` and ``.cli`` stay importable at
their published paths.
"""
