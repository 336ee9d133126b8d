"""Backend plugins and IKLLAMA_DEVICE, on the CPU: every bad input is an exception or a logged CPU fallback.

Each case runs in a fresh interpreter (the choice is made once per process). Fake plugins are real
distributions on PYTHONPATH (a dist-info with an ``ikllama.backends`` entry point and a package) whose
native module is broken in the way each test needs; nothing in ikllama is patched.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from pathlib import Path

import pytest

import ikllama

from cmake_util import ROOT, configure
# The application's logging shows ikllama's one fallback line (ikllama itself only adds a NullHandler).
INFO = ("import json, logging, ikllama; logging.basicConfig(format='%(name)s: %(message)s'); "
        "i = ikllama.system_info(); print(json.dumps({'device': i.device, 'plugins': [p.__dict__ for p in i.plugins]}))")


def last_json(out: subprocess.CompletedProcess) -> dict:
    """The JSON the child printed last (ggml's Vulkan code prints its device notes to stdout before it)."""
    return json.loads(out.stdout.splitlines()[-1])


def run(code: str, tmp_path: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    # No IKLLAMA_DEVICE (auto) and no GGML_VK_VISIBLE_DEVICES: an installed ikllama-vulkan on lavapipe is skipped.
    full = {k: v for k, v in os.environ.items() if k not in ("IKLLAMA_DEVICE", "GGML_VK_VISIBLE_DEVICES")}
    if tmp_path is not None:
        full["PYTHONPATH"] = os.pathsep.join([str(tmp_path), full.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def fake_plugin(site: Path, name: str, version: str = ikllama.__version__, native: str = "garbage") -> None:
    """Install a plugin distribution named ikllama-<name> into ``site`` whose native module cannot load.

    native="garbage": the module file is not an ELF object; "orphan": the core's real compiled module, copied
    without the libllama/libggml its RUNPATH ($ORIGIN/lib) points at.
    """
    pkg = site / f"fake_{name}"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f'VARIANT = "{name}"\n')
    if native == "orphan":
        core = next(Path(ikllama.__file__).parent.glob("_ikllama_cffi*.so"))
        shutil.copy(core, pkg / core.name)
    else:
        (pkg / "_ikllama_cffi.abi3.so").write_bytes(b"not an ELF object\n" * 256)
    info = site / f"ikllama_{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ikllama-{name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ikllama.backends]\n{name} = fake_{name}\n")


def test_unknown_device_value_is_an_exception():
    out = run("import ikllama; ikllama.system_info()", IKLLAMA_DEVICE="quantum")
    assert out.returncode == 1, out.stderr
    assert "DeviceError: IKLLAMA_DEVICE='quantum' is not a device. " \
           "Valid values: auto, cpu, vulkan, cuda, cuda12, cuda13." in out.stderr


def test_cpu_is_chosen_without_touching_plugins(tmp_path):
    fake_plugin(tmp_path, "cuda13", version="0.0.1")
    out = run(INFO, tmp_path, IKLLAMA_DEVICE="cpu")
    assert out.returncode == 0, out.stderr
    data = last_json(out)
    assert data["device"] == "cpu"
    assert {"name": "cuda13", "distribution": "ikllama-cuda13", "version": "0.0.1", "status": "not tried"} \
        in data["plugins"]
    assert out.stderr == ""


def test_missing_plugin_names_the_extra():
    out = run("import ikllama; ikllama.system_info()", IKLLAMA_DEVICE="cuda13")
    assert out.returncode == 1
    assert 'no cuda13 backend is installed. Fix: pip install "ikllama[cuda13]"' in out.stderr


def test_version_mismatch_is_refused_or_skipped(tmp_path):
    fake_plugin(tmp_path, "cuda13", version="0.0.1")
    out = run("import ikllama; ikllama.system_info()", tmp_path, IKLLAMA_DEVICE="cuda13")
    assert out.returncode == 1
    assert (f"IKLLAMA_DEVICE=cuda13: the cuda13 backend (ikllama-cuda13 0.0.1) cannot run: ikllama-cuda13 is "
            f"version 0.0.1 but ikllama is {ikllama.__version__}; "
            f"fix: pip install \"ikllama-cuda13=={ikllama.__version__}\"") in out.stderr
    auto = run(INFO, tmp_path)
    assert auto.returncode == 0, auto.stderr
    assert last_json(auto)["device"] == "cpu"
    lines = [line for line in auto.stderr.splitlines() if line.startswith("ikllama: ")]
    assert len(lines) == 1, auto.stderr
    assert "ikllama: no usable GPU backend, running on the CPU (cuda13: ikllama-cuda13 is version 0.0.1" in lines[0]


@pytest.mark.parametrize("native", ["garbage", "orphan"])
def test_plugin_whose_native_module_fails_to_load(tmp_path, native):
    from ikllama.devices import probe

    fake_plugin(tmp_path, "vulkan", native=native)
    out = run("import ikllama; ikllama.system_info()", tmp_path, IKLLAMA_DEVICE="vulkan")
    assert out.returncode == 1, out.stderr
    problem = probe.vulkan_problem()
    if problem is None:  # a Vulkan loader is installed: the module itself is what fails
        why = "invalid ELF header" if native == "garbage" else "libllama-ikl.so: cannot open shared object file"
        assert "cannot run: its native library failed to load (" in out.stderr and why in out.stderr, out.stderr
        assert f'fix: pip install --force-reinstall "ikllama-vulkan=={ikllama.__version__}"' in out.stderr
    else:
        assert problem in out.stderr
    auto = run(INFO, tmp_path)
    assert auto.returncode == 0, auto.stderr
    data = last_json(auto)
    assert data["device"] == "cpu"
    assert [p["status"][:9] for p in data["plugins"] if p["name"] == "vulkan"] == ["skipped: "]


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="this machine has an NVIDIA driver")
@pytest.mark.parametrize("device", ["cuda", "cuda12"])
def test_cuda_plugin_without_a_driver(tmp_path, device):
    fake_plugin(tmp_path, "cuda12")
    if device == "cuda":  # IKLLAMA_DEVICE=cuda tries both CUDA plugins, cuda13 first, and names both failures
        fake_plugin(tmp_path, "cuda13")
    out = run("import ikllama; ikllama.system_info()", tmp_path, IKLLAMA_DEVICE=device)
    assert out.returncode == 1
    first = "cuda13" if device == "cuda" else "cuda12"
    assert (f"IKLLAMA_DEVICE={device}: the {first} backend (ikllama-{first} {ikllama.__version__}) cannot run: "
            "no NVIDIA driver (libcuda.so.1 not found); fix: install the NVIDIA driver") in out.stderr
    if device == "cuda":
        assert f"; and the cuda12 backend (ikllama-cuda12 {ikllama.__version__}) cannot run: no NVIDIA" in out.stderr
    assert "invalid ELF header" not in out.stderr, "the probe must run before the plugin's native module loads"
    auto = run(INFO, tmp_path)
    assert auto.returncode == 0, auto.stderr
    assert last_json(auto)["device"] == "cpu"
    assert f"running on the CPU ({first}: no NVIDIA driver" in auto.stderr


def test_unknown_plugin_name_is_ignored_with_a_warning(tmp_path):
    fake_plugin(tmp_path, "rocm")
    out = run(INFO, tmp_path)
    assert out.returncode == 0, out.stderr
    assert last_json(out)["plugins"] == [] or all(
        p["name"] != "rocm" for p in last_json(out)["plugins"])
    assert "ignoring ikllama backend plugin 'rocm' (fake_rocm): this ikllama knows only" in out.stderr


def test_importing_the_binding_selects_nothing():
    code = ("import sys, ikllama._lib, ikllama._handle, ikllama.errors\n"
            "from ikllama import _lib\n"
            "assert _lib._selected is None, 'importing modules chose a native build'\n"
            "assert not any(m.endswith('_ikllama_cffi') for m in sys.modules)\n"
            "_lib.lib.llama_max_devices()\n"
            "assert _lib._selected.device == 'cpu' and 'ikllama._ikllama_cffi' in sys.modules\n")
    out = run(code, IKLLAMA_DEVICE="cpu")
    assert out.returncode == 0, out.stderr


def test_info_command_shows_device_and_plugins(tmp_path):
    fake_plugin(tmp_path, "cuda13", version="0.0.1")
    out = run("from ikllama.cli import main; main(['info'])", tmp_path, IKLLAMA_DEVICE="cpu")
    assert out.returncode == 0, out.stderr
    assert "device:       cpu (IKLLAMA_DEVICE=" in out.stdout
    assert "plugin:       ikllama-cuda13 0.0.1 (cuda13): not tried" in out.stdout


def test_extras_pin_the_plugins_to_this_version():
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = core["project"]["optional-dependencies"]
    v = ikllama.__version__
    assert extras["vulkan"] == [f"ikllama-vulkan=={v}"]
    assert extras["cuda"] == extras["cuda12"] == [f"ikllama-cuda12=={v}"]
    assert extras["cuda13"] == [f"ikllama-cuda13=={v}"]
    for variant in ("vulkan", "cuda12", "cuda13"):
        plugin = tomllib.loads((ROOT / "backends" / variant / "pyproject.toml").read_text())
        assert plugin["project"]["name"] == f"ikllama-{variant}"
        assert plugin["project"]["entry-points"]["ikllama.backends"] == {variant: f"ikllama_{variant}"}
        assert plugin["tool"]["scikit-build"]["metadata"]["version"]["input"] == "../../src/ikllama/_version.py"
        assert plugin["tool"]["scikit-build"]["cmake"]["define"]["IKLLAMA_VARIANT"] == variant
        assert plugin["tool"]["scikit-build"]["build-dir"].endswith(f"-{variant}")


def test_unknown_variant_stops_the_build(tmp_path, vendor_tree):
    out = configure(tmp_path, "-DIKLLAMA_VARIANT=rocm")
    assert out.returncode != 0
    assert "IKLLAMA_VARIANT='rocm' is not a plugin variant. Valid values: vulkan, cuda12, cuda13" in \
        " ".join(out.stderr.split())


def test_variant_needs_its_backend(tmp_path, vendor_tree):
    out = configure(tmp_path, "-DIKLLAMA_VARIANT=vulkan", "-DIKLLAMA_BACKEND=cpu")
    assert out.returncode != 0
    assert "IKLLAMA_VARIANT=vulkan is built with IKLLAMA_BACKEND=vulkan, not 'cpu'" in " ".join(out.stderr.split())
