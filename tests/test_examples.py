"""The examples run end to end (small token budgets)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                         timeout=300, input=stdin)
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


def test_chat_example_turns(smollm_path):
    out = run("chat.py", "--model", str(smollm_path), "-n", "16", "--prompt", "What is the capital of France?",
              "--prompt", "And of Italy?")
    lines = out.splitlines()
    assert lines[0] == "user: What is the capital of France?" and lines[1].startswith("assistant: ")
    assert "Paris" in lines[1]
    assert lines[2] == "user: And of Italy?" and lines[3].startswith("assistant: ")
    assert "capital" in lines[3]  # the second turn was answered in the context of the first


def test_chat_example_repl_reads_stdin(smollm_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "chat.py"), "--model", str(smollm_path), "-n", "8"],
                          input="What is the capital of France?\n/reset\nHi\n/quit\nnever asked\n",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("assistant: ") == 2 and "(conversation reset)" in out and "never asked" not in out
    assert "Paris" in out.split("(conversation reset)")[0]
    assert "(2 messages in the conversation)" in proc.stderr  # the reset forgot the first exchange


def test_stream_example(smollm_path):
    for api in ("llm", "inference"):
        proc = subprocess.run([sys.executable, str(EXAMPLES / "stream.py"), "--model", str(smollm_path), "--api",
                               api, "-n", "8", "--prompt", "The capital of France is"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("The capital of France is Paris"), (api, proc.stdout)
        assert "finish_reason=length" in proc.stderr
    assert "8 tokens, finish_reason=length" in proc.stderr


def test_json_output_example(smollm_path):
    city = json.loads(run("json_output.py", "--model", str(smollm_path)))
    assert set(city) == {"name", "country", "population", "landmarks", "is_capital"}
    assert isinstance(city["population"], int) and isinstance(city["is_capital"], bool)
    assert 1 <= len(city["landmarks"]) <= 3 and all(isinstance(x, str) for x in city["landmarks"])
    assert "Paris" in city["name"]
    city = json.loads(run("json_output.py", "--model", str(smollm_path), "--question", "Describe Tokyo.",
                          "--temperature", "1.0", "--seed", "3"))
    assert isinstance(city["name"], str) and len(city["name"]) <= 40


def test_parallel_example(smollm_path):
    out = run("parallel.py", "--model", str(smollm_path), "-n", "6")
    lines = out.splitlines()
    assert [line[:4] for line in lines[:4]] == ["[0] ", "[1] ", "[2] ", "[3] "]
    assert lines[0].startswith("[0] The capital of France is Paris")
    m = re.search(r"4 prompts \| prefill [0-9.]+ s \| generated (\d+) tokens in [0-9.]+ s: ([0-9.]+) tokens/s", out)
    assert m and 4 <= int(m.group(1)) <= 24 and float(m.group(2)) > 0
    out = run("parallel.py", "--model", str(smollm_path), "-n", "4", "--prompt", "One, two,", "--prompt", "A, B,")
    assert out.splitlines()[0].startswith("[0] One, two,") and "2 prompts" in out


def test_mtp_example_on_the_tiny_model():
    out = run("mtp.py", "-n", "32", "--threads", "1")
    assert "no --model given: using the tiny predictive GLM4-MoE" in out
    assert "same output as without MTP: True" in out
    m = re.search(r"drafted (\d+) \| accepted (\d+) \| acceptance rate ([0-9.]+)%", out)
    assert m and int(m.group(1)) >= 20 and float(m.group(3)) >= 90
    assert re.search(r"with MTP: +32 tokens in [0-9.]+ s, [0-9.]+ tokens/s", out)


def test_speculative_example(smollm_path):
    out = run("speculative.py", "--model", str(smollm_path), "--draft", str(smollm_path), "-n", "32",
              "--threads", "1")
    assert "without speculation: 32 tokens" in out
    for name in ("draft model:", "prompt lookup:"):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert "same output: True" in line, line
        rate = float(re.search(r"acceptance rate ([0-9.]+)%", line).group(1))
        assert rate >= 90 and re.search(r"32 tokens in [0-9.]+ s, [0-9.]+ tokens/s", line)


def test_incremental_chat_example(smollm_path):
    out = run("incremental_chat.py", "--model", str(smollm_path), "--cps", "400", "-n", "6")
    plain = re.search(r"plain prefill\s+: time to first token\s+([\d.]+) ms", out)
    live = re.search(r"incremental prefill: time to first token\s+([\d.]+) ms \((\d+) tokens left at submit", out)
    assert plain and live, out
    assert int(live.group(2)) < 12  # only the held-back tail and the end of turn were left
    assert "same answer: True" in out


def test_server_client_example(smollm_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run("server_client.py", "--model", str(smollm_path), "--port", str(port))
    lines = out.splitlines()
    assert lines[0].strip()
    assert any(line.startswith("json: {'capital': ") for line in lines)
    cached = [line for line in lines if line.startswith("cached prompt tokens on a repeat:")][0].split()
    assert int(cached[-3]) >= int(cached[-1]) - 1 > 0
