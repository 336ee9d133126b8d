"""Real RPC peers for the tests: ``ikllama rpc-server`` processes on 127.0.0.1 that stop by themselves.

Each peer is a child process of the test (or of a test's subprocess) serving this build's CPU
backend; ``stop()`` kills it, and it gets PR_SET_PDEATHSIG, so it also dies with whoever started it
(a crashed or killed test leaves no peer behind).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Peer:
    """One ``ikllama rpc-server`` on 127.0.0.1:``port`` advertising ``mem`` bytes."""

    def __init__(self, mem: str = "8G", threads: int = 1, port: int | None = None):
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ikllama", "rpc-server", "--host", "127.0.0.1", "--port", str(self.port),
             "-t", str(threads), "--mem", mem],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"rpc-server exited: {self.proc.stderr.read().decode()}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("rpc-server did not start listening within 60 s")
                time.sleep(0.1)
        time.sleep(0.2)  # let the server go back to accept() after our readiness connection

    def rss(self) -> int:
        """Resident memory of the peer process, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stderr.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
