"""``Llama``: llama-cpp-python's high-level class on top of :class:`ikllama.LLM`.

Plain completions and chats go through ``LLM`` (its generation loop, prefix reuse and stop
handling); calls that need per-token hooks (``logprobs``, ``logits_processor``,
``stopping_criteria``, or ``eval`` / ``sample`` / ``generate`` overridden on the instance) run the
llama-cpp-python style loop in :mod:`ikllama.compat._completion`, built on :meth:`Llama.eval` and
:meth:`Llama.sample`. Both keep one KV cache, so ``n_tokens`` and ``input_ids`` always describe it.
"""

from __future__ import annotations

import logging
import os
import random
from types import SimpleNamespace
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np

from ..batch import Pos, common_prefix
from ..config import ModelConfig
from ..enums import GgmlType, PoolingType
from ..sampling import Sampler, SamplerConfig
from . import _completion, _chat
from ._completion import native_seed
from .llama_grammar import LlamaGrammar
from .llama_cache import BaseLlamaCache, LlamaState
from .llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

__all__ = ["Llama", "LlamaState", "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria",
           "StoppingCriteriaList"]

logger = logging.getLogger("ikllama.compat")

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]
StoppingCriteria = Callable[[np.ndarray, np.ndarray], bool]


class LogitsProcessorList(list):
    """A list of ``f(input_ids, scores) -> scores`` applied in order (llama-cpp-python's)."""

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class StoppingCriteriaList(list):
    """A list of ``f(input_ids, logits) -> bool``; generation stops when any returns True."""

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> bool:
        return any(criterion(input_ids, logits) for criterion in self)


# llama-cpp-python keywords with no ik counterpart here: accepted, and logged when not at their default.
_IGNORED = {"rope_scaling_type": -1, "rope_freq_base": 0.0, "rope_freq_scale": 0.0, "yarn_ext_factor": -1.0,
            "yarn_attn_factor": 1.0, "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0, "yarn_orig_ctx": 0,
            "op_offload": None, "swa_full": None, "no_perf": False, "numa": False, "tokenizer": None,
            "spm_infill": False, "lora_base": None, "lora_scale": 1.0, "kv_overrides": None, "n_parts": None,
            "f16_kv": None, "split_mode": 1, "main_gpu": 0, "tensor_split": None, "offload_kqv": True}
_TYPES = {"f32": GgmlType.F32, "f16": GgmlType.F16, "bf16": GgmlType.BF16, "q8_0": GgmlType.Q8_0,
          "q4_0": GgmlType.Q4_0, "q4_1": GgmlType.Q4_1, "q5_0": GgmlType.Q5_0, "q5_1": GgmlType.Q5_1}


def _kv_type(value: Any, name: str) -> GgmlType:
    if value is None:
        return GgmlType.F16
    if isinstance(value, str):
        if value.lower() not in _TYPES:
            raise ValueError(f"{name}={value!r}: use one of {', '.join(_TYPES)} or a GGML_TYPE_* number")
        return _TYPES[value.lower()]
    return GgmlType(int(value))


