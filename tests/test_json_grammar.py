"""JSON Schema -> GBNF: generated documents must be accepted, invalid ones rejected, and ik must parse
every grammar. Acceptance is decided by a small GBNF recognizer written here (set-of-positions
matching over the parsed rules), so the property tests need no model; ik's own parser checks
the grammar text through validate_grammar."""

from __future__ import annotations

import json
import random
import re
import string as _string
import sys
from functools import lru_cache

import pytest

from ikllama.json_grammar import JSON_GBNF, json_schema_to_gbnf, validate_grammar

# -- a tiny GBNF recognizer -----------------------------------------------------------------------
_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<def>::=)|(?P<name>[a-zA-Z0-9-]+)|(?P<lit>"(?:\\.|[^"\\])*")'
                    r'|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<rep>\{\d+(?:,\d*)?\})|(?P<op>[()|*+?])')
_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "[": "[", "]": "]"}


def _unescape(body: str) -> list[str]:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            kind = body[i + 1]
            if kind in "xuU":
                n = {"x": 2, "u": 4, "U": 8}[kind]
                out.append(chr(int(body[i + 2:i + 2 + n], 16)))
                i += 2 + n
            else:
                out.append(_ESC[kind])
                i += 2
        else:
            out.append(body[i])
            i += 1
    return out


def _parse_gbnf(text: str) -> dict:
    toks = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m, f"cannot tokenize GBNF at {text[pos:pos + 30]!r}"
        pos = m.end()
        if m.lastgroup:
            toks.append((m.lastgroup, m.group(m.lastgroup)))
    toks.append(("end", ""))
    i = 0

    def at_rule_start(j):
        return toks[j][0] == "name" and toks[j + 1][0] == "def"

    def alt():
        nonlocal i
        seqs = [seq()]
        while toks[i] == ("op", "|"):
            i += 1
            seqs.append(seq())
        return ("alt", seqs)

    def seq():
        nonlocal i
        items = []
        while toks[i][0] != "end" and toks[i] not in (("op", "|"), ("op", ")")) and not at_rule_start(i):
            kind, val = toks[i]
            i += 1
            if kind == "name":
                node = ("ref", val)
            elif kind == "lit":
                node = ("lit", "".join(_unescape(val[1:-1])))
            elif kind == "cls":
                body, neg = val[1:-1], val.startswith("[^")
                chars = _unescape(body[1:] if neg else body)
                ranges, k = [], 0
                while k < len(chars):
                    if k + 2 < len(chars) and chars[k + 1] == "-":
                        ranges.append((chars[k], chars[k + 2]))
                        k += 3
                    else:
                        ranges.append((chars[k], chars[k]))
                        k += 1
                node = ("cls", neg, ranges)
            elif val == "(":
                node = alt()
                assert toks[i] == ("op", ")")
                i += 1
            else:
                raise AssertionError(f"unexpected GBNF token {val!r}")
            while toks[i][0] in ("rep",) or toks[i] in (("op", "*"), ("op", "+"), ("op", "?")):
                val = toks[i][1]
                i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}.get(val, (None, None))
                if lo is None:
                    a, _, b = val[1:-1].partition(",")
                    lo, hi = int(a), (int(a) if "," not in val else (int(b) if b else None))
                node = ("rep", node, lo, hi)
            items.append(node)
        return ("seq", items)

    rules = {}
    while toks[i][0] != "end":
        assert at_rule_start(i), f"expected a rule at {toks[i]}"
        name = toks[i][1]
        i += 2
        rules[name] = alt()
    return rules


