#!/bin/bash
# Issue 15: measure one finished launch of campaign_cifar10_cfg.sh against the shipped folders, both from the one
# training (since session 23 pipelines/ddpm-cifar10 is the null class of the CFG model, written out with
# train/extract_unconditional.py, so every CFG launch is also an unconditional one):
#   1. CFG, DDIM 50, n=1000, seed 0, float32, w=3 and 5: the same command and noise as launch 8's row in the README
#      (ship the launch as pipelines/ddpm-cifar10-cfg if w=5 beats 85.3% labels at a comparable FD, 6.73x the floor);
#   2. its null class extracted to runs/ddpm-cifar10-cfg-v$LAUNCH-null and DDIM 50, n=1000, seeds 0 and 1, float32
#      (ship it as pipelines/ddpm-cifar10 if it beats 4.92 / 5.29, 17.9x / 19.8x the floor, at both seeds).
# About 25 minutes of one core (CORE, default 1: the other core may train meanwhile). Writes runs/eval_*_launch$LAUNCH*.json.
LAUNCH=${LAUNCH:-9}
CORE=${CORE:-1}
RUN=runs/ddpm-cifar10-cfg-v$LAUNCH
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
set -e
COMMON="--judge pipelines/cifar10-classifier-judge --dataset ../shared/datasets/cifar10 --num_samples 1000"
OMP_NUM_THREADS=1 taskset -c "$CORE" python benchmarks/eval_samplers.py --rows cfg --guidance_scales 3,5 --conditional "$RUN" \
  --unconditional pipelines/ddpm-cifar10 $COMMON --batch_size 125 --seed 0 --output_json "runs/eval_cifar10_cfg_n1000_seed0_w3-5_launch${LAUNCH}_fp32.json"
OMP_NUM_THREADS=1 taskset -c "$CORE" python train/extract_unconditional.py --pipeline "$RUN" --output_dir "$RUN-null" --remote_code
for seed in 0 1; do
  OMP_NUM_THREADS=1 taskset -c "$CORE" python benchmarks/eval_samplers.py --rows "DDIM 50" --conditional none --unconditional "$RUN-null" \
    $COMMON --batch_size 128 --seed "$seed" --output_json "runs/eval_cifar10_n1000_seed${seed}_null_launch${LAUNCH}_fp32.json"
done
