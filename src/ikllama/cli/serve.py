"""``ikllama serve``: the OpenAI-compatible server, with llama-server's flag names.

It listens at once and loads the model in the background (``/health`` answers, ``/ready`` is 503
until the model is in); a model that fails to load ends the process with status 1. SIGTERM or
Ctrl-C stops accepting connections, lets running requests finish, then frees the model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    p.add_argument("-m", "--model", help="GGUF path (default: SmolLM2-135M from PyPI)")
    p.add_argument("-a", "--alias", help="model id for clients (default: the file name)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080; 0 picks a free one)")
    p.add_argument("-c", "--ctx-size", dest="n_ctx", type=int, default=None, help="KV cells shared by all requests")
    p.add_argument("-np", "--parallel", type=int, default=None, help="sequences decoded together")
    p.add_argument("-b", "--batch-size", dest="n_batch", type=int, default=None)
    p.add_argument("-ub", "--ubatch-size", dest="n_ubatch", type=int, default=None)
    p.add_argument("--prefill-budget", type=int, default=None, help="prompt tokens per step while others decode (default 128)")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("-tb", "--threads-batch", type=int, default=None)
    p.add_argument("-fa", "--flash-attn", choices=("on", "off"), default=None)
    p.add_argument("-ctk", "--cache-type-k", default=None)
    p.add_argument("-ctv", "--cache-type-v", default=None)
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=None)
    p.add_argument("--chat-template", default=None, help="Jinja template text, or a built-in name")
    p.add_argument("--api-key", default=None, help="require this bearer token")
    p.add_argument("--max-queue", type=int, default=None, help="waiting requests before 429 (default 64)")
    p.add_argument("--no-embeddings", action="store_true", help="turn /v1/embeddings off")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_cmd_serve)


def _settings(args: argparse.Namespace):
    from ..server.settings import ServerSettings

    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command", "no_embeddings")}
    if "flash_attn" in given:
        given["flash_attn"] = given["flash_attn"] == "on"
    if args.no_embeddings:
        given["embeddings"] = False
    return ServerSettings(**given)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as exc:
        print(f"ikllama serve needs the server extra: pip install 'ikllama[server]' ({exc})", file=sys.stderr)
        return 2
    from pydantic import ValidationError

    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"ikllama serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logging.getLogger("ikllama.server").warning("listening on %s without --api-key: anyone who can reach "
                                                    "this address can use the model", settings.host)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                                           timeout_graceful_shutdown=30, access_log=False))
    state = app.state.ikllama

    def watch_load() -> None:
        state.loaded.wait()
        if state.load_error is not None:
            server.should_exit = True

    threading.Thread(target=watch_load, name="ikllama-load-watch", daemon=True).start()
    server.run()
    return 1 if state.load_error is not None else 0
