"""The ``ikllama`` command line: ``python -m ikllama info|run|tokenize``. Argument parsing only."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    from .backend import system_info

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikllama", description="Run ik_llama.cpp from Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="show the build: version, backends, CPU features, RPC")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_cmd_info)
    from . import _cli_run

    _cli_run.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
