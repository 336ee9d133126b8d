"""Mutation fuzzer for ikllama's model load path: every input is loaded in a forked child.

    PYTHONPATH=src python scripts/fuzz_gguf.py --minutes 10 --jobs 2 --out /tmp/fuzz
    PYTHONPATH=src python scripts/fuzz_gguf.py --raw --minutes 1      # ik alone, no validator

The parent never loads a model (see ``ikllama.testing.gguf_fuzz``). Seeds: the tiny llama written
by ``ikllama.testing.hostile_gguf`` (full loads) and the vendored ``models/ggml-vocab-*.gguf`` files
under 3 MB (vocab-only loads). Each worker prints a JSON report: inputs tried, outcome counts, and
crash buckets (signal + first assert line) with one saved input per bucket under ``--out``.
Exit status 1 when any input killed its child (or leaked a non-ModelLoadError exception) in
validated mode.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _worker(args: argparse.Namespace) -> dict:
    from ikllama.testing.gguf_fuzz import mutate, prepare_parent, run_one, seeds

    prepare_parent()
    rng = random.Random(args.seed)
    pool = seeds(ROOT / "vendor" / "ik_llama.cpp" / "models")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts: collections.Counter[str] = collections.Counter()
    buckets: dict[str, dict] = {}
    deadline = time.monotonic() + args.minutes * 60
    n = 0
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        work = Path(tmp)
        while time.monotonic() < deadline and (args.max_inputs <= 0 or n < args.max_inputs):
            name, doc, full = pool[0 if rng.random() < 0.7 else rng.randrange(len(pool))]
            data = mutate(doc, rng)
            result = run_one(data, work, full=full, raw=args.raw)
            n += 1
            counts[result.kind] += 1
            if result.kind in ("signal", "hang", "leak"):
                key = f"{result.kind}: {result.detail}"
                if key not in buckets:
                    path = out / f"crash-{args.seed}-{len(buckets)}.gguf"
                    path.write_bytes(data)
                    stderr = (work / "stderr.txt")
                    tail = stderr.read_text(errors="replace")[-2000:] if stderr.exists() else ""
                    buckets[key] = {"count": 0, "input": str(path), "seed": name, "stderr_tail": tail}
                    print(f"[worker {args.seed}] new bucket {key!r} from {name} -> {path}", file=sys.stderr)
                buckets[key]["count"] += 1
    return {"seed": args.seed, "raw": args.raw, "inputs": n, "minutes": args.minutes, "outcomes": dict(counts),
            "buckets": buckets}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0, help="run time per worker")
    p.add_argument("--jobs", type=int, default=1, help="parallel workers (one per core)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-inputs", type=int, default=0, help="stop after this many inputs (0: time only)")
    p.add_argument("--raw", action="store_true", help="call llama_model_load_from_file without the validator")
    p.add_argument("--out", default="fuzz-out", help="directory for crash inputs and the report")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker or args.jobs == 1:
        report = _worker(args)
        print(json.dumps(report, indent=None if args.worker else 2))
        return 1 if not args.raw and (report["outcomes"].get("signal") or report["outcomes"].get("hang")
                                      or report["outcomes"].get("leak")) else 0
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--minutes", str(args.minutes),
                               "--seed", str(args.seed + i), "--max-inputs", str(args.max_inputs),
                               "--out", args.out] + (["--raw"] if args.raw else []),
                              stdout=subprocess.PIPE, text=True) for i in range(args.jobs)]
    reports = []
    for proc in procs:
        stdout, _ = proc.communicate()
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    total: collections.Counter[str] = collections.Counter()
    buckets: dict[str, int] = collections.Counter()
    for r in reports:
        total.update(r["outcomes"])
        for k, b in r["buckets"].items():
            buckets[k] += b["count"]
    summary = {"raw": args.raw, "jobs": args.jobs, "minutes": args.minutes,
               "inputs": sum(r["inputs"] for r in reports), "outcomes": dict(total), "buckets": dict(buckets),
               "workers": reports}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "workers"}, indent=2))
    died = total.get("signal", 0) + total.get("hang", 0) + total.get("leak", 0)
    return 1 if died and not args.raw else 0


if __name__ == "__main__":
    sys.exit(main())
