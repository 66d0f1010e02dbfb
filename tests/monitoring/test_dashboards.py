"""Dashboards: the panels (srl_rlvr.monitoring.panels), the generated Grafana JSON, and the HTML dashboard
rendered from a REAL Prometheus scraping a sample of every catalog metric, checked in a REAL headless Chromium.

    SRL_RLVR_DOCS_SCREENSHOT=1 .venv/bin/pytest tests/monitoring/test_dashboards.py -k end_to_end
        # also refreshes docs/img/monitoring-dashboard.png from the end-to-end run
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.monitoring.catalog import CATALOG, METRICS, build, series, unknown_in
from srl_rlvr.monitoring.dashboard import render
from srl_rlvr.monitoring.grafana import DESCRIPTION, GRAFANA_UNITS, write_dashboards
from srl_rlvr.monitoring.panels import Panel, all_panels

REPO = Path(__file__).resolve().parents[2]
GRAFANA_DIR = REPO / "infra" / "monitoring" / "grafana"
DOCS_SCREENSHOT = REPO / "docs" / "img" / "monitoring-dashboard.png"
DASHBOARDS = ("training", "cost", "performance")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


# --- (a) panels and Grafana JSON ------------------------------------------------------------------------
def test_panels_cover_three_dashboards_and_query_only_catalog_metrics():
    panels = all_panels()
    assert tuple(panels) == DASHBOARDS
    slugs = [p.slug for group in panels.values() for p in group]
    assert len(slugs) == len(set(slugs)), "panel titles must give unique slugs (PNG names, data-panel)"
    for group in panels.values():
        for panel in group:
            for _, expr in panel.queries:
                assert unknown_in(expr) == set(), f"{panel.title}: {expr}"


def test_unknown_in_catches_a_metric_the_catalog_lacks():  # so the checks above and below can fail
    assert unknown_in("sum by (tier) (rate(srl_rlvr_routing_cost_dollars_total[5m]))") == {
        "srl_rlvr_routing_cost_dollars_total"}
    with pytest.raises(KeyError):
        series("srl_rlvr_routing_cost_dollars")


def _checked_in(name: str) -> dict:
    path = GRAFANA_DIR / f"{name}.json"
    assert path.exists(), f"{path} is missing: run `srl-rlvr monitor generate`"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", DASHBOARDS)
def test_grafana_json_is_importable_and_queries_only_catalog_metrics(name):
    board = _checked_in(name)
    assert board["schemaVersion"] == 39
    assert board["description"] == DESCRIPTION
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    panels = all_panels()[name]
    assert len(board["panels"]) == len(panels)
    cells = set()
    for gpanel, panel in zip(board["panels"], panels, strict=True):
        assert gpanel["type"] == "timeseries" and gpanel["title"] == panel.title
        assert gpanel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert gpanel["fieldConfig"]["defaults"]["unit"] == GRAFANA_UNITS[panel.unit]
        pos = gpanel["gridPos"]
        cell = (pos["x"], pos["y"])
        assert cell not in cells and pos["x"] + pos["w"] <= 24
        cells.add(cell)
        exprs = [t["expr"] for t in gpanel["targets"]]
        assert exprs == [expr for _, expr in panel.queries]
        for expr in exprs:
            assert unknown_in(expr) == set(), f"{name}.json, {panel.title}: {expr}"
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in gpanel["targets"])


def test_grafana_units():
    assert (GRAFANA_UNITS["seconds"], GRAFANA_UNITS["usd"], GRAFANA_UNITS["ratio"], GRAFANA_UNITS["tokens/s"]) == (
        "s", "currencyUSD", "percentunit", "short")
    units = {p["fieldConfig"]["defaults"]["unit"] for b in DASHBOARDS for p in _checked_in(b)["panels"]}
    assert {"s", "currencyUSD", "percentunit", "short"} <= units


def test_checked_in_grafana_json_is_what_panels_generate_now(tmp_path):
    written = write_dashboards(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.json" for n in DASHBOARDS)
    for path in written:
        checked_in = GRAFANA_DIR / path.name
        assert checked_in.exists(), f"{checked_in} is missing: run `srl-rlvr monitor generate`"
        assert checked_in.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{checked_in} is stale (panels.py changed): run `srl-rlvr monitor generate`")
    again = write_dashboards(tmp_path / "again")  # deterministic
    assert [p.read_text() for p in again] == [p.read_text() for p in written]


# --- the DOM check shared by (b) and (c) ----------------------------------------------------------------
class _Panels(HTMLParser):
    """figure.panel elements: their data-* attributes, their img's data-loaded, their caption text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self._in: dict | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure" and "panel" in (attributes.get("class") or "").split():
            self._in = {"panel": attributes.get("data-panel"), "series": attributes.get("data-series"),
                        "img": None, "loaded": None, "caption": ""}
            self.figures.append(self._in)
        elif self._in is not None and tag == "img":
            self._in["img"], self._in["loaded"] = attributes.get("src"), attributes.get("data-loaded")
        elif self._in is not None and tag == "figcaption":
            self._caption = True

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._caption = False
        elif tag == "figure":
            self._in = None

    def handle_data(self, data):
        if self._in is not None and self._caption:
            self._in["caption"] += data


