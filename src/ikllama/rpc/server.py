"""Running ggml's RPC server in this process (what ``ikllama rpc-server`` does).

``ggml_backend_rpc_start_server`` binds, then serves one client at a time forever; it returns only
when it could not start (bad address, port taken) or ``accept`` failed. It runs in a worker thread
with SIGINT/SIGTERM blocked (ggml retries nothing on EINTR), and the main thread waits for a
signal and ends the process with ``os._exit``: the server holds no state worth saving.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from .._lib import ffi, lib

__all__ = ["serve", "check_bind_address", "check_port_free", "SECURITY_WARNING"]

logger = logging.getLogger("ikllama")

SECURITY_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: the RPC server listens on {host}, beyond this machine. ggml RPC has NO authentication and
NO encryption, and it trusts its client with raw memory addresses: anyone who can reach {host}:{port}
can read and write this process's memory, i.e. run code here, or just exhaust its memory.
Use it only on a trusted private network (or over an SSH/WireGuard tunnel, binding 127.0.0.1).
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def check_bind_address(host: str, port: int) -> str:
    """Validate ``host`` (numeric IPv4 or ``localhost``) and ``port``; returns the IPv4 text."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--host {host!r}: give a numeric IPv4 address (ggml's server binds IPv4 only), "
                         "e.g. 127.0.0.1 or the address of a private interface") from None
    if ip.version != 4:
        raise ValueError(f"--host {host}: ggml's server binds IPv4 only")
    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is outside 1..65535")
    return str(ip)


def check_port_free(host: str, port: int) -> None:
    """Bind once from Python so that a taken port is a clear error (ggml only says it failed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Fix: pick another --port "
                          "(or stop what uses it).") from None


def _total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def serve(host: str = "127.0.0.1", port: int = 50052, threads: int | None = None, mem: int | None = None,
          cache: str | os.PathLike[str] | None = None) -> int:
    """Serve this machine's CPU to RPC clients until SIGINT/SIGTERM (wraps ``ggml_backend_rpc_start_server``).

    ``mem`` is the free/total memory in bytes the server reports (default: physical RAM); clients split
    layers by it. ``cache`` is a directory for ik's tensor cache (large weights are then not re-sent).
    Returns the process exit status when the server could not start; otherwise never returns.
    """
    host = check_bind_address(host, port)
    if not ipaddress.ip_address(host).is_loopback:
        print(SECURITY_WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
        logger.warning("rpc-server bound to non-loopback %s:%d: no authentication, trusted networks only", host, port)
    check_port_free(host, port)
    threads = threads or max(1, (os.cpu_count() or 2) // 2)
    if threads < 1:
        raise ValueError(f"--threads {threads} must be >= 1")
    mem = mem if mem is not None else _total_memory()
    if mem <= 0:
        raise ValueError(f"--mem {mem} must be > 0 bytes")
    cache_dir = None
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        cache_dir = ffi.new("char[]", os.fsencode(Path(cache).resolve()))
    from ..backend import ensure_init

    ensure_init()
    backend = lib.ggml_backend_cpu_init()
    if backend == ffi.NULL:
        print("rpc-server: could not create the CPU backend", file=sys.stderr)
        return 1
    lib.ggml_backend_cpu_set_n_threads(backend, threads)
    devices = ffi.new("ggml_backend_t[1]", [backend])
    free = ffi.new("size_t[1]", [mem])
    total = ffi.new("size_t[1]", [mem])
    endpoint = ffi.new("char[]", f"{host}:{port}".encode())
    done = threading.Event()

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            lib.ggml_backend_rpc_start_server(endpoint, cache_dir if cache_dir is not None else ffi.NULL, 1,
                                              devices, free, total)
        finally:
            done.set()

    print(f"ikllama rpc-server: serving the CPU ({threads} threads, {mem / 2**30:.1f} GiB advertised) on "
          f"{host}:{port}; one client at a time. Ctrl-C stops it.", file=sys.stderr, flush=True)
    worker = threading.Thread(target=run, name="ggml-rpc-server", daemon=True)
    worker.start()
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        sys.stdout.flush()
        os._exit(0)
    print(f"rpc-server: the server on {host}:{port} stopped (it could not listen, or accept failed)",
          file=sys.stderr)
    return 1
