#!/usr/bin/env bash
# Bronze tier (src/srl_rlvr/tiers/bronze.yaml): Qwen2.5-72B-Instruct on 5 nodes of 8 x 80 GB GPUs.
#   1 node  : vLLM generates the rollouts    (trl vllm-serve, tensor parallel 8)
#   4 nodes : SRL training, 32 processes     (accelerate + DeepSpeed ZeRO-3)
#
# Start the server first, then the same `train` command on every training node (only RANK differs):
#   VLLM_HOST=10.0.0.10 bash infra/launch/launch_bronze.sh serve                        # on the vLLM node
#   VLLM_HOST=10.0.0.10 MAIN_IP=10.0.0.11 RANK=0 CONFIG=configs/s1k-bronze.yaml OUT=/shared/runs/bronze \
#       bash infra/launch/launch_bronze.sh train                                          # RANK=0..3, one per node
# MAIN_IP is the RANK=0 training node. OUT must be on a file system all training nodes share (checkpoints,
# final model). Ports to open between nodes: 8000 (HTTP to vLLM), 51216 (NCCL weight broadcast to vLLM),
# 29500 (torch.distributed rendezvous). DRY_RUN=1 prints the command instead of running it.
set -euo pipefail

MODEL="${MODEL:-Qwen/Qwen2.5-72B-Instruct}"
VLLM_HOST="${VLLM_HOST:?set VLLM_HOST to the vLLM node address}"
VLLM_PORT="${VLLM_PORT:-8000}"
NUM_MACHINES="${NUM_MACHINES:-4}"           # training nodes
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
MAIN_PORT="${MAIN_PORT:-29500}"

# The tier's accelerate and DeepSpeed files, wherever the package is installed.
TIERS_DIR="$(python -c 'from srl_rlvr.tiers import TIERS_DIR; print(TIERS_DIR)')"

run() {
  if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else exec "$@"; fi
}

case "${1:-}" in
  serve)
    # Weights load once (~145 GB in bf16, split over 8 GPUs); the trainer pushes new weights after every step.
    # max-model-len caps the KV cache at what RLVR needs (prompt + 4096 new tokens).
    run trl vllm-serve --model "$MODEL" --tensor-parallel-size "$GPUS_PER_NODE" \
      --host 0.0.0.0 --port "$VLLM_PORT" --max-model-len 6144 --gpu-memory-utilization 0.9
    ;;
  train)
    RANK="${RANK:?set RANK to this training node index, 0..$((NUM_MACHINES - 1))}"
    MAIN_IP="${MAIN_IP:?set MAIN_IP to the address of the RANK=0 training node}"
    CONFIG="${CONFIG:?set CONFIG to a pipeline config with tier: bronze and data}"
    OUT="${OUT:?set OUT to a run folder on a shared file system}"
    # --deepspeed_config_file carries all DeepSpeed settings (ZeRO-3, bf16 "auto" -> the tier's bf16: true);
    # --set points the trainer at the vLLM node instead of the tier's placeholder address.
    run accelerate launch \
      --config_file "$TIERS_DIR/accelerate/multinode_zero3.yaml" \
      --deepspeed_config_file "$TIERS_DIR/deepspeed/zero3.json" \
      --num_machines "$NUM_MACHINES" --num_processes "$((NUM_MACHINES * GPUS_PER_NODE))" \
      --machine_rank "$RANK" --main_process_ip "$MAIN_IP" --main_process_port "$MAIN_PORT" \
      -m srl_rlvr.cli.main run "$CONFIG" --out "$OUT" \
      --set "srl.vllm_server_host=$VLLM_HOST" --set "srl.vllm_server_port=$VLLM_PORT" \
      --set "rlvr.vllm_server_host=$VLLM_HOST" --set "rlvr.vllm_server_port=$VLLM_PORT"
    ;;
  *)
    echo "usage: $0 serve|train   (see the comments at the top of this script)" >&2
    exit 2
    ;;
esac
