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


def test_embeddings_example(smollm_path):
    out = run("embeddings.py", "--model", str(smollm_path))
    lines = out.splitlines()
    assert lines[0].split() == ["0", "1", "2", "3", "4"]
    rows = [[float(x) for x in line.split()[1:]] for line in lines[1:6]]
    assert all(abs(rows[i][i] - 1.0) < 1e-3 for i in range(5))
    assert rows[0][1] > rows[0][2] and rows[3][4] > rows[3][2]  # paraphrases beat the tax-law sentence
    assert "closest pair: [0] and [1]" in out and "MEAN pooling | 5 sentences, 576 dims" in out
    out = run("embeddings.py", "--model", str(smollm_path), "--pooling", "LAST", "--sentences", "a b", "c d")
    assert "LAST pooling | 2 sentences" in out


def test_cli_run_default_model(smollm_path):
    out = subprocess.run([sys.executable, "-m", "ikllama", "run", "The capital of France is", "-n", "8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The capital of France is Paris")
    assert "generated 8 tokens" in out.stderr


def test_kv_quant_example(smollm_path):
    out = run("kv_quant.py", "--model", str(smollm_path), "-n", "16")
    lines = out.splitlines()
    assert lines[1].startswith("F16      off") and "never" in lines[1]
    assert any(line.startswith("Q8_0     on ") for line in lines)
    assert "Q5_0     on       unsupported on this backend" in out


def test_kv_quant_report_runs(tmp_path):
    script = EXAMPLES.parent / "scripts" / "kv_quant_report.py"
    report = tmp_path / "report.md"
    out = subprocess.run([sys.executable, str(script), "--models", "smollm2-135m", "--chunks", "1", "--n-gen", "8",
                          "--only", "Q4_0,Q5_0", "--out", str(report)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = report.read_text()
    assert "| F16 / F16 | off |" in text and "| Q4_0 / Q4_0 | K+V |" in text
    assert "unsupported on this backend" in text
    assert (tmp_path / "kv_quant_smollm2-135m.png").stat().st_size > 10_000
