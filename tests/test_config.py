"""Pipeline YAML configs: every shipped file loads; mistakes are one clear UserInputError."""

from __future__ import annotations

from pathlib import Path

import pytest

from srl_rlvr.core.yamlconf import parse_set_options
from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.config import (
    PipelineConfig,
    list_tiers,
    load_pipeline_config,
    load_tier,
)
from srl_rlvr.tiers import TIERS_DIR

REPO = Path(__file__).resolve().parents[1]
# Pipeline configs only: serve.yaml, route-*.yaml and the loop's have their own schemas, loaded by tests/serving,
# tests/routing and tests/loop.
NOT_PIPELINE = {"serve.yaml", "route-cpu.yaml", "loop-cpu.yaml", "loop-route-cpu.yaml"}
SHIPPED = (sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in NOT_PIPELINE)
           + sorted(TIERS_DIR.glob("*.yaml")))


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_yaml_loads_and_builds_its_stage_configs(path: Path, tmp_path: Path):
    config = load_pipeline_config(path)
    assert isinstance(config, PipelineConfig)
    assert config.stages and set(config.stages) <= {"srl", "rlvr", "sft", "eval"}
    for key, value in config.hardware.items():  # accelerate/deepspeed files resolve next to the tier file
        if key.endswith("_config") and isinstance(value, str):
            assert Path(value).is_file(), f"{path}: hardware.{key} = {value} does not exist"
    gpus = config.hardware.get("gpus") or config.hardware.get("gpus_per_node") or 0
    if not gpus:  # GPU tiers (bf16 on GPU, deepspeed, vLLM, ...) only build on their hardware
        if "srl" in config.stages:
            assert config.srl_args(tmp_path / "srl").output_dir == str(tmp_path / "srl")
        if "rlvr" in config.stages:
            assert config.rlvr_args(tmp_path / "rlvr").output_dir == str(tmp_path / "rlvr")
        if "eval" in config.stages:
            config.eval.eval_config()


def test_tiers_are_listed_and_loadable():
    assert "cpu" in list_tiers()
    cpu = load_tier("cpu")
    assert cpu.tier == "cpu" and cpu.hardware["gpus"] == 0
    assert cpu.srl["per_device_train_batch_size"] % cpu.srl["num_generations"] == 0
    assert isinstance(cpu.srl["learning_rate"], float)
    with pytest.raises(UserInputError, match="unknown tier 'cpux'.*did you mean 'cpu'"):
        load_tier("cpux")


def test_demo_config_file_is_the_demo_command_run():
    from srl_rlvr.cli.demo import demo_config

    from_file = load_pipeline_config(REPO / "configs" / "demo-cpu.yaml").to_dict()
    assert from_file == demo_config().to_dict()
    header = (REPO / "configs" / "demo-cpu.yaml").read_text().splitlines()[0]
    assert header == "# srl-rlvr run configs/demo-cpu.yaml --out out/demo"


def test_tier_defaults_merge_under_the_config(tmp_path):
    path = write(tmp_path, "tier: cpu\nsrl: {max_steps: 3}\nlora: {r: 4}\n")
    config = load_pipeline_config(path)
    assert config.srl["max_steps"] == 3  # the config wins ...
    assert config.srl["num_generations"] == 4 and config.srl["reward_mode"] == "lenient"  # ... the tier fills the rest
    assert config.lora == {"r": 4}
    assert config.tier == "cpu"


def test_bare_section_keeps_the_tier_section(tmp_path):
    config = load_pipeline_config(write(tmp_path, "tier: cpu\nsrl:\n"))
    assert config.srl["max_steps"] == load_tier("cpu").srl["max_steps"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("stage: [srl]\n", r"run\.yaml: top level: unknown key 'stage' \(did you mean 'stages'\?\)"),
        ("srl: {max_step: 3}\n", r"run\.yaml: section 'srl': unknown key 'max_step' \(did you mean 'max_steps'\?\)"),
        ("rlvr: {rewrd: math}\n", r"section 'rlvr': unknown key 'rewrd' \(did you mean 'reward'\?\)"),
        ("eval: {modles: [base]}\n", r"section 'eval': unknown key 'modles' \(did you mean 'models'\?\)"),
        ("sft: {max_lenght: 9}\n", r"section 'sft': unknown key 'max_lenght' \(did you mean 'max_length'\?\)"),
        ("data: {tain: x.jsonl}\n", r"section 'data': unknown key 'tain' \(did you mean 'train'\?\)"),
        ("data: {demo: {n_trian: 3}}\n", r"section 'data.demo': unknown key 'n_trian'"),
        ("lora: {rank: 8}\n", r"section 'lora': unknown key 'rank'"),
        ("tracking: {mlfow: false}\n", r"section 'tracking': unknown key 'mlfow' \(did you mean 'mlflow'\?\)"),
        ("srl: {output_dir: /tmp/x}\n", r"section 'srl': 'output_dir' is set by the pipeline"),
        ("stages: [srl, rlvx]\n", r"'stages': unknown value 'rlvx' \(did you mean 'rlvr'\?\)"),
        ("eval: {models: [base, srl_rlv]}\n", r"'eval.models': unknown value 'srl_rlv'"),
        ("tier: gpu-of-dreams\n", r"unknown tier 'gpu-of-dreams'"),
        ("- just a list\n", r"run\.yaml: expected a mapping"),
    ],
)
def test_wrong_keys_name_file_section_and_key(tmp_path, text, pattern):
    with pytest.raises(UserInputError, match=pattern):
        load_pipeline_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("srl: {max_steps: many}\n", r"'srl\.max_steps' must be int, got str 'many'"),
        ("srl: {bf16: 1}\n", r"'srl\.bf16' must be"),
        ("srl: {learning_rate: fast}\n", r"'srl\.learning_rate' must be float"),
        ("stages: srl\n", r"'stages' must be list\[str\]"),
        ("data: {demo: {n_train: 1.5}}\n", r"'data\.demo\.n_train' must be int"),
        ("eval: {k: [1]}\n", r"'eval\.k' must be int"),
        ("model: 3\n", r"'model' must be str"),
        # wrong values, checked when the demo task's config is built
        ("data: {demo: {numbers: huge}}\n", r"data\.demo\.numbers must be one of standard, small, got 'huge'"),
        ("data: {demo: {min_ops: 3, max_ops: 2}}\n", r"data\.demo: need 1 <= min_ops <= max_ops, got 3 and 2"),
        ("data: {demo: {style: poem}}\n", r"data\.demo\.style must be one of prose, equations"),
    ],
)
def test_wrong_value_types_and_values_name_the_key(tmp_path, text, pattern):
    with pytest.raises(UserInputError, match=pattern):
        load_pipeline_config(write(tmp_path, text))


