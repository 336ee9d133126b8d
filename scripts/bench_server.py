"""Side by side: ``ikllama serve`` against ik's own llama-server from the same tree, same model and flags.

Both servers get the same GGUF, ``-c``, ``-np``, ``-b``, ``-ub``, ``-t`` and flash attention; every
request is greedy with ``ignore_eos`` and a fixed ``max_tokens``, so both generate the same number of
tokens (checked from the stream). One asyncio/httpx client streams ``/v1/chat/completions`` and
measures on the client side. Runs are interleaved (ours, ik's, ours, ...) and the medians reported,
because timings on a shared VM drift between runs.

    python scripts/bench_server.py [--model GGUF] [--rounds 3] [--conc 1,4,8,16] [--tokens 64] [--lcpp]

Scenarios: a closed-loop concurrency sweep; prefill interference (streams decoding while a long prompt
arrives: their worst inter-token gap); a shared system prompt (TTFT with and without prefix reuse);
prompt lookup (a copy task at one client: ours with ``speculative: true`` against both servers'
plain decoding; ik's server has no prompt lookup at this pin). ``--lcpp`` adds llama-cpp-python's
server (built once into scripts/_bench_lcpp.py's venv) to the sweep at 1 and 8 clients.

The sweep's prompts are short by default (``--prompt-words 0``: "count from N", about 30 tokens), so it
measures decoding and scheduling; ``--prompt-words 60`` gives ~230-token prompts, where both servers
spend most of the time in prefill on 2 cores. Decoders are asked to count, so every generated token
has visible text and an inter-token gap is never a hole made by invisible special tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
    elif kind == "lcpp":  # one request at a time behind its lock: n_ctx is one request's
        sys.path.insert(0, str(ROOT / "scripts"))
        import _bench_lcpp

        cmd = [str(_bench_lcpp.venv_python(server=True)), "-m", "llama_cpp.server", "--model", str(model),
               "--port", str(port), "--host", "127.0.0.1", "--n_ctx", str(min(n_ctx, 2048)), "--n_threads",
               str(args.threads), "--n_threads_batch", str(args.threads), "--n_batch", str(args.batch),
               "--n_ubatch", str(args.batch), "--flash_attn", "true"]
    else:
        cmd = [sys.executable, "-m", "ikllama", "serve", *common, "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")} if kind == "ours" else None
    log = Path(tempfile.gettempdir()) / f"bench_server_{kind}_{port}.log"  # kept for a post-mortem
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if kind == "lcpp":  # no /health there
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    return proc
            elif httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json().get("status") == "ok":
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


# Tokens that print nothing (end-of-generation and other control tokens) are banned on every server: under
# ignore_eos a model still writes them, ours streams no chunk for them (no text) while ik's prints them, so the
# inter-token gaps would cover different numbers of tokens. llama-cpp-python's server has no ignore_eos either.
EOS_BAN: dict[str, float] = {}


def silent_tokens(model: Path) -> dict[str, float]:
    """A logit_bias that bans the model's end-of-generation and control tokens (the ones with no plain text)."""
    from ikllama import ModelConfig

    with ModelConfig().load_gguf(model) as m:
        return {str(t): -100.0 for t in range(m.n_vocab)
                if m.is_eog(t) or (not m.token_to_piece(t, False) and m.token_to_piece(t, True))}


async def stream_one(c: httpx.AsyncClient, messages: list[dict], tokens: int, **extra: object) -> dict:
    body = {"model": "m", "messages": messages, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}, "cache_prompt": True, **extra}
    if EOS_BAN:
        body["logit_bias"] = EOS_BAN
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage = None
    timings: dict = {}
    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            timings = chunk.get("timings") or timings
            for ch in chunk.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ttft": stamps[0] - t0 if stamps else float("nan"), "gaps": gaps, "end": time.perf_counter() - t0,
            "n": (usage or {}).get("completion_tokens", len(stamps)), "prompt": (usage or {}).get("prompt_tokens"),
            "cached": ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens"), "stamps": stamps,
            "timings": timings}


# Every sweep request is new to both servers: a repeated prompt would measure ik's host-RAM prompt cache
# (--cache-ram) and our idle sequences rather than batching. Same digit count, so the same token count.
_PROMPT_IDS = itertools.count(100_000)
# An explicit system message: without one our server renders the GGUF's Jinja template, which adds the model's
# default system prompt, while ik's server (no --jinja) renders plain ChatML; with one both send the same tokens.
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def user_prompt(i: int, words: int) -> list[dict]:
    if words <= 0:  # short, and every answer token is visible text
        return [SYSTEM, {"role": "user", "content": f"Request {i}. Count from {i % 50} to 400, separated by commas."}]
    text = " ".join(f"item{(i * 7 + k) % 97}" for k in range(words))
    return [SYSTEM, {"role": "user", "content": f"Request {i}: summarise this list: {text}"}]


COPY_TEXT = ("The river rises in the northern hills, runs south through three market towns, and turns east "
             "below the old stone bridge, where the mill stood until the flood of 1894. ")


