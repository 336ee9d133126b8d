"""slm_ikllama's context sampler (``Builder.with_sampler``), run in C by ``ikl_sample_basic``."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BasicSampler"]


@dataclass(frozen=True)
class BasicSampler:
    """Greedy when ``temperature <= 0``; otherwise top-k (``top_k > 0``) -> top-p (``top_p < 1``) -> temperature."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def validate(self) -> None:
        if not math.isfinite(self.temperature):
            raise ValueError(f"temperature={self.temperature} must be finite")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be >= 0 (0 = off)")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
