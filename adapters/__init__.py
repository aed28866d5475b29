"""Adapters: transcoding, stores, the command line."""
