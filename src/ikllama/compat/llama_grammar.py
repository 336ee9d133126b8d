"""``LlamaGrammar``: GBNF text for constrained sampling (llama-cpp-python's ``llama_grammar``).

The grammar is checked here (syntax and rule references, :func:`ikllama.json_grammar.diagnose_gbnf`)
and compiled by ik's ``llama_sampler_init_grammar`` when a sampler is built from it; JSON schemas
are turned into GBNF by :func:`ikllama.json_grammar.json_schema_to_gbnf`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..json_grammar import JSON_GBNF, diagnose_gbnf
from ..json_grammar import json_schema_to_gbnf as _schema_to_gbnf

__all__ = ["LlamaGrammar", "JSON_GBNF", "LLAMA_GRAMMAR_DEFAULT_ROOT", "json_schema_to_gbnf"]

LLAMA_GRAMMAR_DEFAULT_ROOT = "root"


def json_schema_to_gbnf(schema: str, prop_order: list[str] | None = None) -> str:
    """GBNF for a JSON schema given as JSON text (``$defs`` / ``$ref``, ``anyOf`` and null included).

    ``prop_order`` is accepted for compatibility; properties keep the schema's order.
    """
    try:
        parsed = json.loads(schema) if isinstance(schema, str) else schema
    except json.JSONDecodeError as exc:
        raise ValueError(f"json_schema is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError("json_schema must be a JSON object (a schema), e.g. '{\"type\": \"object\"}'")
    return _schema_to_gbnf(parsed)


class LlamaGrammar:
    """A GBNF grammar (text). Build with :meth:`from_string`, :meth:`from_file` or :meth:`from_json_schema`."""

    def __init__(self, *args: Any, _grammar: str, **kwargs: Any):
        self._grammar = _grammar
        self._root = LLAMA_GRAMMAR_DEFAULT_ROOT

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> LlamaGrammar:
        """Check ``grammar`` (GBNF with a ``root`` rule); ValueError names the problem."""
        if not isinstance(grammar, str) or not grammar.strip():
            raise ValueError("grammar must be non-empty GBNF text with a 'root ::= ...' rule")
        reason = diagnose_gbnf(grammar)
        if reason is not None:
            raise ValueError(f"grammar: {reason}")
        return cls(_grammar=grammar)

    @classmethod
    def from_file(cls, file: str | os.PathLike[str], verbose: bool = True) -> LlamaGrammar:
        """Read GBNF from ``file`` and check it."""
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"{os.fspath(file)}: could not read the grammar file: {exc}") from None
        if not text.strip():
            raise ValueError(f"{os.fspath(file)}: the grammar file is empty")
        return cls.from_string(text, verbose)

    @classmethod
    def from_json_schema(cls, json_schema: str, verbose: bool = True) -> LlamaGrammar:
        """Grammar that accepts exactly the JSON documents ``json_schema`` (JSON text) allows."""
        return cls.from_string(json_schema_to_gbnf(json_schema), verbose)

    def __repr__(self) -> str:
        return f"<LlamaGrammar {len(self._grammar)} chars>"
