"""What the installed wheel contains: our module and libllama/libggml, none of upstream's install rules."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

import ikllama._lib as _lib


def installed_files() -> list[str]:
    return [str(f) for f in importlib.metadata.files("ikllama")]


def test_only_our_component_is_installed():
    files = installed_files()
    ours = [f for f in files if f.startswith("ikllama/")]
    libs = sorted(f for f in ours if f.startswith("ikllama/lib/"))
    # Our own names: never the same SONAME as a GPU plugin's or llama-cpp-python's libllama.so.
    assert libs == ["ikllama/lib/libggml-ikl.so", "ikllama/lib/libllama-ikl.so"]
    assert any(f.startswith("ikllama/_ikllama_cffi.") and f.endswith(".so") for f in ours)
    leaked = [f for f in files if not (f.startswith(("ikllama/", "ikllama-")) or "_editable_" in f
                                       or f.endswith("bin/ikllama"))]
    assert not leaked, f"files outside the package: {leaked}"
    upstream = [f for f in ours if f.endswith((".cmake", ".pc", "/llama.h", "/ggml.h", "convert_hf_to_gguf.py"))
                or "/include/" in f]
    assert not upstream, upstream


def test_wheel_is_abi3():
    wheel = importlib.metadata.distribution("ikllama").read_text("WHEEL")
    assert "Tag: cp310-abi3-" in wheel
    assert _lib.__name__ and ".abi3." in next(f for f in installed_files() if "_ikllama_cffi" in f)


def test_extension_finds_its_libraries_by_origin():
    so = next(f for f in importlib.metadata.files("ikllama") if "_ikllama_cffi" in str(f))
    readelf = shutil.which("readelf")
    assert readelf, "binutils (readelf) is part of the build toolchain"
    out = subprocess.run([readelf, "-d", str(so.locate())], capture_output=True, text=True, check=True).stdout
    assert "$ORIGIN/lib" in out and "Shared library: [libllama-ikl.so]" in out
    lib_out = subprocess.run([readelf, "-d", str(so.locate().parent / "lib" / "libllama-ikl.so")],
                             capture_output=True, text=True, check=True).stdout
    assert "[$ORIGIN]" in lib_out


def test_sdist_carries_the_materialized_tree(tmp_path, vendor_tree):
    """python -m build --sdist packs vendor/ik_llama.cpp (stamped), so the sdist builds offline."""
    import sys
    import tarfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), str(root)],
                   check=True, capture_output=True)
    (sdist,) = tmp_path.glob("ikllama-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    prefix = names[0].split("/")[0]
    for needed in ("vendor/ik_llama.cpp/include/llama.h", "vendor/ik_llama.cpp/.ikllama-vendor-stamp.json",
                   "vendor/ik_llama.cpp/UPSTREAM_COMMIT", "vendor/ik_llama.cpp.toml", "scripts/vendor.py",
                   "src/ikllama/_decl/batch.h", "CMakeLists.txt"):
        assert f"{prefix}/{needed}" in names, needed
    assert not any("/build/" in n for n in names)
