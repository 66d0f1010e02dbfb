"""The router and the cascade as model names of the server: tier headers, escalation log, metrics, budgets.

Tiers: ``small`` is the tiny random model the server itself serves (its answers are noise, so the cascade's
verifier always escalates), ``teacher`` the SIMULATED demo solver (exact on demo problems).
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from serving_helpers import TINY, tiny_settings

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.demo.solver import solve_demo_completion
from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import full_problem_messages
from srl_rlvr.routing import QualityPredictor
from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.live import LiveServer

RICH, POOR = "rich-key", "poor-key"
SMALL_PRICE = 0.2  # $/1M output tokens of the small tier (input free)
TRAIN, TEST = make_demo_task(120, 40, seed=3, min_ops=1, max_ops=4)
EASY = next(r["problem"] for r in TEST if r["num_ops"] == 1)
HARD = next(r["problem"] for r in TEST if r["num_ops"] == 4)


def _write_config(path: Path, tiers: dict, **sections) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"name": "t", "task": "math", "tiers": tiers, **sections}), encoding="utf-8")
    return path


def _teacher() -> dict:
    return {"backend": "demo_solver", "simulated": True, "expected_output_tokens": 60, "quality": {"math": 1.0},
            "cost": {"usd_per_mtok_input": 3.0, "usd_per_mtok_output": 15.0}}


@pytest.fixture(scope="module")
def routed(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("routed")
    config = _write_config(root / "route.yaml", {
        "small": {"backend": "hf", "model": str(tiny_model_dir), "expected_output_tokens": 8, "quality": {"math": 0.3},
                  "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": SMALL_PRICE}},
        "teacher": _teacher()},
        router={"on_over_budget": "refuse"}, cascade={"tiers": ["small", "teacher"], "k": 2},
        budgets={"keys": {POOR: 0.000001}})
    # Synthetic outcomes: the small tier solves exactly the 1- and 2-step problems.
    predictor = QualityPredictor.fit([r["problem"] for r in TRAIN],
                                     {"small": [float(r["num_ops"] <= 2) for r in TRAIN]}).save(
        root / "predictor.json")
    log = root / "escalations.jsonl"
    settings = tiny_settings(tiny_model_dir, api_keys=[{"key": RICH}, {"key": POOR}],
                             routing={"config": str(config), "predictor": str(predictor), "escalation_log": str(log)})
    return settings, log


@pytest.fixture(scope="module")
def client(routed):
    with TestClient(create_app(routed[0]), base_url="http://127.0.0.1") as c:
        yield c


def _ask(client: TestClient, model: str, problem: str, key: str = RICH, **extra):
    body = {"model": model, "messages": full_problem_messages(problem), "max_tokens": 8, "temperature": 0, **extra}
    return client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def _metric(client: TestClient, metric: str, **labels) -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_models_lists_the_router_and_the_cascade(client):
    ids = {m["id"] for m in client.get("/v1/models", headers={"Authorization": f"Bearer {RICH}"}).json()["data"]}
    assert ids == {TINY, "router-t-0.5", "cascade-t", "tier-t-small", "tier-t-teacher"}


def test_a_tier_asked_by_name_answers_alone_and_logs_no_escalation(client, routed):
    log = routed[1]
    before = log.read_text(encoding="utf-8") if log.exists() else ""
    reply = _ask(client, "tier-t-teacher", HARD)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "tier-t-teacher"
    assert reply.json()["choices"][0]["message"]["content"] == solve_demo_completion(HARD)
    assert reply.headers["x-srl-rlvr-tier"] == "teacher" and reply.headers["x-srl-rlvr-simulated"] == "true"
    assert float(reply.headers["x-srl-rlvr-cost-usd"]) > 0
    assert (log.read_text(encoding="utf-8") if log.exists() else "") == before
    small = _ask(client, "tier-t-small", EASY)  # the served model's own backend, same greedy text
    assert small.status_code == 200
    assert small.json()["choices"][0]["message"]["content"] == \
        _ask(client, TINY, EASY).json()["choices"][0]["message"]["content"]
    cards = {m["id"]: m for m in client.get("/v1/models", headers={"Authorization": f"Bearer {RICH}"}).json()["data"]}
    assert cards["tier-t-teacher"]["simulated"] is True and cards["tier-t-small"]["simulated"] is False


def test_a_refitted_predictor_file_is_loaded_without_a_restart(tiny_model_dir, tmp_path):
    import os

    config = _write_config(tmp_path / "route.yaml", {
        "small": {"backend": "hf", "model": str(tiny_model_dir), "expected_output_tokens": 8,
                  "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": SMALL_PRICE}},
        "teacher": _teacher()})
    prompts = [r["problem"] for r in TRAIN]
    path = QualityPredictor.fit(prompts, {"small": [1.0] * len(prompts)}).save(tmp_path / "predictor.json")
    settings = tiny_settings(tiny_model_dir, routing={"config": str(config), "predictor": str(path)})
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        card = c.get("/v1/models").json()["data"][1]
        first = card["predictor"]["sha256"]
        assert card["id"] == "router-t-0.5" and card["predictor"]["path"] == str(path)
        assert _ask(c, "router-t-0.5", HARD).headers["x-srl-rlvr-tier"] == "small"  # the small tier "solves all"
        QualityPredictor.fit(prompts, {"small": [0.0] * len(prompts)}).save(path)  # refit: it solves none
        os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 1_000_000))
        assert _ask(c, "router-t-0.5", HARD).headers["x-srl-rlvr-tier"] == "teacher"
        assert c.get("/v1/models").json()["data"][1]["predictor"]["sha256"] not in (None, first)
        path.write_text("{not json", encoding="utf-8")  # a broken refit keeps the last good predictor
        assert _ask(c, "router-t-0.5", HARD).headers["x-srl-rlvr-tier"] == "teacher"
        # the predictor knows only "small": every decision used the teacher's configured prior, and says so
        assert _metric(c, "srl_rlvr_routing_prior_decisions_total", router="t", tier="teacher") == 3
        assert _metric(c, "srl_rlvr_routing_prior_decisions_total", router="t", tier="small") == 0


def test_router_answers_from_the_served_model_with_tier_headers(client):
    before = _metric(client, "srl_rlvr_serving_generation_tokens_total", model_name=TINY)
    routed = _ask(client, "router-t-0", EASY)  # threshold 0: the cheapest tier is always good enough
    assert routed.status_code == 200, routed.text
    body = routed.json()
    assert body["model"] == "router-t-0"
    assert routed.headers["x-srl-rlvr-tier"] == "small" and routed.headers["x-srl-rlvr-simulated"] == "false"
    tokens = body["usage"]["completion_tokens"]
    assert float(routed.headers["x-srl-rlvr-cost-usd"]) == pytest.approx(tokens * SMALL_PRICE / 1e6)
    direct = _ask(client, TINY, EASY).json()  # the same greedy answer as asking the served model by name
    assert body["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    # The tier call ran on the server's own backend, so its metrics count it (the replay is not counted again).
    assert _metric(client, "srl_rlvr_serving_generation_tokens_total", model_name=TINY) == before + 2 * tokens


def test_router_sends_the_strong_tier_and_labels_it_simulated(client):
    routed = _ask(client, "router-t-1", HARD)
    assert routed.status_code == 200, routed.text
    assert routed.headers["x-srl-rlvr-tier"] == "teacher" and routed.headers["x-srl-rlvr-simulated"] == "true"
    # The solver read the problem out of the training layout, not the layout's text.
    assert routed.json()["choices"][0]["message"]["content"] == solve_demo_completion(HARD)
    assert "The answer is" in solve_demo_completion(HARD)
    assert float(routed.headers["x-srl-rlvr-cost-usd"]) > 1e-4


def test_predictor_routes_by_difficulty_at_a_threshold(client):
    assert _ask(client, "router-t-0.5", EASY).headers["x-srl-rlvr-tier"] == "small"
    assert _ask(client, "router-t-0.5", HARD).headers["x-srl-rlvr-tier"] == "teacher"


def test_cascade_escalates_logs_and_counts(client, routed):
    log = routed[1]
    rows_before = len(load_source(str(log)).rows) if log.exists() else 0
    escalations_before = _metric(client, "srl_rlvr_routing_cascade_escalations_total", cascade="cascade-t",
                                 from_tier="small", to_tier="teacher", reason="format")
    answer = _ask(client, "cascade-t", HARD, temperature=1.0, seed=7)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "cascade-t"
    assert answer.headers["x-srl-rlvr-tier"] == "teacher" and answer.headers["x-srl-rlvr-escalations"] == "1"
    assert answer.headers["x-srl-rlvr-verified"] == "true" and answer.headers["x-srl-rlvr-simulated"] == "true"
    assert answer.json()["choices"][0]["message"]["content"] == solve_demo_completion(HARD)
    rows = load_source(str(log)).rows
    assert len(rows) == rows_before + 1
    row = rows[-1].model_dump()
    assert row["problem"] == HARD and row["answer"] == str(next(r["answer"] for r in TEST if r["problem"] == HARD))
    assert row["small_tier"] == "small" and row["escalated_tier"] == "teacher" and row["escalated_simulated"]
    assert _metric(client, "srl_rlvr_routing_cascade_escalations_total", cascade="cascade-t", from_tier="small",
                   to_tier="teacher", reason="format") == escalations_before + 1
    assert _metric(client, "srl_rlvr_routing_cascade_requests_total", cascade="cascade-t", tier="teacher") >= 1


def test_streamed_routed_answer_has_headers_and_the_same_text(client):
    with client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {RICH}"},
                       json={"model": "router-t-1", "messages": full_problem_messages(HARD), "stream": True}) as r:
        assert r.status_code == 200 and r.headers["x-srl-rlvr-tier"] == "teacher"
        frames = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert {c["model"] for c in chunks} == {"router-t-1"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == solve_demo_completion(HARD)


def test_router_requests_are_counted_per_tier(client):
    before = _metric(client, "srl_rlvr_routing_router_requests_total", router="t", tier="teacher")
    _ask(client, "router-t-1", EASY)
    assert _metric(client, "srl_rlvr_routing_router_requests_total", router="t", tier="teacher") == before + 1
    assert "# TYPE srl_rlvr_routing_cascade_escalations_total counter" in client.get("/metrics").text


def test_budget_exceeded_is_a_429_that_never_echoes_the_key(client):
    refused = _ask(client, "router-t-1", HARD, key=POOR)  # the teacher costs ~1e-3, the key has 1e-6
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "budget_exceeded"
    assert "budget" in error["message"] and POOR not in refused.text
    assert _ask(client, "router-t-1", HARD, key=RICH).status_code == 200  # budgets are per key
    # The cascade charges the same budget: it runs while money is left, then is refused too.
    assert _ask(client, "cascade-t", HARD, key=POOR).status_code == 200
    assert _ask(client, "cascade-t", HARD, key=POOR).status_code == 429
    assert _metric(client, "srl_rlvr_routing_rejected_total", name="t", reason="budget_exceeded") >= 1
    assert _metric(client, "srl_rlvr_routing_rejected_total", name="cascade-t", reason="budget_exceeded") >= 1


def test_unknown_or_malformed_routed_names_are_openai_errors(client):
    unknown = _ask(client, "router-nope-0.5", EASY)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert "no router named 'nope'" in unknown.json()["error"]["message"]
    bad_threshold = _ask(client, "router-t-7", EASY)
    assert bad_threshold.status_code == 404 and "threshold" in bad_threshold.json()["error"]["message"]
    raw = client.post("/v1/completions", json={"model": "router-t-0.5", "prompt": "2+2"},
                      headers={"Authorization": f"Bearer {RICH}"})
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "unsupported_endpoint"
    too_long = _ask(client, "router-t-0.5", EASY, max_tokens=10_000)  # checked before any tier runs
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "max_tokens_too_large"


def test_openai_client_on_a_live_server(routed):
    settings = routed[0].model_copy(update={"api_keys": []})
    with LiveServer(create_app(settings)) as live:
        client = openai.OpenAI(base_url=f"{live.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="router-t-1", messages=full_problem_messages(HARD), max_tokens=8, temperature=0)
        response = raw.parse()
        assert response.model == "router-t-1" and raw.headers["x-srl-rlvr-tier"] == "teacher"
        assert response.choices[0].message.content == solve_demo_completion(HARD)
        stream = client.chat.completions.create(model="router-t-1", messages=full_problem_messages(HARD),
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == solve_demo_completion(HARD)
        with pytest.raises(openai.NotFoundError, match="no router named"):
            client.chat.completions.create(model="router-x-0.5", messages=[{"role": "user", "content": "hi"}])


def test_tiers_map_to_adapters_private_backends_and_fallbacks(tiny_model_dir, lora_dirs, tmp_path,
                                                              clean_api_key_env):
    config = _write_config(tmp_path / "route.yaml", {
        "adapter": {"backend": "hf", "model": str(lora_dirs["lora-a"]), "quality": {"math": 0.5},
                    "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": 0.3}},
        "other": {"backend": "hf", "model": str(lora_dirs["lora-b"]), "quality": {"math": 0.5},
                  "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": 0.1}},
        "broken": {"backend": "hf", "model": str(tmp_path / "no-such-model"), "quality": {"math": 0.5},
                   "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": 0.0}},
        "teacher": _teacher()}, cascade={"tiers": ["broken"]})
    settings = tiny_settings(tiny_model_dir, lora_adapters={"lora-a": str(lora_dirs["lora-a"])},
                             routing={"config": str(config)})
    app = create_app(settings)
    bridge = app.state.routing
    with TestClient(app, base_url="http://127.0.0.1") as client:
        tiers = {t.name: t for t in bridge.router.tiers}
        assert bridge.targets.own_target(tiers["adapter"]).adapter == "lora-a"  # a loaded adapter: the server's own
        assert bridge.targets.own_target(tiers["other"]) is None
        # The cheapest tier fails to load: retried, then the next cheapest answers, and the header says so.
        routed = _ask(client, "router-t-0", EASY, key="unused")
        assert routed.status_code == 200, routed.text
        assert routed.headers["x-srl-rlvr-tier"] == "other" and routed.headers["x-srl-rlvr-failed-tiers"] == "broken"
        assert ("hf", str(lora_dirs["lora-b"])) in bridge.targets.started  # its own hf backend, metered as "other"
        assert _metric(client, "srl_rlvr_serving_request_success_total", model_name="other") == 1
        failed = _ask(client, "cascade-t", EASY, key="unused")
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "all_tiers_failed"
        assert "broken" in failed.json()["error"]["message"] and "no such model folder" in failed.text
        # retried after cooldown_s
        assert list(bridge.targets.failed_starts) == [("hf", str(tmp_path / "no-such-model"))]


def test_bad_routing_setups_fail_at_start(tiny_model_dir, tmp_path):
    vllm = _write_config(tmp_path / "vllm.yaml", {"big": {"backend": "vllm", "model": "some/other-model",
                                                         "quality": {"math": 0.9}}})
    with pytest.raises(UserInputError, match="a vllm tier must be the served model"):
        create_app(tiny_settings(tiny_model_dir, routing={"config": str(vllm)}))
    upstream = _write_config(tmp_path / "up.yaml", {"big": {"backend": "openai", "model": "gpt-x",
                                                            "quality": {"math": 0.9}}})
    with pytest.raises(UserInputError, match="needs openai.base_url"):
        create_app(tiny_settings(tiny_model_dir, routing={"config": str(upstream)}))
    clash = _write_config(tmp_path / "clash.yaml", {"teacher": _teacher()})
    with pytest.raises(UserInputError, match="clashes"):
        create_app(tiny_settings(tiny_model_dir, served_model_name="cascade-t", routing={"config": str(clash)}))


def test_cli_needs_a_route_config_for_predictor_and_log():
    from srl_rlvr.cli.serve import serve_command

    result = CliRunner().invoke(serve_command, ["--model", "smollm2-135m", "--predictor", "p.json"])
    assert isinstance(result.exception, UserInputError) and "need --route-config" in str(result.exception)



def test_openai_tier_goes_to_the_upstream(tiny_model_dir, tmp_path, clean_api_key_env):
    config = _write_config(tmp_path / "route.yaml", {
        "big": {"backend": "openai", "model": TINY, "quality": {"math": 0.9},
                "cost": {"usd_per_mtok_input": 1.0, "usd_per_mtok_output": 2.0}},
        "teacher": _teacher()})
    with LiveServer(create_app(tiny_settings(tiny_model_dir))) as upstream:  # our own app as the upstream
        settings = tiny_settings(tiny_model_dir, routing={"config": str(config)},
                                 openai={"base_url": f"{upstream.base_url}/v1"})
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            routed = _ask(client, "router-t-0", EASY, key="unused")
            assert routed.status_code == 200, routed.text
            assert routed.headers["x-srl-rlvr-tier"] == "big"
            direct = _ask(client, TINY, EASY, key="unused").json()  # the upstream serves the same tiny model
            assert routed.json()["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
            usage = routed.json()["usage"]
            expected = (len(EASY) + 3) // 4 * 1.0 / 1e6 + usage["completion_tokens"] * 2.0 / 1e6
            assert float(routed.headers["x-srl-rlvr-cost-usd"]) == pytest.approx(expected)
