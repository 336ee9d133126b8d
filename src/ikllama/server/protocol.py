"""Request bodies, as pydantic models: OpenAI's fields plus llama.cpp's sampling extensions.

Unknown fields are accepted and ignored (OpenAI clients send new ones all the time); a field of the
wrong type or out of range is a 400 naming it (see :mod:`.errors`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SamplingFields", "ChatRequest", "CompletionRequest", "EmbeddingRequest", "NativeCompletionRequest",
           "TokenizeRequest", "DetokenizeRequest", "StreamOptions", "SlotActionRequest", "Speculative"]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class Speculative(BaseModel):
    """Prompt-lookup speculation for one request: drafts come from earlier n-grams of its own tokens and
    are verified in the same step; the output is what plain decoding gives (see :mod:`ikllama.speculative`)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["prompt_lookup", "none"] = "prompt_lookup"
    n_max: int = Field(8, ge=1, le=64, description="most tokens drafted per step")
    n_min: int = Field(1, ge=1, le=64, description="shorter drafts are not verified")
    ngram_min: int = Field(2, ge=1, le=16)
    ngram_max: int = Field(4, ge=1, le=16)


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions (llama.cpp's names for the extensions)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0, le=100)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0, le=1)
    typical_p: float = Field(1.0, gt=0, le=1)
    repeat_penalty: float = Field(1.0, gt=0)
    repeat_last_n: int = Field(64, ge=0)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    mirostat: Literal[0, 1, 2] = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    dry_multiplier: float = Field(0.0, ge=0)
    xtc_probability: float = Field(0.0, ge=0, le=1)
    xtc_threshold: float = Field(0.1, ge=0, le=1)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    ignore_eos: bool = False
    user: str | None = None
    speculative: Speculative | bool | None = Field(None, description="prompt lookup for this request: true, "
                                                   "false, or its settings (default: the server's --prompt-lookup)")


class ChatRequest(SamplingFields):
    messages: list[dict[str, Any]] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None


class NativeCompletionRequest(SamplingFields):
    """llama.cpp's ``/completion``: ``n_predict`` instead of ``max_tokens``; prompt text or tokens."""

    prompt: str | list[int]
    n_predict: int = Field(-1, ge=-1)
    n_probs: int = Field(0, ge=0, le=20)
    cache_prompt: bool = True


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    content: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    tokens: list[int]


class SlotActionRequest(BaseModel):
    """``POST /slots/{id}?action=save|restore|erase``: the file, a bare name inside ``--slot-save-path``."""

    model_config = ConfigDict(extra="allow")
    filename: str | None = None
