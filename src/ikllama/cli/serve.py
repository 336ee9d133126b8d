"""``ikllama serve``: the OpenAI-compatible server, with llama-server's flag names.

It listens at once and loads the models in the background (``/health`` answers, ``/ready`` is 503
until they are in); a model that fails to load ends the process with status 1. SIGTERM or Ctrl-C
stops accepting connections, lets running requests finish, then frees the models.

Settings come from the flags, then ``IKLLAMA_SERVER_*`` variables, then ``--config FILE`` (TOML or
JSON with the settings' field names, e.g. ``models = [{path = "bge.gguf", alias = "bge"}]``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    p.add_argument("model_path", nargs="?", metavar="MODEL", help="GGUF path (same as -m)")
    p.add_argument("-m", "--model", action="append", default=None,
                   help="GGUF path (default: SmolLM2-135M from PyPI); repeat to serve several models")
    p.add_argument("-a", "--alias", action="append", default=None,
                   help="model id for clients (default: the file name); one per -m, in order")
    p.add_argument("--config", default=None, help="settings file (.toml or .json; also IKLLAMA_SERVER_CONFIG)")
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
    p.add_argument("--embedding", "--embeddings", dest="embeddings_flag", action="store_true",
                   help="accepted for llama-server scripts (embeddings are on by default)")
    p.add_argument("--metrics", dest="metrics_flag", action="store_true",
                   help="accepted for llama-server scripts (/metrics is on by default)")
    p.add_argument("-n", "--n-predict", dest="n_predict", type=int, default=None,
                   help="max_tokens when a request gives none (-1: until the context is full)")
    p.add_argument("--prompt-lookup", type=int, default=None,
                   help="draft up to N tokens by prompt lookup for every request (default 0: on request)")
    p.add_argument("--cors-origin", dest="cors_origins", action="append", default=None,
                   help="allow this browser origin ('*' for any); repeatable; default: no CORS")
    p.add_argument("-cram", "--cache-ram", dest="cache_ram_mib", type=int, default=None,
                   help="MiB of host memory for evicted sequences' KV state (default 2048; 0: off)")
    p.add_argument("--slot-save-path", default=None, help="directory for /slots/{id}?action=save|restore")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_cmd_serve)


def _settings(args: argparse.Namespace):
    from ..server.settings import ModelSpec, ServerSettings

    skip = {"func", "command", "no_embeddings", "embeddings_flag", "metrics_flag", "model_path", "model", "alias",
            "config", "n_predict"}
    given = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    if "flash_attn" in given:
        given["flash_attn"] = given["flash_attn"] == "on"
    if args.no_embeddings:
        given["embeddings"] = False
    if args.n_predict is not None:
        given["max_tokens_default"] = None if args.n_predict < 0 else args.n_predict
    paths = ([args.model_path] if args.model_path else []) + (args.model or [])
    aliases = args.alias or []
    if len(aliases) > max(len(paths), 1):
        raise ValueError(f"{len(aliases)} aliases for {len(paths)} models: give one --alias per --model")
    if paths:
        given["model"] = paths[0]
    if len(paths) > 1:
        given["models"] = [ModelSpec(path=p, alias=aliases[i + 1] if i + 1 < len(aliases) else None)
                           for i, p in enumerate(paths[1:])]
    if aliases:
        given["alias"] = aliases[0]
    return ServerSettings.load(args.config or os.environ.get("IKLLAMA_SERVER_CONFIG"), **given)


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
    except (ValidationError, ValueError) as exc:
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
