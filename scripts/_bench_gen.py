"""Generation sections of scripts/bench.py: end-to-end generation, Python overhead per token, and
parallel sequences against llama-batched-bench. Imported by bench.py only."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any


def ours_generate(ctx: Any, n_gen: int, reps: int) -> float:
    """Tokens/s of SimpleInference.generate (greedy C sampling + detokenization + decode), warm."""
    import ikllama

    speeds = []
    with ikllama.SimpleInference(ctx) as inf:
        for i in range(reps + 1):
            ctx.clear()
            inf.prefill([ctx.vocab.n_vocab // 2])
            t0 = time.perf_counter()
            answer = inf.generate(n_gen, ignore_eos=True)
            dt = time.perf_counter() - t0
            assert len(answer.tokens) == n_gen, (len(answer.tokens), answer.finish_reason)
            if i:
                speeds.append(n_gen / dt)
    return statistics.mean(speeds)


class _Stand:
    """Stands in for a cffi ``lib``: ``llama_decode`` returns at once (the loop's bookkeeping still runs)
    and ``ikl_sampler_next`` is timed, so what is left of the wall time is ikllama's own Python."""

    def __init__(self, lib: Any):
        self._lib = lib
        self.sampler = 0.0

    def llama_decode(self, *args: Any) -> int:
        return 0

    def ikl_sampler_next(self, *args: Any) -> int:
        t0 = time.perf_counter()
        try:
            return self._lib.ikl_sampler_next(*args)
        finally:
            self.sampler += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


def python_overhead_us(model_path: Path, threads: int, n_gen: int = 500) -> tuple[float, float]:
    """(Python, C sampler) microseconds per generated token of SimpleInference.generate, greedy.

    The loop runs with ``llama_decode`` replaced by a no-op: the logits stay those of the last real
    decode, every other step (sampling in C, detokenization, stop checks, batch bookkeeping) runs
    as usual. The stand-in's own call cost counts as Python, so this is an upper bound.
    """
    import ikllama
    from ikllama import context as context_mod, inference as inference_mod

    with ikllama.ModelConfig().load_gguf(model_path) as model, \
            model.context().with_n_ctx(n_gen + 64).with_threads(threads).build() as ctx, \
            ikllama.SimpleInference(ctx) as inf:
        python, sampler = [], []
        for _ in range(5):
            ctx.clear()
            inf.prefill([model.n_vocab // 2])
            inf.generate(8, ignore_eos=True)  # warm the caches
            stand_c, stand_i = _Stand(context_mod.lib), _Stand(inference_mod.lib)
            context_mod.lib, inference_mod.lib = stand_c, stand_i
            try:
                t0 = time.perf_counter()
                answer = inf.generate(n_gen, ignore_eos=True)
                wall = time.perf_counter() - t0
            finally:
                context_mod.lib, inference_mod.lib = stand_c._lib, stand_i._lib
            n = len(answer.tokens)
            python.append((wall - stand_i.sampler) / n * 1e6)
            sampler.append(stand_i.sampler / n * 1e6)
        return statistics.median(python), statistics.median(sampler)


def batched_bench(tools: Path, model_path: Path, threads: int, npp: int, ntg: int, npl: int) -> float:
    """Aggregate generation t/s (S_TG) of ik's llama-batched-bench, flash attention on."""
    cmd = [str(tools / "llama-batched-bench"), "-m", str(model_path), "-c", str(npl * (npp + ntg) + 256),
           "-b", "2048", "-ub", "512", "-npp", str(npp), "-ntg", str(ntg), "-npl", str(npl), "-fa", "1",
           "-t", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = proc.stdout + proc.stderr  # this build prints its table with the log, on stderr
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and re.fullmatch(r"\d+", cells[0] or "x") and int(cells[2]) == npl:
            return float(cells[7])
    raise RuntimeError(f"no result row in llama-batched-bench output:\n{out}")


def ours_parallel(model: Any, threads: int, npp: int, ntg: int, npl: int) -> float:
    """Aggregate generation t/s of SimpleInference.generate_parallel over ``npl`` forks."""
    import ikllama

    with model.context().with_n_ctx(npl * (npp + ntg) + 256).with_n_seq_max(npl).with_threads(threads) \
            .build() as ctx, ikllama.SimpleInference(ctx) as inf:
        speeds = []
        for rep in range(2):
            ctx.clear()
            inf.prefill_many({f: [(13 * f + 7 * i + 11) % model.n_vocab for i in range(npp)] for f in range(npl)})
            t0 = time.perf_counter()
            answers = inf.generate_parallel(range(npl), ntg, ignore_eos=True)
            dt = time.perf_counter() - t0
            assert all(len(a.tokens) == ntg for a in answers)
            if rep:
                speeds.append(npl * ntg / dt)
        return statistics.mean(speeds)
