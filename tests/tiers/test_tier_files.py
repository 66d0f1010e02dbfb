"""The packaged tier files: valid keys for the installed TRL/peft/accelerate, and honest throughput figures."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from srl_rlvr.tiers import ACCELERATE_DIR, DEEPSPEED_DIR, TIERS_DIR, tier_names

GPU_TIERS = ["gold", "silver", "bronze"]
LAUNCH_BRONZE = Path(__file__).resolve().parents[2] / "infra" / "launch" / "launch_bronze.sh"


def _tier(name: str) -> dict:
    return yaml.safe_load((TIERS_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", tier_names())
def test_every_tier_has_a_throughput_block_saying_measured_and_source(name):
    block = _tier(name).get("throughput")
    assert isinstance(block, dict) and block, f"{name}.yaml: empty throughput block"
    assert isinstance(block.get("measured"), bool), f"{name}.yaml: throughput.measured must be true/false"
    assert isinstance(block.get("source"), str) and block["source"].strip(), f"{name}.yaml: throughput.source"
    from srl_rlvr.tiers.estimate import parse_throughput

    parse_throughput(block, name)  # the estimator accepts it


@pytest.mark.parametrize("name", GPU_TIERS)
def test_gpu_tier_figures_are_labelled_assumptions(name):
    assert _tier(name)["throughput"]["measured"] is False


@pytest.mark.parametrize("name", GPU_TIERS)
def test_gpu_tier_stage_keys_are_fields_of_the_installed_configs(name):
    from peft import LoraConfig

    from srl_rlvr.training.rlvr_config import RLVRConfig
    from srl_rlvr.training.srl_config import SRLConfig

    tier = _tier(name)
    for section, cls in (("srl", SRLConfig), ("rlvr", RLVRConfig), ("lora", LoraConfig)):
        known = {f.name for f in dataclasses.fields(cls)}
        assert not set(tier.get(section) or {}) - known, f"{name}.yaml: unknown {section} keys"


@pytest.mark.parametrize("name", GPU_TIERS)
def test_gpu_tier_stage_configs_build(name, tmp_path):
    """They build (use_cpu only because this machine has no GPU for bf16), and batches split into groups."""
    from srl_rlvr.training.rlvr_config import RLVRConfig
    from srl_rlvr.training.srl_config import SRLConfig

    tier = _tier(name)
    processes = tier["hardware"]["training_processes"]
    for section, cls in (("srl", SRLConfig), ("rlvr", RLVRConfig)):
        args = cls(output_dir=str(tmp_path), **{**tier[section], "use_cpu": True})
        assert args.use_vllm and args.bf16 and args.beta == 0.0 and args.temperature == 1.0
        assert args.num_generations == 8  # the paper's rollouts per prompt
        rollouts_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * processes
        assert rollouts_per_step % args.num_generations == 0


@pytest.mark.skipif(importlib.util.find_spec("srl_rlvr.eval.harness") is None,
                    reason="pipeline config loader not ready")
@pytest.mark.parametrize("name", GPU_TIERS)
def test_gpu_tiers_pass_the_pipeline_config_checks(name):
    from srl_rlvr.pipelines.config import load_tier

    config = load_tier(name)
    assert Path(config.hardware["accelerate_config"]).is_file()


@pytest.mark.parametrize("name", GPU_TIERS)
def test_hardware_config_files_exist(name):
    hardware = _tier(name)["hardware"]
    for key, value in hardware.items():
        if key.endswith("_config"):
            assert (TIERS_DIR / value).is_file(), f"{name}.yaml: hardware.{key} -> {value} is missing"


@pytest.mark.parametrize("path", sorted(ACCELERATE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))  # rejects unknown keys
    assert config.compute_environment.value == "LOCAL_MACHINE"


def _validated_launch(argv: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    return _validate_launch_command(launch_command_parser().parse_args(shlex.split(argv)))


def test_multinode_zero3_takes_the_deepspeed_file_without_conflicting_keys():
    """accelerate refuses mixed_precision/zero_stage/offload keys next to --deepspeed_config_file."""
    args, defaults, mp_from_config = _validated_launch(
        f"--config_file {ACCELERATE_DIR / 'multinode_zero3.yaml'} "
        f"--deepspeed_config_file {DEEPSPEED_DIR / 'zero3.json'} "
        "--num_machines 4 --num_processes 32 --machine_rank 1 --main_process_ip 10.0.0.11 "
        "-m srl_rlvr.cli.main run c.yaml"
    )
    assert args.use_deepspeed and args.num_processes == 32 and args.num_machines == 4
    forbidden = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage", "offload_optimizer_device",
                 "offload_param_device", "offload_param_nvme_path", "offload_optimizer_nvme_path",
                 "zero3_save_16bit_model"}
    assert not forbidden & set(defaults.deepspeed_config) and not mp_from_config


def test_single_node_zero3_is_stage_3_bf16():
    args, _, _ = _validated_launch(f"--config_file {ACCELERATE_DIR / 'zero3.yaml'} "
                                   "--num_processes 6 -m srl_rlvr.cli.main run c.yaml")
    assert args.use_deepspeed and args.zero_stage == 3 and args.mixed_precision == "bf16" and args.num_processes == 6


def test_deepspeed_config_is_zero3_with_trainer_filled_values():
    config = json.loads((DEEPSPEED_DIR / "zero3.json").read_text())
    assert config["zero_optimization"]["stage"] == 3
    assert config["bf16"]["enabled"] == "auto" and config["train_micro_batch_size_per_gpu"] == "auto"


def _dry_run(mode: str) -> list[str]:
    # as a user runs it: with this environment's python first on PATH (an activated venv)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DRY_RUN": "1", "VLLM_HOST": "10.0.0.10", "MAIN_IP": "10.0.0.11",
           "RANK": "2", "CONFIG": "configs/s1k-bronze.yaml", "OUT": "/shared/runs/bronze"}
    out = subprocess.run(["bash", str(LAUNCH_BRONZE), mode], env=env, capture_output=True, text=True, check=True)
    return shlex.split(out.stdout)


def test_launch_bronze_commands_parse_with_trl_and_accelerate():
    serve = _dry_run("serve")
    assert serve[:2] == ["trl", "vllm-serve"]
    from trl.scripts.vllm_serve import make_parser

    script_args, _ = make_parser().parse_args_and_config(args=serve[2:], return_remaining_strings=True)
    assert script_args.model == _tier("bronze")["model"] and script_args.tensor_parallel_size == 8

    train = _dry_run("train")
    assert train[:2] == ["accelerate", "launch"]
    args, _, _ = _validated_launch(shlex.join(train[2:]))
    assert args.machine_rank == 2 and args.num_processes == 32 and args.module
    assert (args.training_script == "srl_rlvr.cli.main"
            and args.training_script_args[:2] == ["run", "configs/s1k-bronze.yaml"])
    assert "srl.vllm_server_host=10.0.0.10" in args.training_script_args


def test_every_config_the_bronze_docs_name_exists_and_loads():
    import re

    from srl_rlvr.pipelines.config import load_pipeline_config
    from srl_rlvr.tiers import TIERS_DIR

    repo = Path(__file__).resolve().parents[2]
    texts = LAUNCH_BRONZE.read_text() + (TIERS_DIR / "bronze.yaml").read_text()
    named = set(re.findall(r"configs/[\w.-]+\.yaml", texts))
    assert named, "the bronze launcher names no config"
    for rel in named:
        assert (repo / rel).is_file(), f"{rel} is named by the bronze launcher but does not exist"
        assert load_pipeline_config(repo / rel).tier == "bronze"
