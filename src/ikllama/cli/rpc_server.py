"""``ikllama rpc-server``: lend this machine's CPU and memory to ikllama / ik_llama.cpp clients over ggml RPC.

No authentication and no encryption: the default binds 127.0.0.1 only; any other address prints a
loud warning. Use it on a trusted network only (see the README's "Across machines").
"""

from __future__ import annotations

import argparse
import signal
import sys


def _size(text: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give bytes, or a size such as 8G or 512M") from None


def _run(args: argparse.Namespace) -> int:
    from ..rpc.server import serve

    # SIGTERM ends the process at once (the server keeps nothing that needs saving).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return serve(args.host, args.port, args.threads, args.mem, args.cache)
    except (ValueError, OSError) as exc:
        print(f"ikllama rpc-server: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rpc-server", help="serve this machine's CPU to RPC clients (ggml RPC; trusted networks only)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="IPv4 address to listen on (default 127.0.0.1; anything else is reachable by others)")
    p.add_argument("-p", "--port", type=int, default=50052, help="TCP port (default 50052)")
    p.add_argument("-t", "--threads", type=int, default=None,
                   help="CPU threads for computing (default: half the cores)")
    p.add_argument("--mem", type=_size, default=None,
                   help="memory to advertise, e.g. 8G (default: physical RAM); clients split layers by it")
    p.add_argument("-c", "--cache", default=None, metavar="DIR",
                   help="directory for ik's tensor cache: weights over 10 MiB are not re-sent on a reload")
    p.set_defaults(func=_run)
