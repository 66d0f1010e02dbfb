"""The SFT baseline: the prompt–completion rows it trains on, and 2 real TRL steps on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from trl import SFTConfig

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.models import load_model_and_tokenizer
from srl_rlvr.prompts import full_problem_messages
from srl_rlvr.training.sft import sft_dataset, sft_example, train_sft


@pytest.fixture
def train_file(tmp_path) -> Path:
    from srl_rlvr.data.demo import make_demo_task

    train, _ = make_demo_task(n_train=4, n_test=1, seed=0)
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in train), encoding="utf-8")
    return path


def _args(out: Path) -> SFTConfig:
    return SFTConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
                     logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                     gradient_checkpointing=False, disable_tqdm=True, seed=0, max_length=1024)


def test_rows_are_full_prompt_and_numbered_expert_steps():
    steps = Trajectory(id="a", problem="P?", steps=["x = 1.", "y = 2. The answer is 2."])
    row = sft_example(steps)
    assert row["prompt"] == full_problem_messages("P?")
    assert row["completion"] == [{"role": "assistant", "content": "Step 1: x = 1.\nStep 2: y = 2. The answer is 2."}]
    solution = Trajectory(id="b", problem="Q?", solution="1. Add 2 and 3 to get 5.\n2. So the answer is 5.")
    assert sft_example(solution)["completion"][0]["content"] == ("Step 1: Add 2 and 3 to get 5.\n"
                                                                 "Step 2: So the answer is 5.")
    assert "<think>" not in row["completion"][0]["content"]


def test_dataset_from_file(train_file):
    dataset = sft_dataset(train_file)
    assert len(dataset) == 4 and set(dataset.column_names) == {"prompt", "completion"}


def test_two_steps_change_weights_and_save_a_loadable_model(tiny_model_dir, train_file, tmp_path):
    out = tmp_path / "sft"
    final = train_sft(str(tiny_model_dir), train_file, out, _args(out))
    assert final == out / "final"
    before, _ = load_model_and_tokenizer(str(tiny_model_dir))
    after, tokenizer = load_model_and_tokenizer(str(final))
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    assert old.keys() == new.keys()
    changed = [name for name in old if not torch.equal(old[name], new[name])]
    assert len(changed) > len(old) // 2, f"only {changed} changed"
    assert tokenizer.chat_template is not None
    manifest = json.loads((final / "srl_rlvr_stage.json").read_text())
    assert manifest["stage"] == "sft" and manifest["global_step"] == 2 and manifest["lora"] is False


def test_lora_saves_an_adapter_that_loads(tiny_model_dir, train_file, tmp_path):
    from peft import PeftModel

    out = tmp_path / "sft-lora"
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    final = train_sft(str(tiny_model_dir), train_file, out, _args(out), lora=lora)
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    model, _ = load_model_and_tokenizer(str(final))
    assert isinstance(model, PeftModel)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero; training moved it


def test_every_example_trains_on_its_end_of_turn_token_even_though_pad_is_eos(tiny_model_dir, train_file, tmp_path):
    """The pad = eos trap (open-r1 #492): a collator that masks labels by token id would hide the EOS, and the
    student would never learn to stop. The tiny tokenizer pads with its EOS, <|im_end|>, on purpose."""
    from trl import SFTTrainer

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the trap is set
    args = SFTConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=4, report_to=[], use_cpu=True,
                     bf16=False, max_length=1024)
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(train_file), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "rows of different lengths, so some are padded"
    for labels, ids, n in zip(batch["labels"], batch["input_ids"], lengths):
        trained = labels[labels != -100]
        assert trained.numel() > 0
        # the assistant turn's <|im_end|> is a trained label (the chat template adds a newline after it) ...
        assert tokenizer.eos_token_id in trained[-3:].tolist(), tokenizer.decode(trained[-5:])
        # ... and the padding after the row is not
        assert (labels[int(n):] == -100).all() and (ids[int(n):] == tokenizer.pad_token_id).all()