def copy_prompt(i: int) -> list[dict]:
    text = f"Note {i}: " + COPY_TEXT * 3
    return [SYSTEM, {"role": "user", "content": f"Repeat the following text exactly, twice:\n{text}"}]


async def sweep(base: str, conc: int, tokens: int, per_client: int, words: int, strict: bool = True) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        await stream_one(c, user_prompt(next(_PROMPT_IDS), 20), 4)  # warm-up

        async def worker(w: int) -> list[dict]:
            return [await stream_one(c, user_prompt(next(_PROMPT_IDS), words), tokens) for _ in range(per_client)]

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(w) for w in range(conc))) for r in rs]
        wall = time.perf_counter() - t0
    n = sum(r["n"] for r in results)
    if strict and any(r["n"] != tokens for r in results):
        raise RuntimeError(f"a request generated {[r['n'] for r in results]} tokens, not {tokens}")
    gaps = sorted(g for r in results for g in r["gaps"])
    ttfts = sorted(r["ttft"] for r in results)
    return {"tps": n / wall, "ttft_p50": _pct(ttfts, 50), "ttft_p99": _pct(ttfts, 99), "itl_p50": _pct(gaps, 50),
            "itl_p99": _pct(gaps, 99)}


async def interference(base: str, streams: int, long_words: int) -> dict:
    """``streams`` clients decode; a long prompt arrives; their worst gap while it is prefilled."""
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        await stream_one(c, user_prompt(998, 20), 4)
        decoding = [asyncio.create_task(stream_one(c, user_prompt(i, 0), 200)) for i in range(streams)]
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
    return {"worst_gap": worst, "median_gap": typical, "long_ttft": long["ttft"], "long_prompt": long["prompt"]}


async def shared_prefix(base: str, requests: int) -> dict:
    system = {"role": "system", "content": "You are a careful assistant. " + " ".join(
        f"Rule {k}: answer briefly and cite item{k}." for k in range(90))}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        rs = [await stream_one(c, [system, {"role": "user", "content": f"Question {i}?"}], 8) for i in range(requests)]
    return {"ttft_first": rs[0]["ttft"], "ttft_rest": statistics.median(r["ttft"] for r in rs[1:]),
            "cached": rs[-1]["cached"]}


async def lookup(base: str, requests: int, tokens: int, speculative: bool) -> dict:
    """One client, a copy task: tokens/s end to end (prompt included), with or without prompt lookup."""
    extra = {"speculative": True} if speculative else {}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=FRESH) as c:
        await stream_one(c, copy_prompt(999), 4)
        t0 = time.perf_counter()
        rs = [await stream_one(c, copy_prompt(i), tokens, **extra) for i in range(requests)]
        wall = time.perf_counter() - t0
    drafted = sum(r["timings"].get("draft_n", 0) for r in rs)
    accepted = sum(r["timings"].get("draft_n_accepted", 0) for r in rs)
    return {"tps": sum(r["n"] for r in rs) / wall, "ttft": statistics.median(r["ttft"] for r in rs),
            "accept": accepted / drafted if drafted else None}


def per_level(per_client: int, conc: int) -> int:
    """Requests per client at one concurrency: ``per_client``, but at least 8 requests in all (one client too)."""
    return max(per_client, -(-8 // conc))


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conc", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=2, help="requests per client (at least 8 in all per level)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--prompt-words", type=int, default=0, help="sweep prompt: 0 a short counting request, "
                    "N a list of N words to summarise")
    ap.add_argument("--long-words", type=int, default=700, help="long prompt for the interference scenario")
    ap.add_argument("--lookup-tokens", type=int, default=128, help="tokens per copy-task request (lookup)")
    ap.add_argument("--lcpp", action="store_true", help="also llama-cpp-python's server at 1 and 8 clients")
    ap.add_argument("--skip", default="", help="comma list of scenarios to skip: sweep,lookup,interference,prefix")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ikllama.models import default_model

    model = args.model or default_model()
    EOS_BAN.update(silent_tokens(model))
    concs = [int(x) for x in args.conc.split(",")]
    skip = set(args.skip.split(",")) - {""}
    results: dict[tuple, list[dict]] = {}
    port = 18400
    kinds = ["ours", "ik"] + (["lcpp"] if args.lcpp else [])
    for rnd in range(args.rounds):
        for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):
            if kind == "lcpp":
                port += 1
                proc = start(kind, model, port, args, n_ctx=2048, parallel=1)
                try:
                    for conc in (c for c in concs if c in (1, 8)):
                        r = asyncio.run(sweep(f"http://127.0.0.1:{port}", conc, args.tokens,
                                              per_level(args.per_client, conc), args.prompt_words, strict=False))
                        results.setdefault((kind, "sweep", conc), []).append(r)
                finally:
                    stop(proc)
                continue
            if "sweep" not in skip or "lookup" not in skip:
                port += 1
                proc = start(kind, model, port, args, n_ctx=16 * 512, parallel=16)
                base = f"http://127.0.0.1:{port}"
                try:
                    if "lookup" not in skip:  # first, on a fresh cache: the sweep leaves both caches fragmented
                        results.setdefault((kind, "lookup", False), []).append(
                            asyncio.run(lookup(base, 4, args.lookup_tokens, False)))
                        if kind == "ours":
                            results.setdefault((kind, "lookup", True), []).append(
                                asyncio.run(lookup(base, 4, args.lookup_tokens, True)))
                    for conc in concs if "sweep" not in skip else []:
                        r = asyncio.run(sweep(base, conc, args.tokens, per_level(args.per_client, conc),
                                              args.prompt_words))
                        results.setdefault((kind, "sweep", conc), []).append(r)
                finally:
                    stop(proc)
            if "interference" not in skip or "prefix" not in skip:
                port += 1
                # 4096 cells a slot: ik's server splits n_ctx evenly and silently cuts a longer prompt in half, which
                # would time a different prompt (the report prints both servers' prompt_tokens).
                proc = start(kind, model, port, args, n_ctx=8 * 4096, parallel=8)
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
    report(results, args, model, concs, skip)
    return 0


