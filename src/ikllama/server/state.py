"""What a server holds: its models, each with its context, engine and formatter, and their loading state.

:class:`ServerState` is one per app. It loads every served model in turn in a background thread (the
server listens first) and runs all their engines on one :class:`~.runner.EngineRunner` thread.
:class:`ServedModel` is one model: a generation model gets a shared context and an engine; an
embedding model (``kind="embed"``, or a GGUF that declares a pooling type) gets only an Embedder.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

from .. import ModelConfig
from ..batch import Pos
from ..chat import Formatter
from ..enums import GgmlType
from .client import EngineClient
from .engine import Engine
from .errors import ApiError
from .metrics import ServerMetrics
from .promptcache import HostPromptCache
from .runner import EngineRunner
from .settings import ModelSpec, ServerSettings

__all__ = ["ServerState", "ServedModel"]

log = logging.getLogger("ikllama.server")


class ServedModel:
    """One served model. Everything native it owns is created, used and freed on the runner thread
    or while the runner does not know it yet (loading), so ggml keeps one OpenMP team."""

    def __init__(self, spec: ModelSpec, settings: ServerSettings, runner: EngineRunner, metrics: ServerMetrics):
        self.spec = spec
        self.settings = settings
        self.runner = runner
        self.metrics = metrics
        self.model_id = spec.id
        self.parallel = spec.parallel or settings.parallel
        self.model: Any = None
        self.ctx: Any = None
        self.engine: Engine | None = None
        self.client: EngineClient | None = None
        self.formatter: Formatter | None = None
        self.generates = True
        self.fingerprint = "ikllama"
        self.load_error: BaseException | None = None
        self.loaded = False
        self._embedder: Any = None

    def load(self) -> None:
        """Load the model; a generation model also gets its context and engine (joins the runner)."""
        s, spec = self.settings, self.spec
        from ..embeddings import model_pooling
        from ..models import default_model

        path = spec.path or default_model()
        self.model = ModelConfig(n_gpu_layers=s.n_gpu_layers).load_gguf(path)
        self.fingerprint = "ikllama-" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        self.generates = spec.kind == "generate" or (spec.kind == "auto" and model_pooling(self.model) is None)
        if self.generates:
            b = (self.model.context().with_n_ctx(spec.n_ctx or s.n_ctx).with_n_seq_max(self.parallel)
                 .with_n_batch(s.n_batch).with_n_ubatch(min(s.n_ubatch, s.n_batch)).with_flash_attn(s.flash_attn)
                 .with_kv_cache(GgmlType[s.cache_type_k.upper()], GgmlType[s.cache_type_v.upper()]))
            if s.threads is not None:
                b = b.with_threads(s.threads, s.threads_batch)
            self.ctx = b.build()
            self.formatter = Formatter.for_model(self.model, spec.chat_template)
            host_cache = HostPromptCache(s.cache_ram_mib << 20) if s.cache_ram_mib and s.idle_cache else None
            self.engine = Engine(self.ctx, prefill_budget=s.prefill_budget, idle_cache=s.idle_cache,
                                 host_cache=host_cache, metrics=self.metrics)
            self.client = EngineClient(self.engine, s.max_queue)
            self.runner.add(self.engine)
            self.runner.call(self._warm_up).result()
            log.info("model %s loaded: n_ctx=%d, %d sequences", self.model_id, self.ctx.n_ctx, self.parallel)
        else:
            log.info("model %s loaded for embeddings only", self.model_id)
        self.loaded = True

    def _warm_up(self) -> None:
        """One tiny decode on the engine thread before the model is ready, as llama-server does: the first request
        would otherwise pay for faulting in the mapped weights and starting the engine thread's OpenMP team."""
        ctx = self.ctx
        bos = ctx.model.token_bos
        b = ctx.new_batch(2)
        b.add_sequence([bos if bos is not None else 0, 0], Pos(0, 0), logits_last=True)
        ctx.decode(b)
        ctx.drop(0)

    def close(self) -> None:
        """Drain the engine (admitted requests finish), then free the embedder, context and model."""
        if self.engine is not None:
            self.engine.shutdown(drain=True, timeout=60)
        for obj in (self._embedder, self.ctx, self.model):
            if obj is not None:
                obj.close()
        self.engine = self.client = self._embedder = self.ctx = self.model = None

    def ready(self) -> None:
        """ApiError 503 unless the model is loaded and serving."""
        if self.load_error is not None:
            raise ApiError(503, f"model {self.model_id!r} failed to load: {self.load_error}", "model_load_failed")
        if not self.loaded:
            raise ApiError(503, f"model {self.model_id!r} is loading", "loading", retry_after=1)

    def generating(self) -> ServedModel:
        """This model, or ApiError 400 if it serves embeddings only."""
        if not self.generates:
            raise ApiError(400, f"model {self.model_id!r} serves embeddings only: send completions to a "
                           "generation model", "invalid_request_error", "model")
        return self

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled, normalized embeddings from a context of their own (built on first use), on the runner thread."""
        future: Future = self.runner.call(lambda: self._embed_sync(texts))
        return await asyncio.wrap_future(future)

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        if self.model is None:
            raise ApiError(503, f"model {self.model_id!r} is shutting down", "unavailable")
        if self._embedder is None:
            from ..embeddings import Embedder

            self._embedder = Embedder(self.model, n_threads=self.settings.threads)
        return self._embedder.embed(texts, truncate=False)

    def card(self, created: int) -> dict[str, Any]:
        """The model's ``/v1/models`` entry."""
        card: dict[str, Any] = {"id": self.model_id, "object": "model", "created": created, "owned_by": "ikllama"}
        if self.model is not None:
            card["meta"] = {"n_ctx_train": self.model.n_ctx_train, "n_params": self.model.n_params,
                            "n_vocab": self.model.n_vocab, "size": self.model.size,
                            "n_ctx": self.ctx.n_ctx if self.ctx is not None else None,
                            "capabilities": ["completion", "embeddings"] if self.generates else ["embeddings"]}
        return card


