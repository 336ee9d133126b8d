"""``ikllama info``: the build (version, upstream commit, backends, CPU features, RPC), or with a MODEL
argument what the GGUF file holds (:func:`ikllama.modelfile.info.inspect`)."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_build(args: argparse.Namespace) -> int:
    from ..backend import system_info

    info = system_info()
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    print(f"ikllama {info.version} (ik_llama.cpp {info.upstream_commit}, {info.build_type} build)")
    print(f"backends:     {', '.join(info.backends)}")
    print(f"device:       {info.device} (IKLLAMA_DEVICE=auto|cpu|vulkan|cuda|cuda12|cuda13)")
    for dev in info.gpu_devices:
        print(f"  gpu {dev.index}:      {dev.description}, {dev.total_bytes / 2**30:.1f} GiB "
              f"({dev.free_bytes / 2**30:.1f} GiB free)")
    for plugin in info.plugins:
        print(f"plugin:       {plugin.distribution} {plugin.version} ({plugin.name}): {plugin.status}")
    if not info.plugins:
        print("plugins:      none (GPU backends: pip install \"ikllama[vulkan]\" or \"ikllama[cuda]\")")
    print(f"rpc:          {'yes' if info.rpc else 'no'}")
    print(f"gpu offload:  {'yes' if info.gpu_offload else 'no'} (max devices {info.max_devices})")
    print(f"mmap / mlock: {'yes' if info.mmap else 'no'} / {'yes' if info.mlock else 'no'}")
    print(f"cpu features: {' '.join(k for k, v in info.cpu_features.items() if v) or '-'}")
    print(f"system info:  {info.native_system_info}")
    return 0


def _short(value: object, width: int = 100) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def _print_model(m, tensors: bool) -> None:  # noqa: ANN001 - a ModelInfo
    mib = 1024 * 1024
    print(f"file:          {m.path}" + (f" (+{len(m.files) - 1} shards)" if len(m.files) > 1 else ""))
    print(f"architecture:  {m.architecture}   name: {m.name}")
    print(f"file type:     {m.file_type}   {m.file_size / mib:.2f} MiB, {m.bpw:.3f} bits per weight")
    print(f"parameters:    {m.n_params:,}")
    print(f"context:       {m.context_length}   layers {m.n_layer}, embd {m.n_embd}, "
          f"heads {m.n_head} (kv {m.n_head_kv})")
    v = m.vocab
    special = ", ".join(f"{k}={s['id']} {s['text']!r}" for k, s in v["special"].items())
    print(f"vocabulary:    {v['type']} ({v['model']}, pre {v['pre']}), {v['size']} tokens; {special or '-'}")
    print(f"chat template: {_short(m.chat_template, 80) if m.chat_template else '-'}")
    print("tensor types:")
    for name, row in m.type_mix.items():
        print(f"  {name:<10} {row['tensors']:>5} tensors {row['elements']:>14,} weights {row['bytes'] / mib:>10.2f} MiB")
    if m.kv_cache is not None:
        kv = m.kv_cache
        print(f"kv cache:      n_ctx {kv.n_ctx}: K {kv.type_k} {kv.k_bytes / mib:.2f} MiB + V {kv.type_v} "
              f"{kv.v_bytes / mib:.2f} MiB = {kv.total / mib:.2f} MiB")
    print("metadata:")
    for key, value in m.metadata.items():
        print(f"  {key:<44} {m.metadata_types.get(key, ''):<14} {_short(value)}")
    if tensors:
        print("tensors:")
        for t in m.tensors:
            print(f"  {t.name:<44} {t.type:<10} {str(list(t.shape)):<22} {t.n_bytes:>12}")


def _cmd_model(args: argparse.Namespace) -> int:
    from ..errors import IkLlamaError
    from ..modelfile.info import inspect

    try:
        m = inspect(args.model, n_ctx=args.n_ctx, kv_type=args.kv, kv_type_v=args.kv_v)
    except (IkLlamaError, ValueError, OSError, ImportError) as exc:
        print(f"ikllama info: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(m.as_dict(tensors=args.tensors), indent=2, ensure_ascii=False, default=str))
    else:
        _print_model(m, args.tensors)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    return _cmd_model(args) if args.model else _cmd_build(args)


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="show the build, or what a GGUF model file holds")
    info.add_argument("model", nargs="?", help="a GGUF file (any shard of a split model); omit for the build")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.add_argument("--tensors", action="store_true", help="with MODEL: also the tensor table")
    info.add_argument("--n-ctx", type=int, default=None, help="with MODEL: estimate the KV cache for N cells")
    info.add_argument("--kv", default="f16", help="KV cache type for --n-ctx (f16, q8_0, q4_0, ...)")
    info.add_argument("--kv-v", default=None, help="V cache type if different from --kv")
    info.set_defaults(func=_cmd_info)
