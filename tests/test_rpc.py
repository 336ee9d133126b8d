"""Models split over real RPC peers (``ikllama rpc-server`` processes on 127.0.0.1 started here).

Placement, memory and output are checked against real peers; each fault runs in its own process
(tests/rpc_faults.py) so that a crash of the host would be seen as such; split-mode and device
checks must refuse before any native call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ikllama
import ikllama.rpc
from ikllama import ModelConfig, SplitMode

from helpers import greedy
from rpc_peers import Peer, free_port

HERE = Path(__file__).resolve().parent
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def two_peers():
    with Peer() as a, Peer() as b:
        yield a, b


def _local_greedy(path: Path, n: int = 12) -> list[int]:
    with ModelConfig().load_gguf(path) as model, model.context().with_n_ctx(256).build() as ctx:
        return greedy(ctx, ctx.str_to_tokens(PROMPT), n)


@pytest.mark.parametrize("which", ["smollm", "gemma"])
def test_two_peers_hold_the_model_and_give_the_local_output(which, two_peers, smollm_path, gemma_path):
    path = smollm_path if which == "smollm" else gemma_path
    local = _local_greedy(path)
    a, b = two_peers
    rss0 = a.rss() + b.rss()
    # one peer as localhost (resolved to 127.0.0.1), one with an explicit |device
    config = ModelConfig(rpc_servers=[f"localhost:{a.port}", f"{b.address}|0"], n_gpu_layers=99)
    with config.load_gguf(path) as model, model.context().with_n_ctx(256).build() as ctx:
        remote = greedy(ctx, ctx.str_to_tokens(PROMPT), 12)
        devices = {d.name: d for d in model.devices()}
        grown = a.rss() + b.rss() - rss0
        size = model.size
    assert remote == local
    peers = [f"RPC0[{a.address}]", f"RPC0[{b.address}]"]
    assert set(peers) <= set(devices), devices
    layer_bytes = sum(t.n_bytes for t in ikllama.inspect(path).tensors if t.name.startswith("blk."))
    on_peers = sum(devices[p].weights for p in peers)
    assert on_peers >= 0.99 * layer_bytes, (on_peers, layer_bytes)  # every layer went remote
    assert all(devices[p].weights > 0 for p in peers), devices
    # the KV cache lives with the layers: all of it on the peers
    assert sum(devices[p].kv for p in peers) > 0 and devices["CPU"].kv == 0, devices
    if which == "smollm":
        # ik splits by bytes in layer order, the output head last. SmolLM2's layers outweigh its head: both
        # peers get layers and KV. (Gemma-3's tied 262k-token head is 2.6x its layers: one peer gets just that.)
        assert all(devices[p].weights > 0.25 * layer_bytes and devices[p].kv > 0 for p in peers), devices
    assert devices["CPU"].weights <= size - layer_bytes + 2**20, devices  # only the token embeddings stay here
    # the peers' processes really hold it: resident memory grew by about their weights (plus KV/compute buffers)
    assert 0.8 * on_peers < grown < 2.5 * on_peers + 64 * 2**20, (grown, on_peers)


def test_tensor_split_1_to_3(two_peers, smollm_path):
    a, b = two_peers
    config = ModelConfig(rpc_servers=[a.address, b.address], n_gpu_layers=99, tensor_split=[0, 1, 3])
    with config.load_gguf(smollm_path) as model:
        devices = {d.name: d.weights for d in model.devices()}
    first, second = devices[f"RPC0[{a.address}]"], devices[f"RPC0[{b.address}]"]
    assert 0.15 < first / (first + second) < 0.35, devices  # about a quarter of the layers on the first peer


def test_local_share_in_tensor_split_keeps_layers_local(two_peers, smollm_path):
    a, b = two_peers
    config = ModelConfig(rpc_servers=[a.address, b.address], n_gpu_layers=99, tensor_split=[2, 1, 1])
    with config.load_gguf(smollm_path) as model:
        devices = {d.name: d.weights for d in model.devices()}
    assert devices["CPU"] > 0.3 * sum(devices.values()), devices


def test_two_contexts_on_one_peer_are_refused(two_peers, smollm_path):
    a, _ = two_peers
    with ModelConfig(rpc_servers=[a.address], n_gpu_layers=99).load_gguf(smollm_path) as model:
        with model.context().with_n_ctx(64).build():
            with pytest.raises(ikllama.UnsupportedConfigError, match="another context is open on RPC peer"):
                model.context().with_n_ctx(64).build()
        with model.context().with_n_ctx(64).build() as ctx:  # after closing the first, a new one works
            assert len(greedy(ctx, ctx.str_to_tokens(PROMPT), 2)) == 2


def test_traffic_counters_move(two_peers, smollm_path):
    a, _ = two_peers
    with ModelConfig(rpc_servers=[a.address], n_gpu_layers=99).load_gguf(smollm_path) as model, \
            model.context().with_n_ctx(64).build() as ctx:
        greedy(ctx, ctx.str_to_tokens(PROMPT), 1)
        t0 = ikllama.rpc.traffic()
        greedy(ctx, ctx.str_to_tokens(" Paris"), 4)
        spent = ikllama.rpc.traffic() - t0
    assert spent.bytes_sent > 0 and spent.round_trips >= 5, spent


# -- faults: each in its own process ---------------------------------------------------------------
def _fault(scenario: str, model: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(HERE / "rpc_faults.py"), scenario, str(model)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, f"the host process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario,match", [
    ("unreachable", "is not reachable"),
    ("garbage", "handshake failed"),
    ("silent", "did not answer the RPC handshake"),
    ("busy", "busy with another client"),
    ("bad_device", "device 3 asked for"),
])
def test_load_fault_is_an_exception_naming_the_peer(scenario, match, smollm_path):
    out = _fault(scenario, smollm_path)
    assert out["type"] == "RpcPeerError", out
    assert match in out["message"] and "127.0.0.1:" in out["message"] and out["peer"], out
    assert out["seconds"] < 8, out
    assert out["fresh_local_decodes"], out


@pytest.mark.parametrize("fault", ["killed", "stopped"])
def test_peer_lost_mid_generation_raises_and_the_host_lives(fault, smollm_path):
    out = _fault(fault, smollm_path)
    assert out["remote_weights"] > 0, out
    assert out["type"] == "RpcConnectionLostError", out
    assert out["peer"] and out["peer"].startswith("127.0.0.1:"), out
    assert out["seconds"] < 10, out
    if fault == "stopped":  # alive but silent: only the reply timeout (rpc_timeout=3) can tell
        assert "no reply within the reply timeout of 3000 ms" in out["message"] and out["seconds"] >= 2.5, out
    assert out["second_decode"] == "RpcConnectionLostError", out
    assert out["new_context"] == "RpcConnectionLostError", out
    assert out["closed"] and out["fresh_remote_decodes"] and out["fresh_local_decodes"], out


def test_restarted_peer_needs_the_old_model_closed_first(smollm_path):
    out = _fault("restarted", smollm_path)
    assert out["lost"] and out["type"] == "RpcPeerError" and "still holds its failed connection" in out["message"], out
    assert out["after_close_decodes"] and out["fresh_local_decodes"], out


# -- refused before C ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(split_mode=SplitMode.ATTN), "REDUCE"),
    (dict(split_mode=SplitMode.GRAPH), "REDUCE"),
    (dict(tensor_split=[1, 1]), "tensor_split has 2 entries for 3 devices"),
    (dict(tensor_split=[0, 0, 0]), "add up to 0"),
    (dict(main_gpu=3), "main_gpu=3 is out of range"),
    (dict(devices=["CPU", "RPC0[10.1.2.3:50052]"]), "unknown device name"),
    (dict(n_gpu_layers=0), "n_gpu_layers=0"),
])
def test_refused_combinations_with_peers(kwargs, match, two_peers, smollm_path):
    a, b = two_peers
    config = ModelConfig(rpc_servers=[a.address, b.address], **{"n_gpu_layers": 99, **kwargs})
    with pytest.raises(ikllama.UnsupportedConfigError, match=match):
        config.load_gguf(smollm_path)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(split_mode=SplitMode.GRAPH), ikllama.UnsupportedConfigError, "several devices"),
    (dict(split_mode=SplitMode.ATTN), ikllama.UnsupportedConfigError, "REDUCE not implemented"),
    (dict(main_gpu=1, split_mode=SplitMode.NONE), ikllama.UnsupportedConfigError, "main_gpu=1 is out of range"),
    (dict(devices=["CUDA7"]), ikllama.UnsupportedConfigError, "unknown device name"),
    (dict(rpc_servers=[f"127.0.0.1:{p}" for p in range(40001, 40017)]), ikllama.UnsupportedConfigError,
     "at most 16"),
    (dict(rpc_servers=["127.0.0.1:5|x"]), ValueError, "host:port"),
    (dict(rpc_servers=["[::1]:50052"]), ValueError, "IPv4 only"),
    (dict(rpc_servers="127.0.0.1:50052"), ValueError, "list"),
    (dict(rpc_timeout=0), ValueError, "rpc_timeout"),
])
def test_refused_without_peers(kwargs, error, match, smollm_path):
    with pytest.raises(error, match=match):
        ModelConfig(**{"n_gpu_layers": 99, **kwargs}).load_gguf(smollm_path)


def test_split_none_with_main_gpu_loads_locally(smollm_path):
    with ModelConfig(split_mode=SplitMode.NONE, main_gpu=0).load_gguf(smollm_path) as model:
        assert [d.name for d in model.devices()] == ["CPU"]


# -- ikllama rpc-server ----------------------------------------------------------------------------
def test_rpc_server_warns_loudly_off_loopback():
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the warning comes, then binding fails cleanly.
    proc = subprocess.run([sys.executable, "-m", "ikllama", "rpc-server", "--host", "192.0.2.1", "--port",
                           str(free_port())], capture_output=True, text=True, timeout=60)
    assert "NO authentication" in proc.stderr and "trusted" in proc.stderr, proc.stderr
    assert proc.returncode == 2 and "cannot listen on 192.0.2.1" in proc.stderr, proc.stderr


def test_rpc_server_refuses_a_taken_port_and_a_name():
    with Peer() as peer:
        proc = subprocess.run([sys.executable, "-m", "ikllama", "rpc-server", "--port", str(peer.port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Fix: pick another --port" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ikllama", "rpc-server", "--host", "example.org"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "numeric IPv4" in proc.stderr, proc.stderr


def test_probe_reports_the_advertised_memory():
    with Peer(mem="3G") as peer:
        info = ikllama.rpc.probe(ikllama.rpc.parse_endpoint(peer.address))
    assert info.memory == ((3 * 2**30, 3 * 2**30),) and info.version[0] == 3
