"""docs/training.md's import path works: the trainer/config pairs are exported from srl_rlvr.training."""

import subprocess
import sys


def test_trainers_and_configs_are_exported():
    import srl_rlvr.training as training
    from srl_rlvr.training import RLVRConfig, RLVRTrainer, SRLConfig, SRLTrainer

    assert set(training.__all__) == {"RLVRConfig", "RLVRTrainer", "SRLConfig", "SRLTrainer"}
    assert SRLTrainer.__name__ == "SRLTrainer" and "dynamic_sampling" in SRLConfig.__dataclass_fields__
    assert RLVRTrainer.__name__ == "RLVRTrainer" and RLVRConfig.__name__ == "RLVRConfig"


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    import srl_rlvr.training as training

    with pytest.raises(AttributeError, match="no attribute 'SRLTrainr'"):
        training.SRLTrainr  # noqa: B018


def test_importing_the_package_does_not_load_the_trainers():
    code = "import sys, srl_rlvr.training; assert 'srl_rlvr.training.srl_trainer' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
