#!/bin/bash
# Issue 15: the CPU-sized CIFAR-10 preset, chosen with issue 12's time-to-quality benchmark run on CIFAR-10. Two train.py
# rows at its defaults, 20 minutes each on one pinned core (CORE, default 0) in 2 resumed launches, one after the other
# on this machine (Intel Xeon with AMX): the campaign's `cifar10-cpu` (1.1M parameters) and the wider `cifar10-small`
# (6.1M). Then both are scored alike (DDIM 50, n=1000, bf16 forwards, the CIFAR-10 judge) on SCORE_CORE (default 1).
# Session 8's first row (benchmarks/results/time_to_quality_cifar10.json) ran on another machine, half of it shared
# with a test run, and its checkpoints are gone, hence both rows again here. --reuse: rerun after an interruption and
# the finished rows are kept, an unfinished one resumes after its last finished launch.
# Decision rule, fixed before scoring: the preset with the lower 20-minute FD at equal minutes is the CPU preset (a
# step-cost lever, so equal minutes decide); within 5% of each other, the cheaper cifar10-cpu stays.
# Set TRAIN_ONLY=1 to stop after training (score later with the same command and TRAIN_ONLY unset).
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
CORE=${CORE:-0}
SCORE_CORE=${SCORE_CORE:-1}
set -e
COMMON="--minutes 20 --checkpoints 2 --dataset ../shared/datasets/cifar10 --judge pipelines/cifar10-classifier-judge
  --work_dir runs/ttq_cifar10_amx --reuse"
for preset in cifar10-cpu cifar10-small; do
  OMP_NUM_THREADS=1 nice -n 10 taskset -c "$CORE" python benchmarks/bench_time_to_quality.py --loops train.py \
    --tag "$preset" --model "$preset" $COMMON --no_score
done
[ -n "$TRAIN_ONLY" ] && exit 0
OMP_NUM_THREADS=1 taskset -c "$SCORE_CORE" python benchmarks/bench_time_to_quality.py --loops train.py --tag cifar10-cpu \
  --model cifar10-cpu --include_tags cifar10-small $COMMON --fast_cpu_inference --sample_batch_size 125 \
  --output_json benchmarks/results/time_to_quality_cifar10_presets.json
