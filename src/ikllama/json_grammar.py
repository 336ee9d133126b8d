"""JSON Schema to GBNF, for grammar-constrained generation with ik_llama.cpp.

The grammars follow one whitespace convention, chosen so that a small model cannot loop on blanks:

- ``ws ::= ( " " | "\\n" [ \\t]{0,20} )?``: nothing, one space, or one newline plus at most 20
  indentation characters.
- ``ws`` may appear only after ``{``, ``[``, ``,`` and ``:``, and before a closing ``}`` / ``]``
  that follows a member. It is never allowed before ``,`` or ``:``, nor around the root value, so
  a document ends at its last ``}`` / ``]`` and only end-of-generation can follow.
- ``json.dumps(v)``, ``json.dumps(v, separators=(",", ":"))`` and ``json.dumps(v, indent=2)``
  (nested up to 10 levels) all match.

Schema semantics that a context-free grammar cannot express exactly are narrowed, never widened.
A value the grammar accepts is valid under the schema, with one exception: when additional
properties are allowed, a key that repeats a declared one is not excluded. Where the grammar is
narrower than the schema:

- declared properties come in declaration order (optional ones may be left out), and additional
  properties (``additionalProperties`` true or a schema) come after them. When the schema declares
  ``properties`` and does not mention ``additionalProperties``, no extra keys are allowed.
- ``oneOf`` is treated as ``anyOf``. ``enum`` / ``const`` values match their compact
  ``json.dumps(v, ensure_ascii=False)`` spelling, with ``ws`` allowed inside containers.
- numbers have at most 20 integer digits, 24 fraction digits and 3 exponent digits.
- ``format`` supports ``date``, ``time``, ``date-time`` (RFC 3339, with an offset) and
  ``uuid``. Fields are range-checked: a date allows day 31 in every month.
- ``minLength`` / ``maxLength`` count JSON string characters, so an escape such as ``\\u00e9``
  counts as one character and a surrogate pair as two.

Any keyword the converter cannot honour raises ``ValueError`` naming it (``pattern``,
``minimum``, ``allOf``, ...). Annotations (``title``, ``description``, ``default``, ...) are
ignored.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from . import _log
from ._lib import ffi, lib
from .errors import with_native

if TYPE_CHECKING:
    from .model import Model

__all__ = ["JSON_GBNF", "json_schema_to_gbnf", "validate_grammar", "diagnose_gbnf"]

# ik's parser refuses {m,n} with m or n above MAX_REPETITION_THRESHOLD (llama-grammar.cpp).
_MAX_REPEAT = 2000

_PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (body, rules it uses)
    "ws": (r'( " " | "\n" [ \t]{0,20} )?', ()),
    "char": (r'[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )', ()),
    "string": (r'"\"" char* "\""', ("char",)),
    "integer": (r'"-"? ( "0" | [1-9] [0-9]{0,19} )', ()),
    "number": (r'"-"? ( "0" | [1-9] [0-9]{0,19} ) ( "." [0-9]{1,24} )? ( [eE] [-+]? [0-9]{1,3} )?', ()),
    "boolean": (r'"true" | "false"', ()),
    "null": (r'"null"', ()),
    "value": (r'object | array | string | number | boolean | null',
              ("object", "array", "string", "number", "boolean", "null")),
    "object": (r'"{" ws ( string ":" ws value ( "," ws string ":" ws value )* ws )? "}"', ("ws", "string", "value")),
    "array": (r'"[" ws ( value ( "," ws value )* ws )? "]"', ("ws", "value")),
    "date": (r'[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )', ()),
    "time": (r'( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
             r'( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', ()),
    "date-string": (r'"\"" date "\""', ("date",)),
    "time-string": (r'"\"" time "\""', ("time",)),
    "date-time-string": (r'"\"" date "T" time "\""', ("date", "time")),
    "uuid-string": (r'"\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
                    r'[0-9a-fA-F]{12} "\""', ()),
}
_FORMATS = {"date": "date-string", "time": "time-string", "date-time": "date-time-string", "uuid": "uuid-string"}

_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "$id",
                          "readOnly", "writeOnly", "deprecated", "$defs", "definitions"})
_SUPPORTED = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems",
                        "maxItems", "minLength", "maxLength", "format", "enum", "const", "anyOf", "oneOf",
                        "$ref"})
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
# Keywords that imply a type when "type" is absent.
_IMPLIED = {"properties": "object", "required": "object", "additionalProperties": "object", "items": "array",
            "minItems": "array", "maxItems": "array", "minLength": "string", "maxLength": "string",
            "format": "string"}


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal (non-ASCII characters are written as UTF-8)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _repeat(item: str, lo: int, hi: int | None) -> str:
    """``item`` repeated lo..hi times (hi None: unbounded), split to respect ik's repetition limit."""
    if hi == 0:
        return ""
    if lo == hi and lo <= _MAX_REPEAT:
        return f"{item}{{{lo}}}"
    parts = []
    while lo > _MAX_REPEAT:
        parts.append(f"{item}{{{_MAX_REPEAT}}}")
        lo -= _MAX_REPEAT
        hi = None if hi is None else hi - _MAX_REPEAT
    if hi is None:
        parts.append(f"{item}{{{lo},}}" if lo else f"{item}*")
    elif hi - lo <= _MAX_REPEAT:
        parts.append(f"{item}{{{lo},{hi}}}")
    else:
        if lo:
            parts.append(f"{item}{{{lo}}}")
        # x{0,w} == x{0,limit-1} | x{limit} x{0,w-limit}: disjoint lengths, so no ambiguity for the sampler.
        parts.append(f"( {item}{{0,{_MAX_REPEAT - 1}}} | {item}{{{_MAX_REPEAT}}} "
                     f"{_repeat(item, 0, hi - lo - _MAX_REPEAT)} )")
    return " ".join(parts)


