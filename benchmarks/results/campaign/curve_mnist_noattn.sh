#!/bin/bash
# Issue 12: the campaign's curve while it trains. For each step in STEPS, wait for campaign_mnist_noattn.sh's
# checkpoint at that step (kept about 6 minutes: 2 checkpoints of 500 steps), write it out as a pipeline
# (export_mnist_checkpoint.sh) and score it paired with the shipped folder (measure_mnist_launch.sh: DDIM 50, n=1000,
# seeds 0 and 1, bf16), on core 1 while core 0 trains. The stopping rule reads this curve (two CPU hours in a row
# improving the n=1000 FD by less than 5%). About 5 minutes of core 1 a step.
# STEPS="5000 10000 15000" nohup bash benchmarks/results/campaign/curve_mnist_noattn.sh >> runs/curve_mnist_noattn.log 2>&1 &
RUN=${RUN:-runs/ddpm-mnist-noattn}
cd "$(dirname "$0")/../../.." || exit 1
for step in $STEPS; do
  until [ -f "$RUN/checkpoint-$step/training_state.json" ]; do sleep 20; done
  STEP=$step bash benchmarks/results/campaign/export_mnist_checkpoint.sh || exit 1
  RUN="$RUN-$step" bash benchmarks/results/campaign/measure_mnist_launch.sh || exit 1
  echo "measured step $step at $(date)"
done
