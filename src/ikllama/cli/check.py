"""``ikllama check MODEL [--untrusted]``: validate a GGUF file without loading it in this process."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_check(args: argparse.Namespace) -> int:
    from ..errors import ModelLoadError
    from ..modelfile.check import check_gguf

    try:
        summary = check_gguf(args.model)
        probe = None
        if args.untrusted:
            from ..modelfile.untrusted import probe_in_child

            probe = probe_in_child(args.model, timeout=args.timeout)
    except (ModelLoadError, OSError) as exc:
        print(f"FAIL {exc}", file=sys.stderr)
        return 1
    result = {"path": str(summary.path), "version": summary.version, "architecture": summary.architecture,
              "n_kv": summary.n_kv, "n_tensors": summary.n_tensors, "alignment": summary.alignment,
              "file_size": summary.file_size, "check_ms": round(summary.seconds * 1e3, 2)}
    if probe is not None:
        result["probe"] = probe
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        extra = f", child probe ok ({probe['n_vocab']} tokens)" if probe else ""
        print(f"OK {summary.path}: GGUF v{summary.version}, {summary.architecture or '-'}, {summary.n_kv} keys, "
              f"{summary.n_tensors} tensors, checked in {summary.seconds * 1e3:.1f} ms{extra}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a GGUF file (structure, metadata) before loading it")
    p.add_argument("model", help="path to a .gguf file")
    p.add_argument("--untrusted", action="store_true",
                   help="also load it vocab-only in a child process and tokenize probe strings there")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for the child probe")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_check)