def report(results: dict, args: argparse.Namespace, model: Path, concs: list[int], skip: set[str]) -> None:
    med = {k: {f: statistics.median(r[f] for r in v if r[f] is not None) if any(r[f] is not None for r in v)
               else None for f in v[0]} for k, v in results.items()}
    print(f"model {model.name}, -t {args.threads}, -b/-ub {args.batch}, {args.tokens} tokens/request, "
          f"prompt words {args.prompt_words}, median of {args.rounds} interleaved rounds")
    for conc in concs if "sweep" not in skip else []:
        o, i = med[("ours", "sweep", conc)], med[("ik", "sweep", conc)]
        print(f"sweep c={conc:<2}  ours {o['tps']:6.1f} t/s  ik {i['tps']:6.1f} t/s  ratio {o['tps'] / i['tps']:.2f}x | "
              f"TTFT p50/p99 ours {o['ttft_p50'] * 1e3:.0f}/{o['ttft_p99'] * 1e3:.0f} ms ik "
              f"{i['ttft_p50'] * 1e3:.0f}/{i['ttft_p99'] * 1e3:.0f} ms | ITL p50/p99 ours "
              f"{o['itl_p50'] * 1e3:.1f}/{o['itl_p99'] * 1e3:.1f} ms ik {i['itl_p50'] * 1e3:.1f}/{i['itl_p99'] * 1e3:.1f} ms")
        lc = med.get(("lcpp", "sweep", conc))
        if lc:
            print(f"sweep c={conc:<2}  ours {o['tps']:6.1f} t/s  llama-cpp-python {lc['tps']:6.1f} t/s  ratio "
                  f"{o['tps'] / lc['tps']:.2f}x | TTFT p50/p99 llama-cpp-python {lc['ttft_p50'] * 1e3:.0f}/"
                  f"{lc['ttft_p99'] * 1e3:.0f} ms")
    if "sweep" not in skip and 1 in concs and 8 in concs:
        for kind in ("ours", "ik"):
            print(f"scaling {kind}: 8 clients / 1 client = "
                  f"{med[(kind, 'sweep', 8)]['tps'] / med[(kind, 'sweep', 1)]['tps']:.2f}x")
    if "lookup" not in skip:
        spec, plain, ik = med[("ours", "lookup", True)], med[("ours", "lookup", False)], med[("ik", "lookup", False)]
        print(f"prompt lookup c=1 (copy task, {args.lookup_tokens} tokens): ours+lookup {spec['tps']:.1f} t/s "
              f"(accepted {spec['accept'] or 0:.0%} of drafts)  ours {plain['tps']:.1f}  ik {ik['tps']:.1f} t/s  "
              f"ratio vs ik {spec['tps'] / ik['tps']:.2f}x")
    if "interference" not in skip:
        o, i = med[("ours", "interference", 7)], med[("ik", "interference", 7)]
        print(f"interference (7 streams + {args.long_words}-word prompt): worst gap ours {o['worst_gap'] * 1e3:.0f} ms "
              f"ik {i['worst_gap'] * 1e3:.0f} ms (median gap {o['median_gap'] * 1e3:.0f} / {i['median_gap'] * 1e3:.0f} ms; "
              f"long TTFT {o['long_ttft'] * 1e3:.0f} / {i['long_ttft'] * 1e3:.0f} ms for "
              f"{o['long_prompt']} / {i['long_prompt']} prompt tokens)")
    if "prefix" not in skip:
        o, i = med[("ours", "prefix", 1)], med[("ik", "prefix", 1)]
        print(f"shared system prompt: TTFT first/rest ours {o['ttft_first'] * 1e3:.0f}/{o['ttft_rest'] * 1e3:.0f} ms "
              f"(cached {o['cached']}) ik {i['ttft_first'] * 1e3:.0f}/{i['ttft_rest'] * 1e3:.0f} ms (cached {i['cached']})")


if __name__ == "__main__":
    sys.exit(main())
