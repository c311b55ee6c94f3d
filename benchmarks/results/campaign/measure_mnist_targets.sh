#!/bin/bash
# Issue 12: the targets of a candidate ddpm-mnist (MODEL, default runs/ddpm-mnist-noattn), measured on both cores once
# no training runs: core 0 DDPM 1000 at n=2,000 (target 3x its floor; 56 minutes for mnist-noattn in session 27), core 1
# DDIM 50 at n=10,000 (target 4x; 23-28 minutes) and then plug-and-play at n=640 (eval_pnp.py: labels >= 99% and label
# samples' FD <= 1.2x the unconstrained samples'; prior-fast, noise, DPS, 25-30 minutes each with both cores busy). TAG names the JSONs in
# benchmarks/results/ (default: the folder's name). Run it on the candidate before it replaces pipelines/ddpm-mnist,
# after measure_mnist_launch.sh found it better than the shipped folder at both seeds (or found them split).
MODEL=${MODEL:-runs/ddpm-mnist-noattn}
TAG=${TAG:-$(basename "$MODEL")}
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
R=benchmarks/results
OMP_NUM_THREADS=1 nohup taskset -c 0 python benchmarks/eval_samplers.py --rows "DDPM 1000" --conditional none --unconditional "$MODEL" \
  --num_samples 2000 --batch_size 100 --fast_cpu_inference --seed 0 --output_json "$R/eval_samplers_n2000_ddpm1000_$TAG.json" \
  > "runs/targets_ddpm1000_$TAG.log" 2>&1 &
(
  OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/eval_samplers.py --rows "DDIM 50" --conditional none --unconditional "$MODEL" \
    --num_samples 10000 --batch_size 500 --fast_cpu_inference --seed 0 --output_json "$R/eval_samplers_n10000_$TAG.json"
  for method in prior-fast noise dps; do
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/eval_pnp.py --methods "$method" --tasks label --n_per_digit 64 --batch_size 64 \
      --no_progress --prior "$MODEL" --output_json "$R/eval_pnp_${method}_label_n640_$TAG.json"
  done
) > "runs/targets_ddim_pnp_$TAG.log" 2>&1 &
