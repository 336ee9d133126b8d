"""The FastAPI application: routes, authentication, and the model's loading state.

``create_app(settings)`` returns an app that starts answering ``/health`` at once and loads the model
in a background thread when it starts up; until the model is in, ``/ready`` and every model route
answer 503 with ``Retry-After``. A failed load is kept in ``state.load_error`` (``ikllama serve`` then
exits with status 1).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import ModelConfig
from ..chat import Formatter
from ..enums import GgmlType
from .client import EngineClient
from .engine import Engine
from .errors import ApiError, install_handlers
from .metrics import ServerMetrics
from .protocol import (ChatRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest, NativeCompletionRequest,
                       TokenizeRequest)
from .serving import Serving
from .settings import ServerSettings

__all__ = ["create_app", "ServerState"]

log = logging.getLogger("ikllama.server")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ServerState:
    """The loaded model, its context and engine, and everything a route needs (one per app)."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.model: Any = None
        self.ctx: Any = None
        self.engine: Engine | None = None
        self.client: EngineClient | None = None
        self.formatter: Formatter | None = None
        self.model_id = settings.alias or (settings.model.name if settings.model else "SmolLM2-135M")
        self.fingerprint = "ikllama"
        self.loaded = threading.Event()
        self.load_error: BaseException | None = None
        self.started = time.time()
        self._embedder: Any = None

    def load(self) -> None:
        """Load the model, build the shared context and start the engine (runs in a worker thread)."""
        s = self.settings
        try:
            from ..models import default_model

            path = s.model or default_model()
            self.model = ModelConfig(n_gpu_layers=s.n_gpu_layers).load_gguf(path)
            b = (self.model.context().with_n_ctx(s.n_ctx).with_n_seq_max(s.parallel).with_n_batch(s.n_batch)
                 .with_n_ubatch(min(s.n_ubatch, s.n_batch)).with_flash_attn(s.flash_attn)
                 .with_kv_cache(GgmlType[s.cache_type_k.upper()], GgmlType[s.cache_type_v.upper()]))
            if s.threads is not None:
                b = b.with_threads(s.threads, s.threads_batch)
            self.ctx = b.build()
            self.formatter = Formatter.for_model(self.model, s.chat_template)
            self.fingerprint = "ikllama-" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
            self.engine = Engine(self.ctx, prefill_budget=s.prefill_budget, idle_cache=s.idle_cache,
                                 metrics=self.metrics)
            self.metrics.engine = self.engine
            self.client = EngineClient(self.engine, s.max_queue)
            self.engine.start()
            log.info("model %s loaded: n_ctx=%d, %d sequences", self.model_id, self.ctx.n_ctx, s.parallel)
        except BaseException as exc:
            self.load_error = exc
            log.error("could not load the model: %s", exc)
            self.close()
        finally:
            self.loaded.set()

    def close(self) -> None:
        """Drain the engine (finish admitted requests), then free the context and the model."""
        if self.engine is not None:
            self.engine.shutdown(drain=True, timeout=60)
        for obj in (self._embedder, self.ctx, self.model):
            if obj is not None:
                obj.close()
        self.engine = self.client = self._embedder = self.ctx = None

    def ready(self) -> None:
        if self.load_error is not None:
            raise ApiError(503, f"the model failed to load: {self.load_error}", "model_load_failed")
        if self.engine is None:
            raise ApiError(503, "the model is loading", "loading", retry_after=1)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled, normalized embeddings from a context of their own (built on first use)."""
        return await asyncio.wrap_future(self.engine.call(lambda: self._embed_sync(texts)))

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from ..embeddings import Embedder

            self._embedder = Embedder(self.model, n_threads=self.settings.threads)
        return self._embedder.embed(texts, truncate=False)


async def _unless_disconnected(request: Request, coro: Any) -> Any:
    """Run ``coro``; if the client hangs up first, cancel it (its request leaves the engine)."""
    task = asyncio.ensure_future(coro)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.2)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            raise ApiError(499, "client closed the request")


def create_app(settings: ServerSettings | None = None, *, load: bool = True) -> FastAPI:
    """The app for ``settings``; with ``load`` the model loads in the background at startup."""
    settings = settings or ServerSettings()
    state = ServerState(settings)
    serving = Serving(state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if load:
            threading.Thread(target=state.load, name="ikllama-load", daemon=True).start()
        yield
        await asyncio.to_thread(state.close)

    app = FastAPI(title="ikllama", version=_version(), lifespan=lifespan)
    app.state.ikllama = state
    install_handlers(app)

    async def auth(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {settings.api_key}" and request.headers.get("x-api-key") != settings.api_key:
            raise ApiError(401, "invalid or missing API key: send 'Authorization: Bearer KEY'", "invalid_api_key")

    async def ready() -> None:
        state.ready()

    app.add_middleware(_Limits, state=state)

    guarded = [Depends(auth), Depends(ready)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        status = "error" if state.load_error else "ok" if state.engine is not None else "loading"
        return {"status": status}

    @app.get("/ready")
    async def is_ready() -> dict[str, str]:
        state.ready()
        return {"status": "ready"}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(auth)])
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != state.model_id:
            raise ApiError(404, f"model {model_id!r} is not served here; this server serves {state.model_id!r}",
                           "model_not_found", "model")
        return _model_card(state)

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(body: ChatRequest, request: Request) -> Any:
        _check_model(state, body.model)
        if body.stream:
            return StreamingResponse(await serving.chat_stream(body), media_type="text/event-stream",
                                     headers=_SSE_HEADERS)
        return await _unless_disconnected(request, serving.chat(body))

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(state, body.model)
        if body.stream:
            return StreamingResponse(await serving.completion_stream(body), media_type="text/event-stream",
                                     headers=_SSE_HEADERS)
        return await _unless_disconnected(request, serving.completion(body))

    @app.post("/completion", dependencies=guarded)
    async def native_completion(body: NativeCompletionRequest, request: Request) -> Any:
        as_openai = CompletionRequest(**{**body.model_dump(exclude={"n_predict", "n_probs", "cache_prompt"}),
                                         "max_tokens": None if body.n_predict < 0 else body.n_predict,
                                         "logprobs": body.n_probs or None})
        if body.stream:
            return StreamingResponse(await serving.completion_stream(as_openai), media_type="text/event-stream",
                                     headers=_SSE_HEADERS)
        out = await _unless_disconnected(request, serving.completion(as_openai))
        choice = out["choices"][0]
        return {"content": choice["text"], "stop": True, "model": out["model"],
                "stop_type": "limit" if choice["finish_reason"] == "length" else "eos",
                "tokens_predicted": out["usage"]["completion_tokens"],
                "tokens_evaluated": out["usage"]["prompt_tokens"], "timings": out["timings"]}

    @app.post("/v1/embeddings", dependencies=guarded)
    @app.post("/embeddings", dependencies=guarded, include_in_schema=False)
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        if not settings.embeddings:
            raise ApiError(501, "embeddings are off on this server (start it with --embeddings)", "not_supported")
        texts = _embedding_texts(state, body.input)
        vectors = await state.embed(texts)
        if body.dimensions is not None:
            if body.dimensions > vectors.shape[1]:
                raise ApiError(400, f"dimensions={body.dimensions}: the model's vectors have {vectors.shape[1]}",
                               "invalid_request_error", "dimensions")
            vectors = vectors[:, :body.dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = []
        for i, v in enumerate(vectors):
            value: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() \
                if body.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        n = sum(len(state.model.tokenize(t)) for t in texts)
        return {"object": "list", "model": state.model_id, "data": data,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    @app.post("/tokenize", dependencies=guarded)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        tokens = state.model.tokenize(body.content, body.add_special, True)
        if body.with_pieces:
            return {"tokens": [{"id": t, "piece": state.model.token_to_piece(t, True).decode("utf-8", "replace")}
                               for t in tokens]}
        return {"tokens": tokens}

    @app.post("/detokenize", dependencies=guarded)
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        bad = [t for t in body.tokens if not 0 <= t < state.model.n_vocab]
        if bad:
            raise ApiError(400, f"token {bad[0]} is outside the vocabulary (0..{state.model.n_vocab - 1})",
                           "invalid_request_error", "tokens")
        return {"content": state.model.detokenize(body.tokens)}

    @app.post("/apply-template", dependencies=guarded)
    async def apply_template(body: ChatRequest) -> dict[str, str]:
        return {"prompt": state.formatter.format(body.messages, add_generation_prompt=True,
                                                 tools=body.tools or None)}

    @app.get("/slots", dependencies=guarded)
    async def slots() -> list[dict[str, Any]]:
        return state.engine.slots()

    @app.get("/props", dependencies=guarded)
    async def props() -> dict[str, Any]:
        return {"model_path": str(state.model.path), "model_alias": state.model_id,
                "total_slots": settings.parallel, "n_ctx": state.ctx.n_ctx,
                "chat_template": state.formatter.template if hasattr(state.formatter, "template") else None,
                "default_generation_settings": {"n_ctx": state.ctx.n_ctx, "n_batch": state.ctx.n_batch,
                                                "prefill_budget": state.engine.prefill_budget},
                "build_info": f"ikllama {_version()}"}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4",
                        headers={"Process-Start-Time-Unix": str(int(state.started))})

    return app


class _Limits:
    """Refuse oversized bodies (413) and count answers by route and status.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would hide client disconnects from
    the routes, and disconnect detection is what frees a sequence when a client goes away.
    """

    def __init__(self, app: Any, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.state.settings.max_body_bytes
        size = dict(scope["headers"]).get(b"content-length", b"")
        if size.isdigit() and int(size) > limit:
            from .errors import error_body

            response = JSONResponse(error_body(413, f"the body is {int(size)} bytes; this server takes at most "
                                               f"{limit}", "request_too_large"), status_code=413)
            await response(scope, receive, send)
            return
        status = []

        async def send_counted(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            self.state.metrics.requests.labels(getattr(route, "path", "unmatched"),
                                               str(status[0]) if status else "none").inc()


def _version() -> str:
    from .._version import __version__

    return __version__


def _model_card(state: ServerState) -> dict[str, Any]:
    card: dict[str, Any] = {"id": state.model_id, "object": "model", "created": int(state.started),
                            "owned_by": "ikllama"}
    if state.model is not None:
        card["meta"] = {"n_ctx_train": state.model.n_ctx_train, "n_params": state.model.n_params,
                        "n_vocab": state.model.n_vocab, "size": state.model.size}
    return card


def _check_model(state: ServerState, name: str | None) -> None:
    # Clients often send a placeholder model name; only an explicit other *.gguf path is refused.
    if name and name != state.model_id and name.endswith(".gguf"):
        raise ApiError(404, f"model {name!r} is not served here; this server serves {state.model_id!r}",
                       "model_not_found", "model")


def _embedding_texts(state: ServerState, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not value:
        raise ApiError(400, "input is empty", "invalid_request_error", "input")
    if all(isinstance(v, int) for v in value):
        value = [value]
    out = []
    for item in value:
        out.append(item if isinstance(item, str) else state.model.detokenize(list(item)))
        if not out[-1]:
            raise ApiError(400, "input holds an empty string", "invalid_request_error", "input")
    return out
