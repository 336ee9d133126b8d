"""One RPC fault per run, in its own process, so that a crash of the host is seen by the test.

    python tests/rpc_faults.py SCENARIO MODEL.gguf

prints one JSON line: the exception raised (type, message, peer), the seconds it took, and whether a
fresh load afterwards decoded. Exit status 0 means this (host) process survived everything.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import threading
import time

import ikllama
from ikllama import ModelConfig

from helpers import greedy
from rpc_peers import Peer, free_port

PROMPT = "The capital of France is"


def _listener(behaviour: str) -> int:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def run() -> None:
        while True:
            conn, _ = srv.accept()
            if behaviour == "garbage":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()
            # "silent": keep the connection open and never answer

    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]


def _load_error(servers: list[str], path: str, **kw) -> dict:
    t0 = time.monotonic()
    try:
        ModelConfig(rpc_servers=servers, n_gpu_layers=99, **kw).load_gguf(path).close()
    except ikllama.IkLlamaError as exc:
        return {"type": type(exc).__name__, "message": str(exc), "peer": getattr(exc, "peer", None),
                "seconds": time.monotonic() - t0}
    return {"type": None, "seconds": time.monotonic() - t0}


def _fresh_local_load_decodes(path: str) -> bool:
    with ModelConfig().load_gguf(path) as model, model.context().with_n_ctx(128).build() as ctx:
        return len(greedy(ctx, ctx.str_to_tokens(PROMPT), 4)) == 4


def _generation_fault(path: str, fault: str) -> dict:
    out: dict = {}
    peer = Peer()
    try:
        model = ModelConfig(rpc_servers=[peer.address], n_gpu_layers=99, rpc_timeout=3.0).load_gguf(path)
        ctx = model.context().with_n_ctx(128).build()
        before = greedy(ctx, ctx.str_to_tokens(PROMPT), 3)
        out["remote_weights"] = sum(d.weights for d in model.devices() if d.remote)
        if fault == "killed":
            peer.signal(signal.SIGKILL)
            peer.proc.wait(timeout=10)
        else:
            peer.signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            greedy(ctx, [before[-1]], 3)
            out["type"] = None
        except ikllama.IkLlamaError as exc:
            out.update(type=type(exc).__name__, message=str(exc), peer=getattr(exc, "peer", None),
                       code=getattr(exc, "code", None))
        out["seconds"] = time.monotonic() - t0
        try:  # the context stays unusable, with an exception rather than a crash
            greedy(ctx, [before[-1]], 1)
            out["second_decode"] = "no error"
        except ikllama.IkLlamaError as exc:
            out["second_decode"] = type(exc).__name__
        try:
            model.context().with_n_ctx(64).build().close()
            out["new_context"] = "built"
        except ikllama.IkLlamaError as exc:
            out["new_context"] = type(exc).__name__
        ctx.close()
        model.close()
        out["closed"] = True
    finally:
        peer.stop()
    with Peer() as fresh:  # a new model over a new peer works in the same process
        with ModelConfig(rpc_servers=[fresh.address], n_gpu_layers=99).load_gguf(path) as model, \
                model.context().with_n_ctx(128).build() as ctx:
            out["fresh_remote_decodes"] = len(greedy(ctx, ctx.str_to_tokens(PROMPT), 4)) == 4
    return out


def _restarted_peer(path: str) -> dict:
    """A peer restarted on the same port while a model still holds the failed connection to the old one."""
    out: dict = {}
    peer = Peer()
    model = ModelConfig(rpc_servers=[peer.address], n_gpu_layers=99).load_gguf(path)
    ctx = model.context().with_n_ctx(64).build()
    greedy(ctx, ctx.str_to_tokens(PROMPT), 1)
    peer.stop()
    try:
        greedy(ctx, ctx.str_to_tokens(" and"), 1)
    except ikllama.RpcConnectionLostError:
        out["lost"] = True
    with Peer(port=peer.port) as again:
        out.update(_load_error([again.address], path))  # the old model still holds the failed connection
        ctx.close()
        model.close()
        with ModelConfig(rpc_servers=[again.address], n_gpu_layers=99).load_gguf(path) as m2, \
                m2.context().with_n_ctx(64).build() as c2:
            out["after_close_decodes"] = len(greedy(c2, c2.str_to_tokens(PROMPT), 3)) == 3
    return out


def main(scenario: str, path: str) -> None:
    if scenario == "unreachable":
        out = _load_error([f"127.0.0.1:{free_port()}"], path)
    elif scenario in ("garbage", "silent"):
        out = _load_error([f"127.0.0.1:{_listener(scenario)}"], path)
    elif scenario == "busy":
        with Peer() as peer:
            other = socket.create_connection(("127.0.0.1", peer.port))
            other.sendall(struct.pack("<BQ", 14, 0))  # HELLO: this client now holds the peer
            other.recv(11)
            out = _load_error([peer.address], path)
            other.close()
    elif scenario == "bad_device":
        with Peer() as peer:
            out = _load_error([f"{peer.address}|3"], path)
    elif scenario in ("killed", "stopped"):
        out = _generation_fault(path, scenario)
    elif scenario == "restarted":
        out = _restarted_peer(path)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    out["fresh_local_decodes"] = _fresh_local_load_decodes(path)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
