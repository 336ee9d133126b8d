"""Side by side: ``ikllama serve`` against ik's own llama-server from the same tree, same model and flags.

Both servers get the same GGUF, ``-c``, ``-np``, ``-b``, ``-ub``, ``-t`` and flash attention; every
request is greedy with ``ignore_eos`` and a fixed ``max_tokens``, so both generate the same number of
tokens (checked from the stream). One asyncio/httpx client streams ``/v1/chat/completions`` and
measures on the client side. Runs are interleaved (ours, ik's, ours, ...) and the medians reported,
because timings on a shared VM drift between runs.

    python scripts/bench_server.py [--model GGUF] [--rounds 3] [--conc 1,4,8,16] [--tokens 64]

Scenarios: a closed-loop concurrency sweep; prefill interference (streams decoding while a long prompt
arrives: their worst inter-token gap); a shared system prompt (TTFT with and without prefix reuse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# A new connection per request for both servers: ik's HTTP server closes idle keep-alive connections after 5 s,
# and a client that reuses one of those sees "server disconnected" instead of an answer.
FRESH = httpx.Limits(max_keepalive_connections=0)


def start(kind: str, model: Path, port: int, args: argparse.Namespace, n_ctx: int, parallel: int) -> subprocess.Popen:
    common = ["-m", str(model), "--port", str(port), "-c", str(n_ctx), "-np", str(parallel), "-t", str(args.threads),
              "-b", str(args.batch), "-ub", str(args.batch), "-fa", "on"]
    if kind == "ik":
        cmd = [str(ROOT / "build" / "tools" / "bin" / "llama-server"), *common, "--host", "127.0.0.1", "--metrics"]
    else:
        cmd = [sys.executable, "-m", "ikllama", "serve", *common, "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")} if kind == "ours" else None
    log = Path(tempfile.gettempdir()) / f"bench_server_{kind}_{port}.log"  # kept for a post-mortem
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}: {' '.join(cmd)}")
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"{kind} server did not come up")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # seen with ik's server after a dropped stream (server.md §7)
        proc.kill()
        proc.wait()


async def stream_one(c: httpx.AsyncClient, messages: list[dict], tokens: int) -> dict:
    body = {"model": "m", "messages": messages, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}, "cache_prompt": True}
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage = None
    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ttft": stamps[0] - t0 if stamps else float("nan"), "gaps": gaps, "end": time.perf_counter() - t0,
            "n": (usage or {}).get("completion_tokens", len(stamps)),
            "cached": ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens"), "stamps": stamps}


def user_prompt(i: int, words: int) -> list[dict]:
    text = " ".join(f"item{(i * 7 + k) % 97}" for k in range(words))
    return [{"role": "user", "content": f"Request {i}: summarise this list: {text}"}]


async def sweep(base: str, conc: int, tokens: int, per_client: int) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        await stream_one(c, user_prompt(999, 20), 4)  # warm-up

        async def worker(w: int) -> list[dict]:
            return [await stream_one(c, user_prompt(w * 100 + k, 60), tokens) for k in range(per_client)]

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(w) for w in range(conc))) for r in rs]
        wall = time.perf_counter() - t0
    n = sum(r["n"] for r in results)
    if any(r["n"] != tokens for r in results):
        raise RuntimeError(f"a request generated {[r['n'] for r in results]} tokens, not {tokens}")
    gaps = sorted(g for r in results for g in r["gaps"])
    ttfts = sorted(r["ttft"] for r in results)
    return {"tps": n / wall, "ttft_p50": _pct(ttfts, 50), "ttft_p99": _pct(ttfts, 99), "itl_p50": _pct(gaps, 50),
            "itl_p99": _pct(gaps, 99)}


async def interference(base: str, streams: int, long_words: int) -> dict:
    """``streams`` clients decode; a long prompt arrives; their worst gap while it is prefilled."""
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        await stream_one(c, user_prompt(998, 20), 4)
        decoding = [asyncio.create_task(stream_one(c, user_prompt(i, 10), 200)) for i in range(streams)]
        await asyncio.sleep(1.0)
        t_long = time.perf_counter()
        long = await stream_one(c, user_prompt(777, long_words), 2)
        t_first = t_long + long["ttft"]
        rs = await asyncio.gather(*decoding)
    worst = 0.0
    for r in rs:
        for a, b in zip(r["stamps"], r["stamps"][1:]):
            if b >= t_long and a <= t_first:
                worst = max(worst, b - a)
    typical = statistics.median(g for r in rs for g in r["gaps"])
    return {"worst_gap": worst, "median_gap": typical, "long_ttft": long["ttft"]}


async def shared_prefix(base: str, requests: int) -> dict:
    system = {"role": "system", "content": "You are a careful assistant. " + " ".join(
        f"Rule {k}: answer briefly and cite item{k}." for k in range(90))}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        rs = [await stream_one(c, [system, {"role": "user", "content": f"Question {i}?"}], 8) for i in range(requests)]
    return {"ttft_first": rs[0]["ttft"], "ttft_rest": statistics.median(r["ttft"] for r in rs[1:]),
            "cached": rs[-1]["cached"]}


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conc", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--long-words", type=int, default=700, help="long prompt for the interference scenario")
    ap.add_argument("--skip", default="", help="comma list of scenarios to skip: sweep,interference,prefix")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ikllama.models import default_model

    model = args.model or default_model()
    concs = [int(x) for x in args.conc.split(",")]
    skip = set(args.skip.split(",")) - {""}
    results: dict[tuple, list[dict]] = {}
    port = 18400
    for rnd in range(args.rounds):
        for kind in (("ours", "ik") if rnd % 2 == 0 else ("ik", "ours")):
            if "sweep" not in skip:
                port += 1
                proc = start(kind, model, port, args, n_ctx=16 * 512, parallel=16)
                try:
                    for conc in concs:
                        r = asyncio.run(sweep(f"http://127.0.0.1:{port}", conc, args.tokens, args.per_client))
                        results.setdefault((kind, "sweep", conc), []).append(r)
                finally:
                    stop(proc)
            if "interference" not in skip or "prefix" not in skip:
                port += 1
                proc = start(kind, model, port, args, n_ctx=8 * 2048, parallel=8)
                try:
                    base = f"http://127.0.0.1:{port}"
                    if "interference" not in skip:
                        results.setdefault((kind, "interference", 7), []).append(
                            asyncio.run(interference(base, 7, args.long_words)))
                    if "prefix" not in skip:
                        results.setdefault((kind, "prefix", 1), []).append(asyncio.run(shared_prefix(base, 6)))
                finally:
                    stop(proc)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    med = {k: {f: statistics.median(r[f] for r in v if r[f] is not None) if any(r[f] is not None for r in v)
               else None for f in v[0]} for k, v in results.items()}
    print(f"model {model.name}, -t {args.threads}, -b/-ub {args.batch}, {args.tokens} tokens/request, "
          f"median of {args.rounds} interleaved rounds")
    for conc in concs if "sweep" not in skip else []:
        o, i = med[("ours", "sweep", conc)], med[("ik", "sweep", conc)]
        print(f"sweep c={conc:<2}  ours {o['tps']:6.1f} t/s  ik {i['tps']:6.1f} t/s  ratio {o['tps'] / i['tps']:.2f}x | "
              f"TTFT p50/p99 ours {o['ttft_p50'] * 1e3:.0f}/{o['ttft_p99'] * 1e3:.0f} ms ik "
              f"{i['ttft_p50'] * 1e3:.0f}/{i['ttft_p99'] * 1e3:.0f} ms | ITL p50/p99 ours "
              f"{o['itl_p50'] * 1e3:.1f}/{o['itl_p99'] * 1e3:.1f} ms ik {i['itl_p50'] * 1e3:.1f}/{i['itl_p99'] * 1e3:.1f} ms")
    if "sweep" not in skip and 1 in concs and 8 in concs:
        for kind in ("ours", "ik"):
            print(f"scaling {kind}: 8 clients / 1 client = "
                  f"{med[(kind, 'sweep', 8)]['tps'] / med[(kind, 'sweep', 1)]['tps']:.2f}x")
    if "interference" not in skip:
        o, i = med[("ours", "interference", 7)], med[("ik", "interference", 7)]
        print(f"interference (7 streams + {args.long_words}-word prompt): worst gap ours {o['worst_gap'] * 1e3:.0f} ms "
              f"ik {i['worst_gap'] * 1e3:.0f} ms (median gap {o['median_gap'] * 1e3:.0f} / {i['median_gap'] * 1e3:.0f} ms; "
              f"long TTFT {o['long_ttft'] * 1e3:.0f} / {i['long_ttft'] * 1e3:.0f} ms)")
    if "prefix" not in skip:
        o, i = med[("ours", "prefix", 1)], med[("ik", "prefix", 1)]
        print(f"shared system prompt: TTFT first/rest ours {o['ttft_first'] * 1e3:.0f}/{o['ttft_rest'] * 1e3:.0f} ms "
              f"(cached {o['cached']}) ik {i['ttft_first'] * 1e3:.0f}/{i['ttft_rest'] * 1e3:.0f} ms (cached {i['cached']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
