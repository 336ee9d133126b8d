"""``SamplerConfig`` and ``Sampler``: token selection that runs entirely in C, one sampler per sequence.

ik has only the old ``llama_sample_*`` functions, which work on a candidate array the caller fills
from the logits. Filling it from Python costs milliseconds per token, so ``_csrc/ikl_sampler.c`` does
the whole pipeline in one call, in this order:

1. logit bias, 2. repetition / frequency / presence penalties over the last ``penalty_last_n``
tokens, 3. DRY, then
4. greedy (``temperature <= 0``), or mirostat v1/v2, or the queue ``order`` (default: top-k,
   tail-free, typical, top-p, min-p, XTC, top-n-sigma, temperature or dynamic temperature),
   followed by adaptive-p when ``adaptive_target >= 0``; then one draw from the sampler's own RNG.
5. A grammar is checked on the drawn token; when it rejects it, the pipeline reruns with the grammar
   masking every candidate (what ik's own common sampler does; it keeps sampling fast).

Each sampler has its own seeded RNG (xoshiro256**), so the same seed gives the same text even
when other sequences are sampled from the same context in between.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _log
from ._handle import NativeHandle
from ._lib import ffi, lib
from .errors import ClosedError, DecodeError, with_native

if TYPE_CHECKING:
    from .context import Context
    from .model import Model

__all__ = ["SamplerConfig", "Sampler", "GrammarError", "DEFAULT_ORDER"]

_STAGES = {"top_k": lib.IKL_TOP_K, "tfs_z": lib.IKL_TFS_Z, "typical_p": lib.IKL_TYPICAL, "top_p": lib.IKL_TOP_P,
           "min_p": lib.IKL_MIN_P, "xtc": lib.IKL_XTC, "top_n_sigma": lib.IKL_TOP_N_SIGMA,
           "temperature": lib.IKL_TEMPERATURE}
DEFAULT_ORDER = ("top_k", "tfs_z", "typical_p", "top_p", "min_p", "xtc", "top_n_sigma", "temperature")
DRY_WINDOW_ALL = 4096  # what dry_penalty_last_n=-1 ("all") means


class GrammarError(DecodeError):
    """The grammar cannot continue: no token it allows is left (or a forced token breaks it)."""


def _prob(name: str, value: float, low_open: bool = True) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not (isinstance(value, (int, float)) and ok):
        raise ValueError(f"{name}={value!r} must be in {'(0' if low_open else '[0'}, 1]")


@dataclass(frozen=True)
class SamplerConfig:
    """Every sampling setting; defaults are ik's (``common/sampling.h``). ``greedy()`` for argmax.

    ``top_k``: 0, None or "off" disables it. ``logit_bias`` maps token id to an added logit
    (``-math.inf`` bans a token). ``grammar`` is GBNF text (see ``ikllama.json_grammar`` for JSON
    schemas). ``seed=None`` draws one from the OS.
    """

    temperature: float = 0.8
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    top_k: int | str | None = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    tfs_z: float = 1.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    top_n_sigma: float = 0.0
    penalty_last_n: int = 64
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: tuple[str, ...] = ("\n", ":", '"', "*")
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    adaptive_target: float = -1.0
    adaptive_decay: float = 0.9
    grammar: str | None = None
    grammar_root: str = "root"
    seed: int | None = None
    min_keep: int = 0
    order: tuple[str, ...] = DEFAULT_ORDER

    @classmethod
    def greedy(cls, **changes: Any) -> SamplerConfig:
        """Argmax decoding (penalties, bias, DRY and grammar still apply if set)."""
        return cls(temperature=0.0, **changes)

    @property
    def is_greedy(self) -> bool:
        return self.temperature <= 0

    @property
    def top_k_value(self) -> int:
        return 0 if self.top_k in (None, "off") else int(self.top_k)  # type: ignore[arg-type]

    def validate(self, n_vocab: int | None = None) -> None:
        """Raise ValueError naming the first field that is out of range."""
        for name in ("temperature", "dynatemp_range", "dynatemp_exponent", "top_p", "min_p", "typical_p", "tfs_z",
                     "xtc_probability", "xtc_threshold", "top_n_sigma", "repeat_penalty", "frequency_penalty",
                     "presence_penalty", "dry_multiplier", "dry_base", "mirostat_tau", "mirostat_eta",
                     "adaptive_target", "adaptive_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}={value!r} must be a finite number")
        if self.top_k not in (None, "off") and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                                 or self.top_k < 0):
            raise ValueError(f"top_k={self.top_k!r} must be >= 0 (0, None or 'off' disable it)")
        _prob("top_p", self.top_p)
        _prob("typical_p", self.typical_p)
        _prob("tfs_z", self.tfs_z)
        _prob("min_p", self.min_p, low_open=False)
        _prob("xtc_probability", self.xtc_probability, low_open=False)
        _prob("xtc_threshold", self.xtc_threshold, low_open=False)
        for name in ("dynatemp_range", "top_n_sigma", "dry_multiplier", "mirostat_tau", "mirostat_eta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.repeat_penalty <= 0:
            raise ValueError(f"repeat_penalty={self.repeat_penalty} must be > 0 (1 = off)")
        if self.dry_multiplier and self.dry_base < 1:
            raise ValueError(f"dry_base={self.dry_base} must be >= 1")
        if self.dry_allowed_length < 0:
            raise ValueError(f"dry_allowed_length={self.dry_allowed_length} must be >= 0")
        if self.dry_penalty_last_n < -1 or self.dry_penalty_last_n == 0 and self.dry_multiplier:
            raise ValueError(f"dry_penalty_last_n={self.dry_penalty_last_n} must be > 0 or -1 (all)")
        if not 0 <= self.penalty_last_n <= 1 << 20:
            raise ValueError(f"penalty_last_n={self.penalty_last_n} must be 0..{1 << 20} (0 = off)")
        if self.mirostat not in (0, 1, 2):
            raise ValueError(f"mirostat={self.mirostat!r} must be 0 (off), 1 or 2")
        if self.adaptive_target > 1:
            raise ValueError(f"adaptive_target={self.adaptive_target} must be <= 1 (negative = off)")
        if not 0 <= self.adaptive_decay <= 0.99:
            raise ValueError(f"adaptive_decay={self.adaptive_decay} must be in [0, 0.99]")
        if self.min_keep < 0:
            raise ValueError(f"min_keep={self.min_keep} must be >= 0")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < 1 << 64):
            raise ValueError(f"seed={self.seed!r} must be an int in [0, 2**64) or None")
        unknown = [s for s in self.order if s not in _STAGES]
        if unknown or len(set(self.order)) != len(self.order):
            raise ValueError(f"order={self.order!r}: stages are unique names among {sorted(_STAGES)}")
        if any(not isinstance(b, str) or not b for b in self.dry_sequence_breakers):
            raise ValueError("dry_sequence_breakers must be non-empty strings")
        if self.grammar is not None and not (isinstance(self.grammar, str) and self.grammar.strip()):
            raise ValueError("grammar must be non-empty GBNF text or None")
        for token, bias in dict(self.logit_bias).items():
            if isinstance(token, bool) or not isinstance(token, int) or token < 0 or (
                    n_vocab is not None and token >= n_vocab):
                raise ValueError(f"logit_bias: token id {token!r} is outside the vocabulary"
                                 + (f" (0..{n_vocab - 1})" if n_vocab else ""))
            if not isinstance(bias, (int, float)) or math.isnan(bias) or bias == math.inf:
                raise ValueError(f"logit_bias[{token}]={bias!r} must be a number or -inf")

    def _params(self, seed: int) -> Any:
        p = ffi.new("ikl_sampler_params *")
        for name in ("temperature", "dynatemp_range", "dynatemp_exponent", "top_p", "min_p", "typical_p", "tfs_z",
                     "xtc_probability", "xtc_threshold", "top_n_sigma", "penalty_last_n", "repeat_penalty",
                     "frequency_penalty", "presence_penalty", "mirostat", "mirostat_tau", "mirostat_eta",
                     "dry_base", "dry_allowed_length", "adaptive_target", "adaptive_decay", "min_keep"):
            setattr(p, name, getattr(self, name))
        p.top_k = self.top_k_value
        p.dry_multiplier = self.dry_multiplier
        p.dry_penalty_last_n = DRY_WINDOW_ALL if self.dry_penalty_last_n == -1 else self.dry_penalty_last_n
        p.seed = seed
        p.n_order = len(self.order)
        for i, stage in enumerate(self.order):
            p.order[i] = _STAGES[stage]
        return p


def _new_seed() -> int:
    return int.from_bytes(os.urandom(8), "little")


class Sampler(NativeHandle):
    """One sequence's sampler (owns an ``ikl_sampler *``); built by :meth:`Sampler.create`.

    Use it with any context on the same model; ``clone()`` forks its state for a new sequence.
    """

    _kind = "sampler"

    def __init__(self, handle: Any, config: SamplerConfig, model: Model, seed: int):
        super().__init__(handle)
        self.config = config
        self.model = model
        self.seed = seed


    @classmethod
    def create(cls, config: SamplerConfig, model: Model) -> Sampler:
        """Build the C sampler (wraps ``ikl_sampler_new``; grammar via ``llama_sampler_init_grammar``).

        Raises ValueError naming the field for invalid settings, GBNF parse errors included.
        """
        config.validate(model.n_vocab)
        if model._h is None:
            raise ClosedError("this model is closed; load it again")
        vocab = model._vocab  # valid while the model or any of its contexts is open (checked in _adopt)
        seed = _new_seed() if config.seed is None else config.seed
        grammar = ffi.NULL
        if config.grammar is not None:
            mark = _log.mark()
            grammar = lib.llama_sampler_init_grammar(vocab, config.grammar.encode(), config.grammar_root.encode())
            if grammar == ffi.NULL:
                from .json_grammar import diagnose_gbnf

                reason = diagnose_gbnf(config.grammar) if config.grammar_root == "root" else None
                raise ValueError(with_native(f"grammar: ik could not parse it (root rule {config.grammar_root!r})",
                                             _log.since(mark) + ([reason] if reason else [])))
        adaptive = ffi.NULL
        if config.adaptive_target >= 0 and not config.is_greedy and not config.mirostat:
            adaptive = lib.llama_init_adaptive_p(model.n_vocab, config.adaptive_target, config.adaptive_decay,
                                                 False, seed & 0xFFFFFFFF)
        bias = dict(config.logit_bias)
        ids = ffi.new("int32_t[]", list(bias) or [0])
        values = ffi.new("float[]", [float(v) for v in bias.values()] or [0.0])
        breakers = [ffi.new("char[]", b.encode()) for b in config.dry_sequence_breakers]
        breaker_ptrs = ffi.new("const char *[]", breakers or [ffi.NULL])
        ptr = lib.ikl_sampler_new(config._params(seed), vocab, model.n_vocab, ids, values, len(bias), grammar,
                                  breaker_ptrs, len(breakers), adaptive)
        if ptr == ffi.NULL:
            raise MemoryError("ikl_sampler_new: out of memory")
        return cls._adopt(ptr, config, model, seed)

    @classmethod
    def _adopt(cls, ptr: Any, config: SamplerConfig, model: Model, seed: int) -> Sampler:
        # Registered with the model like a context: the sampler reads its vocabulary, so the
        # weights are freed only after the last sampler closes.
        sampler = cls(ffi.gc(ptr, lib.ikl_sampler_free), config, model, seed)
        try:
            model._attach(sampler, while_closing=True)
        except BaseException:
            ffi.release(sampler._h)
            raise
        return sampler

    def _free(self) -> None:
        super()._free()
        self.model._detach(self)

    def clone(self) -> Sampler:
        """An independent copy with the same history, grammar state and RNG state (``ikl_sampler_clone``)."""
        ptr = lib.ikl_sampler_clone(self._ptr())
        if ptr == ffi.NULL:
            raise MemoryError("ikl_sampler_clone: out of memory")
        return Sampler._adopt(ptr, self.config, self.model, self.seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget history and grammar progress; reseed (default: the original seed)."""
        lib.ikl_sampler_reset(self._ptr(), self.seed if seed is None else seed)

    def _check_context(self, ctx: Context, row: int) -> Any:
        if ctx.model is not self.model and ctx.model._vocab_ptr() != self.model._vocab_ptr():
            raise ValueError("this sampler was built for another model")
        ctx._check_output(row)
        return ctx._h

    def sample(self, ctx: Context, row: int, accept: bool = True) -> int:
        """The token for output ``row`` of ``ctx``'s last decode (``ikl_sampler_next`` / ``_sample``).

        With ``accept`` it is also recorded (penalties, DRY, grammar). Raises GrammarError when the
        grammar allows nothing.
        """
        token = lib.ikl_sampler_next(self._ptr(), self._check_context(ctx, row), row) if accept else \
            lib.ikl_sampler_sample(self._ptr(), self._check_context(ctx, row), row)
        if token < 0:
            self._raise(token, row)
        return token

    def accept(self, ctx: Context, token: int) -> None:
        """Record ``token`` as generated (``ikl_sampler_accept``); GrammarError if the grammar forbids it."""
        ctx._ptr()
        if lib.ikl_sampler_accept(self._ptr(), ctx._h, token) < 0:
            raise GrammarError(f"token {token} is not allowed by the grammar here (nothing was recorded)")

    def prob(self, ctx: Context, row: int, token: int) -> float:
        """Probability of ``token`` under the final distribution at ``row`` (``ikl_sampler_prob``)."""
        p = lib.ikl_sampler_prob(self._ptr(), self._check_context(ctx, row), row, token)
        if p < 0:
            raise ValueError(f"no logits at row {row} or token {token} out of range")
        return p

    def grammar_done(self, ctx: Context) -> bool:
        """Whether the grammar may end here (always True without a grammar)."""
        return bool(lib.ikl_sampler_grammar_done(self._ptr(), ctx._ptr()))

    def _raise(self, code: int, row: int) -> None:
        if code == lib.IKL_NO_LOGITS:
            raise DecodeError(f"no logits for row {row}")
        raise GrammarError("the grammar allows no token here: the output so far cannot be completed by it")
