"""`srl-rlvr serve --model models:/N@champion`: a promote moves a running server to the new version while a
concurrent client keeps getting answers (no failed request), and /v1/models shows name, version, alias."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from srl_rlvr.models.tiny import build_tiny_model
from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.live import LiveServer
from srl_rlvr.serving.settings import ServeSettings

PROMPT = {"prompt": "The answer is", "max_tokens": 6, "temperature": 0}


def version_folder(root: Path, seed: int) -> Path:
    """The tiny model with its weights redrawn large, so two versions answer differently."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = build_tiny_model(root / f"v-seed{seed}", seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(folder)
        for param in model.parameters():
            torch.nn.init.normal_(param, std=0.5)
        model.save_pretrained(folder)
    (folder / "srl_rlvr_stage.json").write_text(json.dumps({"stage": "rlvr", "base_model": "tiny", "lora": False}))
    return folder


def fake_eval(root: Path, name: str, n_correct: int) -> Path:
    folder = root / "eval" / name
    folder.mkdir(parents=True)
    rows = [{"id": f"q{i}", "correct": i < n_correct} for i in range(40)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "metrics.json").write_text(json.dumps({"greedy_accuracy": n_correct / 40, "n": 40}))
    return folder / "metrics.json"


def completion(base_url: str, model: str) -> str:
    response = httpx.post(f"{base_url}/v1/completions", json={"model": model, **PROMPT}, timeout=60)
    response.raise_for_status()
    return response.json()["choices"][0]["text"]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from srl_rlvr.registry.lifecycle import Registry

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.delenv("SRL_RLVR_AUDIT_LOG", raising=False)
    return uri, Registry.open(uri)


def test_a_server_on_an_alias_follows_a_promote_without_failing_a_request(tmp_path, registry):
    uri, reg = registry
    one, two = version_folder(tmp_path, 1), version_folder(tmp_path, 2)
    reg.register("math", one, fake_eval(tmp_path, "one", 10))
    reg.register("math", two, fake_eval(tmp_path, "two", 30))
    reg.promote("math", "1")
    with LiveServer(create_app(ServeSettings.model_validate({"model": str(two), "served_model_name": "v2"}))) as d:
        expected_after = completion(d.base_url, "v2")
    settings = ServeSettings.model_validate({"model": "models:/math@champion",
                                             "registry": {"uri": uri, "poll_s": 0.2}})
    with LiveServer(create_app(settings)) as server:
        card = httpx.get(f"{server.base_url}/v1/models").json()["data"][0]
        assert card["id"] == "math" and card["registry"] == {"name": "math", "version": "1", "alias": "champion"}
        before = completion(server.base_url, "math")
        assert before != expected_after, "the two versions must answer differently for the test to mean anything"

        errors, answers, stop = [], [], threading.Event()

        def client() -> None:  # a user hammering the server through the swap
            while not stop.is_set():
                try:
                    answers.append(completion(server.base_url, "math"))
                except Exception as exc:  # noqa: BLE001 - any failure is what the test is about
                    errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        reg.promote("math", "2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            card = httpx.get(f"{server.base_url}/v1/models").json()["data"][0]
            if card["registry"]["version"] == "2":
                break
            time.sleep(0.1)
        time.sleep(1.5)  # let the old backend drain and close under load
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert card["registry"]["version"] == "2", card
        assert not errors, errors[:3]
        assert before in answers and expected_after in answers  # both versions answered during the test
        assert completion(server.base_url, "math") == expected_after
        assert answers[-1] == expected_after
