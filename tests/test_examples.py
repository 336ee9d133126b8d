"""The examples run end to end (small token budgets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_simple(smollm_path):
    out = run("simple.py", "--model", str(smollm_path), "-n", "12", "--prompt", "The capital of France is")
    assert out.startswith("The capital of France is Paris")
    assert "KV Q8 (Q8_0, Hadamard on)" in out and "generation: 12 tokens" in out


def test_cli_run_default_model(smollm_path):
    out = subprocess.run([sys.executable, "-m", "ikllama", "run", "The capital of France is", "-n", "8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The capital of France is Paris")
    assert "generated 8 tokens" in out.stderr
