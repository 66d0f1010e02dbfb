"""RLVR starts from the SRL checkpoint's weights (full and LoRA), never silently from the base model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from srl_rlvr.data.demo import write_demo_task
from srl_rlvr.data.srl import write_jsonl
from srl_rlvr.errors import UserInputError
from srl_rlvr.models import load_model_and_tokenizer
from srl_rlvr.registry.manifest import STAGE_MANIFEST as MANIFEST
from srl_rlvr.training.rlvr_config import RLVRConfig
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.stages import build_rlvr_trainer, train_rlvr, train_srl


@pytest.fixture()
def files(tmp_path, srl_rows):
    write_demo_task(tmp_path / "demo", n_train=8, n_test=2, seed=1)
    write_jsonl(tmp_path / "srl.jsonl", srl_rows)
    return tmp_path / "srl.jsonl", tmp_path / "demo" / "train.jsonl"


def _logits(model, tok) -> torch.Tensor:
    ids = tok("Mia has 3 apples", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_full_finetune_handoff(tiny_model_dir, files, stage_kwargs, tmp_path):
    srl_data, traj = files
    srl = train_srl(str(tiny_model_dir), srl_data,
                    SRLConfig(**stage_kwargs(output_dir=str(tmp_path / "srl")), reward_mode="lenient"))
    assert json.loads((srl.final_dir / MANIFEST).read_text())["stage"] == "srl"
    trainer = build_rlvr_trainer(srl.final_dir, traj, RLVRConfig(**stage_kwargs(output_dir=str(tmp_path / "rlvr"))))
    start = _weights(trainer.model)
    saved = _weights(AutoModelForCausalLM.from_pretrained(srl.final_dir))
    base = _weights(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert start.keys() == saved.keys()
    assert all(torch.equal(start[k], saved[k]) for k in start), "RLVR did not start from the SRL weights"
    assert any(not torch.equal(start[k], base[k]) for k in start), "SRL weights equal the base model's"


def test_lora_handoff(tiny_model_dir, files, stage_kwargs, tmp_path):
    srl_data, traj = files
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False}
    srl = train_srl(str(tiny_model_dir), srl_data,
                    SRLConfig(**stage_kwargs(output_dir=str(tmp_path / "srl")), reward_mode="lenient"), lora=lora)
    assert (srl.final_dir / "adapter_config.json").is_file()
    trainer = build_rlvr_trainer(srl.final_dir, traj, RLVRConfig(**stage_kwargs(output_dir=str(tmp_path / "rlvr"))))
    tok = trainer.processing_class
    srl_model, _ = load_model_and_tokenizer(str(srl.final_dir))
    base_model, _ = load_model_and_tokenizer(str(tiny_model_dir))
    start = _logits(trainer.model.eval(), tok)
    assert torch.allclose(start, _logits(srl_model.eval(), tok), atol=1e-6)
    assert not torch.allclose(start, _logits(base_model.eval(), tok), atol=1e-4)
    assert any(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" in n), "adapter not trainable"


def test_rlvr_trains_and_records_its_origin(tiny_model_dir, files, stage_kwargs, tmp_path):
    srl_data, traj = files
    srl_args = SRLConfig(**stage_kwargs(output_dir=str(tmp_path / "srl"), max_steps=1), reward_mode="lenient",
                         think_prefill=True)
    srl = train_srl(str(tiny_model_dir), srl_data, srl_args)
    rlvr = train_rlvr(srl.final_dir, traj, RLVRConfig(**stage_kwargs(output_dir=str(tmp_path / "rlvr"))))
    manifest = json.loads((rlvr.final_dir / MANIFEST).read_text())
    assert manifest["stage"] == "rlvr" and manifest["init_from"] == str(srl.final_dir)
    assert manifest["think_prefill"] is True, "RLVR must inherit the prompt format SRL was trained with"
    assert rlvr.global_step == 2


def test_bad_checkpoints_are_loud(tiny_model_dir, files, stage_kwargs, tmp_path):
    _, traj = files
    args = RLVRConfig(**stage_kwargs(output_dir=str(tmp_path / "rlvr")))
    with pytest.raises(UserInputError, match="not found"):
        build_rlvr_trainer(tmp_path / "missing", traj, args)
    with pytest.raises(UserInputError, match="is missing"):
        build_rlvr_trainer(tiny_model_dir, traj, args)  # a plain model folder is not an SRL stage
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MANIFEST).write_text(json.dumps({"stage": "rlvr", "base_model": str(tiny_model_dir)}))
    with pytest.raises(UserInputError, match="expected one of"):
        build_rlvr_trainer(fake, traj, args)
    (fake / MANIFEST).write_text(json.dumps({"stage": "srl", "base_model": str(tiny_model_dir)}))
    with pytest.raises(UserInputError, match="cannot load"):
        build_rlvr_trainer(fake, traj, args)
