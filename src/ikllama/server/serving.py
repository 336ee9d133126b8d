"""Chat and text completions: request → prompt tokens and sampler → engine → OpenAI-shaped answers.

Streaming answers are Server-Sent Events (``data: {json}``, then ``data: [DONE]``); an error after the
first byte is sent as ``data: {"error": …}``, which OpenAI's client raises as ``APIError``. ``usage``
is sent once, in a final chunk with no choices, and only when ``stream_options.include_usage`` asks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from .. import _tool_calls
from ..chat import split_thinking
from ..json_grammar import json_schema_to_gbnf
from ..llm import _grammar_for
from ..sampling import SamplerConfig
from ..speculative import PromptLookupSession
from .errors import ApiError, error_body
from .jobs import DoneEvent, FinishEvent, TokenEvent
from .protocol import ChatRequest, CompletionRequest, SamplingFields, Speculative
from .toolstream import ToolCallStream

__all__ = ["Serving"]


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class Serving:
    """Turns requests into engine submissions for one served model (see :class:`.state.ServedModel`)."""

    def __init__(self, state: Any):
        self.state = state

    # -- shared ---------------------------------------------------------------------------------------
    def sampling(self, body: SamplingFields, grammar: str | None) -> SamplerConfig:
        model = self.state.model
        bias: dict[int, float] = {}
        for key, value in (body.logit_bias or {}).items():
            try:
                token = int(key)
            except ValueError:
                raise ApiError(400, f"logit_bias key {key!r} is not a token id", "invalid_request_error",
                               "logit_bias") from None
            bias[token] = float(value) if value > -100 else float("-inf")
        seed = body.seed if body.seed is not None else self.state.settings.seed
        config = SamplerConfig(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
                               typical_p=body.typical_p, repeat_penalty=body.repeat_penalty,
                               penalty_last_n=body.repeat_last_n, frequency_penalty=body.frequency_penalty,
                               presence_penalty=body.presence_penalty, mirostat=body.mirostat,
                               mirostat_tau=body.mirostat_tau, mirostat_eta=body.mirostat_eta,
                               dry_multiplier=body.dry_multiplier, xtc_probability=body.xtc_probability,
                               xtc_threshold=body.xtc_threshold, logit_bias=bias,
                               seed=None if seed is None else seed % (1 << 64), grammar=grammar)
        config.validate(model.n_vocab)
        return config

    def grammar(self, body: SamplingFields) -> str | None:
        if body.json_schema is not None:
            if body.grammar is not None or body.response_format is not None:
                raise ApiError(400, "give one of grammar, json_schema and response_format", "invalid_request_error")
            return json_schema_to_gbnf(body.json_schema)
        return _grammar_for(body.response_format, body.grammar)

    def check_request(self, body: SamplingFields, n_prompt: int, max_tokens: int | None) -> None:
        parallel = self.state.parallel
        if body.n > parallel:
            raise ApiError(400, f"n={body.n}: this model decodes at most {parallel} sequences together "
                           "(--parallel)", "invalid_request_error", "n")
        n_ctx = self.state.ctx.n_ctx
        if n_prompt == 0:
            raise ApiError(400, "the prompt is empty", "invalid_request_error", "prompt")
        if n_prompt >= n_ctx:
            raise ApiError(400, f"the prompt is {n_prompt} tokens; this server's context holds {n_ctx} "
                           "(n_ctx), including the answer. Shorten the prompt.", "context_length_exceeded")
        if max_tokens is not None and body.n * max_tokens + n_prompt > n_ctx and body.n > 1:
            raise ApiError(400, f"{body.n} choices of {max_tokens} tokens after a {n_prompt}-token prompt do "
                           f"not fit in n_ctx={n_ctx}", "context_length_exceeded")

    def speculative(self, body: SamplingFields) -> PromptLookupSession | None:
        """The request's prompt-lookup session: its own settings, ``true`` (the server's size, else 8 tokens),
        ``false``, or nothing (the server's ``--prompt-lookup``, off at 0)."""
        spec, default = body.speculative, self.state.settings.prompt_lookup
        if spec is None or spec is True:
            spec = Speculative(n_max=default or 8) if spec or default else None
        if spec is None or spec is False or spec.type == "none":
            return None
        try:
            return PromptLookupSession(spec.n_max, spec.ngram_min, spec.ngram_max, spec.n_min)
        except ValueError as exc:
            raise ApiError(400, f"speculative: {exc}", "invalid_request_error", "speculative") from None

    def stops(self, body: SamplingFields, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
        if len(stop) > 16:
            raise ApiError(400, "at most 16 stop strings", "invalid_request_error", "stop")
        return tuple(s for s in [*stop, *extra] if s)

    def max_tokens(self, value: int | None) -> int | None:
        if value is None or value <= 0:
            return self.state.settings.max_tokens_default
        return value

    def head(self, kind: str) -> dict[str, Any]:
        prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
        return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
                "model": self.state.model_id, "system_fingerprint": self.state.fingerprint}

    @staticmethod
    def usage(done: DoneEvent) -> dict[str, Any]:
        return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": done.cached_tokens}}

    @staticmethod
    def timings(done: DoneEvent) -> dict[str, Any]:
        decoded = max(done.prompt_tokens - done.cached_tokens, 0)
        out = {"prompt_n": decoded, "cache_n": done.cached_tokens, "prompt_ms": done.prompt_seconds * 1e3,
               "predicted_n": done.completion_tokens, "predicted_ms": done.generation_seconds * 1e3,
               "queue_ms": done.queue_seconds * 1e3}
        if done.drafted:
            out.update(draft_n=done.drafted, draft_n_accepted=done.accepted)
        return out

    # -- chat -----------------------------------------------------------------------------------------
    def chat_submission(self, body: ChatRequest) -> tuple[Any, list[dict], bool]:
        state = self.state
        tools = _tool_calls.check_tools(body.tools)
        callable_tools, forced = _tool_calls.chosen_tools(tools, body.tool_choice)
        grammar = self.grammar(body)
        if forced:
            if grammar is not None:
                raise ApiError(400, "a forced tool call cannot be combined with response_format or grammar",
                               "invalid_request_error", "tool_choice")
            grammar = _tool_calls.forced_call_grammar(callable_tools)
        text = state.formatter.format(body.messages, add_generation_prompt=True, tools=callable_tools or None)
        bos = state.formatter.bos_token
        prompt = state.model.tokenize(text, state.model.add_bos and not (bos and text.startswith(bos)), True)
        max_tokens = self.max_tokens(body.max_completion_tokens or body.max_tokens)
        self.check_request(body, len(prompt), max_tokens)
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        sub = state.client.submit(prompt=prompt, sampling=self.sampling(body, grammar), max_tokens=max_tokens,
                                  stop=self.stops(body, state.formatter.stop_strings), n=body.n, logprobs=logprobs,
                                  ignore_eos=body.ignore_eos, speculative=self.speculative(body))
        return sub, callable_tools, bool(body.logprobs)

    @staticmethod
    def _chat_logprob(entry: tuple[str, float, list]) -> dict[str, Any]:
        text, lp, alts = entry
        return {"token": text, "logprob": lp, "bytes": list(text.encode()),
                "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts]}

    async def chat(self, body: ChatRequest) -> dict[str, Any]:
        sub, tools, want_lp = self.chat_submission(body)
        texts = [[] for _ in range(body.n)]
        lps: list[list] = [[] for _ in range(body.n)]
        reasons = ["stop"] * body.n
        done = None
        async for event in sub:
            if isinstance(event, TokenEvent):
                texts[event.index].append(event.text)
                if event.logprob is not None:
                    lps[event.index].append(self._chat_logprob(event.logprob))
            elif isinstance(event, FinishEvent):
                reasons[event.index] = event.reason
            elif isinstance(event, DoneEvent):
                done = event
        choices = []
        for i in range(body.n):
            thinking, content = split_thinking("".join(texts[i]), self.state.formatter)
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                message["reasoning_content"] = thinking
            finish = reasons[i]
            rest, calls = _tool_calls.parse_tool_calls(content, tools) if tools else (content, [])
            if calls:
                message.update(content=rest or None, tool_calls=calls)
                finish = "tool_calls"
            choices.append({"index": i, "message": message, "finish_reason": finish,
                            "logprobs": {"content": lps[i]} if want_lp else None})
        return {**self.head("chat.completion"), "choices": choices, "usage": self.usage(done),
                "timings": self.timings(done)}

    async def chat_stream(self, body: ChatRequest) -> AsyncIterator[bytes]:
        sub, tools, want_lp = self.chat_submission(body)
        return self._chat_events(body, sub, tools, want_lp)

    async def _chat_events(self, body: ChatRequest, sub: Any, tools: list[dict], want_lp: bool) -> AsyncIterator[bytes]:
        head = {**self.head("chat.completion.chunk")}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        extra = {"usage": None} if include_usage else {}

        def chunk(index: int, delta: dict, finish: str | None = None, logprobs: Any = None) -> bytes:
            return sse({**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                             "finish_reason": finish}], **extra})

        streams = [ToolCallStream(tools) for _ in range(body.n)] if tools else None
        try:
            for i in range(body.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            async for event in sub:
                if isinstance(event, TokenEvent):
                    lp = {"content": [self._chat_logprob(event.logprob)]} if event.logprob is not None else None
                    deltas = streams[event.index].feed(event.text) if streams else \
                        ([{"content": event.text}] if event.text else [])
                    if lp and not deltas:
                        deltas = [{"content": ""}]
                    for k, delta in enumerate(deltas):
                        yield chunk(event.index, delta, None, lp if k == 0 else None)
                elif isinstance(event, FinishEvent):
                    finish = event.reason
                    if streams:
                        for delta in streams[event.index].finish():
                            yield chunk(event.index, delta)
                        if streams[event.index].n_calls:
                            finish = "tool_calls"
                    yield chunk(event.index, {}, finish)
                elif isinstance(event, DoneEvent) and include_usage:
                    yield sse({**head, "choices": [], "usage": self.usage(event), "timings": self.timings(event)})
        except ApiError as exc:
            yield sse(error_body(exc.status, exc.message, exc.code))
            return
        yield SSE_DONE

    # -- text completions ---------------------------------------------------------------------------------
    def completion_prompts(self, prompt: Any) -> list[list[int]]:
        """Token lists of the request's prompts: a string, tokens, or a batch of either."""
        model = self.state.model
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise ApiError(400, "the prompt is empty", "invalid_request_error", "prompt")
        out = []
        for item in prompt:
            if isinstance(item, str):
                out.append(model.tokenize(item, True, True))
                continue
            for t in item:
                if not 0 <= t < model.n_vocab:
                    raise ApiError(400, f"prompt token {t} is outside the vocabulary (0..{model.n_vocab - 1})",
                                   "invalid_request_error", "prompt")
            out.append(list(item))
        return out

    def completion_submission(self, body: CompletionRequest) -> tuple[Any, list[list[int]]]:
        """Submit every prompt of the request (choice ``i`` of prompt ``p`` is index ``p * n + i``)."""
        if body.suffix:
            raise ApiError(400, "suffix (fill-in-the-middle) is not supported", "invalid_request_error", "suffix")
        prompts = self.completion_prompts(body.prompt)
        max_tokens = self.max_tokens(body.max_tokens)
        for prompt in prompts:
            self.check_request(body, len(prompt), max_tokens)
        subs = []
        try:
            for prompt in prompts:
                subs.append(self.state.client.submit(
                    prompt=prompt, sampling=self.sampling(body, self.grammar(body)), max_tokens=max_tokens,
                    stop=self.stops(body), n=body.n, logprobs=body.logprobs, ignore_eos=body.ignore_eos,
                    speculative=self.speculative(body)))
        except BaseException:  # all or nothing: a batch refused half-way leaves nothing running
            for sub in subs:
                sub.close()
            raise
        return (subs[0] if len(subs) == 1 else MergedSubmission(subs, body.n)), prompts

    def echo_texts(self, body: CompletionRequest, prompts: list[list[int]]) -> list[str]:
        """The text each choice starts with: its prompt with ``echo``, else nothing."""
        if not body.echo:
            return [""] * (len(prompts) * body.n)
        texts = body.prompt if isinstance(body.prompt, list) and all(isinstance(p, str) for p in body.prompt) \
            else [body.prompt] if isinstance(body.prompt, str) else [self.state.model.detokenize(p) for p in prompts]
        return [text for text in texts for _ in range(body.n)]

    async def completion(self, body: CompletionRequest) -> dict[str, Any]:
        sub, prompts = self.completion_submission(body)
        n = len(prompts) * body.n
        texts = [[echo] for echo in self.echo_texts(body, prompts)]
        lps = [{"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} for _ in range(n)]
        reasons = ["stop"] * n
        done = None
        async for event in sub:
            if isinstance(event, TokenEvent):
                if event.logprob is not None:
                    lp = lps[event.index]
                    lp["text_offset"].append(sum(map(len, texts[event.index])))
                    lp["tokens"].append(event.logprob[0])
                    lp["token_logprobs"].append(event.logprob[1])
                    lp["top_logprobs"].append(dict(event.logprob[2]))
                texts[event.index].append(event.text)
            elif isinstance(event, FinishEvent):
                reasons[event.index] = event.reason
            elif isinstance(event, DoneEvent):
                done = event
        choices = [{"index": i, "text": "".join(texts[i]), "finish_reason": reasons[i],
                    "logprobs": lps[i] if body.logprobs is not None else None} for i in range(n)]
        return {**self.head("text_completion"), "choices": choices, "usage": self.usage(done),
                "timings": self.timings(done)}

    async def completion_stream(self, body: CompletionRequest) -> AsyncIterator[bytes]:
        sub, prompts = self.completion_submission(body)
        return self._completion_events(body, sub, self.echo_texts(body, prompts))

    async def _completion_events(self, body: CompletionRequest, sub: Any, echoes: list[str]) -> AsyncIterator[bytes]:
        head = self.head("text_completion")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        extra = {"usage": None} if include_usage else {}

        def chunk(index: int, text: str, finish: str | None = None, logprobs: Any = None) -> bytes:
            return sse({**head, "choices": [{"index": index, "text": text, "logprobs": logprobs,
                                             "finish_reason": finish}], **extra})

        try:
            for i, echo in enumerate(echoes):
                if echo:
                    yield chunk(i, echo)
            async for event in sub:
                if isinstance(event, TokenEvent):
                    lp = None
                    if event.logprob is not None:
                        lp = {"tokens": [event.logprob[0]], "token_logprobs": [event.logprob[1]],
                              "top_logprobs": [dict(event.logprob[2])], "text_offset": []}
                    if event.text or lp:
                        yield chunk(event.index, event.text, None, lp)
                elif isinstance(event, FinishEvent):
                    yield chunk(event.index, "", event.reason)
                elif isinstance(event, DoneEvent) and include_usage:
                    yield sse({**head, "choices": [], "usage": self.usage(event)})
        except ApiError as exc:
            yield sse(error_body(exc.status, exc.message, exc.code))
            return
        yield SSE_DONE


class MergedSubmission:
    """Several submissions read as one (a batch of prompts): their events with choice indices shifted by
    ``prompt * n``, then one DoneEvent with the totals. Closing it cancels every part."""

    def __init__(self, subs: list[Any], n: int):
        self.subs = subs
        self.n = n

    async def __aiter__(self) -> AsyncIterator[Any]:
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(p: int, sub: Any) -> None:
            try:
                async for event in sub:
                    merged.put_nowait((p, event))
            except ApiError as exc:
                merged.put_nowait((p, exc))

        tasks = [asyncio.ensure_future(pump(p, sub)) for p, sub in enumerate(self.subs)]
        dones: list[DoneEvent] = []
        try:
            while len(dones) < len(self.subs):
                p, event = await merged.get()
                if isinstance(event, ApiError):
                    raise event
                if isinstance(event, DoneEvent):
                    dones.append(event)
                else:
                    yield dataclasses.replace(event, index=p * self.n + event.index)
            yield DoneEvent(*(sum(getattr(d, f) for d in dones) for f in ("prompt_tokens", "cached_tokens",
                                                                           "completion_tokens")),
                            *(max(getattr(d, f) for d in dones) for f in ("queue_seconds", "prompt_seconds",
                                                                           "generation_seconds")),
                            sum(d.drafted for d in dones), sum(d.accepted for d in dones))
        finally:
            for task in tasks:
                task.cancel()
            self.close()

    def close(self) -> None:
        for sub in self.subs:
            sub.close()
