"""``IncrementalPrefill``: decode a prompt while it is being typed, so that the answer starts sooner.

Each ``update(text)`` tokenizes everything typed so far and decodes the tokens that are stable:
all but the last ``holdback`` (BPE may still merge them with what comes next). An edit that
changes earlier text trims the cache from the first token that differs. ``submit`` decodes the
rest, with the text that follows the user's (e.g. the chat template's end of turn), so the cache
then holds exactly what a normal prefill of the whole prompt would: the first generated token is
the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .batch import Pos
from .chat import Message, Role
from .batch import common_prefix

if TYPE_CHECKING:
    from .inference import SimpleInference

__all__ = ["IncrementalPrefill"]

_MARK = "\x00ikllama-typed\x00"


class IncrementalPrefill:
    """Prefill of ``before + typed + after`` on ``fork_id``, fed as ``typed`` grows.

    ``before`` and ``after`` surround the typed text (the chat template's turn header and footer;
    :meth:`for_chat` derives them). The fork may already hold a prefix of ``before``: only what
    differs is decoded.
    """

    def __init__(self, inference: SimpleInference, fork_id: int = 0, before: str = "", after: str = "",
                 holdback: int = 2):
        if holdback < 0:
            raise ValueError(f"holdback={holdback} must be >= 0")
        self.inference = inference
        self.ctx = inference.ctx
        self.fork_id = fork_id
        self.before = before
        self.after = after
        self.holdback = holdback
        self.decoded = 0  # tokens decoded by update/submit so far (the measure of work done early)
        self._bos = self.ctx.model.add_bos and self.ctx.n_past(fork_id) == 0

    @classmethod
    def for_chat(cls, inference: SimpleInference, formatter: Any, history: Sequence[Message], fork_id: int = 0,
                 holdback: int = 2) -> IncrementalPrefill:
        """Typing the next user turn of ``history`` rendered by ``formatter`` (with the generation prompt)."""
        text = formatter.format([*history, Message(Role.USER, _MARK)], add_generation_prompt=True)
        if text.count(_MARK) != 1:
            raise ValueError("the chat template does not render the user's text verbatim; prefill normally")
        before, after = text.split(_MARK)
        prefill = cls(inference, fork_id, before, after, holdback)
        bos = formatter.bos_token
        if bos and before.startswith(bos):
            prefill._bos = False
        return prefill

    def _tokens(self, text: str) -> list[int]:
        return self.ctx.vocab.tokenize(text, self._bos, True)

    def _sync(self, target: list[int]) -> int:
        """Make the fork hold ``target``: trim at the first difference, decode the rest."""
        ctx, fork = self.ctx, self.fork_id
        keep = common_prefix(ctx.tokens(fork), target)
        if keep < ctx.n_past(fork):
            ctx.truncate(Pos(keep, fork))
        if keep < len(target):
            self.inference.prefill(target[keep:], fork)
        n = len(target) - keep
        self.decoded += n
        return n

    def update(self, typed: str) -> int:
        """The user's text so far; decodes its stable tokens. Returns how many tokens were decoded now."""
        tokens = self._tokens(self.before + typed)
        stable = tokens[:max(0, len(tokens) - self.holdback)]
        return self._sync(stable)

    def submit(self, typed: str) -> int:
        """The final text: decode everything still missing, ready for ``generate``. Returns tokens decoded."""
        tokens = self._tokens(self.before + typed + self.after)
        if not tokens:
            raise ValueError("the prompt is empty")
        n = self._sync(tokens)
        if n == 0:  # all of it was decoded already: decode the last token again for its logits
            self.ctx.truncate(Pos(len(tokens) - 1, self.fork_id))
            self.inference.prefill(tokens[-1:], self.fork_id)
            n = 1
        return n
