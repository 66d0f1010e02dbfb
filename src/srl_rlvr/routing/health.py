"""Tier health: cooldowns after failures (LiteLLM's allowed_fails / cooldown_time) and a latency estimate.

A tier that fails ``allowed_fails`` times within ``window_s`` is skipped for ``cooldown_s``; a success
clears its failure count. Observed latencies feed an exponentially weighted mean, which the policy
compares with the tier's SLO (a tier that has slowed down stops getting traffic it would answer late).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TierHealth:
    allowed_fails: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0
    latency_alpha: float = 0.2  # weight of the newest observation in the latency mean
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict, init=False, repr=False)
    _cool_until: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _latency: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def record_failure(self, tier: str) -> None:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(tier, []) if now - t < self.window_s] + [now]
            self._failures[tier] = recent
            if len(recent) >= self.allowed_fails:
                self._cool_until[tier] = now + self.cooldown_s
                self._failures[tier] = []

    def record_success(self, tier: str, latency_ms: float | None = None) -> None:
        with self._lock:
            self._failures.pop(tier, None)
            if latency_ms is not None:
                old = self._latency.get(tier)
                self._latency[tier] = latency_ms if old is None else old + self.latency_alpha * (latency_ms - old)

    def cooling_down(self) -> set[str]:
        now = self.clock()
        with self._lock:
            return {tier for tier, until in self._cool_until.items() if until > now}

    def latency_ms(self, tier: str) -> float | None:
        return self._latency.get(tier)
