"""A fixed English corpus from the vendored ik_llama.cpp tree, for perplexity and KV-quality reports.

The files are upstream's prose documentation (Markdown); fenced code blocks, tables and HTML lines
are dropped so that what is scored is running English text.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["CORPUS_FILES", "corpus_text"]

#: Paths inside vendor/ik_llama.cpp, in the order they are concatenated.
CORPUS_FILES = ("README.md", "docs/build.md", "docs/parameters.md", "CONTRIBUTING.md", "docs/speculative.md",
                "docs/function-calling.md", "docs/development/token_generation_performance_tips.md",
                "examples/main/README.md", "examples/server/README.md")

_FENCE = re.compile(r"^```.*?^```\s*$", re.S | re.M)


def _prose(markdown: str) -> str:
    text = _FENCE.sub("", markdown)
    keep = [line for line in text.splitlines() if not line.lstrip().startswith(("|", "<", "    "))]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(keep)).strip()


def corpus_text(vendor_tree: str | Path) -> str:
    """The corpus as one string (files that are missing from the tree are skipped)."""
    root = Path(vendor_tree)
    parts = [_prose((root / name).read_text(encoding="utf-8")) for name in CORPUS_FILES if (root / name).exists()]
    return "\n\n".join(parts)
