"""``ikllama quantize IN OUT TYPE``: ik's quantizer through :func:`ikllama.quantize`."""

from __future__ import annotations

import argparse
import sys


def _list_types() -> int:
    from ..modelfile.quantize import file_types

    print(f"{'name':<12} {'ftype':>5} {'main type':<11} {'bpw':>6}  description")
    for ft in file_types():
        print(f"{ft.name:<12} {int(ft):>5} {ft.main_type:<11} {ft.bpw:>6.3f}  {ft.description}")
    print("aliases: Q3_K=Q3_K_M, Q4_K=Q4_K_M, Q5_K=Q5_K_M, COPY (copy tensors, quantize nothing)")
    return 0


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--tensor-type {item!r}: expected CLASS=TYPE, e.g. attn_v=q8_0")
        out.append((key, value))
    return out


def _cmd_quantize(args: argparse.Namespace) -> int:
    if args.list_types:
        return _list_types()
    if not (args.input and args.output and args.type):
        print("ikllama quantize: IN OUT TYPE are required (or --list-types)", file=sys.stderr)
        return 2
    from ..errors import IkLlamaError
    from ..modelfile.quantize import quantize

    try:
        result = quantize(args.input, args.output, args.type, nthread=args.nthread,
                          allow_requantize=args.allow_requantize, quantize_output_tensor=not args.leave_output_tensor,
                          output_type=args.output_type, token_embedding_type=args.token_embedding_type,
                          tensor_types=_pairs(args.tensor_type), imatrix=args.imatrix, pure=args.pure,
                          keep_split=args.keep_split, dry_run=args.dry_run, progress=None if args.no_progress or not sys.stderr.isatty() else True)
    except (IkLlamaError, ValueError, OSError, ImportError) as exc:
        print(f"ikllama quantize: {exc}", file=sys.stderr)
        return 1
    mib = 1024 * 1024
    verb = "would write" if result.dry_run else "wrote"
    where = ", ".join(str(p) for p in result.paths) or args.output
    print(f"{verb} {where}: {result.ftype.name}, {result.file_size / mib:.2f} MiB "
          f"(tensors {result.original_tensor_bytes / mib:.2f} -> {result.tensor_bytes / mib:.2f} MiB, "
          f"{result.bpw:.3f} bpw) in {result.seconds:.2f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize a GGUF model (ik's llama_model_quantize)")
    p.add_argument("input", nargs="?", help="source GGUF (F32/F16/BF16, or quantized with --allow-requantize)")
    p.add_argument("output", nargs="?", help="destination GGUF (written under a temporary name, then renamed)")
    p.add_argument("type", nargs="?", help="file type, e.g. Q4_K_M, IQ4_KS, IQ2_KT, Q8_0_R8 (see --list-types)")
    p.add_argument("--list-types", action="store_true", help="list every file type with its bits per weight")
    p.add_argument("--tensor-type", action="append", default=[], metavar="CLASS=TYPE",
                   help="type for a tensor class (attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, "
                        "ffn_down, ffn_up, ffn_gate_inp, output, token_embd); repeatable")
    p.add_argument("--output-type", help="type of output.weight")
    p.add_argument("--token-embedding-type", help="type of token_embd.weight")
    p.add_argument("--imatrix", help="importance matrix file (needs ik's llama-quantize tool; refused here)")
    p.add_argument("--allow-requantize", action="store_true", help="allow a quantized source")
    p.add_argument("--leave-output-tensor", action="store_true", help="do not quantize output.weight")
    p.add_argument("--pure", action="store_true", help="one type for all tensors, no k-quant mixes")
    p.add_argument("--keep-split", action="store_true", help="keep the shards of a split source")
    p.add_argument("--nthread", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--dry-run", action="store_true", help="report types and size, write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quantize)
