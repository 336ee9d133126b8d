#!/usr/bin/env python3
"""Compare the functions declared in the vendored headers with those ikllama binds.

Reports (1) functions of ``llama.h`` / ``ggml-rpc.h`` that ``src/ikllama/_decl/*.h`` does not bind
and (2) bound functions that no vendored header declares any more. Both lists must be empty except
for the names in ``KNOWN_UNBOUND`` (each with its reason). Exit status 1 on any unexplained
difference, 0 otherwise. Run after bumping the pin.

Usage: python scripts/check_decls.py [--vendor DIR] [--decl DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Declared upstream but deliberately not bound.
KNOWN_UNBOUND = {
    "llama_token_cls": "declared in llama.h but defined nowhere: binding it breaks linking",
    "llama_grammar_init_lazy": "declared in llama.h but defined nowhere: binding it breaks linking",
    "llama_dump_timing_info_yaml": "takes a FILE*; llama_get_timings gives the same numbers",
    "llama_fill_from_utf8": "outside extern \"C\": a C++-mangled internal",
    "llama_internal_get_tensor_map": "C++ only (LLAMA_API_INTERNAL)",
    "llama_sample_token_with_rng": "C++ only (LLAMA_API_INTERNAL)",
}
PUBLIC_HEADERS = ("include/llama.h", "ggml/include/ggml-rpc.h")
# Headers that may also provide bound names (we bind a few ggml helpers).
SUPPORT_HEADERS = ("ggml/include/ggml.h", "ggml/include/ggml-backend.h")

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_PREPROC = re.compile(r"^\s*#.*$", re.M)
_BRACES = re.compile(r"\{[^{}]*\}")
_NAME_BEFORE_PAREN = re.compile(r"([A-Za-z_]\w*)\s*\($")


def declared_functions(text: str) -> set[str]:
    """Names of the functions a C header (or cdef) declares at file scope."""
    text = _COMMENTS.sub(" ", text)
    # Unwrap `extern "C" { ... }` (its closing brace sits in an #ifdef __cplusplus block).
    text = re.sub(r'extern\s*"C"\s*\{', " ", text)
    text = re.sub(r"#\s*ifdef\s+__cplusplus\s*\n\s*\}\s*\n\s*#\s*endif", " ", text)
    text = _PREPROC.sub(" ", text)
    text = text.replace('extern "Python"', " ")
    while True:  # drop struct/enum/union bodies and function bodies
        stripped = _BRACES.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    names = set()
    for stmt in text.split(";"):
        stmt = " ".join(stmt.split())
        if "(" not in stmt or stmt.startswith("typedef") or "static const" in stmt:
            continue
        stmt = re.sub(r"\bDEPRECATED\s*\(", "", stmt)
        head = stmt[: stmt.index("(") + 1]
        if "(*" in stmt[: stmt.index("(") + 2].replace(" ", ""):
            continue
        match = _NAME_BEFORE_PAREN.search(head)
        if match and match.group(1) not in {"__attribute__", "GGML_DEPRECATED", "if", "while"}:
            names.add(match.group(1))
    return names


def compare(vendor: Path, decl: Path) -> tuple[set[str], set[str]]:
    public = set().union(*(declared_functions((vendor / h).read_text()) for h in PUBLIC_HEADERS))
    support = set().union(*(declared_functions((vendor / h).read_text()) for h in SUPPORT_HEADERS))
    helpers = set().union(*(declared_functions(p.read_text()) for p in sorted((ROOT / "src/ikllama/_csrc").glob("*.h"))))
    callbacks = set(re.findall(r'extern "Python"[^;]*?(\w+)\s*\(', "".join(
        p.read_text() for p in sorted(decl.glob("*.h")))))
    bound = set().union(*(declared_functions(p.read_text()) for p in sorted(decl.glob("*.h"))))
    unbound = public - bound - set(KNOWN_UNBOUND)
    stale = bound - public - support - helpers - callbacks
    return unbound, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendor", type=Path, default=ROOT / "vendor/ik_llama.cpp")
    parser.add_argument("--decl", type=Path, default=ROOT / "src/ikllama/_decl")
    args = parser.parse_args(argv)
    unbound, stale = compare(args.vendor, args.decl)
    for name in sorted(unbound):
        print(f"unbound: {name} (declared upstream, not in _decl/)")
    for name in sorted(stale):
        print(f"stale:   {name} (bound, but no vendored header declares it)")
    for name, why in sorted(KNOWN_UNBOUND.items()):
        print(f"skipped: {name}: {why}")
    ok = not unbound and not stale
    print("check_decls: OK" if ok else f"check_decls: {len(unbound)} unbound, {len(stale)} stale")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