def _seq(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a JSON number")
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise ValueError(f"{value!r} is not a JSON value")


class _Converter:
    def __init__(self, root: Any):
        self._root = root
        self._rules: dict[str, str] = {}          # generated rules, in creation order
        self._by_body: dict[str, str] = {}        # body -> name, to share identical rules
        self._refs: dict[str, str] = {}           # "$ref" target -> rule name
        self._primitives: dict[str, str] = {}

    # -- rules ------------------------------------------------------------------------------------
    def _prim(self, name: str) -> str:
        if name not in self._primitives:
            body, deps = _PRIMITIVES[name]
            self._primitives[name] = body
            for dep in deps:
                self._prim(dep)
        return name

    def _fresh(self, hint: str) -> str:
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "r"
        name, n = base, 1
        while name in self._rules or name in _PRIMITIVES or name == "root":
            n += 1
            name = f"{base}-{n}"
        return name

    def _rule(self, hint: str, body: str) -> str:
        if body in self._by_body:
            return self._by_body[body]
        if re.fullmatch(r"[a-zA-Z0-9-]+", body):    # a bare rule reference needs no rule of its own
            return body
        name = self._fresh(hint)
        self._rules[name] = body
        self._by_body[body] = name
        return name

    def grammar(self) -> str:
        body = self.visit(self._root, "root")
        lines = [f"root ::= {body}"]
        lines += [f"{name} ::= {rule}" for name, rule in self._rules.items()]
        lines += [f"{name} ::= {rule}" for name, rule in sorted(self._primitives.items())]
        return "\n".join(lines) + "\n"

    # -- schemas ----------------------------------------------------------------------------------
    def visit(self, schema: Any, hint: str) -> str:
        """A GBNF expression (usually a rule name) matching the JSON values ``schema`` accepts."""
        if schema is True or schema == {}:
            return self._prim("value")
        if schema is False:
            raise ValueError(f"{hint}: the schema 'false' accepts nothing")
        if not isinstance(schema, dict):
            raise ValueError(f"{hint}: a schema must be an object or a boolean, not {schema!r}")
        for key in schema:
            if key not in _SUPPORTED and key not in _ANNOTATIONS:
                raise ValueError(f"{hint}: unsupported JSON Schema keyword {key!r}")
        keys = {k for k in schema if k not in _ANNOTATIONS}
        if "$ref" in keys:
            self._no_siblings(schema, keys - {"$ref"}, "$ref", hint)
            return self._ref(schema["$ref"])
        for combinator in ("anyOf", "oneOf"):
            if combinator in keys:
                self._no_siblings(schema, keys - {combinator}, combinator, hint)
                options = schema[combinator]
                if not isinstance(options, list) or not options:
                    raise ValueError(f"{hint}: {combinator!r} needs a non-empty list of schemas")
                alts = [self.visit(s, f"{hint}-{i}") for i, s in enumerate(options)]
                return self._rule(hint, " | ".join(alts))
        types = self._types(schema, hint)
        if "enum" in keys or "const" in keys:
            self._no_siblings(schema, keys - {"enum", "const", "type"}, "enum" if "enum" in keys else "const", hint)
            values = [schema["const"]] if "const" in keys else schema["enum"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"{hint}: 'enum' needs a non-empty list of values")
            if types is not None:
                values = [v for v in values if _type_of(v) in types or (_type_of(v) == "integer" and "number" in types)]
                if not values:
                    raise ValueError(f"{hint}: no 'enum'/'const' value has the declared type")
            return self._rule(hint, " | ".join(self._const(v) for v in values))
        if types is None:
            return self._prim("value")
        alts = [self._typed(schema, t, hint if len(types) == 1 else f"{hint}-{t}") for t in types]
        return self._rule(hint, " | ".join(alts))

    @staticmethod
    def _no_siblings(schema: dict, siblings: set[str], keyword: str, hint: str) -> None:
        if siblings:
            raise ValueError(f"{hint}: {keyword!r} combined with {sorted(siblings)[0]!r} is unsupported")

    @staticmethod
    def _types(schema: dict, hint: str) -> list[str] | None:
        declared = schema.get("type")
        if declared is None:
            implied = sorted({_IMPLIED[k] for k in schema if k in _IMPLIED})
            return implied or None
        types = [declared] if isinstance(declared, str) else declared
        if not isinstance(types, list) or not types or any(t not in _TYPES for t in types):
            raise ValueError(f"{hint}: unsupported 'type' {declared!r}")
        if "integer" in types and "number" in types:
            types = [t for t in types if t != "integer"]
        return types

    def _typed(self, schema: dict, kind: str, hint: str) -> str:
        if kind == "object":
            return self._object(schema, hint)
        if kind == "array":
            return self._array(schema, hint)
        if kind == "string":
            return self._string(schema, hint)
        return self._prim(kind)

    def _ref(self, ref: Any) -> str:
        if ref in self._refs:
            return self._refs[ref]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"unsupported '$ref' {ref!r}: only references inside the schema ('#/...') work")
        target = self._root
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/")[1:]]
        for part in parts:
            try:
                target = target[int(part)] if isinstance(target, list) else target[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ValueError(f"'$ref' {ref!r} does not resolve") from None
        # Reserve the name before visiting, so that a recursive reference finds it.
        name = self._fresh(parts[-1] if parts else "root-ref")
        self._refs[ref] = name
        self._rules[name] = ""
        self._rules[name] = self.visit(target, name)
        return name

    def _string(self, schema: dict, hint: str) -> str:
        fmt = schema.get("format")
        if fmt is not None:
            if fmt not in _FORMATS:
                raise ValueError(f"{hint}: unsupported 'format' {fmt!r} (supported: {', '.join(_FORMATS)})")
            return self._prim(_FORMATS[fmt])
        lo, hi = self._bounds(schema, "minLength", "maxLength", hint)
        if lo == 0 and hi is None:
            return self._prim("string")
        self._prim("char")
        return self._rule(hint, f'"\\"" {_repeat("char", lo, hi)} "\\""')

    def _array(self, schema: dict, hint: str) -> str:
        items = schema.get("items", True)
        if isinstance(items, list):
            raise ValueError(f"{hint}: unsupported 'items' as a list (tuple validation)")
        item = self.visit(items, f"{hint}-item")
        lo, hi = self._bounds(schema, "minItems", "maxItems", hint)
        ws = self._prim("ws")
        if hi == 0:
            return self._rule(hint, f'"[" {ws} "]"')
        more = _repeat(f'( "," {ws} {item} )', max(lo - 1, 0), None if hi is None else hi - 1)
        inner = f"{item} {more} {ws}"
        return self._rule(hint, f'"[" {ws} {inner} "]"' if lo else f'"[" {ws} ( {inner} )? "]"')

    def _object(self, schema: dict, hint: str) -> str:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict) or not isinstance(required, list):
            raise ValueError(f"{hint}: 'properties' must be an object and 'required' a list")
        for name in required:
            if name not in props:
                raise ValueError(f"{hint}: required property {name!r} is not declared in 'properties'")
        extra = schema.get("additionalProperties", not props)
        ws = self._prim("ws")
        kvs = [(f'{_literal(json.dumps(k, ensure_ascii=False))} ":" {ws} {self.visit(s, f"{hint}-{k}")}',
                k in required) for k, s in props.items()]
        extra_kv = None
        if extra is not False:
            value = self.visit(extra, f"{hint}-additional")
            extra_kv = f'{self._prim("string")} ":" {ws} {value}'
        # after[i]: properties i.. when one was emitted already (each is preceded by a comma).
        after = [f'( "," {ws} {extra_kv} )*' if extra_kv else ""]
        for kv, req in reversed(kvs):
            after.insert(0, _seq(f'"," {ws} {kv}' if req else f'( "," {ws} {kv} )?', after[0]))
        # first: properties 0.. when none was emitted yet and at least one will be; None if impossible.
        first = _seq(extra_kv, after[-1]) if extra_kv else None
        for i in range(len(kvs) - 1, -1, -1):
            kv, req = kvs[i]
            head = _seq(kv, after[i + 1])
            first = head if req or first is None else f"( {head} | {first} )"
        if first is None:
            return self._rule(hint, f'"{{" {ws} "}}"')
        if any(req for _, req in kvs):
            return self._rule(hint, f'"{{" {ws} {first} {ws} "}}"')
        return self._rule(hint, f'"{{" {ws} ( {first} {ws} )? "}}"')

    @staticmethod
    def _bounds(schema: dict, lo_key: str, hi_key: str, hint: str) -> tuple[int, int | None]:
        lo, hi = schema.get(lo_key, 0), schema.get(hi_key)
        for key, v in ((lo_key, lo), (hi_key, hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{hint}: {key!r} must be a non-negative integer, not {v!r}")
        if hi is not None and hi < lo:
            raise ValueError(f"{hint}: {hi_key!r} {hi} is below {lo_key!r} {lo}")
        return lo, hi

    def _const(self, value: Any) -> str:
        """An expression matching exactly ``value`` (ws allowed inside containers)."""
        if isinstance(value, dict):
            if not value:
                return f'"{{" {self._prim("ws")} "}}"'
            ws = self._prim("ws")
            members = f' "," {ws} '.join(f'{_literal(json.dumps(k, ensure_ascii=False))} ":" {ws} {self._const(v)}'
                                         for k, v in value.items())
            return f'( "{{" {ws} {members} {ws} "}}" )'
        if isinstance(value, list):
            ws = self._prim("ws")
            if not value:
                return f'"[" {ws} "]"'
            items = f' "," {ws} '.join(self._const(v) for v in value)
            return f'( "[" {ws} {items} {ws} "]" )'
        _type_of(value)
        return _literal(json.dumps(value, ensure_ascii=False))


def json_schema_to_gbnf(schema: dict) -> str:
    """Convert a JSON Schema into a GBNF grammar (root rule ``root``) for ik_llama.cpp.

    The module docstring lists the supported keywords, the whitespace convention and where the
    grammar is narrower than the schema.

    Raises:
        ValueError: the schema uses a keyword or value the converter cannot honour (the message
            names it), or it is malformed.
    """
    return _Converter(schema).grammar()


def _any_object() -> str:
    conv = _Converter({})
    conv._prim("object")
    lines = ["root ::= object"] + [f"{n} ::= {b}" for n, b in sorted(conv._primitives.items())]
    return "\n".join(lines) + "\n"


#: Any JSON object (OpenAI ``response_format={"type": "json_object"}``), same whitespace convention.
JSON_GBNF: str = _any_object()

_LITERALS = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|#[^\n]*')


def diagnose_gbnf(grammar: str) -> str | None:
    """Why ik's GBNF parser would reject ``grammar``, for the common slips; None if none is found.

    ik reports parse errors with ``fprintf(stderr)``, out of reach of its log callback (and of
    Python short of redirecting file descriptors), so the binding names these problems itself.
    """
    bare = _LITERALS.sub(" ", grammar)
    depth = 0
    for ch in bare:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return "unbalanced ')': a group is closed that was never opened"
    if depth:
        return "expecting ')': a group is not closed"
    defined = set(re.findall(r"^\s*([A-Za-z0-9_-]+)\s*::=", bare, re.M))
    if "root" not in defined:
        return "the grammar does not contain a 'root' symbol"
    body = re.sub(r"^\s*[A-Za-z0-9_-]+\s*::=", " ", bare, flags=re.M)
    for name in re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", body):
        if name not in defined:
            return f"Undefined rule identifier '{name}'"
    return None


def validate_grammar(grammar: str, model: Model) -> None:
    """Check that ik_llama.cpp's GBNF parser accepts ``grammar`` (root rule ``root``).

    Wraps ``llama_sampler_init_grammar`` on ``model``'s vocabulary; the parsed grammar is freed
    at once with ``llama_grammar_free``. Nothing is kept.

    Raises:
        ValueError: ik rejected the grammar; the message quotes ik's error lines.
    """
    data = grammar.encode("utf-8")
    if not grammar.strip() or b"\0" in data:
        raise ValueError("a grammar must be non-empty text without NUL characters")
    vocab = model._vocab_ptr()
    mark = _log.mark()
    ptr = lib.llama_sampler_init_grammar(vocab, data, b"root")
    # ik logs "left recursion detected" without a newline: a new (empty) message flushes it.
    _log.handle(lib.GGML_LOG_LEVEL_INFO, "")
    if ptr == ffi.NULL:
        reason = diagnose_gbnf(grammar)
        lines = _log.since(mark) + ([reason] if reason else [])
        raise ValueError(with_native("ik_llama.cpp rejected the grammar", lines))
    lib.llama_grammar_free(ptr)
