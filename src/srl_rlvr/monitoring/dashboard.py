"""A static HTML dashboard: every panel of :mod:`srl_rlvr.monitoring.panels` as a PNG, from Prometheus, no
Grafana needed.

    srl-rlvr monitor dashboard --prometheus http://127.0.0.1:9090 --out out/dashboard --window 3600

For each panel it asks Prometheus's ``/api/v1/query_range`` for each query over the last ``window_s`` seconds,
draws one line per returned series and writes ``index.html`` (sections Training, Cost, Performance). Each panel
is a ``<figure class="panel" data-panel="<slug>" data-series="N">``; a panel whose queries returned no series
(or only NaN) says "No data" in its caption and has ``data-series="0"``, so an empty panel is never silent and
a check can find it.
"""

from __future__ import annotations

import html
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from srl_rlvr.core.plotting import headless_pyplot
from srl_rlvr.errors import UserInputError
from srl_rlvr.monitoring.panels import Panel, all_panels

SECTIONS = {"training": "Training", "cost": "Cost", "performance": "Performance"}
POINTS = 240  # samples per series: step = window / POINTS
MAX_LEGEND = 12
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclass
class Line:
    label: str
    times: list[float]
    values: list[float]


def _pyplot():
    plt = headless_pyplot()
    if plt is None:
        raise UserInputError("the HTML dashboard needs matplotlib: pip install matplotlib")
    return plt


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _get(client: Any, base: str, path: str, params: dict[str, Any]) -> Any:
    import httpx

    try:
        response = client.get(f"{base}{path}", params=params)
    except httpx.HTTPError as exc:
        raise UserInputError(f"cannot reach Prometheus at {base}: {_one_line(exc)}") from exc
    try:
        body = response.json()
    except ValueError:
        raise UserInputError(f"{base}{path} answered HTTP {response.status_code} without JSON: is {base} a "
                             "Prometheus server?") from None
    if body.get("status") != "success":
        raise UserInputError(f"Prometheus at {base} refused {params.get('query')!r}: "
                             f"{body.get('errorType', 'error')}: {body.get('error', response.status_code)}")
    return body["data"]


def legend(template: str, labels: dict[str, str]) -> str:
    """Fill a Grafana legend template (``p95 {{tier}}``) from a series' labels (a missing label: empty)."""
    text = _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), template)
    return " ".join(text.split())


def _lines(result: list[dict[str, Any]], template: str) -> list[Line]:
    lines = []
    for item in result:
        times, values = [], []
        for ts, raw in item.get("values", []):
            value = float(raw)
            times.append(float(ts))
            values.append(value if math.isfinite(value) else math.nan)
        if not any(math.isfinite(v) for v in values):
            continue  # only NaN / Inf (e.g. a ratio over a zero rate): nothing to draw
        labels = {k: v for k, v in item.get("metric", {}).items() if k != "__name__"}
        label = legend(template, labels) or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
        lines.append(Line(label, times, values))
    return lines


def _dedupe(lines: list[Line]) -> None:
    seen: dict[str, int] = {}
    for line in lines:
        seen[line.label] = seen.get(line.label, 0) + 1
        if seen[line.label] > 1:
            line.label = f"{line.label} #{seen[line.label]}"


