#!/usr/bin/env bash
# CIFAR-10 on one GPU in about 10 minutes: the DDPM-size UNet (cifar10-ddpm, 35.7M parameters, Ho et al.'s
# architecture) unconditional and with classifier-free guidance, for whenever a GPU is lent. A 10-minute run
# is far from Ho et al.'s 800k steps: ship its result only beside the CPU pipelines, in its own folder
# (pipelines/ddpm-cifar10-gpu*), with a model card that says GPU-trained, for how long, and what it scored.
#
#   bash examples/train_cifar10_gpu.sh                                  # ~4.5 minutes each + scoring, one GPU
#   MINUTES=0.2 MODEL=cifar10-small BATCH=8 MAX_SAMPLES=64 SCORE_N=20 bash examples/train_cifar10_gpu.sh  # CPU smoke test
#
# The recipe: the cosine noise schedule with x0 clamping (as examples/train_cifar10.sh), random flips, bf16
# autocast, EMA, a cosine lr decay planned over --max_train_minutes so the run ends annealed, and the batch
# a GPU makes cheap. Results land in runs/gpu/ (git-ignored), scored with DDIM 50 at SCORE_N samples beside
# the real-data floor in the CIFAR-10 judge's features (pipelines/cifar10-classifier-judge, once trained).
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-../shared/datasets/cifar10}
MODEL=${MODEL:-cifar10-ddpm}
BATCH=${BATCH:-256}
LR=${LR:-4e-4}
MINUTES=${MINUTES:-4.5}
SCORE_N=${SCORE_N:-1000}
JUDGE=${JUDGE:-pipelines/cifar10-classifier-judge}
OUT=${OUT:-runs/gpu}
LAUNCH=${LAUNCH:-accelerate launch --num_processes 1 --num_machines 1 --dynamo_backend no}
EXTRA=()
if [ -n "${MAX_SAMPLES:-}" ]; then EXTRA+=(--max_train_samples "$MAX_SAMPLES"); fi

common=(--dataset "$DATASET" --model "$MODEL" --beta_schedule squaredcos_cap_v2 --random_flip on
        --train_batch_size "$BATCH" --learning_rate "$LR" --lr_scheduler cosine --lr_warmup_steps 500
        --lr_min_ratio 0.02 --max_train_steps 10000000 --max_train_minutes "$MINUTES" --use_ema --ema_decay 0.999
        --checkpointing_steps 1000 --checkpoints_total_limit 1 --dataloader_num_workers 4 --remote_code
        --resume_from_checkpoint latest "${EXTRA[@]}")

$LAUNCH train/train.py "${common[@]}" --output_dir "$OUT/ddpm-cifar10"
$LAUNCH train/train.py "${common[@]}" --conditional --label_dropout 0.1 --output_dir "$OUT/ddpm-cifar10-cfg"

if [ -d "$JUDGE" ]; then
  for pipe in ddpm-cifar10 ddpm-cifar10-cfg; do
    extra=()
    if [ "$pipe" = ddpm-cifar10-cfg ]; then extra=(--guidance_scale 3); fi
    python benchmarks/eval_quality.py "$OUT/$pipe" --sampler ddim --num_inference_steps 50 --num_samples "$SCORE_N" \
      --batch_size 500 --classifier "$JUDGE" --dataset "$DATASET" --output_json "$OUT/$pipe-quality.json" "${extra[@]}"
  done
else
  echo "no CIFAR-10 judge at $JUDGE: train it with train/train_classifier.py (README) to score the runs"
fi
