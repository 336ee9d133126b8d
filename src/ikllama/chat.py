"""Chat messages, prompt formatting with the model's own template, and splitting off thinking.

How a conversation becomes a prompt:

1. ``Formatter.for_model(model)`` takes the GGUF chat template (``tokenizer.chat_template``), or,
   when the file has none, ik's built-in format of the model's family (``gemma`` for Gemma).
2. ``Formatter.format(messages)`` renders a Jinja template in jinja2's immutable sandbox, with the
   globals Hugging Face templates expect (``raise_exception``, ``strftime_now``, a ``tojson`` that
   keeps non-ASCII). A GGUF template is untrusted input (CVE-2024-34359): any attempt to reach
   Python internals is stopped and reported as :class:`TemplateError`, never rendered around.
3. If the template does not compile or render for another reason and ik knows its format, the
   prompt comes from ik's ``llama_chat_apply_template`` instead (logged as a warning).
4. ``split_thinking(output, formatter)`` separates the reasoning a model wrote from its answer.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from . import _chat_families as _fam
from ._lib import ffi, lib
from .errors import TemplateError

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Role", "Message", "Formatter", "DynamicFormatter", "split_thinking", "builtin_templates"]

logger = logging.getLogger("ikllama")

_KINDS = ("system", "user", "assistant", "tool")


# -- messages -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Role:
    """Who speaks: ``system``, ``user``, ``assistant`` or ``tool`` (optionally with a ``name``)."""

    kind: str
    name: str | None = None

    SYSTEM: ClassVar[Role]
    USER: ClassVar[Role]
    ASSISTANT: ClassVar[Role]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"role must be one of {', '.join(_KINDS)}, not {self.kind!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ValueError(f"role name must be a non-empty string, not {self.name!r}")

    @classmethod
    def tool(cls, name: str) -> Role:
        """The role of a tool's result; ``name`` is the tool (function) that produced it."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a tool role needs the tool's name, not {name!r}")
        return cls("tool", name)

    def __str__(self) -> str:
        return self.kind


