"""Chat-template families: how to recognise one, where its turns end, and where its thinking is.

A *family* is a prompt format shared by many models (chatml, llama3, gemma, ...). ``chat.py``
renders the model's own template; this table only answers the questions a template cannot:
which strings end a turn (extra stop strings), which tags wrap the model's reasoning, and which
of ik's built-in formats (``llama_chat_apply_template``) to use when there is no template.

Recognition follows ik's ``llama_chat_detect_template``: substrings of the template source, most
specific first, then the GGUF ``general.architecture`` when the file carries no template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Family", "FAMILIES", "family", "detect_family", "split_tags", "split_channels", "THINK_TAGS"]

THINK_TAGS = ("<think>", "</think>")


@dataclass(frozen=True)
class Family:
    """One prompt format.

    ``fingerprints`` is a tuple of alternatives, each a tuple of substrings that must all occur in
    the template source. ``builtin`` names ik's built-in format (``None``: let ik detect it from the
    template source). ``channels`` marks gpt-oss style output, split by channel instead of tags.
    """

    name: str
    fingerprints: tuple[tuple[str, ...], ...] = ()
    architectures: tuple[str, ...] = ()
    stop_strings: tuple[str, ...] = ()
    thinking_tags: tuple[str, str] = THINK_TAGS
    builtin: str | None = None
    channels: bool = False


# Order matters: the first family whose fingerprint matches wins, so the specific ones come first
# (a Qwen3 template is chatml plus <think>; phi3 and zephyr both use <|assistant|>).
FAMILIES: tuple[Family, ...] = (
    Family("gpt-oss", fingerprints=(("<|start|>", "<|channel|>"),), architectures=("gpt-oss",),
           stop_strings=("<|return|>", "<|call|>"),
           thinking_tags=("<|channel|>analysis<|message|>", "<|end|>"), builtin="gpt-oss", channels=True),
    Family("deepseek", fingerprints=(("<｜User｜>", "<｜Assistant｜>"),), architectures=("deepseek2",),
           stop_strings=("<｜end▁of▁sentence｜>",), builtin="deepseek3"),
    Family("llama3", fingerprints=(("<|start_header_id|>", "<|end_header_id|>"),),
           stop_strings=("<|eot_id|>", "<|eom_id|>"), builtin="llama3"),
    Family("gemma", fingerprints=(("<start_of_turn>",),), architectures=("gemma", "gemma2", "gemma3"),
           stop_strings=("<end_of_turn>",), builtin="gemma"),
    Family("phi3", fingerprints=(("<|assistant|>", "<|end|>"),), architectures=("phi3",),
           stop_strings=("<|end|>",), builtin="phi3"),
    Family("zephyr", fingerprints=(("<|user|>", "<|assistant|>", "</s>"), ("<|user|>", "<|endoftext|>")),
           stop_strings=("</s>", "<|endoftext|>"), builtin="zephyr"),
    Family("mistral", fingerprints=(("[INST]",),), stop_strings=("</s>",)),
    Family("qwen", fingerprints=(("<|im_start|>", "<think>"),),
           architectures=("qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe"),
           stop_strings=("<|im_end|>", "<|endoftext|>"), builtin="chatml"),
    Family("chatml", fingerprints=(("<|im_start|>",),), stop_strings=("<|im_end|>",), builtin="chatml"),
)

_BY_NAME = {f.name: f for f in FAMILIES}

# ik built-in format names that are not a family's own name or ``builtin``.
_ALIASES = {"mistral-v1": "mistral", "mistral-v3": "mistral", "mistral-v3-tekken": "mistral",
            "mistral-v7": "mistral", "deepseek3": "deepseek"}


def family(name: str | None) -> Family | None:
    """The family called ``name`` (None for None or an unknown name)."""
    return _BY_NAME.get(name) if name else None


def detect_family(template: str | None, architecture: str | None = None) -> str | None:
    """The family of a template source (or ik built-in name), else of an architecture; None if unknown."""
    if template:
        if template in _BY_NAME:
            return template
        if template in _ALIASES:
            return _ALIASES[template]
        for fam in FAMILIES:
            if any(all(s in template for s in alt) for alt in fam.fingerprints):
                return fam.name
    if architecture:
        for fam in FAMILIES:
            if architecture in fam.architectures:
                return fam.name
    return None


def split_tags(text: str, tags: tuple[str, str], starts_inside: bool) -> tuple[str | None, str]:
    """Split ``<open>thinking<close>answer``; an open tag without a close is thinking in progress.

    A close tag with no open tag before it means the prompt opened the thinking (DeepSeek-R1 and
    Qwen3 templates end the generation prompt with ``<think>``), as does ``starts_inside``.
    """
    open_tag, close_tag = tags
    start = text.find(open_tag)
    end = text.find(close_tag)
    if start != -1 and (end == -1 or start < end):
        before, inner = text[:start], text[start + len(open_tag):]
        end = inner.find(close_tag)
        if end == -1:
            return inner.strip(), before.strip()
        # Text before the open tag is rare (a stray newline); keep it with the answer.
        answer = (before + inner[end + len(close_tag):]).strip()
        return inner[:end].strip(), answer
    if end != -1:
        return text[:end].strip(), text[end + len(close_tag):].strip()
    if starts_inside:
        return text.strip(), ""
    return None, text


# gpt-oss (harmony): <|channel|>NAME<|message|>BODY, ended by <|end|>, <|return|>, <|call|> or the
# end of the text; later messages are introduced by <|start|>assistant.
_CHANNEL = re.compile(r"<\|channel\|>(\w+).*?<\|message\|>(.*?)(?:<\|end\|>|<\|return\|>|<\|call\|>|$)", re.S)


def split_channels(text: str) -> tuple[str | None, str]:
    """Split gpt-oss output: the ``analysis`` channel is thinking, the other channels the answer."""
    found = _CHANNEL.findall(text)
    if not found:
        return None, text
    thinking = [body for name, body in found if name == "analysis"]
    answer = [body for name, body in found if name != "analysis"]
    return ("".join(thinking).strip() if thinking else None), "".join(answer).strip()
