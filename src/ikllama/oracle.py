"""``SimpleOracle``: a chat that lives in the KV cache (slm_inference's ``SlmSimpleOracle``).

Each ``ask`` renders the whole conversation with the model's template, compares its tokens with
what the fork already holds, keeps the common prefix and decodes only the rest: normally just the
new turn. When the conversation no longer fits, the oldest turns go (the system prompt stays) and
the cache is trimmed where the text changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .answer import Answer, BrakeFn
from .batch import Pos, common_prefix
from .chat import DynamicFormatter, Formatter, Message, Role
from .errors import KvCacheFullError
from .inference import SimpleInference, TextStream
from .sampling import SamplerConfig

if TYPE_CHECKING:
    from .context import Context

__all__ = ["SimpleOracle"]


class SimpleOracle:
    """Multi-turn chat on ``context`` with ``formatter`` (default: the model's own template).

    ``system`` starts every fork's conversation. Forks (``fork_id``) are independent conversations;
    :meth:`fork` branches one into another, sharing the cached prefix.
    """

    def __init__(self, context: Context, formatter: Formatter | None = None, system: str | None = None,
                 sampling: SamplerConfig | None = None, max_tokens: int = 512):
        self.ctx = context
        self.formatter = formatter or DynamicFormatter.for_model(context.model)
        self.inference = SimpleInference(context, sampling, self.formatter)
        self.max_tokens = max_tokens
        self.system = system
        self._history: dict[int, list[Message]] = {}
        self.evicted: dict[int, int] = {}  # fork -> messages dropped to make room

    def history(self, fork_id: int = 0) -> list[Message]:
        """The conversation of ``fork_id`` as the next ``ask`` will render it."""
        self.ctx._check_fork(fork_id)
        if fork_id not in self._history:
            self._history[fork_id] = [Message(Role.SYSTEM, self.system)] if self.system else []
        return self._history[fork_id]

    def reset(self, fork_id: int = 0) -> None:
        """Forget a conversation and its cache."""
        self._history.pop(fork_id, None)
        self.ctx.drop(fork_id)
        self.inference.reset_sampler(fork_id)

    def fork(self, src: int, dst: int) -> None:
        """Start conversation ``dst`` as a copy of ``src`` (cache cells shared through ``copy_fork``)."""
        self.ctx.copy_fork(src, dst)
        self._history[dst] = list(self.history(src))
        self.inference.reset_sampler(dst)

    def _tokens(self, messages: list[Message], tools: list[dict] | None) -> list[int]:
        text = self.formatter.format(messages, add_generation_prompt=True, tools=tools)
        bos = self.formatter.bos_token
        add_bos = self.ctx.model.add_bos and not (bos and text.startswith(bos))
        return self.ctx.vocab.tokenize(text, add_bos, True)

    def _fit(self, history: list[Message], message: Message, max_tokens: int,
             tools: list[dict] | None, fork_id: int) -> list[int]:
        """Tokens of the conversation plus ``message``, dropping the oldest turns until they fit."""
        room = self.ctx.n_ctx - sum(self.ctx.n_past(f) for f in range(self.ctx.n_seq_max) if f != fork_id)
        while True:
            tokens = self._tokens(history + [message], tools)
            if len(tokens) + max_tokens <= room:
                return tokens
            first = 1 if history and history[0].role == Role.SYSTEM else 0
            if len(history) <= first:
                if len(tokens) < room:
                    return tokens  # the answer will be cut short by the context, not refused
                raise KvCacheFullError(f"the message alone needs {len(tokens)} tokens; the context has room for "
                                       f"{room}. Fix: a shorter message or a larger n_ctx.", 1)
            # Drop the oldest exchange: a user turn and everything up to the next user turn.
            end = first + 1
            while end < len(history) and history[end].role != Role.USER:
                end += 1
            self.evicted[fork_id] = self.evicted.get(fork_id, 0) + (end - first)
            del history[first:end]

    def ask(self, message: str | Message, fork_id: int = 0, *, max_tokens: int | None = None,
            stop: Iterable[str] = (), brakes: Iterable[BrakeFn] = (), sampling: SamplerConfig | None = None,
            tools: list[dict] | None = None, stream: bool = False) -> Answer | TextStream:
        """Add a user turn (or any :class:`Message`) and generate the assistant's reply.

        Only tokens past the longest common prefix with the cache are decoded. Returns the
        :class:`Answer` (thinking split off), or with ``stream=True`` a :class:`TextStream`; either
        way the reply joins the history when generation ends.
        """
        msg = message if isinstance(message, Message) else Message(Role.USER, message)
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        history = self.history(fork_id)
        tokens = self._fit(history, msg, max_tokens, tools, fork_id)
        have = self.ctx.tokens(fork_id)
        keep = common_prefix(have, tokens)
        if keep == len(tokens):
            keep -= 1  # the last prompt token must be decoded again to get its logits
        self.ctx.truncate(Pos(keep, fork_id))
        self.inference.prefill(tokens[keep:], fork_id)
        self.inference.reset_sampler(fork_id)
        stops = [*stop, *self.formatter.stop_strings]
        s = self.inference.generate(max_tokens, fork_id, stop=stops, brakes=brakes, sampling=sampling, stream=True)

        def pieces() -> Any:
            for item in s.with_forks():
                yield item
            answer = s.answer
            # The turn joins the history only once answered: a failed or abandoned ask leaves none.
            history.extend([msg, Message(Role.ASSISTANT, answer.text, thinking=answer.thinking)])

        stream_out = TextStream(pieces(), s.answers)
        if stream:
            return stream_out
        for _ in stream_out.with_forks():
            pass
        return stream_out.answer
