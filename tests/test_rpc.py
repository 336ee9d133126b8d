"""RPC offload against a real rpc-server process (built from the same tree) on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import subprocess
import time

import pytest

import ikllama

from helpers import greedy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_server(ik_tools):
    port = free_port()
    proc = subprocess.Popen([str(ik_tools / "rpc-server"), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "rpc-server did not start listening"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_offload_to_rpc_server_gives_the_same_greedy_output(rpc_server, smollm, smollm_path, caplog):
    prompt = "The capital of France is"
    with smollm.context().with_n_ctx(256).build() as ctx:
        local = greedy(ctx, ctx.str_to_tokens(prompt), 12)
    caplog.set_level(logging.INFO, logger="ikllama.native")
    config = ikllama.ModelConfig(rpc_servers=[rpc_server], n_gpu_layers=99)  # plain host:port, expanded
    with config.load_gguf(smollm_path) as model, model.context().with_n_ctx(256).build() as ctx:
        remote = greedy(ctx, ctx.str_to_tokens(prompt), 12)
    assert remote == local
    # The plain host:port was expanded to the server's devices and ik took them up. (At this ik commit a
    # CPU-only build keeps the weights local even so: ik's own llama-simple --rpc does the same.)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"using device RPC0[{rpc_server}]" in m for m in messages), "the RPC device was not used"


def test_unreachable_rpc_server_is_an_error_not_a_crash(smollm_path):
    with pytest.raises(ikllama.UnsupportedConfigError, match="not reachable"):
        ikllama.ModelConfig(rpc_servers=[f"127.0.0.1:{free_port()}"], n_gpu_layers=99).load_gguf(smollm_path)
