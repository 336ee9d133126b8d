"""``LLM``: the one-object API for people coming from llama-cpp-python, OpenAI-shaped in and out.

It keeps one context and reuses the longest common token prefix between calls (a chat that grows
turn by turn decodes only the new turn). Streams share that context: starting another call ends an
unfinished stream (it stops with what it has). Every option is an explicit keyword: a misspelt one
raises ``TypeError`` instead of being silently ignored.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .answer import Answer
from .batch import Pos
from .chat import DynamicFormatter, Formatter, Message, special_text
from .config import ModelConfig
from .enums import GgmlType, PoolingType
from .inference import SimpleInference, TextStream
from .json_grammar import JSON_GBNF, json_schema_to_gbnf
from .batch import common_prefix
from .sampling import SamplerConfig
from .speculative import SpeculativeSession
from . import _tool_calls

__all__ = ["LLM"]


def _grammar_for(response_format: Mapping[str, Any] | None, grammar: str | None) -> str | None:
    if response_format is None:
        return grammar
    if grammar is not None:
        raise ValueError("give either grammar or response_format, not both")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return json_schema_to_gbnf(schema) if schema else JSON_GBNF
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise ValueError("response_format json_schema needs {'json_schema': {'schema': {...}}}")
        return json_schema_to_gbnf(dict(schema))
    raise ValueError(f"response_format type {kind!r}: use 'text', 'json_object' or 'json_schema'")


class LLM:
    """A model and a context behind llama-cpp-python's ``Llama`` interface (``close()`` or ``with``)."""

    def __init__(self, model_path: str | os.PathLike[str], *, n_ctx: int = 4096, n_batch: int = 512,
                 n_ubatch: int = 512, n_threads: int | None = None, n_threads_batch: int | None = None,
                 n_gpu_layers: int = 0, seed: int | None = None, flash_attn: bool = True,
                 type_k: GgmlType = GgmlType.F16, type_v: GgmlType = GgmlType.F16, chat_format: str | None = None,
                 chat_template: str | None = None, use_mmap: bool = True, use_mlock: bool = False,
                 rpc_servers: Sequence[str] | None = None, embedding: bool = False,
                 pooling: PoolingType | None = None, mtp: bool = False, n_draft: int = 3):
        self.model_path = os.fspath(model_path)
        self.model = ModelConfig(n_gpu_layers=n_gpu_layers, use_mmap=use_mmap, use_mlock=use_mlock,
                                 rpc_servers=rpc_servers, mtp=mtp).load_gguf(model_path)
        self.mtp: Any = None
        try:
            b = self.model.context().with_n_ctx(n_ctx).with_n_batch(n_batch).with_n_ubatch(min(n_ubatch, n_batch))
            if n_threads is not None:
                b = b.with_threads(n_threads, n_threads_batch)
            self.ctx = b.with_flash_attn(flash_attn).with_kv_cache(type_k, type_v).with_seed(seed).with_mtp(mtp).build()
            if mtp:  # the model's own NextN layer drafts for every completion
                from .mtp import MtpSession

                self.mtp = MtpSession(self.model, n_draft_max=n_draft, n_ctx=n_ctx, n_threads=n_threads)
        except BaseException:
            if getattr(self, "ctx", None) is not None:
                self.ctx.close()
            self.model.close()
            raise
        self.seed = seed
        self._embedding_pooling = pooling
        self._embedder: Any = None
        self._stream: Any = None  # the latest TextStream; a new call ends it (the cache is shared)
        self._inference = SimpleInference(self.ctx, speculative=self.mtp)
        if chat_format is not None:
            self.formatter = DynamicFormatter.for_template(chat_format, special_text(self.model, self.model.token_bos),
                                                           special_text(self.model, self.model.token_eos))
        else:
            self.formatter = Formatter.for_model(self.model, chat_template)
        self._name = os.path.basename(self.model_path)

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str, revision: str | None = None, **kwargs: Any) -> LLM:
        """An :class:`LLM` on a GGUF from a Hugging Face repo (:func:`ikllama.modelfile.hf.hf_file`; ``hf`` extra).

        ``filename`` may be a glob naming one model; ``kwargs`` go to :class:`LLM`. Close it as usual.
        """
        from .modelfile.hf import hf_file

        return cls(hf_file(repo_id, filename, revision), **kwargs)

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the context, the embedding context (if any) and the model."""
        self._inference.close()
        if self.mtp is not None:
            self.mtp.close()
        if self._embedder is not None:
            self._embedder.close()
        self.ctx.close()
        self.model.close()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens -----------------------------------------------------------------------------------------
    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (``llama_tokenize``)."""
        return self.model.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The bytes of ``tokens`` (``llama_token_to_piece`` per token, concatenated)."""
        return b"".join(self.model.token_to_piece(t, special) for t in tokens)

    # -- completion ---------------------------------------------------------------------------------------
    def _sampling(self, temperature: float, top_p: float, top_k: int, min_p: float, typical_p: float,
                  repeat_penalty: float, frequency_penalty: float, presence_penalty: float,
                  logit_bias: Mapping[Any, float] | None, seed: int | None, grammar: str | None, mirostat_mode: int,
                  mirostat_tau: float, mirostat_eta: float) -> SamplerConfig:
        bias = {int(k): float(v) for k, v in (logit_bias or {}).items()}
        config = SamplerConfig(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, typical_p=typical_p,
                               repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                               presence_penalty=presence_penalty, logit_bias=bias,
                               seed=self.seed if seed is None else seed, grammar=grammar, mirostat=mirostat_mode,
                               mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta)
        config.validate(self.model.n_vocab)
        return config

    def _prefill(self, tokens: list[int]) -> int:
        """Reuse the cached prefix of ``tokens``; decode the rest. Returns how many were decoded."""
        if not tokens:
            raise ValueError("the prompt is empty")
        if len(tokens) >= self.ctx.n_ctx:
            raise ValueError(f"the prompt is {len(tokens)} tokens; this context holds {self.ctx.n_ctx} (n_ctx)")
        keep = common_prefix(self.ctx.tokens(0), tokens)
        if keep == len(tokens):
            keep -= 1
        self.ctx.truncate(Pos(keep, 0))
        self._inference.prefill(tokens[keep:], 0)
        return len(tokens) - keep

    def _run(self, tokens: list[int], max_tokens: int | None, stop: str | Sequence[str] | None,
             sampling: SamplerConfig, extra_stops: Sequence[str] = (), speculative: Any = None) -> TextStream:
        stops = [stop] if isinstance(stop, str) else list(stop or ())
        if self._stream is not None:  # a stream left unfinished would decode into this call's cache
            self._stream._gen.close()
            self._stream = None
        self._prefill(tokens)
        room = self.ctx.n_ctx - self.ctx.n_past(0)
        limit = room if max_tokens is None or max_tokens <= 0 else min(max_tokens, room)
        self._inference.reset_sampler(0)
        self._stream = self._inference.generate(max(1, limit), 0, stop=[*stops, *extra_stops], sampling=sampling,
                                                stream=True, speculative=speculative)
        return self._stream

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": f"{'chatcmpl' if 'chat' in kind else 'cmpl'}-{uuid.uuid4().hex}", "object": kind,
                "created": int(time.time()), "model": self._name}

    @staticmethod
    def _usage(n_prompt: int, answer: Answer) -> dict[str, int]:
        return {"prompt_tokens": n_prompt, "completion_tokens": len(answer.tokens),
                "total_tokens": n_prompt + len(answer.tokens)}

    def create_completion(self, prompt: str | Sequence[int], *, max_tokens: int | None = 16,
                          temperature: float = 0.8, top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05,
                          typical_p: float = 1.0, stop: str | Sequence[str] | None = None, stream: bool = False,
                          seed: int | None = None, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, logit_bias: Mapping[Any, float] | None = None,
                          grammar: str | None = None, response_format: Mapping[str, Any] | None = None,
                          mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                          echo: bool = False, speculative: SpeculativeSession | None = None,
                          ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """Complete ``prompt`` (text or token ids): an OpenAI ``text_completion`` dict, or its chunks.

        ``max_tokens`` None or <= 0 means "until the context is full"; ``temperature`` 0 is greedy.
        ``speculative`` (prompt lookup, draft model) speeds generation up without changing it.
        """
        sampling = self._sampling(temperature, top_p, top_k, min_p, typical_p, repeat_penalty, frequency_penalty,
                                  presence_penalty, logit_bias, seed, _grammar_for(response_format, grammar),
                                  mirostat_mode, mirostat_tau, mirostat_eta)
        tokens = self.tokenize(prompt, True, True) if isinstance(prompt, str) else [int(t) for t in prompt]
        prefix = "" if not echo else prompt if isinstance(prompt, str) else self.detokenize(tokens).decode(
            "utf-8", "replace")
        s = self._run(tokens, max_tokens, stop, sampling, speculative=speculative)
        head = self._envelope("text_completion")
        if stream:
            return self._completion_chunks(s, head, prefix)
        text = "".join(s)
        answer = s.answer
        return {**head, "choices": [{"text": prefix + text, "index": 0, "logprobs": None,
                                     "finish_reason": answer.finish_reason}],
                "usage": self._usage(len(tokens), answer)}

    @staticmethod
    def _completion_chunks(s: TextStream, head: dict[str, Any], prefix: str) -> Iterator[dict[str, Any]]:
        if prefix:
            yield {**head, "choices": [{"text": prefix, "index": 0, "logprobs": None, "finish_reason": None}]}
        for piece in s:
            yield {**head, "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]}
        yield {**head, "choices": [{"text": "", "index": 0, "logprobs": None,
                                    "finish_reason": s.answer.finish_reason}]}

    def __call__(self, prompt: str, **kwargs: Any) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """Same as :meth:`create_completion`."""
        return self.create_completion(prompt, **kwargs)

    # -- chat ---------------------------------------------------------------------------------------------
    def create_chat_completion(self, messages: Sequence[Mapping[str, Any] | Message], *,
                               tools: Sequence[Mapping[str, Any]] | None = None, tool_choice: Any = None,
                               response_format: Mapping[str, Any] | None = None, max_tokens: int | None = None,
                               temperature: float = 0.8, top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05,
                               typical_p: float = 1.0, stop: str | Sequence[str] | None = None, stream: bool = False,
                               seed: int | None = None, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                               presence_penalty: float = 0.0, logit_bias: Mapping[Any, float] | None = None,
                               grammar: str | None = None, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
                               mirostat_eta: float = 0.1, speculative: SpeculativeSession | None = None,
                               ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """Answer a conversation with the model's chat template: an OpenAI ``chat.completion`` dict or chunks.

        ``tools`` are rendered by the template; with ``tool_choice`` "required" or a named function the
        output is forced into a call by a grammar. Calls found in the output come back as
        ``message.tool_calls`` with ``finish_reason`` "tool_calls".
        """
        all_tools = _tool_calls.check_tools(tools)
        callable_tools, forced = _tool_calls.chosen_tools(all_tools, tool_choice)
        g = _grammar_for(response_format, grammar)
        if forced:
            if g is not None:
                raise ValueError("a forced tool call cannot be combined with response_format or grammar")
            g = _tool_calls.forced_call_grammar(callable_tools)
        sampling = self._sampling(temperature, top_p, top_k, min_p, typical_p, repeat_penalty, frequency_penalty,
                                  presence_penalty, logit_bias, seed, g, mirostat_mode, mirostat_tau, mirostat_eta)
        text = self.formatter.format(list(messages), add_generation_prompt=True, tools=callable_tools or None)
        bos = self.formatter.bos_token
        tokens = self.tokenize(text, self.model.add_bos and not (bos and text.startswith(bos)), True)
        s = self._run(tokens, max_tokens, stop, sampling, self.formatter.stop_strings, speculative)
        head = self._envelope("chat.completion")
        if stream:
            return self._chat_chunks(s, {**head, "object": "chat.completion.chunk"}, callable_tools)
        content = "".join(s)
        answer = s.answer
        thinking, content = self._split(content)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking is not None:
            message["reasoning_content"] = thinking
        finish = answer.finish_reason
        rest, calls = _tool_calls.parse_tool_calls(content, callable_tools)
        if calls:
            message.update(content=rest or None, tool_calls=calls)
            finish = "tool_calls"
        return {**head, "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": self._usage(len(tokens), answer)}

    def _split(self, text: str) -> tuple[str | None, str]:
        from .chat import split_thinking

        return split_thinking(text, self.formatter)

    def _chat_chunks(self, s: TextStream, head: dict[str, Any], tools: list[dict]) -> Iterator[dict[str, Any]]:
        yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                    "finish_reason": None}]}
        parts = []
        for piece in s:
            parts.append(piece)
            if not tools:
                yield {**head, "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                            "finish_reason": None}]}
        finish = s.answer.finish_reason
        if tools:  # a call can only be recognised once complete: send the content at the end
            rest, calls = _tool_calls.parse_tool_calls("".join(parts), tools)
            delta: dict[str, Any] = {"content": rest} if not calls else {
                "tool_calls": [{**c, "index": i} for i, c in enumerate(calls)]}
            if calls:
                finish = "tool_calls"
            yield {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
        yield {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}

    # -- embeddings ---------------------------------------------------------------------------------------
    def embed(self, input: str | Sequence[str], normalize: bool = True) -> list[list[float]]:
        """Pooled embeddings of ``input`` (see :class:`ikllama.embeddings.Embedder`; built on first use)."""
        if self._embedder is None:
            from .embeddings import Embedder

            self._embedder = Embedder(self.model, pooling=self._embedding_pooling, normalize=normalize)
        return self._embedder.embed(input, normalize).tolist()

    def create_embedding(self, input: str | Sequence[str], model: str | None = None) -> dict[str, Any]:
        """OpenAI-shaped embeddings response for ``input``."""
        texts = [input] if isinstance(input, str) else list(input)
        vectors = self.embed(texts)
        n = sum(len(self.tokenize(t)) for t in texts)
        return {"object": "list", "model": model or self._name,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n, "total_tokens": n}}
