"""``ikllama info``: the build (version, upstream commit, backends, CPU features, RPC)."""

from __future__ import annotations

import argparse
import json


def _cmd_info(args: argparse.Namespace) -> int:
    from ..backend import system_info

    info = system_info()
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    print(f"ikllama {info.version} (ik_llama.cpp {info.upstream_commit}, {info.build_type} build)")
    print(f"backends:     {', '.join(info.backends)}")
    print(f"rpc:          {'yes' if info.rpc else 'no'}")
    print(f"gpu offload:  {'yes' if info.gpu_offload else 'no'} (max devices {info.max_devices})")
    print(f"mmap / mlock: {'yes' if info.mmap else 'no'} / {'yes' if info.mlock else 'no'}")
    print(f"cpu features: {' '.join(k for k, v in info.cpu_features.items() if v) or '-'}")
    print(f"system info:  {info.native_system_info}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="show the build: version, backends, CPU features, RPC")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_cmd_info)
