#!/usr/bin/env bash
# Issue 11 recipe search X1-X3 (in-context step demonstrations), rerunnable from the repo root:
#   WORK=/tmp/exp bash scripts/experiments/step_demos/run.sh x1 v1     # X1: 3 demo turns, answer in the last step
#   WORK=/tmp/exp bash scripts/experiments/step_demos/run.sh x2 v3     # X2: answer as its own step
#   WORK=/tmp/exp bash scripts/experiments/step_demos/run.sh x3 v4     # X3: each step quotes its clause (not finished)
# Applies step_demos.patch in a git worktree at WORK/wt (the demonstrations are an env-gated experiment, not
# shipped), trains SRL with NAME.yaml, then greedy stepwise eval of the base and SRL models on the first 60
# dev problems (never test). Writes WORK/NAME.{train.log,pred.jsonl} and WORK/base_DEMOS.jsonl.
set -euo pipefail
NAME=$1; DEMOS=$2; WORK=${WORK:-/tmp/exp}; HERE=$(cd "$(dirname "$0")" && pwd); REPO=$(cd "$HERE/../../.." && pwd)
PY=$REPO/.venv/bin/python
mkdir -p "$WORK"
if [ ! -d "$WORK/wt" ]; then
  git -C "$REPO" worktree add -f "$WORK/wt" HEAD --detach -q && git -C "$WORK/wt" apply "$HERE/step_demos.patch"
fi
export SRL_FEWSHOT=1 SRL_DEMOS=$DEMOS PYTHONPATH=$WORK/wt/src WORK
STEPS=4; NEW=20
mkdir -p "$WORK/q"
case $NAME in x2) STEPS=5 ;; x3) NEW=32
  for s in train dev; do "$PY" "$HERE/quote.py" "$WORK/x1/data/$s.jsonl" "$WORK/q/$s.jsonl"; done ;; esac  # x3 needs x1's data
envsubst < "$HERE/$NAME.yaml" > "$WORK/$NAME.yaml"
rm -rf "${WORK:?}/$NAME"
(cd "$WORK/wt" && /usr/bin/time -v "$PY" -m srl_rlvr.cli.main run "$WORK/$NAME.yaml" --out "$WORK/$NAME") > "$WORK/$NAME.train.log" 2>&1
export EVAL_MAX_STEPS=$STEPS EVAL_MAX_NEW=$NEW
"$PY" "$HERE/evalx.py" ~/.cache/srl-rlvr/models/smollm2-135m-instruct "$WORK/$NAME/data/dev.jsonl" 60 "$WORK/base_$DEMOS.jsonl" | tail -1
"$PY" "$HERE/evalx.py" "$WORK/$NAME/models/srl" "$WORK/$NAME/data/dev.jsonl" 60 "$WORK/$NAME.pred.jsonl" | tail -1
"$PY" "$HERE/ana.py" "$WORK/$NAME/data/dev.jsonl" "$WORK/base_$DEMOS.jsonl"
"$PY" "$HERE/ana.py" "$WORK/$NAME/data/dev.jsonl" "$WORK/$NAME.pred.jsonl"
