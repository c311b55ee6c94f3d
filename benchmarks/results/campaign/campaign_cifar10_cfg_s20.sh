#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 7 (session 20, a new machine: launch 6 (120-minute cosine from the shipped launch-4 weights) measured 63.7% / 7.9x at w=3 but its weights were lost with its machine before shipping, so this repeats that recipe from the shipped folder, 115 minutes, seed 15)
# (launch 4's weights). A 120-minute cosine sized to end with time to evaluate in the same session: run this same script again at the start of
# the next session on the same machine (--resume_from_checkpoint latest picks it up where it was killed);
# on a new machine it starts again from the shipped folder.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 115 --max_train_minutes 115 --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 15 --remote_code --init_from_pipeline pipelines/ddpm-cifar10-cfg --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v7 --resume_from_checkpoint latest >> runs/train_cifar10_cfg_v7.log 2>&1 &
