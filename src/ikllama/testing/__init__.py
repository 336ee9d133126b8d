"""Helpers for tests: tiny synthetic models written on the fly (needs the ``gguf`` package, test extra)."""
