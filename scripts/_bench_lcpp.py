"""llama-cpp-python section of scripts/bench.py: the same streamed completion through
llama-cpp-python (PyPI, in its own venv) and through ikllama.LLM, prompt and generation t/s.

llama-cpp-python builds mainline llama.cpp from source; its default -march=native build dies on this
CPU's AMX instructions, so it is built with GGML_NATIVE=OFF and the AVX-512 flags set explicitly.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VENV = Path(os.environ.get("IKLLAMA_LCPP_VENV") or Path.home() / ".cache" / "ikllama" / "lcpp-venv")
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON "
              "-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF "
              "-DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")

# Runs inside the llama-cpp-python venv: prints one JSON line {"pp": t/s, "tg": t/s}.
CHILD = r"""
import json, sys, time, statistics
from llama_cpp import Llama
model, n_prompt, n_gen, threads, reps = sys.argv[1], *map(int, sys.argv[2:6])
llm = Llama(model, n_ctx=n_prompt + n_gen + 64, n_batch=512, n_ubatch=512, n_threads=threads,
            n_threads_batch=threads, flash_attn=True, verbose=False)
ban = {llm.token_eos(): float("-inf")}
pp, tg = [], []
for rep in range(reps + 1):
    llm.reset()
    prompt = [(7 * i + 11 + rep) % llm.n_vocab() for i in range(n_prompt)]
    t0 = time.perf_counter(); first = None
    for chunk in llm.create_completion(prompt, max_tokens=n_gen, temperature=0.0, stream=True, logit_bias=ban):
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    if rep:
        pp.append(n_prompt / (first - t0)); tg.append((n_gen - 1) / (end - first))
print(json.dumps({"pp": statistics.mean(pp), "tg": statistics.mean(tg), "version": __import__("llama_cpp").__version__}))
"""


def venv_python(server: bool = False) -> Path:
    """The llama-cpp-python venv's interpreter, creating and building it on first use (slow: a full compile);
    with ``server`` also its server extra (pure Python: no second compile)."""
    py = VENV / "bin" / "python"
    probe = "import llama_cpp.server.app" if server else "import llama_cpp"
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return py
    if py.exists() and subprocess.run([str(py), "-c", "import llama_cpp"], capture_output=True).returncode == 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "llama-cpp-python[server]"], check=True,
                       env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS})
        return py
    print(f"building llama-cpp-python into {VENV} (one time, ~15 min on 2 cores)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS}
    spec = "llama-cpp-python[server]" if server else "llama-cpp-python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", spec], check=True, env=env)
    return py


def theirs(model_path: Path, n_prompt: int, n_gen: int, threads: int, reps: int) -> dict[str, Any]:
    out = subprocess.run([str(venv_python()), "-c", CHILD, str(model_path), str(n_prompt), str(n_gen), str(threads),
                          str(reps)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours(model_path: Path, n_prompt: int, n_gen: int, threads: int, reps: int) -> dict[str, float]:
    """The same measurement through ikllama.LLM.create_completion(stream=True)."""
    import ikllama

    with ikllama.LLM(model_path, n_ctx=n_prompt + n_gen + 64, n_batch=512, n_ubatch=512, n_threads=threads) as llm:
        ban = {llm.model.token_eos: float("-inf")}
        pp, tg = [], []
        for rep in range(reps + 1):
            llm.ctx.clear()
            prompt = [(7 * i + 11 + rep) % llm.model.n_vocab for i in range(n_prompt)]
            t0 = time.perf_counter()
            first = None
            for _chunk in llm.create_completion(prompt, max_tokens=n_gen, temperature=0.0, stream=True,
                                                logit_bias=ban):
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            if rep:  # eos is banned, so exactly n_gen tokens came (chunks may merge split characters)
                pp.append(n_prompt / (first - t0))
                tg.append((n_gen - 1) / (end - first))
        return {"pp": statistics.mean(pp), "tg": statistics.mean(tg)}
