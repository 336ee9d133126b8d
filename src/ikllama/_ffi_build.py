"""Emit the C source of ikllama's cffi extension (API mode).

Run by CMake at build time, never imported at run time:

    python _ffi_build.py OUT.c --version V --upstream-commit C --build-type T --backends "cpu,rpc" \
        [--module ikllama_vulkan._ikllama_cffi]

The cdef is the concatenation of ``_decl/*.h`` in ``DECL_ORDER``; the C source includes the vendored
``llama.h`` and ``ggml-rpc.h``, so the compiler checks every declaration and struct layout against
them. ``IKLLAMA_DECL_HASH`` is a digest of the cdef that ``_lib`` compares with the decl files it
ships, which catches an editable install whose compiled module is older than its Python side. A backend
plugin (``IKLLAMA_VARIANT``) builds the same source under its own module name, e.g.
``ikllama_vulkan._ikllama_cffi``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
DECL_DIR = HERE / "_decl"
sys.path.insert(0, str(HERE))
from _ffi_build_order import DECL_ORDER  # noqa: E402  (run as a script, not as part of the package)

MODULE_NAME = "ikllama._ikllama_cffi"


def read_cdef() -> str:
    return "\n".join((DECL_DIR / f"{name}.h").read_text() for name in DECL_ORDER)


def decl_hash(cdef: str) -> str:
    return hashlib.sha256(cdef.encode()).hexdigest()[:16]


def c_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_ffi(version: str, upstream_commit: str, build_type: str, backends: str,
             module: str = MODULE_NAME) -> cffi.FFI:
    cdef = read_cdef()
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    preamble = "\n".join([
        "#include <llama.h>",
        "#include <ggml-rpc.h>",
        '#include "ikl_helpers.h"',
        '#include "ikl_sampler.h"',
        '#include "ikl_devices.h"',
        f"static const char * const IKLLAMA_BUILD_VERSION = {c_string(version)};",
        f"static const char * const IKLLAMA_DECL_HASH = {c_string(decl_hash(cdef))};",
        f"static const char * const IKLLAMA_UPSTREAM_COMMIT = {c_string(upstream_commit)};",
        f"static const char * const IKLLAMA_BUILD_TYPE = {c_string(build_type)};",
        f"static const char * const IKLLAMA_BACKENDS = {c_string(backends)};",
    ])
    ffi.set_source(module, preamble)
    return ffi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("--upstream-commit", default="unknown")
    parser.add_argument("--build-type", default="Release")
    parser.add_argument("--backends", default="cpu")
    parser.add_argument("--module", default=MODULE_NAME, help="dotted name of the compiled module")
    args = parser.parse_args()
    ffi = make_ffi(args.version, args.upstream_commit, args.build_type, args.backends, args.module)
    # emit_c_code rewrites the file only when the text changed, which keeps rebuilds incremental.
    ffi.emit_c_code(str(args.out))


if __name__ == "__main__":
    main()