def test_bad_values_are_user_errors_when_the_stage_config_is_built(tmp_path):
    config = load_pipeline_config(write(tmp_path, "tier: cpu\nsrl: {reward_mode: sloppy}\n"))
    with pytest.raises(UserInputError, match="section 'srl'.*reward_mode"):
        config.srl_args(tmp_path / "srl")


def test_float_written_the_yaml_1_1_way_is_a_float(tmp_path):
    config = load_pipeline_config(write(tmp_path, "srl: {learning_rate: 1e-5}\n"))
    assert config.srl["learning_rate"] == pytest.approx(1e-5)


def test_overrides_win_and_are_checked(tmp_path):
    path = write(tmp_path, "tier: cpu\nsrl: {max_steps: 3}\n")
    over = parse_set_options(["srl.max_steps=5", "stages=[srl, eval]", "lora.r=8", "eval.limit=4",
                              "srl.learning_rate=2e-5"])
    config = load_pipeline_config(path, over)
    assert config.srl["max_steps"] == 5 and config.stages == ["srl", "eval"]
    assert config.lora == {"r": 8} and config.eval.settings["limit"] == 4
    assert config.srl["learning_rate"] == pytest.approx(2e-5)
    assert load_pipeline_config(path, {"srl": {"max_steps": 7}}).srl["max_steps"] == 7  # nested dicts work too
    with pytest.raises(UserInputError, match=r"--set: section 'srl': unknown key 'max_stepz'"):
        load_pipeline_config(path, {"srl.max_stepz": 1})
    with pytest.raises(UserInputError, match="expected KEY=VALUE"):
        parse_set_options(["srl.max_steps"])


def test_stage_configs_get_the_pipelines_output_dir(tmp_path):
    config = load_pipeline_config(write(tmp_path, "tier: cpu\n"))
    args = config.rlvr_args(tmp_path / "out" / "rlvr")
    assert args.output_dir == str(tmp_path / "out" / "rlvr") and args.reward == "math" and args.max_steps == 8


def test_paths_are_relative_to_the_yaml_folder(tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = write(sub, "model: ../models/mine\ndata: {train: ../data/train.jsonl, test: /abs/test.jsonl}\n")
    monkeypatch.chdir(tmp_path / "models")  # the working directory must not matter
    config = load_pipeline_config(path)
    assert config.data.train == str(tmp_path / "data" / "train.jsonl")
    assert config.data.test == "/abs/test.jsonl"
    assert config.model == str(tmp_path / "models" / "mine")
    assert load_pipeline_config(write(sub, "model: smollm2-135m\n", "b.yaml")).model == "smollm2-135m"
    assert load_pipeline_config(write(sub, "model: Qwen/Qwen2.5-0.5B\n", "c.yaml")).model == "Qwen/Qwen2.5-0.5B"


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(UserInputError, match="no such config file"):
        load_pipeline_config(tmp_path / "nope.yaml")
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_pipeline_config(write(tmp_path, "srl: {max_steps: [\n"))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_follows_the_hardware(tmp_path, monkeypatch, native):
    """``bf16: auto`` (the cpu tier's) is on only where bf16 runs natively: emulated bf16 is far slower."""
    from srl_rlvr.eval import generation

    monkeypatch.setattr(generation, "cpu_supports_bf16", lambda: native)
    config = load_pipeline_config(write(tmp_path, "tier: cpu\n"))
    assert config.srl["bf16"] == "auto" and config.rlvr["bf16"] == "auto"
    assert config.srl_args(tmp_path / "s").bf16 is native
    assert config.rlvr_args(tmp_path / "r").bf16 is native
    with pytest.raises(UserInputError, match="bf16 must be true, false or auto, got 'yes'"):
        load_pipeline_config(write(tmp_path, "tier: cpu\nsrl: {bf16: 'yes'}\n")).srl_args(tmp_path / "s")
