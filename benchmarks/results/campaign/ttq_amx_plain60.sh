#!/bin/bash
# Issue 12: the time-to-quality run that pins the ratio down, prepared in session 21 for a training slot (about 85
# minutes of one core, then ~15 minutes of scoring on both). train.py at its current defaults (bf16 autocast, NCHW
# since session 21: 1.58x the plain loop's steps/s on an AMX core, benchmarks/results/bench_training_amx_1thread_nchw.txt)
# for 20 minutes, the plain diffusers loop with EMA for 60 (--plain_minutes), each with 8 evenly spaced checkpoints,
# trained one after the other on core 0, then scored on both cores (DDIM 50, n=1000, bf16 forwards for all alike).
# Resumable piecewise: --reuse keeps a finished loop; rerun this script after an interruption.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
COMMON="--minutes 20 --plain_minutes 60 --checkpoints 8 --work_dir runs/ttq_amx --reuse"
(
  OMP_NUM_THREADS=1 nice -n 10 taskset -c 0 python benchmarks/bench_time_to_quality.py --loops train.py $COMMON --no_score &&
  OMP_NUM_THREADS=1 nice -n 10 taskset -c 0 python benchmarks/bench_time_to_quality.py --loops plain-ema $COMMON --no_score &&
  python benchmarks/bench_time_to_quality.py --loops plain-ema,train.py $COMMON --fast_cpu_inference \
    --output_json benchmarks/results/time_to_quality_amx_plain60.json
) >> runs/ttq_amx.log 2>&1 &
