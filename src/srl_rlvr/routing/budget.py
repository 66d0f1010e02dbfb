"""Spend per API key, with optional limits and a reset period (LiteLLM-style budgets).

Thread-safe: the server records spend from several request handlers at once. API keys are only dict
keys here; configs should name key ids, not paste secrets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ANONYMOUS = "<no key>"


class BudgetExceeded(RuntimeError):
    """The caller's key has no budget left for this request (the server answers 429)."""

    def __init__(self, api_key: str | None, spent: float, limit: float, tier: str, needed: float):
        self.api_key, self.spent, self.limit, self.tier, self.needed = api_key, spent, limit, tier, needed
        super().__init__(f"budget exceeded for key {api_key or ANONYMOUS!r}: spent ${spent:.6f} of ${limit:.6f}; "
                         f"tier {tier!r} would need ${needed:.6f}")


@dataclass
class BudgetBook:
    """``limits[key]`` dollars per period (``default_usd`` for keys not listed; None: unlimited)."""

    limits: Mapping[str, float] = field(default_factory=dict)
    default_usd: float | None = None
    period_s: float | None = None  # None: spend never resets
    clock: Callable[[], float] = time.monotonic
    _spent: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _since: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def limit(self, api_key: str | None) -> float | None:
        return self.limits.get(api_key or ANONYMOUS, self.default_usd)

    def _roll(self, key: str) -> None:
        now = self.clock()
        if self.period_s is not None and now - self._since.setdefault(key, now) >= self.period_s:
            self._spent[key] = 0.0
            self._since[key] = now

    def spent(self, api_key: str | None) -> float:
        key = api_key or ANONYMOUS
        with self._lock:
            self._roll(key)
            return self._spent.get(key, 0.0)

    def remaining(self, api_key: str | None) -> float | None:
        """Dollars left this period, None when the key has no limit."""
        limit = self.limit(api_key)
        return None if limit is None else limit - self.spent(api_key)

    def record(self, api_key: str | None, usd: float) -> None:
        key = api_key or ANONYMOUS
        with self._lock:
            self._roll(key)
            self._spent[key] = self._spent.get(key, 0.0) + usd