def _draw(plt: Any, panel: Panel, lines: list[Line], path: Path, start: float, end: float) -> None:
    import matplotlib.dates as mdates

    fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=100)
    for line in lines:
        ax.plot([datetime.fromtimestamp(t, tz=UTC) for t in line.times], line.values, label=line.label,
                linewidth=1.4)
    ax.set_xlim(datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    ax.set_title(panel.title, fontsize=11)
    ax.set_ylabel(panel.unit)
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if lines:
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:MAX_LEGEND], labels[:MAX_LEGEND], fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", fontsize=16, color="#b00")
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _figure(panel: Panel, lines: list[Line], image: str) -> str:
    queries = "".join(f"<li><code>{html.escape(expr)}</code></li>" for _, expr in panel.queries)
    if lines:
        caption = (f"<strong>{html.escape(panel.title)}</strong> &middot; {len(lines)} series"
                   f" &middot; {html.escape(panel.unit)}")
    else:
        caption = (f'<strong class="no-data">No data</strong> &middot; {html.escape(panel.title)}: '
                   "the queries returned no series")
    return (f'<figure class="panel{"" if lines else " empty"}" data-panel="{panel.slug}" '
            f'data-series="{len(lines)}">\n'
            f'<img src="{html.escape(image)}" alt="{html.escape(panel.title)}" '
            "onload=\"this.dataset.loaded = this.naturalWidth > 0 ? 'yes' : 'no'\" "
            "onerror=\"this.dataset.loaded = 'error'\">\n"
            f"<figcaption>{caption}<details><summary>queries</summary><ul>{queries}</ul></details>"
            "</figcaption>\n</figure>")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; background: #fafafa; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 18px 0 8px; }
.meta { font-size: 12px; color: #555; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 10px; }
figure.panel { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 4px; }
figure.panel img { width: 100%; height: auto; display: block; }
figure.panel.empty { border-color: #b00; }
figcaption { font-size: 12px; padding: 2px 4px; }
.no-data { color: #b00; font-size: 14px; }
details { display: inline; margin-left: 6px; color: #555; } code { font-size: 11px; }
"""


def render(prometheus_url: str, out_dir: Path, window_s: int = 3600, step_s: int | None = None, *,
           panels: dict[str, list[Panel]] | None = None) -> Path:
    """Render every panel over the last ``window_s`` seconds into ``out_dir``; return ``out_dir/index.html``.

    ``step_s`` defaults to ``max(1, window_s // 240)``; ``panels`` defaults to :func:`all_panels`.
    UserInputError (one line) when Prometheus is unreachable or refuses a query."""
    import httpx
    from tqdm import tqdm

    base = prometheus_url.rstrip("/")
    if window_s <= 0:
        raise UserInputError(f"--window must be positive seconds, got {window_s}")
    step = step_s if step_s else max(1, window_s // POINTS)
    panels = all_panels() if panels is None else panels
    end = time.time()
    start = end - window_s
    out_dir = Path(out_dir)
    plt = _pyplot()
    sections: dict[str, list[str]] = {}
    counts = {"panels": 0, "empty": 0}
    with httpx.Client(timeout=30.0) as client:
        _get(client, base, "/api/v1/query", {"query": "vector(1)", "time": end})  # reachable, and an API
        out_dir.mkdir(parents=True, exist_ok=True)
        flat = [(name, panel) for name, group in panels.items() for panel in group]
        for name, panel in tqdm(flat, desc="panels", unit="panel"):
            lines: list[Line] = []
            for template, expr in panel.queries:
                data = _get(client, base, "/api/v1/query_range",
                            {"query": expr, "start": start, "end": end, "step": step})
                lines += _lines(data.get("result", []), template)
            _dedupe(lines)
            image = f"{panel.slug}.png"
            _draw(plt, panel, lines, out_dir / image, start, end)
            sections.setdefault(name, []).append(_figure(panel, lines, image))
            counts["panels"] += 1
            counts["empty"] += not lines
    stamp = datetime.fromtimestamp(end, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [f'<section data-dashboard="{html.escape(name)}"><h2>{html.escape(SECTIONS.get(name, name.title()))}'
            f'</h2>\n<div class="grid">\n' + "\n".join(figures) + "\n</div></section>"
            for name, figures in sections.items()]
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>srl-rlvr monitoring</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>srl-rlvr monitoring</h1>\n"
            f'<p class="meta">{html.escape(base)} &middot; last {window_s} s (step {step} s) up to {stamp} &middot; '
            f"{counts['panels']} panels, {counts['empty']} with no data &middot; generated by "
            "<code>srl-rlvr monitor dashboard</code></p>\n" + "\n".join(body) + "\n</body></html>\n")
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
