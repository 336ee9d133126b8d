"""Prometheus metrics (``prometheus_client``): llama-server's ``llamacpp:*`` names, plus latency histograms.

Each server has its own registry, so that several servers (tests) in one process never collide.
Gauges are read from the engine at scrape time; counters and histograms are fed by the engine thread.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    """The registry and every metric of one server."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.prompt_tokens = Counter("llamacpp:prompt_tokens", "Prompt tokens processed", registry=r)
        self.prompt_seconds = Counter("llamacpp:prompt_seconds", "Prompt processing time (s)", registry=r)
        self.tokens_predicted = Counter("llamacpp:tokens_predicted", "Generated tokens", registry=r)
        self.predicted_seconds = Counter("llamacpp:tokens_predicted_seconds", "Generation time (s)", registry=r)
        self.requests = Counter("ikllama:requests", "Finished HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.cached_tokens = Counter("ikllama:prompt_cached_tokens", "Prompt tokens reused from the KV cache",
                                     registry=r)
        self.ttft = Histogram("ikllama:time_to_first_token_seconds", "Arrival to first token", buckets=_LATENCY,
                              registry=r)
        self.itl = Histogram("ikllama:inter_token_latency_seconds", "Gap between tokens of one choice",
                             buckets=_LATENCY, registry=r)
        self.queue_wait = Histogram("ikllama:queue_wait_seconds", "Arrival to admission", buckets=_LATENCY,
                                    registry=r)
        self.e2e = Histogram("ikllama:request_duration_seconds", "Arrival to last token", buckets=_LATENCY,
                             registry=r)
        self.processing = Gauge("llamacpp:requests_processing", "Requests holding sequences", registry=r)
        self.deferred = Gauge("llamacpp:requests_deferred", "Requests waiting for a sequence", registry=r)
        self.kv_ratio = Gauge("llamacpp:kv_cache_usage_ratio", "Used KV cells / n_ctx", registry=r)
        self.kv_tokens = Gauge("llamacpp:kv_cache_tokens", "Used KV cells", registry=r)
        self.host_cache_bytes = Gauge("ikllama:host_prompt_cache_bytes", "Sequence states kept in host memory "
                                      "(--cache-ram)", registry=r)
        self.host_cache_hits = Gauge("ikllama:host_prompt_cache_hits", "Prompts started from the host prompt cache",
                                     registry=r)
        self.models: list[Any] = []  # ServedModel, read at scrape time

    def step(self, n_prompt: int, n_decode: int, seconds: float) -> None:
        """One decode step: its time is credited to prompt and generation in proportion to their tokens."""
        total = n_prompt + n_decode
        if n_prompt:
            self.prompt_tokens.inc(n_prompt)
            self.prompt_seconds.inc(seconds * n_prompt / total)
        if n_decode:
            self.tokens_predicted.inc(n_decode)
            self.predicted_seconds.inc(seconds * n_decode / total)

    def render(self) -> bytes:
        """The exposition text; gauges add up every served model's engine (one line each, like llama-server)."""
        engines = [m.engine for m in self.models if m.engine is not None and not m.engine.ctx.closed]
        self.processing.set(sum(e.n_active for e in engines))
        self.deferred.set(sum(e.n_waiting for e in engines))
        used = sum(e.ctx.kv_cells_used for e in engines)
        self.kv_tokens.set(used)
        self.kv_ratio.set(used / max(1, sum(e.ctx.n_ctx for e in engines)))
        caches = [e.host_cache.stats() for e in engines if e.host_cache is not None]
        self.host_cache_bytes.set(sum(c["bytes"] for c in caches))
        self.host_cache_hits.set(sum(c["hits"] for c in caches))
        return generate_latest(self.registry)
