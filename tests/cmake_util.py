"""Configure this repository's CMakeLists in a scratch directory (the build-configuration tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess:
    """Run CMake's configure step (no extension, Ninja) with ``defines``; returns the finished process."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is a build requirement"
    return subprocess.run([cmake, "-S", str(ROOT), "-B", str(tmp_path / "b"), "-G", "Ninja",
                           f"-DPython_EXECUTABLE={sys.executable}", "-DIKLLAMA_BUILD_EXTENSION=OFF", *defines],
                          capture_output=True, text=True, timeout=600)