def parse_panels(dom: str) -> list[dict]:
    parser = _Panels()
    parser.feed(dom)
    return parser.figures


def panel_problems(dom: str, check_images: bool = True) -> list[str]:
    """What is wrong with each figure.panel: no series, or (in a browser's DOM) an image that did not load."""
    problems = []
    for fig in parse_panels(dom):
        if not fig["series"] or not fig["series"].isdigit() or int(fig["series"]) == 0:
            problems.append(f"{fig['panel']}: data-series={fig['series']!r} ({' '.join(fig['caption'].split())})")
        if fig["img"] is None:
            problems.append(f"{fig['panel']}: no <img>")
        elif check_images and fig["loaded"] != "yes":
            problems.append(f"{fig['panel']}: image {fig['img']} data-loaded={fig['loaded']!r}")
    return problems


# --- (c) a panel with no data is visible, and the check catches it --------------------------------------
class _FakePrometheus(BaseHTTPRequestHandler):
    """Answers like Prometheus's HTTP API: the global step has a series, a reward-std query only NaN, the rest
    nothing."""

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        params = parse_qs(url.query)
        query = params.get("query", [""])[0]
        if url.path == "/api/v1/query":
            data = {"resultType": "vector", "result": [{"metric": {}, "value": [time.time(), "1"]}]}
        else:
            start, end = float(params["start"][0]), float(params["end"][0])
            stamps = [start + i * (end - start) / 10 for i in range(11)]
            result = []
            if "global_step" in query:
                result = [{"metric": {"stage": "grpo"}, "values": [[t, str(i)] for i, t in enumerate(stamps)]}]
            elif "reward_std" in query:
                result = [{"metric": {"stage": "grpo"}, "values": [[t, "NaN"] for t in stamps]}]
            data = {"resultType": "matrix", "result": result}
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prometheus():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_panel_without_data_says_no_data_and_the_check_fails_on_it(fake_prometheus, tmp_path):
    panels = {"training": [
        Panel("Global step", "steps", [("step {{stage}}", series("srl_rlvr_training_global_step"))]),
        Panel("Loss of a stage that never ran", "1",
              [("{{stage}}", f'{series("srl_rlvr_training_loss")}{{stage="never"}}')]),
        Panel("Reward std", "1", [("{{stage}}", series("srl_rlvr_training_reward_std"))]),  # only NaN
    ]}
    index = render(fake_prometheus, tmp_path / "out", window_s=60, panels=panels)
    dom = index.read_text(encoding="utf-8")
    figures = {f["panel"]: f for f in parse_panels(dom)}
    assert figures["global-step"]["series"] == "1"
    assert "step grpo" not in figures["global-step"]["caption"]  # the legend is in the PNG, the count here
    for empty in ("loss-of-a-stage-that-never-ran", "reward-std"):
        assert figures[empty]["series"] == "0"
        assert "No data" in figures[empty]["caption"]
        assert (tmp_path / "out" / f"{empty}.png").stat().st_size > 0  # a "No data" image, not a broken one
    problems = panel_problems(dom, check_images=False)
    assert len(problems) == 2 and all("data-series='0'" in p and "No data" in p for p in problems), problems
    assert panel_problems(dom) != []  # unloaded images count too, outside a browser


def test_unreachable_prometheus_is_one_line_user_error(tmp_path):
    port = _free_port()
    with pytest.raises(UserInputError) as info:
        render(f"http://127.0.0.1:{port}", tmp_path / "out", window_s=60)
    message = str(info.value)
    assert "cannot reach Prometheus" in message and "\n" not in message
    assert not (tmp_path / "out" / "index.html").exists()


