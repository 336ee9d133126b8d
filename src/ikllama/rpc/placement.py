"""Where a model's layers go: devices, RPC peers, split mode and tensor_split, checked before C.

ik's loader indexes ``tensor_split``, ``main_gpu`` and its layer assignment by position in
``model.devices``. We always pass that list explicitly, local devices first and then the peers'
devices in ``rpc_servers`` order (the "identity order" of rpc.md §1.5), so a ``tensor_split`` entry
means the same device with or without patch 0012. Every combination that ik would abort on, read
out of bounds with, or silently ignore is refused here with the reason and the fix (rpc.md §3.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._lib import lib
from ..enums import SplitMode
from ..errors import RpcPeerError, UnsupportedConfigError
from . import guard
from .wire import Endpoint, PeerInfo, parse_endpoint, probe

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = ["Placement", "plan", "local_devices", "PROBE_TIMEOUT", "MAX_BACKENDS"]

logger = logging.getLogger("ikllama")

#: Seconds for each step of the pre-load probe (connect, handshake, device query).
PROBE_TIMEOUT = 3.0
#: ggml's scheduler takes at most this many backends (GGML_SCHED_MAX_BACKENDS), the CPU included.
MAX_BACKENDS = 16


@dataclass(frozen=True)
class Placement:
    """What goes into ``llama_model_params``: the ``rpc_servers`` and ``devices`` strings and the split."""

    rpc_servers: str | None
    devices: tuple[str, ...]
    tensor_split: tuple[float, ...] | None
    addresses: tuple[str, ...]
    peers: tuple[PeerInfo, ...]

    @property
    def uses_rpc(self) -> bool:
        return bool(self.addresses)


def local_devices() -> list[str]:
    """Names ik gives the local devices (``CUDA0``, ``CUDA1``, …), or ``["CPU"]`` in a CPU-only build."""
    from .._params import buffer_types

    names = [n for n in buffer_types() if n != "CPU" and not n.startswith(("CPU_", "RPC"))]
    return names or ["CPU"]


def _peer_devices(ep: Endpoint, busy: set[str]) -> tuple[PeerInfo | None, int]:
    if ep.address in busy:
        # This process already holds the peer's only client slot: ask over that connection (patched: no abort).
        with guard.LOCK:
            count = int(lib.ggml_backend_rpc_get_device_count(ep.address.encode()))
        if count == 0:
            raise RpcPeerError(f"RPC server {ep.text} no longer answers on this process's connection. Fix: close "
                               "the models that use it and start it again.", ep.text)
        return None, count
    info = probe(ep, PROBE_TIMEOUT)
    return info, info.n_devices


def _rpc_entries(servers: list[str]) -> tuple[list[tuple[str, int]], list[PeerInfo]]:
    entries: list[tuple[str, int]] = []
    peers: list[PeerInfo] = []
    guard.sync()
    busy = guard.in_use()
    lost = guard.lost_in_use()
    for text in servers:
        ep = parse_endpoint(text)
        if ep.address in lost:
            raise RpcPeerError(f"RPC server {text}: this process still holds its failed connection "
                               f"({lost[ep.address]}). "
                               "Fix: close the models and contexts that used it, then load again.", text)
        info, count = _peer_devices(ep, busy)
        if info is not None:
            peers.append(info)
        if ep.device is not None and ep.device >= count:
            raise RpcPeerError(f"RPC server {text}: device {ep.device} asked for, but the peer has {count} "
                               f"(0..{count - 1}). Fix: use '{ep.address}|0'.", text)
        for d in [ep.device] if ep.device is not None else range(count):
            if (ep.address, d) in entries:
                raise UnsupportedConfigError(f"rpc_servers names RPC{d}[{ep.address}] twice ({text!r}); ik would "
                                             "count it twice. Fix: list each peer once.")
            entries.append((ep.address, d))
    return entries, peers


def _check_split_mode(config: ModelConfig, devices: list[str], local: list[str]) -> None:
    mode = config.split_mode
    if devices and not 0 <= config.main_gpu < len(devices):
        raise UnsupportedConfigError(
            f"main_gpu={config.main_gpu} is out of range: the model's devices are {devices} (0..{len(devices) - 1}). "
            "Fix: pick an index into that list.")
    if mode not in (SplitMode.ATTN, SplitMode.GRAPH):
        return
    cuda = [d for d in devices if d.startswith("CUDA")]
    remote = [d for d in devices if d.startswith("RPC")]
    if remote or config.rpc_servers:
        raise UnsupportedConfigError(
            f"split_mode={mode.name} splits each layer over several devices and joins the parts with "
            "GGML_OP_REDUCE, which only CUDA implements: with RPC peers ik aborts ('REDUCE not implemented'). "
            "Fix: use SplitMode.LAYER (whole layers per peer).")
    if len(cuda) < 2 or len(cuda) != len(devices):
        raise UnsupportedConfigError(
            f"split_mode={mode.name} spreads each layer over several devices, which needs 2 or more CUDA GPUs; "
            f"this load has {len(devices)} device(s) ({', '.join(devices) or 'none'}, local: {', '.join(local)}). "
            "ik aborts on CPU and RPC devices ('REDUCE not implemented'). "
            "Fix: use SplitMode.LAYER (or NONE), or a CUDA build with several GPUs.")


def plan(config: ModelConfig) -> Placement:
    """Probe the peers and check the whole placement; raises before any native load starts.

    Raises :class:`RpcPeerError` for a peer that cannot be used (within a few seconds per peer) and
    :class:`UnsupportedConfigError` for device / split combinations ik cannot run.
    """
    local = local_devices()
    n_local = len([d for d in local if d != "CPU"])
    if config.rpc_servers and len(config.rpc_servers) + n_local + 1 > MAX_BACKENDS:
        raise UnsupportedConfigError(
            f"{len(config.rpc_servers)} RPC peers, {n_local} local GPU(s) and the CPU make more backends than the "
            f"at most {MAX_BACKENDS} ggml's scheduler takes. Fix: use fewer peers.")
    entries, peers = _rpc_entries(list(config.rpc_servers)) if config.rpc_servers else ([], [])
    remote_names = [f"RPC{d}[{addr}]" for addr, d in entries]
    known = local + remote_names
    if config.devices:
        devices = list(config.devices)
        unknown = [d for d in devices if d not in known]
        if unknown:
            raise UnsupportedConfigError(f"unknown device name(s) {unknown}; this load has {known}. "
                                         "Fix: use those names (RPC peers as RPC<device>[ip:port]).")
        if len(set(devices)) != len(devices):
            raise UnsupportedConfigError(f"devices lists a device twice: {devices}")
    else:
        devices = known if entries else []
    n_backends = n_local + len(entries) + 1
    if n_backends > MAX_BACKENDS:
        raise UnsupportedConfigError(
            f"{n_backends} backends ({len(entries)} RPC devices, the local devices and the CPU); ggml's scheduler "
            f"takes at most {MAX_BACKENDS}. Fix: use fewer peers or devices.")
    max_devices = int(lib.llama_max_devices())
    split = tuple(float(x) for x in config.tensor_split) if config.tensor_split else None
    if split is not None:
        if devices and len(split) != len(devices):
            raise UnsupportedConfigError(
                f"tensor_split has {len(split)} entries for {len(devices)} devices {devices}; one share per device, "
                "in that order (local first, then each peer's devices). Fix: give exactly that many.")
        if len(split) > max_devices:
            raise UnsupportedConfigError(f"tensor_split has {len(split)} entries; this build supports at most "
                                         f"{max_devices} devices")
        if any(x != x or x in (float("inf"), float("-inf")) for x in split):
            raise UnsupportedConfigError("tensor_split entries must be finite numbers")
        if entries and sum(split) <= 0:
            raise UnsupportedConfigError("tensor_split shares add up to 0; give a positive share to some device "
                                         "(or leave tensor_split out to split by the peers' memory)")
    _check_split_mode(config, devices or local, local)
    if entries and config.n_gpu_layers == 0:
        raise UnsupportedConfigError(
            "rpc_servers are given but n_gpu_layers=0, so no layer would go to them. "
            "Fix: n_gpu_layers=-1 (every layer, split by tensor_split or the peers' memory) or a layer count.")
    rpc = ",".join(f"{addr}|{d}" for addr, d in entries) or None
    addresses = tuple(dict.fromkeys(addr for addr, _ in entries))
    if entries:
        logger.info("RPC placement: devices %s, tensor_split %s", devices, split or "by memory")
    return Placement(rpc, tuple(devices), split, addresses, tuple(peers))
