"""The ikllama version; the build stamps it into the compiled module (checked at import)."""

__version__ = "0.1.0"
