#!/usr/bin/env bash
# Both MNIST pipelines (unconditional and classifier-free guidance) trained on one GPU in under 10 minutes,
# for whenever a GPU is lent (the CPU campaign does not wait for it; see README "Training").
#
#   bash examples/train_mnist_gpu.sh                      # ~4.5 minutes of training each + scoring, one GPU
#   MINUTES=0.2 MODEL=mnist-small BATCH=8 MAX_SAMPLES=64 SCORE_N=20 bash examples/train_mnist_gpu.sh  # smoke test, CPU
#
# Each run: the project's recipe (bf16 autocast, EMA, cosine decay planned over --max_train_minutes so it
# ends annealed), mnist-small (the preset of both shipped MNIST pipelines before sessions 26 and 28; both are
# mnist-noattn since) unless MODEL says otherwise, and a larger batch the GPU makes cheap. Results land in
# runs/gpu/ (git-ignored), each scored with DDIM 50 at SCORE_N samples beside the real-data floor; ship one beside
# the CPU pipelines only with its own model card that says it was GPU-trained.
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-../shared/datasets/mnist}
MODEL=${MODEL:-mnist-small}
BATCH=${BATCH:-256}
LR=${LR:-1e-3}
MINUTES=${MINUTES:-4.5}
SCORE_N=${SCORE_N:-1000}
OUT=${OUT:-runs/gpu}
LAUNCH=${LAUNCH:-accelerate launch --num_processes 1 --num_machines 1 --dynamo_backend no}
EXTRA=()
if [ -n "${MAX_SAMPLES:-}" ]; then EXTRA+=(--max_train_samples "$MAX_SAMPLES"); fi

common=(--dataset "$DATASET" --model "$MODEL" --train_batch_size "$BATCH" --learning_rate "$LR"
        --lr_scheduler cosine --lr_warmup_steps 200 --lr_min_ratio 0.02 --max_train_steps 10000000
        --max_train_minutes "$MINUTES" --use_ema --ema_decay 0.999 --checkpointing_steps 1000
        --checkpoints_total_limit 1 --dataloader_num_workers 4 --remote_code --resume_from_checkpoint latest
        "${EXTRA[@]}")

$LAUNCH train/train.py "${common[@]}" --output_dir "$OUT/ddpm-mnist"
$LAUNCH train/train.py "${common[@]}" --conditional --label_dropout 0.1 --output_dir "$OUT/ddpm-mnist-cfg"

python benchmarks/eval_samplers.py --rows "DDIM 50,cfg" --unconditional "$OUT/ddpm-mnist" --conditional "$OUT/ddpm-mnist-cfg" \
  --guidance_scales 3 --num_samples "$SCORE_N" --batch_size 500 --output_json "$OUT/eval_samplers.json"
