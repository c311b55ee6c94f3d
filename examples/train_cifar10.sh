#!/usr/bin/env bash
# CIFAR-10 DDPM with the settings of Ho et al. 2020 (Sec. 4 and Appendix B):
#   35.7M-parameter UNet (channels 128,256,256,256, two residual blocks per level, self-attention at
#   16x16, dropout 0.1), T = 1000, Adam lr 2e-4 with 5000 warmup steps, batch 128, gradient clipping
#   at 1, random horizontal flips, EMA 0.9999, 800k steps. Two departures, both options of
#   train/train.py: the cosine noise schedule (Nichol & Dhariwal 2021; --beta_schedule linear gives
#   the paper's) and bf16 autocast (--mixed_precision no gives fp32). x0 clamping is on in the saved
#   scheduler (clip_sample), as in the paper's sampler.
#
#   bash examples/train_cifar10.sh                                   # the full run (GPUs)
#   MAX_STEPS=2 BATCH=4 MAX_SAMPLES=64 CHECKPOINT_EVERY=1 bash examples/train_cifar10.sh   # smoke test, CPU
#
# Several GPUs: LAUNCH="accelerate launch --multi_gpu --num_processes 8" bash examples/train_cifar10.sh
# (BATCH is per process: use BATCH=16 on 8 GPUs for the paper's 128.)
set -euo pipefail
cd "$(dirname "$0")/.."

DATASET=${DATASET:-../shared/datasets/cifar10}   # or the Hub id uoft-cs/cifar10
OUTPUT_DIR=${OUTPUT_DIR:-runs/ddpm-cifar10}
MAX_STEPS=${MAX_STEPS:-800000}
BATCH=${BATCH:-128}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-5000}
LAUNCH=${LAUNCH:-accelerate launch}
EXTRA=()
if [ -n "${MAX_SAMPLES:-}" ]; then EXTRA+=(--max_train_samples "$MAX_SAMPLES"); fi

$LAUNCH train/train.py \
  --dataset "$DATASET" \
  --model cifar10-ddpm \
  --beta_schedule squaredcos_cap_v2 \
  --prediction_type epsilon --no_snr_weighting \
  --random_flip on \
  --train_batch_size "$BATCH" \
  --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 5000 \
  --max_grad_norm 1.0 \
  --use_ema --ema_decay 0.9999 \
  --max_train_steps "$MAX_STEPS" \
  --checkpointing_steps "$CHECKPOINT_EVERY" --checkpoints_total_limit 3 \
  --resume_from_checkpoint latest \
  --mixed_precision "${MIXED_PRECISION:-bf16}" \
  --output_dir "$OUTPUT_DIR" \
  "${EXTRA[@]}" "$@"
