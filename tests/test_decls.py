"""scripts/check_decls.py: the binding covers the vendored C API, and the checker notices gaps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_decls.py"
DECL = ROOT / "src" / "ikllama" / "_decl"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_every_public_function_is_bound(vendor_tree):
    out = run("--vendor", str(vendor_tree))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check_decls: OK" in out.stdout


def test_checker_reports_a_missing_binding(vendor_tree, tmp_path):
    decl = tmp_path / "decl"
    shutil.copytree(DECL, decl)
    text = (decl / "batch.h").read_text()
    (decl / "batch.h").write_text(text.replace("int32_t llama_decode(", "int32_t renamed_decode("))
    out = run("--vendor", str(vendor_tree), "--decl", str(decl))
    assert out.returncode == 1
    assert "unbound: llama_decode" in out.stdout
    assert "stale:   renamed_decode" in out.stdout


def test_undefined_upstream_functions_are_not_bound():
    sys.path.insert(0, str(SCRIPT.parent))
    import check_decls

    bound = set().union(*(check_decls.declared_functions(p.read_text()) for p in DECL.glob("*.h")))
    assert "llama_decode" in bound and len(bound) > 200
    assert not {"llama_token_cls", "llama_grammar_init_lazy", "llama_dump_timing_info_yaml"} & bound
