"""The compiled module: import hygiene, the stale-build check, build stamp and system info."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

import ikllama
from ikllama import _lib


def test_import_has_no_side_effects():
    code = (
        "import logging, sys\n"
        "import ikllama\n"
        "assert 'ikllama._lib' not in sys.modules, 'importing ikllama loaded the native module'\n"
        "assert not logging.getLogger().handlers\n"
        "ikllama.ModelConfig  # touching the API loads it\n"
        "assert 'ikllama._lib' in sys.modules\n"
        "from ikllama import backend\n"
        "assert backend._initialized is False, 'the backend was initialized at import'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""


def test_build_stamp_matches_package():
    info = _lib.build_info()
    assert info["version"] == ikllama.__version__
    assert info["upstream_commit"] == "55d3c05bf"
    assert "cpu" in info["backends"].split(",") and "rpc" in info["backends"].split(",")


def test_stale_version_is_refused(monkeypatch):
    monkeypatch.setattr(_lib, "__version__", "0.0.0-other")
    with pytest.raises(ImportError, match="stale build"):
        _lib._check_build()


def test_stale_declarations_are_refused(monkeypatch):
    assert _lib._decl_hash() is not None, "the decl files must ship beside the module"
    monkeypatch.setattr(_lib, "_decl_hash", lambda: "0" * 16)
    with pytest.raises(ImportError, match="declaration files"):
        _lib._check_build()


def test_struct_layouts_come_from_the_compiler():
    ffi = _lib.ffi
    # API mode: sizes are the C compiler's, so they must equal what C computes for the real header.
    assert ffi.sizeof("llama_token_data") == 12
    # tag (4) + key[128] -> 132, padded to 136 for the 8-byte union of 128 bytes.
    assert ffi.sizeof("struct llama_model_kv_override") == 264
    p = _lib.lib.llama_context_default_params()
    assert p.n_ctx == 512 and p.flash_attn is True and p.mla_attn == 3


def test_system_info_describes_the_build():
    info = ikllama.system_info()
    assert info.version == ikllama.__version__
    assert "cpu" in info.backends and info.rpc is True
    assert info.upstream_commit == "55d3c05bf"
    if platform.machine() in ("x86_64", "AMD64"):
        assert info.cpu_features["avx2"] is True
    assert "AVX" in info.native_system_info or "NEON" in info.native_system_info


def test_cli_info():
    out = subprocess.run([sys.executable, "-m", "ikllama", "info", "--json"], capture_output=True, text=True,
                         check=True)
    data = json.loads(out.stdout)
    assert data["rpc"] is True and "cpu" in data["backends"]
    text = subprocess.run([sys.executable, "-m", "ikllama", "info"], capture_output=True, text=True, check=True)
    assert "rpc:          yes" in text.stdout and "55d3c05bf" in text.stdout
