"""Process-wide RPC state: one lock, the peers in use, and the failure latch of ggml-rpc.

ggml-rpc keeps one socket per peer for the whole process and no lock around a command, so every
native call that can reach a peer (load, context creation, decode, free) runs under :data:`LOCK`.
A peer's server keeps one stored graph per connection and the client re-sends only "recompute the
last graph", so two open contexts on one peer would compute each other's graphs (rpc.md §1.8):
:func:`claim` allows one open context per peer. Our patch 0013 makes a failed connection latch
instead of aborting; :func:`failures` reads its counter and :func:`last_error` its message.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from .._lib import ffi, lib
from ..errors import UnsupportedConfigError

__all__ = ["LOCK", "RpcAttachment", "Traffic", "claim", "release", "failures", "failed_peer", "last_error",
           "set_timeouts", "sync", "traffic", "in_use", "lost_in_use"]

#: Held around every native call that can reach an RPC peer. Re-entrant for the holding thread.
LOCK = threading.RLock()

_PEER_IN_MESSAGE = re.compile(r"^RPC server (\d+\.\d+\.\d+\.\d+:\d+): ")
_attachments: weakref.WeakSet[RpcAttachment] = weakref.WeakSet()
_contexts: dict[str, Any] = {}  # peer address -> weakref to the open context that uses it


@dataclass(eq=False)
class RpcAttachment:
    """The peers one model uses; ``lost`` is set when one of them failed under it."""

    addresses: tuple[str, ...]
    lost: str | None = None

    @classmethod
    def register(cls, addresses: tuple[str, ...]) -> RpcAttachment:
        sync()  # earlier failures belong to earlier models
        a = cls(addresses)
        _attachments.add(a)
        return a

    def forget(self) -> None:
        """The model is freed: its peers are no longer in use by this process."""
        _attachments.discard(self)


def in_use() -> set[str]:
    """Peer addresses that an open, healthy model of this process is connected to."""
    return {addr for a in list(_attachments) if a.lost is None for addr in a.addresses}


def lost_in_use() -> dict[str, str]:
    """Peer address -> failure message, for failed connections that open models of this process still hold."""
    return {addr: a.lost for a in list(_attachments) if a.lost is not None for addr in a.addresses}


def claim(addresses: tuple[str, ...], context: Any) -> None:
    """Record ``context`` as the one open context on each peer; raise if another one is open."""
    for addr in addresses:
        ref = _contexts.get(addr)
        other = ref() if ref is not None else None
        if other is not None and not other.closed:
            raise UnsupportedConfigError(
                f"another context is open on RPC peer {addr}: an rpc-server keeps one graph per connection, and "
                "ggml-rpc shares one connection per peer in a process, so two contexts would compute each other's "
                "graphs. Fix: close the other context first (or give each context its own peers).")
    for addr in addresses:
        _contexts[addr] = weakref.ref(context)


def release(context: Any) -> None:
    for addr, ref in list(_contexts.items()):
        if ref() is context or ref() is None:
            del _contexts[addr]


_seen = 0  # failures() when sync() last ran


def sync() -> None:
    """Mark the models whose peer failed since the last call as lost (failures can latch outside decode).

    ggml-rpc keeps only the latest message; when several failures happened in between, every RPC model
    is marked lost (a false alarm costs a reload; a missed one would decode zeros).
    """
    global _seen
    with LOCK:
        now = failures()
        if now == _seen:
            return
        message = last_error()
        peer = failed_peer(message)
        for a in list(_attachments):
            if a.lost is None and (now - _seen > 1 or peer is None or peer in a.addresses):
                a.lost = message
        _seen = now


def failures() -> int:
    """How many RPC connections have failed in this process (``ggml_backend_rpc_failure_count``)."""
    return int(lib.ggml_backend_rpc_failure_count())


def last_error() -> str:
    """The latest failure's message, naming the peer (``ggml_backend_rpc_last_error``)."""
    buf = ffi.new("char[]", 512)
    lib.ggml_backend_rpc_last_error(buf, len(buf))
    return ffi.string(buf).decode("utf-8", "replace")


def failed_peer(message: str) -> str | None:
    """The ``ip:port`` named by a :func:`last_error` message (``RPC server IP:PORT: ...``)."""
    m = _PEER_IN_MESSAGE.match(message)
    return m[1] if m else None


def set_timeouts(connect: float, reply: float | None) -> None:
    """Deadlines for connections opened afterwards (``ggml_backend_rpc_set_timeouts``); ``reply=None``: none."""
    reply_ms = 0 if reply is None else max(1, round(reply * 1000))
    lib.ggml_backend_rpc_set_timeouts(max(1, round(connect * 1000)), reply_ms)


@dataclass(frozen=True)
class Traffic:
    """ggml-rpc's counters since the process started (``ggml_backend_rpc_get_stats``)."""

    bytes_sent: int
    bytes_received: int
    commands: int
    round_trips: int

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.bytes_sent - other.bytes_sent, self.bytes_received - other.bytes_received,
                       self.commands - other.commands, self.round_trips - other.round_trips)


def traffic() -> Traffic:
    """Bytes and commands this process has sent to RPC peers; ``round_trips`` counts those that waited for a reply."""
    out = ffi.new("uint64_t[4]")
    lib.ggml_backend_rpc_get_stats(out, out + 1, out + 2, out + 3)
    return Traffic(int(out[0]), int(out[1]), int(out[2]), int(out[3]))