class Recognizer:
    def __init__(self, grammar: str):
        self.rules = _parse_gbnf(grammar)

    def accepts(self, text: str) -> bool:
        self.text, self.memo = text, {}
        return len(text) in self._ends(("ref", "root"), 0)

    def _ends(self, node, pos) -> set[int]:
        kind, text = node[0], self.text
        if kind == "lit":
            return {pos + len(node[1])} if text.startswith(node[1], pos) else set()
        if kind == "cls":
            if pos >= len(text):
                return set()
            inside = any(lo <= text[pos] <= hi for lo, hi in node[2])
            return {pos + 1} if inside != node[1] else set()
        if kind == "ref":
            key = (node[1], pos)
            if key not in self.memo:
                self.memo[key] = self._ends(self.rules[node[1]], pos)
            return self.memo[key]
        if kind == "alt":
            return set().union(*(self._ends(s, pos) for s in node[1]))
        if kind == "seq":
            cur = {pos}
            for item in node[1]:
                cur = set().union(*(self._ends(item, p) for p in cur))
            return cur
        _, inner, lo, hi = node
        cur, done, count = {pos}, set(), 0
        if lo == 0:
            done |= cur
        while cur and (hi is None or count < hi):
            cur = set().union(*(self._ends(inner, p) for p in cur))
            count += 1
            if count >= lo:
                if hi is None:
                    cur -= done
                done |= cur
        return done