class Llama:
    """llama-cpp-python's ``Llama`` (0.3.x keywords), backed by ik_llama.cpp.

    Owns an :class:`ikllama.LLM` (model + one context), freed by ``close()`` or ``with``. Keywords
    ik has no counterpart for (``n_parts``, ``f16_kv``, ``lora_*``, ``numa``, ``yarn_*``, ...) are
    accepted and ignored with a debug log; ``vocab_only=True`` loads only the vocabulary (tokenize,
    detokenize, token ids) and builds no context.
    """

    def __init__(self, model_path: str, *, n_gpu_layers: int = 0, split_mode: int = 1, main_gpu: int = 0,
                 tensor_split: Sequence[float] | None = None, rpc_servers: str | None = None,
                 vocab_only: bool = False, use_mmap: bool = True, use_mlock: bool = False,
                 kv_overrides: dict[str, Any] | None = None, seed: int = LLAMA_DEFAULT_SEED, n_ctx: int = 512,
                 n_batch: int = 512, n_ubatch: int = 512, n_threads: int | None = None,
                 n_threads_batch: int | None = None, rope_scaling_type: int | None = -1, pooling_type: int = -1,
                 rope_freq_base: float = 0.0, rope_freq_scale: float = 0.0, yarn_ext_factor: float = -1.0,
                 yarn_attn_factor: float = 1.0, yarn_beta_fast: float = 32.0, yarn_beta_slow: float = 1.0,
                 yarn_orig_ctx: int = 0, logits_all: bool = False, embedding: bool = False,
                 offload_kqv: bool = True, flash_attn: bool = False, op_offload: bool | None = None,
                 swa_full: bool | None = None, no_perf: bool = False, last_n_tokens_size: int = 64,
                 lora_base: str | None = None, lora_scale: float = 1.0, lora_path: str | None = None,
                 numa: Any = False, chat_format: str | None = None, chat_handler: Any = None,
                 draft_model: LlamaDraftModel | None = None, tokenizer: Any = None, type_k: Any = None,
                 type_v: Any = None, spm_infill: bool = False, verbose: bool = True, **kwargs: Any):
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        if lora_path is not None:
            raise ValueError("lora_path: LoRA adapters are not supported by ikllama.compat yet; merge the adapter "
                             "into the GGUF (llama-export-lora) and load that file")
        given = {**locals(), **kwargs}
        for key, default in _IGNORED.items():
            if key in given and given[key] != default:
                logger.info("Llama(%s=%r) is ignored by ikllama.compat (the GGUF's / ik's value applies)",
                            key, given[key])
        for key in kwargs:
            if key not in _IGNORED:
                logger.debug("Llama(%s=...) is not a keyword ikllama.compat uses", key)
        self._seed = seed
        # attribute access like llama-cpp-python's ctypes structs (integrations read context_params.n_ctx)
        self.context_params = SimpleNamespace(n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch, seed=seed,
                                              n_threads=n_threads, n_threads_batch=n_threads_batch,
                                              logits_all=logits_all, embeddings=embedding, flash_attn=flash_attn)
        self.model_params = SimpleNamespace(n_gpu_layers=n_gpu_layers, vocab_only=vocab_only, use_mmap=use_mmap,
                                            use_mlock=use_mlock, main_gpu=main_gpu, split_mode=split_mode)
        self._logits_all = logits_all
        self._embedding = embedding
        self._pooling = None if pooling_type in (-1, None) else PoolingType(pooling_type)
        self.draft_model = draft_model
        self.chat_format = chat_format
        self.chat_handler = chat_handler
        self.cache: BaseLlamaCache | None = None
        self.lora_base, self.lora_path, self.lora_scale = lora_base, lora_path, lora_scale
        self.last_n_tokens_size = last_n_tokens_size
        self._llm: Any = None
        self._embedder: Any = None
        self._sampler: Sampler | None = None
        self._sampler_key: str | None = None
        self._scores: np.ndarray | None = None
        self._last_row = -1
        servers = [s for s in rpc_servers.split(",") if s] if isinstance(rpc_servers, str) else rpc_servers
        if vocab_only:
            self._model = ModelConfig(vocab_only=True, use_mmap=use_mmap, kv_overrides=kv_overrides or {}).load_gguf(
                self.model_path)
            self._n_ctx = n_ctx or self._model.n_ctx_train
        else:
            from ..llm import LLM

            probe = n_ctx
            if not n_ctx:  # 0: the model's training context, as llama-cpp-python does
                with ModelConfig(vocab_only=True).load_gguf(self.model_path) as m:
                    probe = m.n_ctx_train
            self._llm = LLM(self.model_path, n_ctx=probe, n_batch=min(n_batch, probe),
                            n_ubatch=min(n_ubatch, n_batch, probe), n_threads=n_threads,
                            n_threads_batch=n_threads_batch, n_gpu_layers=n_gpu_layers,
                            seed=None if seed in (-1, LLAMA_DEFAULT_SEED) else native_seed(seed), flash_attn=flash_attn,
                            type_k=_kv_type(type_k, "type_k"), type_v=_kv_type(type_v, "type_v"),
                            use_mmap=use_mmap, use_mlock=use_mlock, rpc_servers=servers, embedding=embedding,
                            pooling=self._pooling)
            self._model = self._llm.model
            self._n_ctx = self._llm.ctx.n_ctx
            self.context_params.n_ctx = self._n_ctx
            self.context_params.n_batch = self._llm.ctx.n_batch
            self._llm._name = self.model_path
        self.n_batch = min(n_batch, self._n_ctx)
        self._n_vocab = self._model.n_vocab
        self.metadata = dict(self._model.metadata)
        self._chat_handlers: dict[str, Any] = {}

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the sampler, the embedding context, the context and the model (``llama_free`` & co.)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._llm is not None:
            self._llm.close()
        elif not self._model.closed:
            self._model.close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need_ctx(self) -> Any:
        if self._llm is None:
            raise RuntimeError("this Llama was loaded with vocab_only=True: it has no context to run; load it "
                               "without vocab_only")
        return self._llm.ctx

    # -- model facts ------------------------------------------------------------------------------------
    def n_ctx(self) -> int:
        """Context size in tokens (``llama_n_ctx``)."""
        return self._n_ctx

    def n_vocab(self) -> int:
        """Vocabulary size (``llama_n_vocab``)."""
        return self._n_vocab

    def n_embd(self) -> int:
        """Embedding width (``llama_n_embd``)."""
        return self._model.n_embd

    def token_bos(self) -> int:
        """Beginning-of-sequence token id, -1 if none (``llama_token_bos``)."""
        t = self._model.token_bos
        return -1 if t is None else t

    def token_eos(self) -> int:
        """End-of-sequence token id, -1 if none (``llama_token_eos``)."""
        t = self._model.token_eos
        return -1 if t is None else t

    def token_nl(self) -> int:
        """Newline token id (``llama_token_nl``)."""
        t = self._model.token_nl
        return -1 if t is None else t

    @property
    def tokenizer_(self) -> Any:
        from .llama_tokenizer import LlamaTokenizer

        return LlamaTokenizer(self)

    def tokenizer(self) -> Any:
        """A :class:`~ikllama.compat.llama_tokenizer.LlamaTokenizer` over this model's vocabulary."""
        return self.tokenizer_

    # -- tokens -----------------------------------------------------------------------------------------
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text`` (UTF-8 bytes; a str is accepted) via ``llama_tokenize``.

        ``add_bos`` adds the model's BOS when the model uses one; the text is tokenized as given
        (SentencePiece vocabularies add their own leading space, as in llama-cpp-python).
        """
        if not isinstance(text, (bytes, bytearray, str)):
            raise TypeError(f"tokenize() takes bytes (or str), not {type(text).__name__}")
        return self._model.tokenize(bytes(text) if not isinstance(text, str) else text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        """Bytes of ``tokens`` (``llama_token_to_piece`` per token); the leading space a SentencePiece
        vocabulary puts after BOS is removed, as llama-cpp-python does. ``prev_tokens`` is accepted for
        compatibility (the pieces do not depend on it here)."""
        tokens = [int(t) for t in tokens]
        for t in tokens:
            self._model.check_token(t)
        out = b"".join(self._model.token_to_piece(t, special) for t in tokens)
        if tokens and tokens[0] == self.token_bos() and out[:1] == b" ":
            return out[1:]
        return out

    # -- low-level loop ---------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Tokens in the KV cache (what ``eval`` has decoded and ``input_ids`` lists)."""
        return 0 if self._llm is None else self._llm.ctx.n_past(0)

    @n_tokens.setter
    def n_tokens(self, n: int) -> None:
        ctx = self._need_ctx()
        if n < 0:
            raise ValueError(f"n_tokens={n} must be >= 0")
        if n < ctx.n_past(0):
            ctx.truncate(Pos(int(n), 0))

    @property
    def input_ids(self) -> np.ndarray:
        """The token ids in the cache, an ``intc`` array of length ``n_tokens`` (a fresh copy)."""
        return np.array([] if self._llm is None else self._llm.ctx.tokens(0), dtype=np.intc)

    @property
    def _input_ids(self) -> np.ndarray:
        return self.input_ids

    @property
    def scores(self) -> np.ndarray:
        """Logits rows by cache position, shape ``(n_ctx, n_vocab)`` (rows written by ``eval``; every
        row with ``logits_all=True``, else only each batch's last)."""
        if self._scores is None:
            self._scores = np.zeros((self._n_ctx, self._n_vocab), dtype=np.single)  # pages stay lazy
        return self._scores

    @property
    def _scores_view(self) -> np.ndarray:
        return self.scores[: self.n_tokens, :]

    def reset(self) -> None:
        """Forget the cache contents (``n_tokens = 0``)."""
        if self._llm is not None:
            self.n_tokens = 0

    def eval(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` after ``n_tokens`` in ``n_batch`` chunks (``llama_decode``); their logits
        land in ``scores`` (the last row of each chunk, or every row with ``logits_all``)."""
        ctx = self._need_ctx()
        tokens = [int(t) for t in tokens]
        start = ctx.n_past(0)
        if start + len(tokens) > self._n_ctx:
            raise ValueError(f"eval: {start} + {len(tokens)} tokens do not fit in n_ctx={self._n_ctx}; call reset() "
                             "or make a Llama with a larger n_ctx")
        scores = self.scores
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i:i + self.n_batch]
            batch = ctx.new_batch(len(chunk))
            last = len(chunk) - 1
            for k, t in enumerate(chunk):
                batch.add(t, Pos(start + i + k, 0), logits=self._logits_all or k == last)
            ctx.decode(batch)
            rows = range(len(chunk)) if self._logits_all else (last,)
            for r in rows:
                scores[start + i + r] = ctx.logits(r, copy=False)
            self._last_row = last
        self._llm._inference._ready.pop(0, None)

    def _sampler_for(self, config: SamplerConfig) -> Sampler:
        key = repr(config)
        if self._sampler is None or key != self._sampler_key:
            if self._sampler is not None:
                self._sampler.close()
            self._sampler = Sampler.create(config, self._model)
            self._sampler_key = key
        return self._sampler

    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, tfs_z: float = 1.0, mirostat_mode: int = 0, mirostat_eta: float = 0.1,
               mirostat_tau: float = 5.0, penalize_nl: bool = True, logits_processor: Any = None,
               grammar: LlamaGrammar | None = None, idx: int | None = None) -> int:
        """Sample the next token from the last ``eval``'s logits (``ikl_sampler_next``).

        ``logits_processor`` edits a copy of the logits, which is written back before sampling.
        The sampler (and its penalty / grammar history) is kept while the settings stay the same.
        """
        ctx = self._need_ctx()
        n = ctx.n_past(0)
        if n == 0 or self._last_row < 0:
            raise ValueError("sample(): nothing evaluated yet; call eval(tokens) first")
        if logits_processor is not None:
            logits = logits_processor(self.input_ids, self.scores[n - 1].copy())
            ctx.logits(self._last_row, copy=False)[:] = np.asarray(logits, dtype=np.single)
        config = SamplerConfig(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                               tfs_z=tfs_z, repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                               presence_penalty=presence_penalty, mirostat=mirostat_mode, mirostat_tau=mirostat_tau,
                               mirostat_eta=mirostat_eta, seed=native_seed(self._seed),
                               grammar=None if grammar is None else grammar._grammar,
                               penalty_last_n=self.last_n_tokens_size)
        return self._sampler_for(config).sample(ctx, self._last_row)

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, tfs_z: float = 1.0,
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                 penalize_nl: bool = True, logits_processor: Any = None, stopping_criteria: Any = None,
                 grammar: LlamaGrammar | None = None) -> Iterator[int]:
        """Lazily yield sampled tokens after ``tokens``, reusing the longest cached prefix when ``reset``.

        Calls ``self.eval`` and ``self.sample`` (overrides on the instance are honoured); a value sent
        into the generator is appended after the yielded token. Stops when ``stopping_criteria`` says so
        or the context is full; the caller stops at end-of-sequence.
        """
        ctx = self._need_ctx()
        tokens = [int(t) for t in tokens]
        if reset and self.n_tokens > 0:
            keep = common_prefix(ctx.tokens(0), tokens)
            if keep == len(tokens):
                keep -= 1
            self.n_tokens = keep
            tokens = tokens[keep:]
        elif reset:
            self.reset()
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        while True:
            self.eval(tokens)
            token = self.sample(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                                repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                                presence_penalty=presence_penalty, tfs_z=tfs_z, mirostat_mode=mirostat_mode,
                                mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, penalize_nl=penalize_nl,
                                logits_processor=logits_processor, grammar=grammar)
            if stopping_criteria is not None and stopping_criteria(self.input_ids, self.scores[self.n_tokens - 1]):
                return
            sent = yield token
            tokens = [token, *(sent or ())]
            if self.n_tokens + len(tokens) > self._n_ctx:
                return

    # -- state ------------------------------------------------------------------------------------------
    def save_state(self) -> LlamaState:
        """Snapshot the cache, its tokens, the last logits and the seed (``llama_state_get_data``)."""
        ctx = self._need_ctx()
        n = ctx.n_past(0)
        data = ctx.dump()
        last = self.scores[n - 1].copy() if n else np.zeros(self._n_vocab, dtype=np.single)
        return LlamaState(input_ids=self.input_ids, scores=last.reshape(1, -1), n_tokens=n, llama_state=data,
                          llama_state_size=len(data), seed=self._seed)

    def load_state(self, state: LlamaState) -> None:
        """Restore a :meth:`save_state` snapshot (``llama_state_set_data``), also into another
        ``Llama`` of the same model file."""
        ctx = self._need_ctx()
        ctx.restore(state.llama_state)
        self._llm._inference.reset_sampler()
        self._llm._inference._ready.pop(0, None)
        self._seed = state.seed
        if state.n_tokens:
            self.scores[state.n_tokens - 1] = state.scores[-1]
            self._last_row = -1  # the native logits are gone: eval() again before sample()

    def set_cache(self, cache: BaseLlamaCache | None) -> None:
        """Use ``cache`` (e.g. :class:`LlamaRAMCache`) for prompt prefixes across calls."""
        self.cache = cache

    def set_seed(self, seed: int) -> None:
        """Seed for the next sampling (llama-cpp-python chains it from call to call)."""
        self._seed = int(seed)

    def _next_seed(self, seed: int | None) -> int:
        if seed is not None:
            self.set_seed(seed)
        else:  # llama-cpp-python's chain: each call without a seed derives the next from the last
            self.set_seed(random.Random(self._seed).randint(0, 2 ** 32))
        return self._seed

    # -- high level -------------------------------------------------------------------------------------
    def create_completion(self, prompt: str | list[int], suffix: str | None = None, max_tokens: int | None = 16,
                          temperature: float = 0.8, top_p: float = 0.95, min_p: float = 0.05,
                          typical_p: float = 1.0, logprobs: int | None = None, echo: bool = False,
                          stop: str | list[str] | None = None, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, repeat_penalty: float = 1.0, top_k: int = 40,
                          stream: bool = False, seed: int | None = None, tfs_z: float = 1.0, mirostat_mode: int = 0,
                          mirostat_tau: float = 5.0, mirostat_eta: float = 0.1, model: str | None = None,
                          stopping_criteria: Any = None, logits_processor: Any = None, grammar: Any = None,
                          logit_bias: dict[int, float] | None = None) -> Any:
        """OpenAI ``text_completion`` dict (or, with ``stream``, an iterator of chunks) for ``prompt``.

        ``max_tokens`` None or <= 0: until the context is full. ``finish_reason`` is "stop" (end of
        sequence, a stop string, a stopping criterion) or "length". ``logprobs`` adds llama-cpp-python's
        ``{"tokens", "text_offset", "token_logprobs", "top_logprobs"}``.
        """
        return _completion.create_completion(self, **_locals_but_self(locals()))

    def __call__(self, prompt: str | list[int], *args: Any, **kwargs: Any) -> Any:
        """Same as :meth:`create_completion` (same positional order)."""
        return self.create_completion(prompt, *args, **kwargs)

    def create_chat_completion(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """OpenAI ``chat.completion`` dict (or chunks) for ``messages``; see :mod:`ikllama.compat._chat`
        for the keywords (llama-cpp-python's: functions, tools, tool_choice, response_format,
        logprobs, top_logprobs, stop, stream, seed, max_tokens and the sampling settings)."""
        return _chat.create_chat_completion(self, messages, **kwargs)

    def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any) -> Any:
        """Raises: the ``openai`` package's types are not used by ikllama.compat."""
        raise AttributeError("create_chat_completion_openai_v1 is not provided; call create_chat_completion")

    # -- embeddings -------------------------------------------------------------------------------------
    def embed(self, input: str | list[str], normalize: bool = False, truncate: bool = True,
              return_count: bool = False) -> Any:
        """Pooled embeddings (``llama_get_embeddings_seq`` through :class:`ikllama.Embedder`): one list
        of floats for a str, a list of them for a list; with ``return_count`` also the token count."""
        if not self._embedding:
            raise RuntimeError("Llama model must be created with embedding=True to call this method")
        if self._embedder is None:
            from ..embeddings import Embedder

            self._embedder = Embedder(self._model, pooling=self._pooling, normalize=False,
                                      n_ctx=max(self._n_ctx, 64))
        texts = [input] if isinstance(input, str) else list(input)
        vectors = self._embedder.embed(texts, normalize, truncate=truncate).tolist()
        count = sum(min(len(self.tokenize(t.encode("utf-8"))), self._embedder.max_tokens) for t in texts)
        out = vectors[0] if isinstance(input, str) else vectors
        return (out, count) if return_count else out

    def create_embedding(self, input: str | list[str], model: str | None = None) -> dict[str, Any]:
        """OpenAI ``list`` of ``embedding`` objects for ``input`` with ``usage``."""
        texts = [input] if isinstance(input, str) else list(input)
        vectors, count = self.embed(texts, return_count=True)
        return {"object": "list", "model": model or self.model_path,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": count, "total_tokens": count}}

    # -- loading helpers --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str | None = None, local_dir: str | None = None,
                        cache_dir: str | None = None, **kwargs: Any) -> Llama:
        """Download ``filename`` (a glob allowed) from the Hugging Face repo ``repo_id`` and load it.

        Needs ``huggingface_hub``; split GGUFs (``-00001-of-0000N``) fetch every part.
        """
        import fnmatch

        try:
            from huggingface_hub import HfFileSystem, hf_hub_download
        except ImportError:
            raise ImportError("Llama.from_pretrained needs huggingface_hub: pip install huggingface_hub") from None
        files = [p.split("/", 2)[-1] for p in HfFileSystem().ls(repo_id, detail=False)]
        matches = sorted(f for f in files if fnmatch.fnmatch(f, filename or "*.gguf"))
        if not matches:
            raise ValueError(f"no file in {repo_id} matches {filename!r}; files: {files}")
        first = matches[0]
        parts = [f for f in matches if "-of-" in f] or [first]
        paths = [hf_hub_download(repo_id, f, local_dir=local_dir, cache_dir=cache_dir) for f in parts]
        return cls(model_path=paths[0], **kwargs)

    def __repr__(self) -> str:
        return f"<ikllama.compat.Llama {os.path.basename(self.model_path)} n_ctx={self._n_ctx}>"


def _locals_but_self(scope: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scope.items() if k != "self"}
