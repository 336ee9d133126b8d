"""The FastAPI application: routes, authentication, CORS, and which model a request goes to.

``create_app(settings)`` returns an app that starts answering ``/health`` at once and loads its models
in a background thread when it starts up; until a model is in, ``/ready`` and that model's routes
answer 503 with ``Retry-After``. A failed load is kept in ``state.load_error`` (``ikllama serve`` then
exits with status 1). The request's ``model`` picks the model (see :meth:`.state.ServerState.pick`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .errors import ApiError, install_handlers
from .protocol import (ChatRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest, NativeCompletionRequest,
                       SlotActionRequest, TokenizeRequest)
from .serving import Serving
from .settings import ServerSettings
from .slots import slot_action
from .state import ServedModel, ServerState

__all__ = ["create_app"]

log = logging.getLogger("ikllama.server")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    """The app for ``settings``; with ``load`` the models load in the background at startup."""
    settings = settings or ServerSettings()
    state = ServerState(settings)
    servings = {name: Serving(served) for name, served in state.models.items()}

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

    def generator(name: str | None) -> tuple[ServedModel, Serving]:
        served = state.pick(name).generating()
        return served, servings[served.model_id]

    app.add_middleware(_Limits, state=state)
    if settings.cors_origins:  # off unless asked: a browser page may then call the API with the user's key
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Api-Key"],
                           allow_credentials="*" not in settings.cors_origins)

    guarded = [Depends(auth)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        models = state.models.values()
        status = "error" if state.load_error else "ok" if all(m.loaded for m in models) else "loading"
        return {"status": status, "models": {m.model_id: "error" if m.load_error else "ok" if m.loaded
                                             else "loading" for m in models}}

    @app.get("/ready")
    async def is_ready() -> dict[str, str]:
        state.ready()
        return {"status": "ready"}

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [m.card(int(state.started)) for m in state.models.values()]}

    @app.get("/v1/models/{model_id:path}", dependencies=guarded)
    async def model(model_id: str) -> dict[str, Any]:
        if model_id not in state.models:
            raise ApiError(404, f"model {model_id!r} is not served here; this server serves "
                           f"{', '.join(map(repr, state.models))}", "model_not_found", "model")
        return state.models[model_id].card(int(state.started))

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat(body: ChatRequest, request: Request) -> Any:
        _, serving = generator(body.model)
        if body.stream:
            return StreamingResponse(await serving.chat_stream(body), media_type="text/event-stream",
                                     headers=_SSE_HEADERS)
        return await _unless_disconnected(request, serving.chat(body))

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _, serving = generator(body.model)
        if body.stream:
            return StreamingResponse(await serving.completion_stream(body), media_type="text/event-stream",
                                     headers=_SSE_HEADERS)
        return await _unless_disconnected(request, serving.completion(body))

    @app.post("/completion", dependencies=guarded)
    async def native_completion(body: NativeCompletionRequest, request: Request) -> Any:
        _, serving = generator(body.model)
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
        served = state.pick(body.model)
        if not settings.embeddings and served.generates:
            raise ApiError(501, "embeddings are off on this server (start it with --embeddings)", "not_supported")
        texts = _embedding_texts(served, body.input)
        vectors = await served.embed(texts)
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
        n = sum(len(served.model.tokenize(t)) for t in texts)
        return {"object": "list", "model": served.model_id, "data": data,
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    @app.post("/tokenize", dependencies=guarded)
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        model = state.pick(body.model).model
        tokens = model.tokenize(body.content, body.add_special, True)
        if body.with_pieces:
            return {"tokens": [{"id": t, "piece": model.token_to_piece(t, True).decode("utf-8", "replace")}
                               for t in tokens]}
        return {"tokens": tokens}

    @app.post("/detokenize", dependencies=guarded)
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        model = state.pick(body.model).model
        bad = [t for t in body.tokens if not 0 <= t < model.n_vocab]
        if bad:
            raise ApiError(400, f"token {bad[0]} is outside the vocabulary (0..{model.n_vocab - 1})",
                           "invalid_request_error", "tokens")
        return {"content": model.detokenize(body.tokens)}

    @app.post("/apply-template", dependencies=guarded)
    async def apply_template(body: ChatRequest) -> dict[str, str]:
        served, _ = generator(body.model)
        return {"prompt": served.formatter.format(body.messages, add_generation_prompt=True,
                                                  tools=body.tools or None)}

    @app.get("/slots", dependencies=guarded)
    async def slots(model: str | None = Query(None)) -> list[dict[str, Any]]:
        return generator(model)[0].engine.slots()

    @app.post("/slots/{slot_id}", dependencies=guarded)
    async def slot(slot_id: int, body: SlotActionRequest | None = None, action: str = Query(...),
                   model: str | None = Query(None)) -> dict[str, Any]:
        return await slot_action(generator(model)[0], slot_id, action, body.filename if body else None)

    @app.get("/props", dependencies=guarded)
    async def props(model: str | None = Query(None)) -> dict[str, Any]:
        served, _ = generator(model)
        return {"model_path": str(served.model.path), "model_alias": served.model_id,
                "total_slots": served.parallel, "n_ctx": served.ctx.n_ctx,
                "chat_template": getattr(served.formatter, "template", None),
                "default_generation_settings": {"n_ctx": served.ctx.n_ctx, "n_batch": served.ctx.n_batch,
                                                "prefill_budget": served.engine.prefill_budget,
                                                "prompt_lookup": settings.prompt_lookup},
                "host_prompt_cache": served.engine.host_cache.stats() if served.engine.host_cache else None,
                "models": list(state.models), "build_info": f"ikllama {_version()}"}

    if settings.metrics:
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


def _embedding_texts(served: ServedModel, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not value:
        raise ApiError(400, "input is empty", "invalid_request_error", "input")
    if all(isinstance(v, int) for v in value):
        value = [value]
    out = []
    for item in value:
        out.append(item if isinstance(item, str) else served.model.detokenize(list(item)))
        if not out[-1]:
            raise ApiError(400, "input holds an empty string", "invalid_request_error", "input")
    return out