class ServerState:
    """Every served model (the first answers requests that name none), the runner, metrics, loading state."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.runner = EngineRunner()
        self.models = {spec.id: ServedModel(spec, settings, self.runner, self.metrics) for spec in settings.served()}
        self.metrics.models = list(self.models.values())
        self.default = next(iter(self.models.values()))
        self.loaded = threading.Event()
        self.started = time.time()

    @property
    def load_error(self) -> BaseException | None:
        """The first model's load failure, if any (``ikllama serve`` exits with status 1 then)."""
        return next((m.load_error for m in self.models.values() if m.load_error is not None), None)

    def load(self) -> None:
        """Start the runner and load every model in order (a worker thread); a failure stops the loading."""
        self.runner.start()
        try:
            for served in self.models.values():
                try:
                    served.load()
                except BaseException as exc:
                    served.load_error = exc
                    log.error("could not load the model %s: %s", served.model_id, exc)
                    self.close()
                    return
        finally:
            self.loaded.set()

    def close(self) -> None:
        """Drain and free every model, then stop the runner thread."""
        for served in self.models.values():
            served.close()
        self.runner.stop(timeout=60)

    def ready(self) -> None:
        for served in self.models.values():
            served.ready()

    def pick(self, name: str | None, *, strict: bool = False) -> ServedModel:
        """The model a request names. With one model any placeholder name is accepted (clients send
        "gpt-4o" and the like) unless ``strict`` or it is a ``.gguf`` path; with several, an unknown
        name is a 404 naming the served ones and no name picks the first."""
        if name and name in self.models:
            served = self.models[name]
        elif not name or (len(self.models) == 1 and not strict and not name.endswith(".gguf")):
            served = self.default
        else:
            raise ApiError(404, f"model {name!r} is not served here; this server serves "
                           f"{', '.join(map(repr, self.models))}", "model_not_found", "model")
        served.ready()
        return served
