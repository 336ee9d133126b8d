"""A real uvicorn server on 127.0.0.1 in a background thread, for the server tests and the benchmark."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import httpx


@contextmanager
def running_server(wait_ready: bool = True, load: bool = True, **settings: Any) -> Iterator[tuple[str, Any]]:
    """Start ``create_app(ServerSettings(**settings))`` on a free port; yields (base URL, app)."""
    import uvicorn

    from ikllama.server.app import create_app
    from ikllama.server.settings import ServerSettings

    app = create_app(ServerSettings(**settings), load=load)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        path = "/ready" if wait_ready else "/health"
        while True:
            try:
                if httpx.get(base + path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {base} not up: {app.state.ikllama.load_error}")
            time.sleep(0.1)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the server did not stop within 60 s")
