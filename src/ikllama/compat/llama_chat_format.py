"""Chat formats by name, Jinja chat templates and chat-completion handlers (llama-cpp-python's
``llama_chat_format`` module, written from its documented behaviour).

A *formatter* turns OpenAI-shaped messages into a :class:`ChatFormatterResponse` (prompt text and
stop strings). ``Llama(chat_format="chatml")`` picks one from :func:`get_chat_format`; without a
name the model's own template is used through :class:`ikllama.chat.Formatter`. Jinja templates
render in ikllama's sandbox (``ikllama.chat``), never in a plain Jinja environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..chat import Formatter

__all__ = ["ChatFormatterResponse", "ChatFormatter", "Jinja2ChatFormatter", "LlamaChatCompletionHandler",
           "register_chat_format", "get_chat_format", "list_chat_formats", "hf_tokenizer_config_to_chat_formatter",
           "chat_formatter_to_chat_completion_handler", "register_chat_completion_handler",
           "get_chat_completion_handler", "format_chatml", "format_llama2", "format_llama3", "format_alpaca",
           "format_vicuna", "format_mistral_instruct", "format_gemma", "format_zephyr", "format_phi3"]


@dataclass
class ChatFormatterResponse:
    """A rendered prompt, the stop strings that end the assistant turn, and extra stopping criteria."""

    prompt: str
    stop: str | list[str] | None = None
    stopping_criteria: Any = None
    added_special: bool = False


class ChatFormatter(Protocol):
    def __call__(self, *, messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse: ...


class LlamaChatCompletionHandler(Protocol):
    """``handler(llama=..., messages=..., **create_chat_completion keywords)`` -> chat response or chunks."""

    def __call__(self, *, llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any: ...


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError(f"message content must be a string or a list of parts, not {type(content).__name__}")


def _role(m: dict[str, Any]) -> str:
    role = m.get("role")
    if role not in ("system", "user", "assistant", "tool", "function", "developer"):
        raise ValueError(f"message role {role!r}: use system, user, assistant or tool")
    return "system" if role == "developer" else role


def _turns(messages: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(_role(m), _text(m.get("content"))) for m in messages]


_FORMATS: dict[str, ChatFormatter] = {}


def register_chat_format(name: str) -> Callable[[Callable[..., ChatFormatterResponse]], Callable[..., Any]]:
    """Decorator: make ``f(messages, **kwargs) -> ChatFormatterResponse`` available as ``chat_format=name``."""

    def deco(f: Callable[..., ChatFormatterResponse]) -> Callable[..., Any]:
        _FORMATS[name] = f
        return f

    return deco


def get_chat_format(name: str) -> ChatFormatter:
    """The formatter registered as ``name``; ValueError lists the names there are."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"chat_format {name!r} is not known; use one of {', '.join(sorted(_FORMATS))} "
                         "(or leave it None to use the model's own template)") from None


def list_chat_formats() -> list[str]:
    """Names usable as ``chat_format``."""
    return sorted(_FORMATS)


