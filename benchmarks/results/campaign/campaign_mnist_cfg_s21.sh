#!/bin/bash
# Issue 12: ddpm-mnist-cfg, launch 4, prepared in session 21 for the next session's training slot (the CIFAR-10 launch 8
# held this session's). The shipped folder has 8701 steps (3.25 training hours on slower machines); train.py now trains
# NCHW with bf16 autocast on an AMX core at ~2 mnist-small steps/s (benchmarks/results/bench_training_amx_1thread_nchw.txt),
# so one 100-minute launch adds ~12,000 steps. From the shipped weights, a warm restart at lr 3e-4 with a cosine planned
# over this launch's 100 minutes (ends annealed, room left to evaluate at n=10,000 in the same session), fresh EMA, seed 21.
# A session that ends first: rerun this script on the same machine with MINUTES set to what is left of the 100
# (--resume_from_checkpoint latest; checkpoints every 400 steps carry the minutes trained). On a new machine it restarts
# from the shipped folder. On an AVX2-only CPU --mixed_precision auto falls back to float32 (~0.5 steps/s).
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/mnist --model mnist-small --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 100 --max_train_minutes ${MINUTES:-100} --max_train_steps 1000000 --checkpointing_steps 400 --checkpoints_total_limit 2 \
  --seed 21 --remote_code --init_from_pipeline pipelines/ddpm-mnist-cfg --conditional --label_dropout 0.1 \
  --output_dir runs/ddpm-mnist-cfg-s21 --resume_from_checkpoint latest >> runs/train_mnist_cfg_s21.log 2>&1 &
