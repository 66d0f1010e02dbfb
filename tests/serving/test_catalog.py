"""The model-name resolution step: virtual names (the router's hook) pick a target and add headers."""

from __future__ import annotations

from fastapi.testclient import TestClient
from serving_helpers import TINY, ScriptedBackend, tiny_settings

from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.catalog import ModelCatalog, Target


class _PickBase:
    async def select(self, body, catalog: ModelCatalog, api_key=None) -> tuple[Target, dict[str, str]]:
        target = catalog.target(TINY)
        return Target(body.model, target.backend, target.adapter, target.think), {"x-routed-to": TINY}


class _RouterNames:
    def resolve(self, name: str):
        return _PickBase() if name.startswith("router-") else None

    def cards(self):
        return [{"id": "router-demo-0.5", "object": "model", "created": 0, "owned_by": "srl-rlvr", "root": None,
                 "parent": None}]


def test_virtual_model_names_dispatch_and_add_headers(tiny_model_dir, tiny_tokenizer):
    settings = tiny_settings(tiny_model_dir, api_keys=[{"key": "k", "scope": "admin"}])
    auth = {"Authorization": "Bearer k"}
    backend = ScriptedBackend(settings, tiny_tokenizer, "routed answer")
    app = create_app(settings, backend)
    app.state.catalog.add_virtual(_RouterNames())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = {"model": "router-demo-0.5", "messages": [{"role": "user", "content": "hi"}]}
        response = client.post("/v1/chat/completions", json=body, headers=auth)
        assert response.status_code == 200 and response.headers["x-routed-to"] == TINY
        assert response.json()["model"] == "router-demo-0.5"
        assert response.json()["choices"][0]["message"]["content"] == "routed answer"
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
        assert streamed.headers["x-routed-to"] == TINY and streamed.text.endswith("data: [DONE]\n\n")
        assert {m["id"] for m in client.get("/v1/models", headers=auth).json()["data"]} == {TINY, "router-demo-0.5"}
        taken = client.post("/v1/load_lora_adapter", json={"lora_name": "router-x-1", "lora_path": "/nowhere"},
                            headers=auth)
        assert taken.status_code == 400 and "already a served model name" in taken.json()["error"]["message"]
