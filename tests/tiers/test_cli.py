"""``srl-rlvr tiers``: labels say measured (on what) or assumption (from what); names and paths both work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from srl_rlvr.cli.tiers import tiers_group
from srl_rlvr.errors import UserInputError
from srl_rlvr.tiers import tier_names


def _tier(tmp_path: Path, measured: bool, source: str) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({
        "model": "toy", "srl": {"num_generations": 4},
        "throughput": {"measured": measured, "source": source, "tokens_per_s": 50, "train_share": 0.5,
                       "mean_completion_tokens": 25, "price_per_hour": 2.0},
    }))
    return path


def _run(*args: str):
    return CliRunner().invoke(tiers_group, list(args))


def test_measured_figures_say_where_they_were_measured(tmp_path):
    result = _run("estimate", "--tier", str(_tier(tmp_path, True, "2 shared CPU cores")), "--examples", "100",
                  "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "(measured on 2 shared CPU cores)" in result.output
    assert "estimated wall time: 13m20s" in result.output  # 800 s, see test_estimate
    assert "$0.44" in result.output and "the tier's throughput.price_per_hour" in result.output


def test_assumed_figures_say_on_what_grounds(tmp_path):
    result = _run("estimate", "--tier", str(_tier(tmp_path, False, "vendor sheet")), "--examples", "100",
                  "--price-per-hour", "36")
    assert result.exit_code == 0, result.output
    assert "(assumption: vendor sheet)" in result.output
    assert "from --price-per-hour" in result.output


@pytest.mark.parametrize("name", ["gold", "silver", "bronze"])
def test_packaged_gpu_tiers_estimate_by_name_as_assumptions(name):
    result = _run("estimate", "--tier", name, "--examples", "1000")
    assert result.exit_code == 0, result.output
    assert f"tier {name}:" in result.output and "(assumption: " in result.output
    assert "estimated cost: " in result.output


def test_a_config_naming_a_tier_is_merged_over_it(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("tier: gold\nsrl: {num_generations: 4}\n")
    result = _run("estimate", "--tier", str(config), "--examples", "10")
    assert result.exit_code == 0, result.output
    assert "Qwen/Qwen2.5-7B-Instruct" in result.output and "x 4 rollouts" in result.output


def test_unknown_tier_is_a_user_error_naming_the_tiers():
    result = _run("estimate", "--tier", "platinum", "--examples", "10")
    assert isinstance(result.exception, UserInputError)
    assert "known tiers: " in str(result.exception) and "gold" in str(result.exception)


def test_list_shows_every_tier_with_its_figures_kind():
    result = _run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == tier_names()
    gold = next(line for line in lines if line.startswith("gold"))
    assert "Qwen/Qwen2.5-7B-Instruct" in gold and "(assumed)" in gold