@register_chat_format("chatml")
def format_chatml(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``<|im_start|>role\\ncontent<|im_end|>`` turns, then an open assistant turn."""
    body = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in _turns(messages))
    return ChatFormatterResponse(prompt=body + "<|im_start|>assistant\n", stop="<|im_end|>")


@register_chat_format("llama-2")
def format_llama2(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``[INST] <<SYS>>..<</SYS>> user [/INST] assistant`` (the system prompt joins the first user turn)."""
    system, out = "", []
    for role, content in _turns(messages):
        if role == "system":
            system = f"<<SYS>>\n{content}\n<</SYS>>\n\n"
        elif role == "user":
            out.append(f"<s>[INST] {system}{content} [/INST]")
            system = ""
        else:
            out.append(f" {content} </s>")
    return ChatFormatterResponse(prompt="".join(out), stop="</s>")


@register_chat_format("llama-3")
def format_llama3(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """Llama 3 header/eot turns."""
    body = "".join(f"<|start_header_id|>{r}<|end_header_id|>\n\n{c}<|eot_id|>" for r, c in _turns(messages))
    return ChatFormatterResponse(prompt=body + "<|start_header_id|>assistant<|end_header_id|>\n\n",
                                 stop="<|eot_id|>")


@register_chat_format("alpaca")
def format_alpaca(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``### Instruction:`` / ``### Response:`` blocks."""
    names = {"system": "", "user": "### Instruction:\n", "assistant": "### Response:\n", "tool": "### Input:\n"}
    body = "".join(f"{names.get(r, '')}{c}\n\n" for r, c in _turns(messages))
    return ChatFormatterResponse(prompt=body + "### Response:\n", stop="###")


@register_chat_format("vicuna")
def format_vicuna(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``USER: ... ASSISTANT: ...`` after a system line."""
    parts = []
    for role, content in _turns(messages):
        parts.append(content if role == "system" else f"{'USER' if role != 'assistant' else 'ASSISTANT'}: {content}")
    return ChatFormatterResponse(prompt=" ".join(parts) + " ASSISTANT:", stop=["USER:", "</s>"])


@register_chat_format("mistral-instruct")
def format_mistral_instruct(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``[INST] user [/INST]assistant</s>``; a system prompt is put before the first user turn."""
    out, system = ["<s>"], ""
    for role, content in _turns(messages):
        if role == "system":
            system = content + "\n\n"
        elif role == "user":
            out.append(f"[INST] {system}{content} [/INST]")
            system = ""
        else:
            out.append(f"{content}</s>")
    return ChatFormatterResponse(prompt="".join(out), stop="</s>")


@register_chat_format("gemma")
def format_gemma(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``<start_of_turn>user|model`` turns; a system prompt joins the first user turn."""
    out, system = [], ""
    for role, content in _turns(messages):
        if role == "system":
            system = content + "\n\n"
            continue
        who = "model" if role == "assistant" else "user"
        out.append(f"<start_of_turn>{who}\n{system if who == 'user' else ''}{content}<end_of_turn>\n")
        if who == "user":
            system = ""
    return ChatFormatterResponse(prompt="".join(out) + "<start_of_turn>model\n", stop="<end_of_turn>")


@register_chat_format("zephyr")
def format_zephyr(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``<|role|>\\ncontent</s>`` turns."""
    body = "".join(f"<|{r}|>\n{c}</s>\n" for r, c in _turns(messages))
    return ChatFormatterResponse(prompt=body + "<|assistant|>\n", stop="</s>")


@register_chat_format("phi3")
def format_phi3(messages: list[dict[str, Any]], **kwargs: Any) -> ChatFormatterResponse:
    """``<|role|>\\ncontent<|end|>`` turns."""
    body = "".join(f"<|{r}|>\n{c}<|end|>\n" for r, c in _turns(messages))
    return ChatFormatterResponse(prompt=body + "<|assistant|>\n", stop="<|end|>")


@dataclass
class Jinja2ChatFormatter:
    """Renders a Hugging Face / GGUF Jinja chat template (sandboxed, via :class:`ikllama.chat.Formatter`).

    ``stop_token_ids`` are recorded for callers; the EOS token text is the stop string.
    """

    template: str
    eos_token: str
    bos_token: str
    add_generation_prompt: bool = True
    stop_token_ids: list[int] | None = None
    _formatter: Formatter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._formatter = Formatter(self.template, self.bos_token, self.eos_token)

    def __call__(self, *, messages: list[dict[str, Any]], functions: Any = None, function_call: Any = None,
                 tools: Any = None, tool_choice: Any = None, **kwargs: Any) -> ChatFormatterResponse:
        prompt = self._formatter.format(messages, add_generation_prompt=self.add_generation_prompt,
                                        tools=list(tools) if tools else None)
        stops = [self.eos_token, *self._formatter.stop_strings] if self.eos_token else list(
            self._formatter.stop_strings)
        return ChatFormatterResponse(prompt=prompt, stop=stops or None, added_special=bool(
            self.bos_token and prompt.startswith(self.bos_token)))

    def to_chat_handler(self) -> LlamaChatCompletionHandler:
        """A handler that renders with this template and completes with ``llama.create_completion``."""
        return chat_formatter_to_chat_completion_handler(self)


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # {"content": "<s>", ...} as some tokenizer_config.json files have it
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def hf_tokenizer_config_to_chat_formatter(tokenizer_config: dict[str, Any],
                                          add_generation_prompt: bool = True) -> ChatFormatter:
    """A formatter from a Hugging Face ``tokenizer_config.json`` dict (its ``chat_template``,
    ``bos_token`` and ``eos_token``)."""
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: take "default"
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise ValueError("tokenizer_config has no chat_template string")
    return Jinja2ChatFormatter(template, _token_text(tokenizer_config.get("eos_token")),
                               _token_text(tokenizer_config.get("bos_token")), add_generation_prompt)


def chat_formatter_to_chat_completion_handler(formatter: Callable[..., ChatFormatterResponse]
                                              ) -> LlamaChatCompletionHandler:
    """Turn a formatter into a handler: render the prompt, then complete it on ``llama``."""

    def handler(*, llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        from ._chat import complete_formatted

        rendered = formatter(messages=messages, **{k: kwargs.get(k) for k in ("tools", "tool_choice")})
        return complete_formatted(llama, rendered, **kwargs)

    return handler


_HANDLERS: dict[str, LlamaChatCompletionHandler] = {}


def register_chat_completion_handler(name: str) -> Callable[[Any], Any]:
    """Decorator: make a handler available as ``chat_format=name``."""

    def deco(f: Any) -> Any:
        _HANDLERS[name] = f
        return f

    return deco


def get_chat_completion_handler(name: str) -> LlamaChatCompletionHandler:
    """The handler for ``name``: a registered handler, else one built from the named format."""
    if name in _HANDLERS:
        return _HANDLERS[name]
    fmt = get_chat_format(name)
    return chat_formatter_to_chat_completion_handler(lambda *, messages, **kw: fmt(messages, **kw))