# -- a tiny JSON Schema validator (the subset the converter supports, JSON Schema semantics) -------
def _resolve(root, ref):
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def is_valid(schema, value, root=None) -> bool:
    root = schema if root is None else root
    if schema is True or schema == {}:
        return True
    if "$ref" in schema:
        return is_valid(_resolve(root, schema["$ref"]), value, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            hits = sum(is_valid(s, value, root) for s in schema[key])
            return hits == 1 if key == "oneOf" else hits >= 1
    if "const" in schema:
        return _same(value, schema["const"])
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        return False
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        kind = _kind(value)
        if kind not in types and not (kind == "integer" and "number" in types):
            return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            sub = props.get(k, extra)
            if sub is False or not is_valid(sub, v, root):
                return False
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        if not all(is_valid(schema.get("items", True), v, root) for v in value):
            return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        # Field ranges only (day 31 in every month, as the grammar does).
        d, t = r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
        t += r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"
        fmt = {"date": d, "time": t, "date-time": f"{d}T{t}",
               "uuid": r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"}.get(schema.get("format"))
        if fmt and not re.fullmatch(fmt, value):
            return False
    return True


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def _same(a, b) -> bool:
    return _kind(a) == _kind(b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# -- random valid values ---------------------------------------------------------------------------
_CHARS = _string.ascii_letters + _string.digits + ' "\\/\n\t\x01é€ü'


def _any(rng, depth=0):
    kinds = ["string", "integer", "number", "boolean", "null"] + (["array", "object"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "array":
        return [_any(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "object":
        return {_gen_str(rng, 0, 6): _any(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return generate({"type": kind}, rng)


def _gen_str(rng, lo, hi):
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(lo, hi)))


def generate(schema, rng, root=None, depth=0):
    root = schema if root is None else root
    if schema is True or schema == {}:
        return _any(rng)
    if "$ref" in schema:
        return generate(_resolve(root, schema["$ref"]), rng, root, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return generate(rng.choice(schema[key]), rng, root, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    types = schema.get("type", "object" if "properties" in schema else None)
    kind = rng.choice(types) if isinstance(types, list) else types
    if kind == "object":
        props, required = schema.get("properties", {}), schema.get("required", [])
        out = {k: generate(s, rng, root, depth + 1) for k, s in props.items()
               if k in required or (depth < 4 and rng.random() < 0.6)}
        extra = schema.get("additionalProperties", not props)
        if extra is not False and depth < 4:
            for i in range(rng.randint(0, 2)):
                out[f"x{i}_{_gen_str(rng, 0, 3)}"] = generate(extra, rng, root, depth + 1)
        return out
    if kind == "array":
        lo = schema.get("minItems", 0)
        hi = min(schema.get("maxItems", lo + 3), lo + (3 if depth < 4 else 0))
        return [generate(schema.get("items", True), rng, root, depth + 1) for _ in range(rng.randint(lo, hi))]
    if kind == "string":
        fmt = schema.get("format")
        d = f"{rng.randint(0, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}"
        t = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}" + \
            rng.choice(["", ".5", ".123456"]) + rng.choice(["Z", "+05:30", "-11:00"])
        if fmt:
            u = "-".join("".join(rng.choice("0123456789abcdefABCDEF") for _ in range(n)) for n in (8, 4, 4, 4, 12))
            return {"date": d, "time": t, "date-time": f"{d}T{t}", "uuid": u}[fmt]
        lo = schema.get("minLength", 0)
        return _gen_str(rng, lo, schema.get("maxLength", lo + 12))
    if kind == "integer":
        return rng.choice([0, rng.randint(-9, 9), rng.randint(-10**15, 10**15), -(2**63), 2**64])
    if kind == "number":
        return rng.choice([0, -3, 2.5, rng.uniform(-1e6, 1e6), rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300),
                           1e-7, 1.5e+20, 0.1 + 0.2, sys.float_info.max, 10**19])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _any(rng)


# -- schemas ---------------------------------------------------------------------------------------
TREE_DEFS = {"node": {"type": "object", "properties": {
    "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3}},
    "required": ["value"], "additionalProperties": False}}

SCHEMAS = {
    "person": {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20, "title": "Name"},
        "age": {"type": "integer", "description": "years"},
        "email": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "active": {"type": "boolean"},
        "score": {"type": "number"}},
        "required": ["name", "age"], "additionalProperties": False},
    "all_optional": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "null"},
                                                      "c": {"type": "string"}}, "additionalProperties": False},
    "nullable": {"type": ["string", "null"], "maxLength": 3},
    "int_or_bool": {"type": ["integer", "boolean"]},
    "enum": {"enum": ["red", 1, 2.5, None, True, {"a": [1, "x"], "b": {}}, [], 'q"b\\s\nn']},
    "const": {"const": {"k": [None, False, -1.25]}},
    "optional_anyof": {"type": "object", "properties": {
        "x": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "y": {"oneOf": [{"type": "string", "format": "date"}, {"type": "array", "items": {"type": "boolean"}}]}},
        "required": ["y"], "additionalProperties": False},
    "tree": {"$ref": "#/$defs/node", "$defs": TREE_DEFS},
    "tree_definitions": {"type": "object", "properties": {"root": {"$ref": "#/definitions/node"}},
                         "required": ["root"], "additionalProperties": False,
                         "definitions": {"node": {**TREE_DEFS["node"], "properties": {
                             "value": {"type": "integer"},
                             "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}}},
    "bounded_array": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
    "any_array": {"type": "array", "minItems": 1},
    "extra_schema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"],
                     "additionalProperties": {"type": "string"}},
    "extra_true": {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": True},
    "any_object": {"type": "object"},
    "formats": {"type": "object", "properties": {f: {"type": "string", "format": f}
                                                 for f in ("date", "time", "date-time", "uuid")},
                "required": ["date", "time", "date-time", "uuid"], "additionalProperties": False},
    "nested": {"type": "object", "properties": {"outer": {"type": "object", "properties": {
        "inner": {"type": "object", "properties": {"v": {"type": "array", "items": {"type": "integer"}}},
                  "required": ["v"], "additionalProperties": False}}, "additionalProperties": False}},
        "required": ["outer"], "additionalProperties": False},
    "short_string": {"type": "string", "minLength": 2, "maxLength": 4},
    "anything": {},
}

# Documents that are invalid under the schema (checked with is_valid) and must be rejected.
INVALID = {
    "person": ['{"name":"","age":1}', '{"name":"x","name":"y","age":1}', '{"name":"x"}', '{"name":"x","age":01}',
               '{"name":"x","age":1.5}', '{"name":"x","age":1,"zz":1}', '{"name":"x","age":1,"tags":["a","b","c","d"]}',
               '{"name":"x","age":1,"tags":["toolong"]}', '{"name":"x","age":1,"active":"yes"}'],
    "all_optional": ['{"b":0}', '{"a":1,"a":2}', '{"a":1,"c":"","c":""}', '{"a":"1"}', '[]'],
    "nullable": ['"abcd"', '1', 'nul'],
    "int_or_bool": ['1.5', '"1"', 'null'],
    "enum": ['"blue"', '2', '{"a":[1,"x"]}', 'false'],
    "const": ['{"k":[null,false]}', '{"k":[null,false,-1.5]}'],
    "optional_anyof": ['{"x":1}', '{"y":"2024-13-01"}', '{"y":[1]}', '{"x":"a","y":[]}'],
    "tree": ['{"children":[]}', '{"value":1,"children":[{"value":"a"}]}', '{"value":1,"children":[{},{}]}'],
    "bounded_array": ['[1]', '[1,2,3,4,5]', '[1,"2"]'],
    "any_array": ['[]', '{}'],
    "extra_schema": ['{"id":1,"n":2}', '{"n":"a"}'],
    "formats": ['{"date":"2024-01-01","time":"25:00:00Z","date-time":"2024-01-01T00:00:00Z",'
                '"uuid":"01234567-89ab-cdef-0123-456789abcdef"}'],
    "short_string": ['"a"', '"abcde"', '"ab\\"'],
}


@lru_cache(maxsize=None)
def _recognizer(name: str) -> Recognizer:
    return Recognizer(json_schema_to_gbnf(SCHEMAS[name]))


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_generated_documents_are_accepted(name):
    schema, rec, rng = SCHEMAS[name], _recognizer(name), random.Random(name)
    for _ in range(40):
        value = generate(schema, rng)
        assert is_valid(schema, value), value
        for doc in (json.dumps(value, ensure_ascii=False), json.dumps(value, separators=(",", ":")),
                    json.dumps(value, indent=2, ensure_ascii=False)):
            assert rec.accepts(doc), f"{name}: rejected valid document {doc!r}"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_accepted_mutations_are_valid(name):
    """Soundness: whatever the grammar accepts parses as JSON and validates, single-character edits included."""
    schema, rec, rng = SCHEMAS[name], _recognizer(name), random.Random("m" + name)
    n_rejected = 0
    for _ in range(60):
        doc = json.dumps(generate(schema, rng), separators=(",", ":"))
        i = rng.randrange(len(doc) + 1)
        doc = rng.choice([doc[:i] + doc[i + 1:], doc[:i] + rng.choice('{}[]",:0a -.e\\') + doc[i:]])
        if rec.accepts(doc):
            try:
                value = json.loads(doc, object_pairs_hook=_no_duplicate_keys)
            except ValueError:
                pytest.fail(f"{name}: accepted invalid JSON {doc!r}")
            assert is_valid(schema, value), f"{name}: accepted {doc!r}, which the schema rejects"
        else:
            n_rejected += 1
    assert n_rejected > 0


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_documents_are_rejected(name):
    for doc in INVALID[name]:
        try:
            assert not is_valid(SCHEMAS[name], json.loads(doc, object_pairs_hook=_no_duplicate_keys)), doc
        except ValueError:  # not JSON, or a repeated key
            pass
        assert not _recognizer(name).accepts(doc), f"{name}: accepted {doc!r}"


def test_whitespace_is_bounded():
    rec = _recognizer("person")
    assert rec.accepts('{"name": "x", "age": 1}')
    assert rec.accepts('{\n  "name": "x",\n\t"age": 1\n}')
    assert rec.accepts('{"name":"x","age":1,\n' + " " * 20 + '"active":true}')
    for doc in ('{"name":\t"x","age":1}', '{"name":"x","age":1,\n' + " " * 21 + '"active":true}',
                '{  "name":"x","age":1}',
                '{"name" :"x","age":1}', '{"name":"x" ,"age":1}', ' {"name":"x","age":1}',
                '{"name":"x","age":1}\n', '{"name":"x","age":1} '):
        assert not rec.accepts(doc), repr(doc)


def test_narrower_than_the_schema():
    """Valid documents that the grammar rejects by design (see the module docstring)."""
    person = _recognizer("person")
    assert is_valid(SCHEMAS["person"], {"age": 1, "name": "x"})
    assert not person.accepts('{"age":1,"name":"x"}')              # declaration order
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert is_valid(schema, {"a": 1, "b": 2})
    assert not Recognizer(json_schema_to_gbnf(schema)).accepts('{"a":1,"b":2}')  # no extras unless asked
    assert Recognizer(json_schema_to_gbnf({**schema, "additionalProperties": True})).accepts('{"a":1,"b":2}')


def test_numbers():
    integer, number = Recognizer(json_schema_to_gbnf({"type": "integer"})), Recognizer(
        json_schema_to_gbnf({"type": "number"}))
    for doc in ("0", "-0", "7", "-120", "9" * 20):
        assert integer.accepts(doc) and number.accepts(doc), doc
    for doc in ("01", "-01", "1.0", "1e5", "+1", "", "-", "9" * 21):
        assert not integer.accepts(doc), doc
    for doc in ("1.5", "-0.25", "1e-05", "1.5e+20", "2E3", "0.1234567890123456789"):
        assert number.accepts(doc), doc
    for doc in (".5", "1.", "+1", "NaN", "Infinity", "1e", "1e+1234", "00.5", "1." + "0" * 25):
        assert not number.accepts(doc), doc


def test_json_gbnf_is_any_object():
    rec, rng = Recognizer(JSON_GBNF), random.Random(7)
    for _ in range(60):
        value = {"k": _any(rng), **{str(i): _any(rng) for i in range(rng.randint(0, 3))}}
        for doc in (json.dumps(value), json.dumps(value, ensure_ascii=False, separators=(",", ":"))):
            assert rec.accepts(doc), doc
    assert rec.accepts('{"emoji":"\U0001F600","escaped":"\\ud83d\\ude00\\/"}')
    for doc in ("[1]", '"x"', "1", "null", "{", '{"a"}', '{"a":}', '{"a":1,}', "{'a':1}", '{"a":"\x01"}',
                '{"a":tru}', '{"a":"\\x"}', '{"a":1}{}'):
        assert not rec.accepts(doc), doc


def test_long_string_bounds_split_below_ik_repetition_limit():
    grammar = json_schema_to_gbnf({"type": "string", "minLength": 2001, "maxLength": 4500})
    assert max(int(n) for n in re.findall(r"\{(\d+)", grammar)) <= 2000
    rec = Recognizer(grammar)
    for n, ok in ((2000, False), (2001, True), (3999, True), (4000, True), (4001, True), (4500, True),
                  (4501, False)):
        assert rec.accepts('"' + "a" * n + '"') is ok, n


def test_grammars_parse_in_ik(smollm):
    for schema in SCHEMAS.values():
        validate_grammar(json_schema_to_gbnf(schema), smollm)
    validate_grammar(JSON_GBNF, smollm)
    validate_grammar(json_schema_to_gbnf({"type": "string", "minLength": 2001, "maxLength": 4500}), smollm)


@pytest.mark.parametrize("grammar, said", [
    ('root ::= "a" missing', "Undefined rule identifier 'missing'"),
    ('root ::= ( "a"', "expecting ')'"),
    ('item ::= "a"', "does not contain a 'root' symbol"),
    ('root ::= root "a"', "left recursion"),
])
def test_invalid_grammar_raises_with_ik_message(smollm, grammar, said):
    with pytest.raises(ValueError, match="rejected the grammar") as info:
        validate_grammar(grammar, smollm)
    assert said in str(info.value)


def test_empty_grammar_raises(smollm):
    with pytest.raises(ValueError):
        validate_grammar("  \n", smollm)


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"type": "integer", "minimum": 0}, "minimum"),
    ({"type": "number", "multipleOf": 2}, "multipleOf"),
    ({"allOf": [{"type": "string"}]}, "allOf"),
    ({"not": {"type": "string"}}, "not"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "array", "prefixItems": [{}]}, "prefixItems"),
    ({"type": "array", "items": [{"type": "string"}]}, "items"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
    ({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"if": {}}}}}}, "if"),
    ({"type": "string", "format": "email"}, "format"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
    ({"$ref": "#/$defs/missing"}, "$ref"),
    ({"type": "text"}, "type"),
    ({"type": "object", "properties": {}, "required": ["a"]}, "required"),
    ({"anyOf": [{"type": "string"}], "type": "string"}, "anyOf"),
])
def test_unsupported_keyword_raises(schema, keyword):
    with pytest.raises(ValueError, match=re.escape(repr(keyword)) + "|" + re.escape(keyword)) as info:
        json_schema_to_gbnf(schema)
    assert keyword in str(info.value)
