#!/bin/bash
# Issue 12: write one checkpoint of campaign_mnist_noattn.sh (STEP, in RUN) out as a pipeline folder (its EMA weights),
# so the campaign's curve can be measured between launches (measure_mnist_launch.sh RUN=<the folder>): train.py resumed
# at that checkpoint with --max_train_steps at its step takes no step and saves the pipeline. The flags are the
# campaign's (its checkpoints before session 26 record no recipe). About a minute of one core (CORE, default 1).
# STEP=8000 bash benchmarks/results/campaign/export_mnist_checkpoint.sh   -> runs/ddpm-mnist-noattn-8000
RUN=${RUN:-runs/ddpm-mnist-noattn}
CORE=${CORE:-1}
: "${STEP:?set STEP to the step of a checkpoint}"
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
set -e
OMP_NUM_THREADS=1 taskset -c "$CORE" accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/mnist --model mnist-noattn --train_batch_size 64 --learning_rate 1e-3 \
  --lr_schedule_minutes 240 --max_train_steps "$STEP" --checkpoints_total_limit 1 --seed 25 --remote_code \
  --prediction_type v_prediction --snr_gamma 5 --output_dir "$RUN-$STEP" --resume_from_checkpoint "$RUN/checkpoint-$STEP"
rm -rf "$RUN-$STEP"/checkpoint-*
cp "$RUN/checkpoint-$STEP/training_state.json" "$RUN-$STEP/"  # its step and training minutes, for the curve