# --- (b) end to end: real Prometheus, real headless Chromium --------------------------------------------
LABEL_VALUES = {
    "stage": "grpo", "reason": "oom", "name": "auto", "tier": "gold", "key_id": "a1b2c3d4", "model_name": "srl",
    "lora_name": "base", "finished_reason": "stop", "route": "/v1/chat/completions", "router": "auto",
    "failed_tier": "silver", "cascade": "cheap-first", "from_tier": "bronze", "to_tier": "gold",
}
GAUGES = {"srl_rlvr_training_max_steps": lambda t: 100.0, "srl_rlvr_training_global_step": lambda t: 2.0 * t,
          "srl_rlvr_training_budget_usd": lambda t: 40.0, "srl_rlvr_routing_budget_limit_usd": lambda t: 10.0,
          "srl_rlvr_training_cost_usd": lambda t: 1.0 + 0.5 * t,
          "srl_rlvr_training_cost_estimate_usd": lambda t: 30.0 + 0.2 * t,
          "srl_rlvr_routing_budget_spent_usd": lambda t: 1.0 + 0.2 * t,
          "srl_rlvr_training_last_step_timestamp_seconds": lambda t: time.time(),
          "srl_rlvr_training_last_checkpoint_timestamp_seconds": lambda t: time.time()}


class Exposition:
    """A sample of every catalog metric, changed on each scrape (counters grow, histograms observe)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.objects = {m.name: build(m.name, self.registry) for m in METRICS}
        self.tick = 0
        self.lock = threading.Lock()

    def _label_sets(self, name: str) -> list[dict[str, str]]:
        labels = {label: LABEL_VALUES.get(label, "sample") for label in CATALOG[name].labels}
        if "code" in CATALOG[name].labels:
            return [{**labels, "code": "200"}, {**labels, "code": "503"}]
        return [labels]

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        with self.lock:
            self.tick += 1
            t = self.tick
            for i, m in enumerate(METRICS):
                for labels in self._label_sets(m.name):
                    child = self.objects[m.name].labels(**labels) if labels else self.objects[m.name]
                    if m.kind == "counter":  # a 5xx now and then, most responses fine
                        child.inc(0.01 * t if m.unit == "usd" else 1 if labels.get("code") == "503" else 4 + t % 3)
                    elif m.kind == "gauge":
                        wave = GAUGES.get(m.name)
                        child.set(wave(t) if wave else 0.5 + 0.3 * math.sin(t / 4 + i))
                    else:
                        scale = m.buckets[len(m.buckets) // 2]
                        for factor in (0.4, 1.0, 1.7):
                            child.observe(scale * factor * (1 + 0.2 * math.sin(t)))
            return generate_latest(self.registry)


def _exposition_handler(exposition: Exposition):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = exposition.text()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def _wait_target_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    pytest.fail(f"the scrape target never came up:\n{log.read_text()[-3000:]}")


def _chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1400,2400", "--virtual-time-budget=5000",
         *args], capture_output=True, text=True, timeout=90, check=False)


def test_end_to_end_dashboard_from_real_prometheus_in_headless_chromium(tmp_path):
    prometheus = _binary("prometheus")
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    if prometheus is None:
        pytest.skip("needs the prometheus binary (Debian: apt-get install prometheus)")
    if chromium is None:
        pytest.skip("needs chromium for the headless browser check (Debian: apt-get install chromium)")

    exposition = Exposition()
    sample = exposition.text().decode()
    for m in METRICS:  # the exposition holds every catalog metric
        assert f"\n{m.samples[0]}" in sample, m.name
    server = ThreadingHTTPServer(("127.0.0.1", 0), _exposition_handler(exposition))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{server.server_address[1]}"

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "srl-rlvr", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": [target], "labels": {"tier": "gold"}}]}],
    }))
    log = tmp_path / "prometheus.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_target_up(url, proc, log)
        up = time.monotonic()
        time.sleep(max(0.0, 15.0 - (time.monotonic() - up)))  # ~15 scrapes: rates over them are non-zero
        out = tmp_path / "dashboard"
        index = render(url, out, window_s=120)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.shutdown()
        server.server_close()

    html_text = index.read_text(encoding="utf-8")
    figures = parse_panels(html_text)
    assert len(figures) == sum(len(g) for g in all_panels().values())
    assert panel_problems(html_text, check_images=False) == [], "panels without data in index.html"
    for section in ("Training", "Cost", "Performance"):
        assert f"<h2>{section}</h2>" in html_text

    screenshot = tmp_path / "monitoring-dashboard.png"
    shot = _chromium(chromium, tmp_path, f"--screenshot={screenshot}", index.as_uri())
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, shot.stderr[-3000:]
    dumped = _chromium(chromium, tmp_path, "--dump-dom", index.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    dom_figures = parse_panels(dumped.stdout)
    assert len(dom_figures) == len(figures), dumped.stderr[-3000:]
    assert panel_problems(dumped.stdout) == []
    if os.environ.get("SRL_RLVR_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
