"""``ikllama gguf-split``: split a GGUF model into shards or merge shards (:mod:`ikllama.modelfile.split`)."""

from __future__ import annotations

import argparse
import sys


def _cmd(args: argparse.Namespace) -> int:
    from ..errors import IkLlamaError
    from ..modelfile.split import merge_gguf, split_gguf

    try:
        if args.merge:
            out = [merge_gguf(args.input, args.output)]
        else:
            if args.split_max_tensors is None and args.split_max_size is None:
                print("ikllama gguf-split: give --split-max-tensors N or --split-max-size SIZE (or --merge)",
                      file=sys.stderr)
                return 2
            out = split_gguf(args.input, args.output, max_tensors=args.split_max_tensors,
                             max_size=args.split_max_size)
    except (IkLlamaError, ValueError, OSError, ImportError) as exc:
        print(f"ikllama gguf-split: {exc}", file=sys.stderr)
        return 1
    for p in out:
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gguf-split", help="split a GGUF model into shards, or --merge shards into one file")
    p.add_argument("input", help="model to split, or (with --merge) any shard of a split model")
    p.add_argument("output", help="output name: out/model.gguf gives out/model-00001-of-0000N.gguf")
    p.add_argument("--merge", action="store_true", help="merge the shards of INPUT into OUTPUT")
    p.add_argument("--split-max-tensors", type=int, default=None, help="tensors per shard")
    p.add_argument("--split-max-size", default=None, help="bytes per shard, e.g. 500M or 2G")
    p.set_defaults(func=_cmd)
