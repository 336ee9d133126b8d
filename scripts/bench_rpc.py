#!/usr/bin/env python3
"""Local vs one vs two RPC peers on loopback: speed, traffic per token, and what latency would cost.

Starts ``ikllama rpc-server`` peers on 127.0.0.1 (stopped at exit), then for each setup loads the model
with every layer remote (split by the peers' memory), and measures

  pp<N>   prompt processing: one decode of N tokens, tokens/s (median of --reps after a warm-up)
  tg<N>   generation: N single-token decodes with greedy picks, tokens/s
  sent/recv B/tok, cmds/tok, round trips/tok   ggml-rpc's own counters (patch 0013) over the tg run
  +1ms    round trips/tok x 1 ms: what each generated token would wait on a network with 1 ms RTT
          (commands without a reply are pipelined and cost no round trip), plus the bytes at 1 Gbit/s

Setups: local; every layer and the output head on 1 peer; on 2 peers; and "2p head": the layers on 2 peers
with the output head kept here (n_gpu_layers = n_layer), so n_embd activations come back instead of n_vocab
logits. Loopback hides latency, so the +1ms column is the one to read for real networks.

Usage: python scripts/bench_rpc.py [--model PATH] [--threads 1] [--pp 512] [--tg 128] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def run_setup(path: Path, servers: list[str], threads: int, n_pp: int, n_tg: int, reps: int,
              n_gpu_layers: int = 99) -> dict:
    import numpy as np

    import ikllama
    import ikllama.rpc
    from ikllama import ModelConfig, Pos

    config = ModelConfig(rpc_servers=servers or None, n_gpu_layers=n_gpu_layers if servers else 0)
    with config.load_gguf(path) as model, model.context().with_n_ctx(n_pp + n_tg + 16).with_n_batch(n_pp) \
            .with_n_ubatch(n_pp).with_threads(threads).build() as ctx:
        vocab = model.n_vocab
        prompt = [(i * 7919) % (vocab - 1000) + 500 for i in range(n_pp)]
        batch = ctx.new_batch(n_pp)
        batch.add_sequence(prompt, Pos(0, 0))
        pp = []
        for i in range(reps + 1):
            ctx.clear()
            t0 = time.perf_counter()
            ctx.decode(batch)
            if i:
                pp.append(n_pp / (time.perf_counter() - t0))
        ctx.clear()
        head = ctx.new_batch(16)
        head.add_sequence(prompt[:16], Pos(0, 0))
        ctx.decode(head)
        row = 15
        step = ctx.new_batch(1)
        before = ikllama.rpc.traffic()
        t0 = time.perf_counter()
        for _ in range(n_tg):
            token = int(np.argmax(ctx.logits(row)))
            step.clear()
            step.add(token, Pos(ctx.n_past(0), 0), logits=True)
            ctx.decode(step)
            row = 0
        tg = n_tg / (time.perf_counter() - t0)
        spent = ikllama.rpc.traffic() - before
        placed = {d.name: d.weights for d in model.devices()}
    return {"pp": statistics.median(pp), "tg": tg, "sent": spent.bytes_sent / n_tg,
            "recv": spent.bytes_received / n_tg, "cmds": spent.commands / n_tg, "rtt": spent.round_trips / n_tg,
            "placed": placed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="threads of the host and of each peer")
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    from rpc_peers import Peer

    if args.model is None:
        from ikllama.models import SMOLLM2_135M, fetch

        args.model = fetch(SMOLLM2_135M)
    print(f"bench_rpc: {args.model.name}, {args.threads} thread(s) on the host and on each peer, "
          f"peers = ikllama rpc-server on 127.0.0.1")
    print(f"{'setup':<8} {f'pp{args.pp} t/s':>11} {f'tg{args.tg} t/s':>11} {'sent B/tok':>11} {'recv B/tok':>11} "
          f"{'cmds/tok':>9} {'rtrips/tok':>10} {'+1ms RTT ms/tok':>16} {'+1Gbit ms/tok':>14}")
    from ikllama import inspect

    n_layer = inspect(args.model).n_layer
    with Peer(threads=args.threads) as a, Peer(threads=args.threads) as b:
        both = [a.address, b.address]
        for name, servers, ngl in (("local", [], 0), ("1 peer", [a.address], 99), ("2 peers", both, 99),
                                   ("2p head", both, n_layer)):
            r = run_setup(args.model, servers, args.threads, args.pp, args.tg, args.reps, ngl)
            wire_ms = (r["sent"] + r["recv"]) * 8 / 1e9 * 1e3
            print(f"{name:<8} {r['pp']:>11.1f} {r['tg']:>11.1f} {r['sent']:>11.0f} {r['recv']:>11.0f} "
                  f"{r['cmds']:>9.1f} {r['rtt']:>10.1f} {r['rtt'] * 1.0:>16.1f} {wire_ms:>14.3f}", flush=True)
            if servers:
                total = sum(r["placed"].values()) or 1
                print("         placed: " + ", ".join(f"{k} {v / total:.0%}" for k, v in r["placed"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
