"""serve.yaml loading (the shipped example included), API keys from the environment, the bind rule, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.serving.backends import build_backend
from srl_rlvr.serving.settings import check_bind_allowed, load_settings, parse_api_keys_env

REPO = Path(__file__).resolve().parents[2]


def test_shipped_serve_yaml_loads(clean_api_key_env):
    settings = load_settings(REPO / "configs" / "serve.yaml", model="smollm2-135m")
    assert settings.backend == "hf" and settings.host == "127.0.0.1" and settings.api_keys == []
    assert settings.limits.max_tokens == 1024 and settings.think.prefill == "auto"
    assert settings.hf.max_batch_size == 8


def test_wrong_key_names_file_and_key(tmp_path: Path):
    path = tmp_path / "serve.yaml"
    path.write_text("model: m\nlimits:\n  max_token: 5\n", encoding="utf-8")
    with pytest.raises(UserInputError,
                       match=r"serve\.yaml: unknown key 'limits\.max_token' \(did you mean 'max_tokens'\?\)"):
        load_settings(path)
    path.write_text("model: m\nbackend_name: hf\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"serve\.yaml: unknown key 'backend_name'"):
        load_settings(path)


def test_wrong_type_and_value_name_the_key(tmp_path: Path):
    path = tmp_path / "serve.yaml"
    path.write_text("model: m\nport: '8000'\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"serve\.yaml: 'port': Input should be a valid integer"):
        load_settings(path)
    path.write_text("model: m\nthink: {prefill: maybe}\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"'think\.prefill'"):
        load_settings(path)
    path.write_text("model: m\napi_keys: [{key: s3cret, scope: root}]\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"'api_keys\.0\.scope'") as info:
        load_settings(path)
    assert "s3cret" not in str(info.value)
    with pytest.raises(UserInputError, match="'model' is required"):
        load_settings(None)


def test_api_keys_from_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SRL_RLVR_API_KEYS", "adm:in:admin, usr:user")
    keys = load_settings(None, model="m").api_keys
    assert [(k.key.get_secret_value(), k.scope) for k in keys] == [("adm:in", "admin"), ("usr", "user")]
    with pytest.raises(UserInputError, match=r"SRL_RLVR_API_KEYS: item 2 must be KEY:SCOPE") as info:
        parse_api_keys_env("a:admin,secretvalue:owner")
    assert "secretvalue" not in str(info.value)


def test_no_keys_means_loopback_only(clean_api_key_env):
    assert "loopback-only and unauthenticated" in check_bind_allowed(load_settings(None, model="m"))
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(UserInputError, match=f"refusing to serve on {host} without API keys"):
            check_bind_allowed(load_settings(None, model="m", host=host))
    keyed = load_settings(None, model="m", host="0.0.0.0", api_keys=[{"key": "k", "scope": "admin"}])
    assert "API keys required" in check_bind_allowed(keyed)


def test_backend_registry(clean_api_key_env):
    with pytest.raises(UserInputError, match=r"unknown serving backend 'vlm' \(did you mean 'vllm'\?\)"):
        build_backend(load_settings(None, model="m", backend="vlm"))
    with pytest.raises(UserInputError, match="needs openai.base_url"):
        build_backend(load_settings(None, model="m", backend="openai"))


def _run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    from srl_rlvr.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return info.value.code, captured.out + captured.err


def test_cli_refuses_public_bind_without_keys(clean_api_key_env, tiny_model_dir: Path, capsys):
    code, out = _run_cli(capsys, "serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0")
    assert code == 2 and "error: refusing to serve on 0.0.0.0 without API keys" in out
    code, out = _run_cli(capsys, "serve", "--model", "./no/such/folder")
    assert code == 2 and "no such model folder" in out
    code, out = _run_cli(capsys, "serve", "--model", "m", "--lora", "oops")
    assert code == 2 and "--lora 'oops': expected NAME=PATH" in out
    code, out = _run_cli(capsys, "serve", "--help")
    assert code == 0 and "Example:" in out
