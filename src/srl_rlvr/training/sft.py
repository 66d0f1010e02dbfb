"""The SFT baseline (the paper's comparison point): imitate the expert's whole solution with TRL's SFTTrainer.

Each trajectory becomes one conversational prompt–completion example:

* prompt: :func:`srl_rlvr.prompts.full_problem_messages` (the same prompt RLVR trains on and eval uses);
* completion: one assistant message, the expert steps as ``Step i: ...`` lines
  (:func:`srl_rlvr.prompts.full_solution_text`); the demo's last step already ends "The answer is N.".
  No ``<think>`` block is added: the expert has no monologue to imitate.

TRL computes the loss on the completion only for prompt–completion data (``completion_only_loss``
defaults to on). The final model (or LoRA adapter) and tokenizer go to ``OUTPUT_DIR/final`` with the
stage manifest RLVR and eval read, so ``srl-rlvr eval --model OUTPUT_DIR/final`` works directly::

    python -c "from trl import SFTConfig; from srl_rlvr.training.sft import train_sft; \\
        print(train_sft('smollm2-135m', 'data/demo/train.jsonl', 'out/sft', \\
                        SFTConfig(output_dir='out/sft', max_steps=50, bf16=False, use_cpu=True)))"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import full_problem_messages, full_solution_text

STAGE = "sft"


def expert_steps(traj: Trajectory) -> list[str]:
    """The expert's step texts: ``steps`` as given, or ``solution`` split the way SRL splits it."""
    from srl_rlvr.data.srl import trajectory_actions

    return [action.text for action in trajectory_actions(traj)]


def sft_example(traj: Trajectory) -> dict[str, Any]:
    """One conversational prompt–completion row for TRL's SFTTrainer.

    >>> row = sft_example(Trajectory(id="a", problem="2+3?", steps=["2 + 3 = 5. The answer is 5."]))
    >>> row["completion"]
    [{'role': 'assistant', 'content': 'Step 1: 2 + 3 = 5. The answer is 5.'}]
    """
    return {
        "prompt": full_problem_messages(traj.problem),
        "completion": [{"role": "assistant", "content": full_solution_text(expert_steps(traj))}],
    }


def sft_dataset(trajectories_file: str | Path) -> Any:
    """Trajectory file (any format ``load_source`` reads) → a ``datasets.Dataset`` of prompt–completion rows."""
    from datasets import Dataset

    from srl_rlvr.data.loaders.registry import load_source

    trajectories = load_source(str(trajectories_file)).rows
    if any(t.messages is not None for t in trajectories):
        # Agent transcripts interleave observations, which a single completion cannot hold faithfully.
        bad = next(t for t in trajectories if t.messages is not None)
        raise UserInputError(f"{trajectories_file}: trajectory {bad.id!r} is an agent transcript; "
                             "SFT needs steps or a solution")
    rows = [sft_example(t) for t in trajectories]
    if not rows:
        raise UserInputError(f"{trajectories_file}: no trajectories")
    return Dataset.from_list(rows)


def train_sft(model: str, trajectories_file: str | Path, output_dir: str | Path, sft_args: Any,
              lora: dict[str, Any] | None = None, resume: bool = False, guard: Any = None) -> Path:
    """Train the SFT baseline and return ``output_dir/final`` (full model, or adapter when ``lora`` is given).

    ``model``: ``smollm2-135m``, a HF id or a model folder. ``sft_args``: a ``trl.SFTConfig``, used as
    given (precision, steps, batch size are the caller's choice); its ``output_dir`` is set to
    ``output_dir``. ``lora``: peft ``LoraConfig`` fields, with the same defaults as the SRL/RLVR stages.
    ``resume`` continues from the newest valid checkpoint; ``guard`` carries the fault-handling settings.
    """
    from trl import SFTTrainer

    from srl_rlvr.models import resolve_model
    from srl_rlvr.training.resilience import ResilienceMixin
    from srl_rlvr.training.stages import data_sha256, load_base_policy, peft_config_from, run_stage

    class ResilientSFTTrainer(ResilienceMixin, SFTTrainer):
        """TRL's SFTTrainer with marked checkpoints, NaN guards and fault handling."""

    sft_args.output_dir = str(output_dir)
    base = resolve_model(model)
    dataset = sft_dataset(trajectories_file)

    def make_trainer(args: Any):
        policy, tokenizer = load_base_policy(base)
        return ResilientSFTTrainer(model=policy, args=args, train_dataset=dataset, processing_class=tokenizer,
                                   peft_config=peft_config_from(lora))

    return run_stage(make_trainer, sft_args, STAGE, base, resume, guard=guard,
                     extra={"data_sha256": data_sha256(trajectories_file)}).final_dir
