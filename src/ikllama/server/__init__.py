"""An OpenAI-compatible HTTP server with continuous batching (``ikllama serve``; needs the ``server`` extra).

:func:`create_app` builds the FastAPI app; :class:`ServerSettings` holds every option;
:class:`Engine` is the scheduler that owns the context. Nothing is imported from FastAPI until
:func:`create_app` is used, so ``import ikllama.server.engine`` works without the extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "ServerSettings", "Engine"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerSettings":
        from .settings import ServerSettings

        return ServerSettings
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module 'ikllama.server' has no attribute {name!r}")
