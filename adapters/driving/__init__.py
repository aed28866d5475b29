"""What drives the ledger: the command line, the ASGI and WSGI middleware and the FastAPI
dependency."""
