"""matplotlib for files only: pyplot on the Agg backend (no display on a training box or a server)."""

from __future__ import annotations

from typing import Any


def headless_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
