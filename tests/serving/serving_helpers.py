"""Helpers shared by the serving tests (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from srl_rlvr.serving.backends.base import Backend, Finished, Prompt, SamplingParams, TextDelta
from srl_rlvr.serving.settings import ServeSettings

TINY = "tiny"  # served name of the tiny model in these tests


def make_lora(base_dir: Path, out: Path, seed: int,
              targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj")) -> Path:
    """A LoRA adapter for the tiny model with large random B weights, so its outputs differ from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=2.0)  # peft starts B at zero (a no-op adapter)
        peft.save_pretrained(out)
    return out


def tiny_settings(tiny_model_dir: Path, **overrides) -> ServeSettings:
    return ServeSettings.model_validate({"model": str(tiny_model_dir), "served_model_name": TINY, **overrides})


def write_stage_manifest(folder: Path, think_prefill: bool) -> None:
    (folder / "srl_rlvr_stage.json").write_text(json.dumps({"think_prefill": think_prefill}), encoding="utf-8")


class ScriptedBackend(Backend):
    """Renders prompts with a real tokenizer like the hf backend, then 'generates' a fixed text in small
    chunks, so the think split can be checked on well-formed model output (the tiny model's is noise)."""

    name = "scripted"
    renders_prompts = True

    def __init__(self, settings: ServeSettings, tokenizer, script: str, chunk: int = 3):
        super().__init__(settings)
        self.tokenizer, self.script, self.chunk = tokenizer, script, chunk
        self.prompts: list[Prompt] = []

    async def generate(self, adapter: str | None, prompt: Prompt, params: SamplingParams) -> AsyncIterator:
        self.prompts.append(prompt)
        for i in range(0, len(self.script), self.chunk):
            await asyncio.sleep(0)
            yield TextDelta(self.script[i:i + self.chunk])
        yield Finished("stop", len(prompt.token_ids or ()), len(self.script) // self.chunk)
