"""Talking to a ggml rpc-server from Python: endpoint parsing and a probe with timeouts.

ik's client connects with no timeout and aborts (or dereferences NULL) when a peer is unreachable,
answers the wrong protocol or is busy with another client. :func:`probe` asks the same questions
first, from Python, with a deadline, so that each of those becomes an :class:`RpcPeerError` naming
the peer. The wire format (``ggml/src/ggml-rpc.cpp``): a request is ``u8 command | u64 size | payload``
and a reply ``u64 size | payload``, little-endian; the first command of a connection must be HELLO.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from dataclasses import dataclass

from ..errors import RpcPeerError

__all__ = ["Endpoint", "PeerInfo", "parse_endpoint", "probe", "PROTO_MAJOR", "PROTO_MINOR"]

CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
PROTO_MAJOR = 3
PROTO_MINOR = 5

_ENTRY = re.compile(r"^(?P<host>\[[^\]]*\]|[^\s:|,\[\]]+):(?P<port>\d{1,5})(?:\|(?P<device>\d{1,3}))?$")


@dataclass(frozen=True)
class Endpoint:
    """One ``rpc_servers`` entry: the text as given, its IPv4 address, port and optional device."""

    text: str
    ip: str
    port: int
    device: int | None

    @property
    def address(self) -> str:
        """``ip:port`` as ggml-rpc names the peer (``RPC<d>[ip:port]``)."""
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PeerInfo:
    """What a peer answered: its protocol version and ``(free, total)`` bytes per device."""

    address: str
    version: tuple[int, int, int]
    memory: tuple[tuple[int, int], ...]

    @property
    def n_devices(self) -> int:
        return len(self.memory)


def parse_endpoint(text: str, resolve_timeout: float = 3.0) -> Endpoint:
    """Parse ``host:port`` or ``host:port|device``; ``host`` is an IPv4 address or a name with one.

    ggml's client speaks IPv4 only (``AF_INET``), so names are resolved here, to the first IPv4
    address (``localhost`` → ``127.0.0.1``). Raises ``ValueError`` for malformed text and
    :class:`RpcPeerError` for a name without an IPv4 address.
    """
    if not isinstance(text, str):
        raise ValueError(f"rpc server {text!r}: expected a string 'host:port' or 'host:port|device'")
    m = _ENTRY.match(text.strip())
    if not m:
        raise ValueError(f"rpc server {text!r}: expected 'host:port' or 'host:port|device' "
                         "(e.g. '192.168.1.20:50052' or 'localhost:50052|0')")
    host, port = m["host"], int(m["port"])
    device = None if m["device"] is None else int(m["device"])
    if not 1 <= port <= 65535:
        raise ValueError(f"rpc server {text!r}: port {port} is outside 1..65535")
    if host.startswith("["):
        raise ValueError(f"rpc server {text!r}: ggml RPC connects over IPv4 only; use an IPv4 address or host name")
    try:
        ip = ipaddress.ip_address(host)
        if ip.version != 4:
            raise ValueError(f"rpc server {text!r}: ggml RPC connects over IPv4 only")
        return Endpoint(text, str(ip), port, device)
    except ValueError as exc:
        if "IPv4 only" in str(exc):
            raise
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(resolve_timeout)
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise RpcPeerError(f"RPC server {text}: cannot resolve {host!r} to an IPv4 address ({exc}). "
                           "Fix: check the name, or give the IPv4 address.", text) from None
    finally:
        socket.setdefaulttimeout(old)
    return Endpoint(text, infos[0][4][0], port, device)


def _request(sock: socket.socket, command: int, payload: bytes = b"") -> None:
    sock.sendall(struct.pack("<BQ", command, len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        out += chunk
    return bytes(out)


def _reply(sock: socket.socket, size: int) -> bytes:
    (got,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if got != size:
        raise ConnectionError(f"reply of {got} bytes where {size} were expected")
    return _recv_exact(sock, size)


def probe(endpoint: Endpoint, timeout: float = 3.0) -> PeerInfo:
    """Connect to ``endpoint`` and ask HELLO, DEVICE_COUNT and GET_DEVICE_MEMORY, each within ``timeout`` s.

    The connection is closed afterwards, which frees the peer for the real client. Raises
    :class:`RpcPeerError` (naming the peer and the fix) when the peer cannot be used.
    """
    name = endpoint.text
    try:
        sock = socket.create_connection((endpoint.ip, endpoint.port), timeout=timeout)
    except socket.timeout:
        raise RpcPeerError(f"RPC server {name}: no answer to a connection within {timeout:g} s (host down, "
                           "or a firewall drops the packets). Fix: start rpc-server there, or check host and port.",
                           name) from None
    except OSError as exc:
        raise RpcPeerError(f"RPC server {name} is not reachable ({exc.strerror or exc}). "
                           "Fix: start rpc-server there (ikllama rpc-server), or check host and port.", name) from None
    with sock:
        try:
            _request(sock, CMD_HELLO)
            major, minor, patch = struct.unpack("<BBB", _reply(sock, 3))
        except socket.timeout:
            raise RpcPeerError(f"RPC server {name}: accepted the connection but did not answer the RPC handshake "
                               f"within {timeout:g} s: it is busy with another client (an rpc-server serves one at "
                               "a time), or it is not a ggml rpc-server. Fix: close the other client, or check the "
                               "port.", name) from None
        except (OSError, ConnectionError, struct.error) as exc:
            raise RpcPeerError(f"RPC server {name}: the RPC handshake failed ({exc}); this is not a ggml "
                               "rpc-server. Fix: check the port.", name) from None
        if major != PROTO_MAJOR or minor > PROTO_MINOR:
            raise RpcPeerError(f"RPC server {name} speaks RPC protocol {major}.{minor}.{patch}; this build speaks "
                               f"{PROTO_MAJOR}.{PROTO_MINOR}.x. Fix: run the rpc-server of the same ik_llama.cpp "
                               "build (ikllama rpc-server) on that host.", name)
        try:
            _request(sock, CMD_DEVICE_COUNT)
            (count,) = struct.unpack("<I", _reply(sock, 4))
            memory = []
            for d in range(count):
                _request(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", d))
                memory.append(struct.unpack("<QQ", _reply(sock, 16)))
        except (OSError, ConnectionError, struct.error) as exc:
            raise RpcPeerError(f"RPC server {name}: it answered the handshake but not the device query ({exc}). "
                               "Fix: run the rpc-server of the same ik_llama.cpp build.", name) from None
    if count == 0:
        raise RpcPeerError(f"RPC server {name} reports no device. Fix: restart it with a device.", name)
    return PeerInfo(endpoint.address, (major, minor, patch), tuple((int(f), int(t)) for f, t in memory))