Role.SYSTEM = Role("system")
Role.USER = Role("user")
Role.ASSISTANT = Role("assistant")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation. ``thinking`` is the assistant's reasoning, kept apart from ``content``."""

    role: Role
    content: str
    tool_calls: list[dict] | None = None
    thinking: str | None = None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.role, str):  # Message("user", "hi") is handy; frozen, hence object.__setattr__
            object.__setattr__(self, "role", Role(self.role))
        if not isinstance(self.role, Role):
            raise ValueError(f"message role must be a Role, not {type(self.role).__name__}")
        if not isinstance(self.content, str):
            raise ValueError(f"message content must be a string, not {type(self.content).__name__}")

    @classmethod
    def from_openai(cls, message: Mapping[str, Any]) -> Message:
        """A message from an OpenAI-shaped dict (``role``, ``content``, ``name``, ``tool_calls``, ...).

        ``developer`` counts as ``system``; ``reasoning_content`` (or ``thinking``) becomes
        :attr:`thinking`. Raises ValueError naming the field that is wrong.
        """
        if not isinstance(message, Mapping):
            raise ValueError(f"a chat message must be a dict, not {type(message).__name__}")
        kind = message.get("role")
        if kind == "developer":
            kind = "system"
        if kind not in _KINDS:
            raise ValueError(f"message field 'role' must be one of {', '.join(_KINDS)}, got {kind!r}")
        name = message.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"message field 'name' must be a non-empty string, got {name!r}")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise ValueError(f"message field 'tool_calls' must be a list, got {type(tool_calls).__name__}")
            for i, call in enumerate(tool_calls):
                if not isinstance(call, Mapping) or not isinstance(call.get("function", {}), Mapping):
                    raise ValueError(f"message field 'tool_calls[{i}]' must be a dict with a 'function' dict")
            tool_calls = [dict(call) for call in tool_calls]
        for field in ("tool_call_id", "reasoning_content", "thinking"):
            value = message.get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"message field {field!r} must be a string, got {type(value).__name__}")
        content = _text_content(message.get("content"), none_ok=kind == "assistant")
        thinking = message.get("reasoning_content")
        return cls(Role(kind, name), content, tool_calls,
                   thinking if thinking is not None else message.get("thinking"), message.get("tool_call_id"))

    def to_openai(self) -> dict[str, Any]:
        """This message as an OpenAI-shaped dict (the inverse of :meth:`from_openai`)."""
        out: dict[str, Any] = {"role": self.role.kind, "content": self.content}
        if self.role.name is not None:
            out["name"] = self.role.name
        if self.tool_calls is not None:
            out["tool_calls"] = [dict(call) for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.thinking is not None:
            out["reasoning_content"] = self.thinking
        return out

    def _template_dict(self) -> dict[str, Any]:
        """What a Jinja template sees: OpenAI fields, with tool-call arguments as objects.

        Templates (Qwen, Llama 3.1, ...) write ``arguments | tojson``; an OpenAI JSON string there
        would be encoded twice, so a string that parses is passed parsed. The reasoning goes in
        under both names templates use (``reasoning_content``: Qwen3; ``thinking``: gpt-oss).
        """
        out = self.to_openai()
        if self.tool_calls is not None:
            out["tool_calls"] = [_parsed_arguments(call) for call in self.tool_calls]
        if self.thinking is not None:
            out["thinking"] = self.thinking
        return out


def _text_content(content: Any, none_ok: bool) -> str:
    if content is None and none_ok:  # an assistant turn that only calls tools
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ValueError(f"message field 'content[{i}]' must be a text part, got {kind!r}")
            parts.append(part["text"])
        return "".join(parts)
    raise ValueError(f"message field 'content' must be a string or a list of text parts, got {type(content).__name__}")


def _parsed_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    call = dict(call)
    function = call.get("function")
    if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
        try:
            arguments = json.loads(function["arguments"])
        except ValueError:
            return call
        call["function"] = {**function, "arguments": arguments}
    return call


def _as_message(message: Message | Mapping[str, Any]) -> Message:
    return message if isinstance(message, Message) else Message.from_openai(message)


# -- the Jinja sandbox ----------------------------------------------------------------------------
class _Refused(Exception):
    """Raised by a template's ``raise_exception(...)``: the template rejects the conversation."""


def _raise_exception(message: str) -> None:
    raise _Refused(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # jinja2's own tojson escapes <, >, & and ' for HTML; a prompt needs the plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@cache
def _environment() -> Any:
    """The shared sandbox (None without jinja2, in which case only ik's built-in formats render)."""
    try:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
    except ImportError:
        logger.warning("jinja2 is not installed: chat templates fall back to ik's built-in formats")
        return None

    class Sandbox(ImmutableSandboxedEnvironment):
        # jinja2 turns an unsafe attribute into an Undefined that renders as "" (and only raises
        # when used further); a template probing for internals is hostile, so stop it at once.
        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _is_security_error(exc: BaseException) -> bool:
    from jinja2.exceptions import SecurityError

    return isinstance(exc, SecurityError)


# -- ik's built-in formats ------------------------------------------------------------------------
@cache
def builtin_templates() -> tuple[str, ...]:
    """Names of ik's built-in chat formats (wraps ``llama_chat_builtin_templates``)."""
    n = lib.llama_chat_builtin_templates(ffi.NULL, 0)
    names = ffi.new("const char *[]", n)
    lib.llama_chat_builtin_templates(names, n)
    return tuple(ffi.string(names[i]).decode() for i in range(n))


def _apply_builtin(template: str, messages: Sequence[Message], add_ass: bool) -> str | None:
    """Render with ik's ``llama_chat_apply_template`` (None if ik does not know the format).

    ``template`` is a built-in name or a template source that ik recognises by its markers. The
    C strings live in ``keep`` for the duration of the call; the result is a Python copy.
    """
    keep = []
    chat = ffi.new("llama_chat_message[]", len(messages))
    for i, m in enumerate(messages):
        if "\0" in m.content:
            raise ValueError("message content contains a NUL character, which ik's C formats cannot carry")
        role, content = ffi.new("char[]", m.role.kind.encode()), ffi.new("char[]", m.content.encode())
        keep += (role, content)
        chat[i].role, chat[i].content = role, content
    tmpl = ffi.new("char[]", template.encode())
    size = 256 + 2 * sum(len(m.content) for m in messages)
    while True:
        buf = ffi.new("char[]", size)
        n = lib.llama_chat_apply_template(tmpl, chat, len(messages), add_ass, buf, size)
        if n < 0:
            return None
        if n <= size:  # strncpy wrote all n bytes (no terminator needed: we copy n bytes)
            return ffi.buffer(buf, n)[:].decode("utf-8", "replace")
        size = n


# -- formatters -----------------------------------------------------------------------------------
class Formatter:
    """Turns messages into the prompt text of one chat template.

    ``template`` is Jinja source (a GGUF or Hugging Face chat template) or the name of one of ik's
    built-in formats (see :func:`builtin_templates`). ``family`` is detected from the template when
    not given; it supplies :attr:`stop_strings` and :attr:`thinking_tags`.

    Raises:
        TemplateError: the Jinja source does not compile and ik does not know its format either.
    """

    def __init__(self, template: str, bos_token: str = "", eos_token: str = "", family: str | None = None):
        if not isinstance(template, str) or not template:
            raise ValueError("template must be a non-empty string (Jinja source or an ik built-in name)")
        self.template = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.family = family or _fam.detect_family(template)
        self._family = _fam.family(self.family)
        self._compiled: Any = None
        self._ik_format = self._find_ik_format()
        if template in builtin_templates():
            return
        env = _environment()
        if env is None:
            if self._ik_format is None:
                raise TemplateError("jinja2 is not installed and ik has no built-in format for this template")
            return
        from jinja2.exceptions import TemplateSyntaxError

        try:
            self._compiled = env.from_string(template)
        except TemplateSyntaxError as exc:
            if self._ik_format is None:
                raise TemplateError(f"the chat template does not compile: {exc} (line {exc.lineno})") from None
            logger.warning("chat template does not compile (%s); using ik's built-in %r format", exc, self.family)

    def _find_ik_format(self) -> str | None:
        """What to hand ik when Jinja cannot be used: the source if ik recognises it, else the family's format."""
        if _apply_builtin(self.template, [], False) is not None:
            return self.template
        if self._family is not None and self._family.builtin is not None:
            return self._family.builtin
        return None

    @classmethod
    def for_model(cls, model: Model, template: str | None = None) -> Formatter:
        """The formatter of ``model``'s GGUF chat template (or of ``template``, which overrides it).

        A file without a template gets ik's built-in format of its family (by architecture), and
        chatml when the family is unknown, as ik's own tools do.
        """
        template = template or model.chat_template()
        family = _fam.detect_family(template, model.architecture)
        if template is None:
            fam = _fam.family(family)
            template = fam.builtin if fam is not None and fam.builtin else "chatml"
            if fam is None:
                logger.warning("%s has no chat template and an unknown family; using chatml", model.path.name)
        return cls(template, special_text(model, model.token_bos), special_text(model, model.token_eos), family=family)

    # -- what the family knows --------------------------------------------------------------------
    @property
    def stop_strings(self) -> tuple[str, ...]:
        """End-of-turn strings of the family (e.g. ``<|im_end|>``), to use as extra stop strings."""
        return self._family.stop_strings if self._family is not None else ()

    @property
    def thinking_tags(self) -> tuple[str, str]:
        """(open, close) around the model's reasoning; ``<think>``/``</think>`` unless the family differs."""
        return self._family.thinking_tags if self._family is not None else _fam.THINK_TAGS

    @cached_property
    def opens_thinking(self) -> bool:
        """True when the generation prompt itself opens the thinking, so the output starts inside it."""
        if self._family is not None and self._family.channels:
            return False
        try:
            prompt = self.format([Message(Role.USER, "Hi")], add_generation_prompt=True)
        except (TemplateError, ValueError):
            return False
        return prompt.rstrip().endswith(self.thinking_tags[0])

    # -- rendering --------------------------------------------------------------------------------
    def format(self, messages: Sequence[Message | Mapping[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict] | None = None, **template_vars: Any) -> str:
        """The prompt text for ``messages`` (Message objects or OpenAI-shaped dicts).

        ``tools`` (OpenAI function schemas) and ``template_vars`` (e.g. ``enable_thinking=False``)
        reach the template as variables; ``bos_token``/``eos_token`` are set unless overridden.

        Raises:
            TemplateError: the template tried an unsafe operation, called ``raise_exception``, or
                failed in a way ik's built-in formats cannot stand in for.
        """
        msgs = [_as_message(m) for m in messages]
        if self._compiled is None:
            return self._format_builtin(msgs, add_generation_prompt, tools, template_vars)
        context = {"bos_token": self.bos_token, "eos_token": self.eos_token, **template_vars,
                   "messages": [m._template_dict() for m in msgs],
                   "add_generation_prompt": add_generation_prompt, "tools": tools}
        try:
            return self._compiled.render(context)
        except _Refused as exc:
            raise TemplateError(f"the chat template rejected the conversation: {exc}") from None
        except Exception as exc:  # a template is arbitrary code: any error means "could not render"
            if _is_security_error(exc):
                raise TemplateError(f"the chat template tried an unsafe operation and was stopped: {exc}") from None
            error = exc
        if self._ik_format is None or tools:
            raise TemplateError(f"rendering the chat template failed: {type(error).__name__}: {error}")
        logger.warning("chat template failed (%s: %s); using ik's built-in format", type(error).__name__, error)
        return self._format_builtin(msgs, add_generation_prompt, None, template_vars)

    def _format_builtin(self, msgs: list[Message], add_generation_prompt: bool, tools: list[dict] | None,
                        template_vars: dict[str, Any]) -> str:
        if tools:
            raise TemplateError(f"ik's built-in {self.family or 'chat'} format cannot render tools")
        if template_vars:
            logger.warning("ik's built-in chat formats ignore template variables %s", sorted(template_vars))
        text = _apply_builtin(self._ik_format or self.template, msgs, add_generation_prompt)
        if text is None:
            raise TemplateError("ik does not know this chat format")
        return text

    def delta(self, messages: Sequence[Message | Mapping[str, Any]],
              new_messages: Sequence[Message | Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The text that ``messages + new_messages`` adds after ``messages`` (rendered without a generation prompt).

        Lets a caller that already decoded ``format(messages, add_generation_prompt=False)`` decode
        only the new turns.

        Raises:
            ValueError: the template is not prefix-stable here (it rewrites earlier turns, e.g. drops
                old thinking or merges a system prompt); re-render in full instead.
        """
        before = self.format(messages, add_generation_prompt=False)
        full = self.format([*messages, *new_messages], add_generation_prompt=add_generation_prompt)
        if not full.startswith(before):
            raise ValueError("the chat template renders earlier turns differently once new ones follow; "
                             "re-render the whole conversation")
        return full[len(before):]

    def __repr__(self) -> str:
        kind = "jinja" if self._compiled is not None else f"ik:{self._ik_format or self.template}"
        return f"<ikllama.Formatter {self.family or 'unknown'} ({kind})>"


def special_text(model: Model, token: int | None) -> str:
    """The text of a special token (BOS, EOS), as templates expect it; "" when the model has none."""
    return "" if token is None else model.token_to_piece(token, special=True).decode("utf-8", "replace")


def split_thinking(text: str, family_or_formatter: str | Formatter | None = None) -> tuple[str | None, str]:
    """Split model output into (thinking, answer); thinking is None when the output has none.

    Handles ``<think>…</think>``, an unclosed ``<think>`` (thinking still in progress: the answer is
    empty), a lone ``</think>`` or a formatter whose generation prompt opens the thinking (the output
    starts inside it), and gpt-oss channels (``<|channel|>analysis<|message|>…<|end|>``).
    """
    if isinstance(family_or_formatter, Formatter):
        family, inside = family_or_formatter._family, family_or_formatter.opens_thinking
    else:
        family, inside = _fam.family(family_or_formatter), False
    if family is not None and family.channels:
        return _fam.split_channels(text)
    return _fam.split_tags(text, family.thinking_tags if family is not None else _fam.THINK_TAGS, inside)


class DynamicFormatter:
    """Formatters by model family: a registered factory wins, else the model's own template.

    The family comes from the template's markers (chatml, llama3, gemma, mistral, phi3, zephyr,
    deepseek, qwen, gpt-oss), else from the GGUF architecture.
    """

    _factories: ClassVar[dict[str, Callable[[Model], Formatter]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def register(cls, family: str, factory: Callable[[Model], Formatter] | None) -> Callable[[Model], Formatter] | None:
        """Use ``factory(model)`` for models of ``family`` (None removes it); returns the previous factory."""
        if not isinstance(family, str) or not family:
            raise ValueError(f"family must be a non-empty string, not {family!r}")
        with cls._lock:
            previous = cls._factories.pop(family, None)
            if factory is not None:
                cls._factories[family] = factory
        return previous

    @staticmethod
    def detect(template: str | None = None, architecture: str | None = None) -> str | None:
        """The family of a template source (or ik built-in name), else of an architecture; None if unknown."""
        return _fam.detect_family(template, architecture)

    @classmethod
    def family_of(cls, model: Model) -> str | None:
        """The family of ``model``: by its template's markers, else by its architecture."""
        return _fam.detect_family(model.chat_template(), model.architecture)

    @classmethod
    def for_model(cls, model: Model) -> Formatter:
        """The formatter for ``model``: its family's registered factory, else :meth:`Formatter.for_model`."""
        family = cls.family_of(model)
        with cls._lock:
            factory = cls._factories.get(family) if family else None
        return factory(model) if factory is not None else Formatter.for_model(model)

    @classmethod
    def for_template(cls, template: str, bos_token: str = "", eos_token: str = "") -> Formatter:
        """A formatter for a template source, with its family detected."""
        return Formatter(template, bos_token, eos_token, family=cls.detect(template))
