"""``Llama.create_completion``: the fast path through :class:`ikllama.LLM` and the per-token path.

The fast path is used when nothing needs a hook between tokens; the per-token path drives
``llama.generate`` (so instance overrides of ``eval`` / ``sample`` / ``generate`` are honoured) and
adds ``logprobs``, ``logits_processor`` and ``stopping_criteria``.
"""

from __future__ import annotations

import codecs
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..batch import common_prefix

if TYPE_CHECKING:
    from .llama import Llama

_HOOKS = ("eval", "sample", "generate")


def native_seed(seed: int) -> int:
    """A seed ik accepts (0 .. 2**32-2) for any int llama-cpp-python takes (-1 and 2**32 included)."""
    return int(seed) % 0xFFFFFFFF


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if s]


def _grammar_text(grammar: Any) -> str | None:
    if grammar is None or isinstance(grammar, str):
        return grammar
    text = getattr(grammar, "_grammar", None)
    if not isinstance(text, str):
        raise TypeError(f"grammar must be a LlamaGrammar or GBNF text, not {type(grammar).__name__}")
    return text


def _prompt_tokens(llama: Llama, prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        if prompt == "":
            return [llama.token_bos()] if llama.token_bos() >= 0 else []
        return llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    if isinstance(prompt, (bytes, bytearray)):
        return llama.tokenize(bytes(prompt), add_bos=True, special=True)
    return [int(t) for t in prompt]


def _use_cache(llama: Llama, tokens: list[int]) -> None:
    """Load the cached state with the longest prefix of ``tokens`` if it beats what the context has."""
    if llama.cache is None:
        return
    try:
        state = llama.cache[tokens]
    except KeyError:
        return
    if common_prefix(state.input_ids.tolist(), tokens) > common_prefix(llama.input_ids.tolist(), tokens):
        llama.load_state(state)


def _store_cache(llama: Llama) -> None:
    if llama.cache is not None and llama.n_tokens:
        llama.cache[llama.input_ids.tolist()] = llama.save_state()


def create_completion(llama: Llama, *, prompt: Any, suffix: str | None, max_tokens: int | None, temperature: float,
                      top_p: float, min_p: float, typical_p: float, logprobs: int | None, echo: bool, stop: Any,
                      frequency_penalty: float, presence_penalty: float, repeat_penalty: float, top_k: int,
                      stream: bool, seed: int | None, tfs_z: float, mirostat_mode: int, mirostat_tau: float,
                      mirostat_eta: float, model: str | None, stopping_criteria: Any, logits_processor: Any,
                      grammar: Any, logit_bias: Any) -> Any:
    llama._need_ctx()
    tokens = _prompt_tokens(llama, prompt)
    if not tokens:
        raise ValueError("the prompt is empty and this model has no BOS token")
    if len(tokens) >= llama.n_ctx():
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {llama.n_ctx()}")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
        raise ValueError(f"logprobs={logprobs!r} must be an int >= 0 (how many alternatives per token) or None")
    stops = _stops(stop)
    room = llama.n_ctx() - len(tokens)
    limit = room if max_tokens is None or max_tokens <= 0 else min(int(max_tokens), room)
    seed = llama._next_seed(seed)
    _use_cache(llama, tokens)
    grammar = _grammar_text(grammar)
    head = {"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": int(time.time()),
            "model": model or llama.model_path}
    hooked = any(h in vars(llama) or getattr(type(llama), h) is not getattr(_base(), h) for h in _HOOKS)
    if logprobs is None and logits_processor is None and stopping_criteria is None and not hooked:
        gen = _fast(llama, tokens, prompt, head, limit, stops, echo, suffix, seed, grammar, logit_bias,
                    temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, typical_p=typical_p,
                    repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                    presence_penalty=presence_penalty, mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
                    mirostat_eta=mirostat_eta)
    else:
        if logit_bias:
            logits_processor = _with_bias(logits_processor, logit_bias, llama.n_vocab())
        from .llama_grammar import LlamaGrammar

        g = None if grammar is None else LlamaGrammar.from_string(grammar, verbose=False)
        gen = _slow(llama, tokens, head, limit, stops, echo, suffix, logprobs, stopping_criteria,
                    dict(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temperature,
                         repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                         presence_penalty=presence_penalty, tfs_z=tfs_z, mirostat_mode=mirostat_mode,
                         mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, logits_processor=logits_processor,
                         grammar=g))
    if stream:
        return _public(gen)
    return _collect(gen, head, len(tokens))


def _base() -> type:
    from .llama import Llama

    return Llama


def _with_bias(processor: Any, bias: dict, n_vocab: int) -> Any:
    ids = np.array([int(k) for k in bias], dtype=np.intp)
    if ids.size and (ids.min() < 0 or ids.max() >= n_vocab):
        raise ValueError(f"logit_bias: token ids must be in 0..{n_vocab - 1}")
    values = np.array([float(v) for v in bias.values()], dtype=np.single)

    def biased(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        scores = processor(input_ids, scores) if processor is not None else scores
        scores[ids] += values
        return scores

    return biased


def _collect(gen: Iterator[dict[str, Any]], head: dict[str, Any], n_prompt: int) -> dict[str, Any]:
    text, finish, lp, n_completion = [], "stop", None, 0
    for chunk in gen:
        choice = chunk["choices"][0]
        text.append(choice["text"])
        finish = choice["finish_reason"] or finish
        if choice["logprobs"] is not None:
            if lp is None:
                lp = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
            for key in lp:
                lp[key].extend(choice["logprobs"][key])
        n_completion = chunk.pop("_n", n_completion)
    return {**head, "choices": [{"text": "".join(text), "index": 0, "logprobs": lp, "finish_reason": finish}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                      "total_tokens": n_prompt + n_completion}}


def _public(gen: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for chunk in gen:
        chunk.pop("_n", None)
        yield chunk


def _chunk(head: dict[str, Any], text: str, finish: str | None, logprobs: Any = None, **extra: Any) -> dict:
    return {**head, "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}], **extra}


def _fast(llama: Llama, tokens: list[int], prompt: Any, head: dict[str, Any], limit: int, stops: list[str],
          echo: bool, suffix: str | None, seed: int, grammar: str | None, logit_bias: Any,
          **sampling: Any) -> Iterator[dict[str, Any]]:
    from ..llm import LLM

    llm: LLM = llama._llm
    config = llm._sampling(sampling["temperature"], sampling["top_p"], sampling["top_k"], sampling["min_p"],
                           sampling["typical_p"], sampling["repeat_penalty"], sampling["frequency_penalty"],
                           sampling["presence_penalty"], logit_bias, native_seed(seed), grammar,
                           sampling["mirostat_mode"], sampling["mirostat_tau"], sampling["mirostat_eta"])
    speculative = _speculative(llama)
    s = llm._run(tokens, max(1, limit), stops, config, speculative=speculative)
    llama._last_row = -1  # the LLM loop owns the logits rows now

    def chunks() -> Iterator[dict[str, Any]]:
        if echo:
            yield _chunk(head, prompt if isinstance(prompt, str) else llama.detokenize(tokens).decode(
                "utf-8", "replace"), None)
        for piece in s:
            if piece:
                yield _chunk(head, piece, None)
        answer = s.answer
        if suffix:
            yield _chunk(head, suffix, None)
        _store_cache(llama)
        finish = "length" if answer.finish_reason in ("length", "context") else "stop"
        yield _chunk(head, "", finish, _n=len(answer.tokens))

    return chunks()


def _speculative(llama: Llama) -> Any:
    from .llama_speculative import LlamaPromptLookupDecoding

    d = llama.draft_model
    if d is None:
        return None
    if isinstance(d, LlamaPromptLookupDecoding):
        from ..speculative import PromptLookupSession

        n = max(1, d.max_ngram_size)
        return PromptLookupSession(n_draft_max=max(1, d.num_pred_tokens), ngram_min=min(2, n), ngram_max=n)
    return None


def _log_softmax(row: np.ndarray) -> np.ndarray:
    m = float(row.max())
    z = row - m
    return z - np.log(np.exp(z).sum())


def _slow(llama: Llama, tokens: list[int], head: dict[str, Any], limit: int, stops: list[str], echo: bool,
          suffix: str | None, logprobs: int | None, stopping_criteria: Any,
          sampling: dict[str, Any]) -> Iterator[dict[str, Any]]:
    prompt_text = llama.detokenize(tokens).decode("utf-8", "replace")

    def chunks() -> Iterator[dict[str, Any]]:
        offset = 0
        if echo:
            lp = None
            if logprobs is not None:
                lp = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
                for i, t in enumerate(tokens):
                    piece = llama.detokenize([t]).decode("utf-8", "replace")
                    lp["tokens"].append(piece)
                    lp["text_offset"].append(offset)
                    lp["token_logprobs"].append(None)
                    lp["top_logprobs"].append(None)
                    offset += len(piece)
            yield _chunk(head, prompt_text, None, lp)
            offset = len(prompt_text)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = ""  # decoded completion text not yet sent
        sent = 0   # characters of the completion already sent
        done = ""  # the whole completion text so far
        pending: list[tuple[str, float, dict[str, float] | None]] = []  # logprob entries not yet sent
        finish = "stop"
        n = 0
        gen = llama.generate(tokens, stopping_criteria=stopping_criteria, **sampling)
        try:
            for token in gen:
                if llama._model.is_eog(token):
                    finish = "stop"
                    break
                n += 1
                row = llama.scores[llama.n_tokens - 1] if logprobs is not None else None
                piece = decoder.decode(llama._model.token_to_piece(token, False))
                done += piece
                if logprobs is not None:
                    lps = _log_softmax(row.astype(np.float64))
                    top = None
                    if logprobs:
                        best = np.argsort(-lps)[:logprobs]
                        top = {llama.detokenize([int(i)]).decode("utf-8", "replace"): float(lps[i]) for i in best}
                        top[llama.detokenize([token]).decode("utf-8", "replace")] = float(lps[token])
                    pending.append((llama.detokenize([token]).decode("utf-8", "replace"), float(lps[token]), top))
                hits = [i for i in (done.find(s) for s in stops) if i >= 0]
                if hits:
                    hit = min(hits)
                    text = done[sent:hit]
                    finish = "stop"
                    break
                hold = max((k for s in stops for k in range(1, len(s)) if done.endswith(s[:k])), default=0)
                ready = len(done) - hold
                if ready > sent:
                    out = done[sent:ready]
                    yield _chunk(head, out, None, _lp(pending, offset))
                    offset += len(out)
                    sent = ready
                    pending = []
                if n >= limit:
                    finish = "length"
                    text = done[sent:]
                    break
            else:
                text = done[sent:]
                finish = "length" if llama.n_tokens >= llama.n_ctx() else "stop"
        finally:
            gen.close()
        if text:
            yield _chunk(head, text, None, _lp(pending, offset))
            pending = []
        if suffix:
            yield _chunk(head, suffix, None)
        _store_cache(llama)
        yield _chunk(head, "", finish, _n=n)

    return chunks()


def _lp(pending: list[tuple[str, float, Any]], offset: int) -> dict[str, list] | None:
    if not pending:
        return None
    out: dict[str, list] = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
    for piece, logprob, top in pending:
        out["tokens"].append(piece)
        out["text_offset"].append(offset)
        out["token_logprobs"].append(logprob)
        out["top_logprobs"].append(top)
        offset += len(piece)
    return out
