"""scripts/vendor.py: verification, atomicity and repair, run on a scratch copy of the repo layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The pinned sdist, fetched through pip (its cache makes this offline after the first time)."""
    dest = tmp_path_factory.mktemp("sdist")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "ik-llama-cpp-python",
                    "-q", "-d", str(dest), "ik-llama-cpp-python==0.1.5"], check=True)
    return dest / "ik_llama_cpp_python-0.1.5.tar.gz"


def scratch_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "vendor.py", repo / "scripts")
    shutil.copytree(ROOT / "vendor" / "patches", repo / "vendor" / "patches")
    shutil.copy(ROOT / "vendor" / "ik_llama.cpp.toml", repo / "vendor")
    return repo


def vendor(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "scripts" / "vendor.py"), *args], capture_output=True,
                          text=True)


def leftovers(repo: Path) -> list[str]:
    return [p.name for p in (repo / "vendor").iterdir() if p.name.startswith(".ik_llama.cpp.")]


def test_pin_matches_the_issue():
    text = (ROOT / "vendor" / "ik_llama.cpp.toml").read_text()
    assert "33c67eb99e4dcab5e611050433243815709b8b3067753f9ce18375013cf002ad" in text
    assert 'commit = "55d3c05bf"' in text


def test_materialize_patch_stamp_and_noop(tmp_path, sdist):
    repo = scratch_repo(tmp_path)
    first = vendor(repo, "--archive", str(sdist))
    assert first.returncode == 0, first.stderr
    tree = repo / "vendor" / "ik_llama.cpp"
    assert (tree / "include" / "llama.h").exists()
    assert (tree / "examples" / "json_schema_to_grammar.py").exists()
    assert list((tree / "models").glob("ggml-vocab-*.gguf.inp"))
    assert (tree / "common" / "cmake" / "build-info-gen-cpp.cmake").exists()  # patch 0001 applied
    assert "S > 0 ? 1/S : 0.f" in (tree / "ggml/src/iqk/fa/iqk_fa_templates.h").read_text()  # patch 0002
    assert (tree / "UPSTREAM_COMMIT").read_text().strip() == "55d3c05bf"
    stamp = json.loads((tree / ".ikllama-vendor-stamp.json").read_text())
    assert set(stamp["patches"]) == {p.name for p in (repo / "vendor" / "patches").glob("*.patch")}
    second = vendor(repo, "--archive", str(sdist))
    assert second.returncode == 0 and "up to date" in second.stdout
    assert not leftovers(repo)


def test_wrong_sha256_leaves_nothing(tmp_path):
    repo = scratch_repo(tmp_path)
    fake = tmp_path / "ik_llama_cpp_python-0.1.5.tar.gz"
    fake.write_bytes(b"not the release")
    out = vendor(repo, "--archive", str(fake))
    assert out.returncode == 1
    assert "sha256 mismatch" in out.stderr
    assert not (repo / "vendor" / "ik_llama.cpp").exists()
    assert not leftovers(repo)


def test_interrupted_run_is_repaired(tmp_path, sdist):
    repo = scratch_repo(tmp_path)
    # What a killed run could leave: a staging dir and a tree without a stamp.
    (repo / "vendor" / ".ik_llama.cpp.dead").mkdir()
    half = repo / "vendor" / "ik_llama.cpp" / "src"
    half.mkdir(parents=True)
    (half / "partial.cpp").write_text("// cut short")
    out = vendor(repo, "--archive", str(sdist))
    assert out.returncode == 0, out.stderr
    tree = repo / "vendor" / "ik_llama.cpp"
    assert (tree / ".ikllama-vendor-stamp.json").exists()
    assert not (tree / "src" / "partial.cpp").exists()
    assert (tree / "src" / "llama.cpp").exists()


def test_stale_patch_set_triggers_rebuild(tmp_path, sdist):
    repo = scratch_repo(tmp_path)
    assert vendor(repo, "--archive", str(sdist)).returncode == 0
    (repo / "vendor" / "patches" / "0002-iqk-fa-fully-masked-rows.patch").unlink()
    out = vendor(repo, "--archive", str(sdist))
    assert out.returncode == 0 and "materialized" in out.stdout
    assert "GGML_ASSERT(S > 0)" in (repo / "vendor/ik_llama.cpp/ggml/src/iqk/fa/iqk_fa_templates.h").read_text()


def test_fetches_with_pip_when_no_archive_is_given(tmp_path):
    repo = scratch_repo(tmp_path)
    out = vendor(repo)
    assert out.returncode == 0, out.stderr
    assert (repo / "vendor" / "ik_llama.cpp" / "src" / "llama.cpp").exists()
    assert not leftovers(repo)
