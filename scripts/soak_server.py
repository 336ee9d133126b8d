"""Soak ``ikllama serve``: many concurrent requests, streaming and not, dropped clients and an overload burst.

    python scripts/soak_server.py [--model GGUF] [--requests 500] [--concurrency 16] [--tokens 24]

Starts the server as a subprocess on 127.0.0.1 (a free port), then checks: no 5xx answer, every stream
well formed (JSON ``data:`` lines, one ``[DONE]`` last), every request of the overload burst answered
200 or refused 429, and the server's RSS after the run less than 50 MB above its RSS after warm-up, not counting the
host prompt cache's growth (bounded by ``--cache-ram``; checked against that bound too).
Exits 1 (with the failures listed) when a check fails; CI runs it with a small budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORDS = "river stone cloud lamp forest engine letter garden window silver".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_cache_mb(base: str) -> float:
    """What the server's host prompt cache holds (``/props``), in MB as ``rss_mb`` counts."""
    cache = httpx.get(base + "/props", timeout=10).json().get("host_prompt_cache") or {}
    return cache.get("bytes", 0) / (1 << 20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    return False


class Tally:
    def __init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.failures: list[str] = []
        self.dropped = 0


def check_stream(lines: list[str], tally: Tally) -> None:
    data = [line[6:] for line in lines if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]" or data.count("[DONE]") != 1:
        tally.failures.append(f"stream not ended by one [DONE]: {data[-2:]}")
        return
    for item in data[:-1]:
        body = json.loads(item)
        if "error" in body:
            tally.failures.append(f"error mid-stream: {body['error']}")
        elif "choices" not in body:
            tally.failures.append(f"chunk without choices: {item[:120]}")


async def one(c: httpx.AsyncClient, rng: random.Random, tokens: int, tally: Tally) -> None:
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60)))
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0.7,
            "seed": rng.randint(0, 1 << 30), "stream": rng.random() < 0.5}
    drop = rng.random() < 0.1
    if body["stream"]:
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            tally.status[r.status_code] += 1
            if r.status_code != 200:
                return
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if drop and line.startswith("data: "):
                    tally.dropped += 1
                    return  # leaving the block closes the connection mid-stream
            check_stream(lines, tally)
    else:
        try:
            r = await c.post("/v1/chat/completions", json=body, timeout=0.3 if drop else 300)
        except httpx.TimeoutException:
            tally.dropped += 1
            return
        tally.status[r.status_code] += 1
        if r.status_code == 200:  # an empty answer is fine (the model may end at once); a missing reason is not
            choice = r.json()["choices"][0]
            if choice["finish_reason"] not in ("stop", "length") or choice["message"]["content"] is None:
                tally.failures.append(f"malformed answer: {choice}")


async def load(base: str, n: int, conc: int, tokens: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    sem = asyncio.Semaphore(conc)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=conc + 8)) as c:
        async def task() -> None:
            async with sem:
                await one(c, rng, tokens, tally)
        await asyncio.gather(*(task() for _ in range(n)))


async def burst(base: str, n: int, tokens: int, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=n)) as c:
        rs = await asyncio.gather(*(c.post("/v1/completions", json={"prompt": f"Count {i}:", "max_tokens": tokens})
                                    for i in range(n)))
    codes = Counter(r.status_code for r in rs)
    tally.status.update(codes)
    if set(codes) - {200, 429}:
        tally.failures.append(f"overload burst answered {dict(codes)}")
    if not codes[429]:
        tally.failures.append("overload burst never hit the queue bound (429)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-ram", type=int, default=256, help="the server's host prompt cache, MiB")
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ikllama", "serve", "--port", str(port), "-c", "4096", "-np", str(args.parallel),
           "--max-queue", str(args.max_queue), "-t", "2", "--cache-ram", str(args.cache_ram), "--log-level", "warning"]
    if args.model:
        cmd += ["-m", str(args.model)]
    proc = subprocess.Popen(cmd)
    tally = Tally()
    try:
        if not wait_ready(base, proc):
            print("the server did not become ready", file=sys.stderr)
            return 1
        warm = max(8, args.requests // 10)
        asyncio.run(load(base, warm, args.concurrency, args.tokens, args.seed, tally))
        rss_warm, cache_warm = rss_mb(proc.pid), host_cache_mb(base)
        t0 = time.monotonic()
        asyncio.run(load(base, args.requests, args.concurrency, args.tokens, args.seed + 1, tally))
        asyncio.run(burst(base, 3 * (args.parallel + args.max_queue), 4, tally))
        wall = time.monotonic() - t0
        rss_end, cache_end = rss_mb(proc.pid), host_cache_mb(base)
        alive = proc.poll() is None and httpx.get(base + "/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    server_errors = sum(n for code, n in tally.status.items() if code >= 500)
    if server_errors:
        tally.failures.append(f"{server_errors} answers with a 5xx status")
    grown = (rss_end - rss_warm) - (cache_end - cache_warm)  # the host prompt cache may fill up to its limit
    if grown >= 50:
        tally.failures.append(f"RSS grew {grown:.1f} MB after warm-up (beside the host prompt cache)")
    if cache_end > args.cache_ram:
        tally.failures.append(f"the host prompt cache holds {cache_end:.1f} MB, over its {args.cache_ram} MiB limit")
    if not alive:
        tally.failures.append("the server was not healthy at the end")
    print(f"soak: {args.requests} requests at concurrency {args.concurrency} + burst in {wall:.1f} s | "
          f"status {dict(sorted(tally.status.items()))} | dropped {tally.dropped} | "
          f"RSS {rss_warm:.0f} -> {rss_end:.0f} MB (host prompt cache {cache_warm:.0f} -> {cache_end:.0f} MB) | "
          f"failures {len(tally.failures)}")
    for f in tally.failures[:20]:
        print("  FAIL", f)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
