#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 2 (session 14). runs/ was lost (new machine), so the warm start is again
# the shipped unconditional pipelines/ddpm-cifar10 (class embedding at zero), same recipe as launch 1 but 105 minutes.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 105 --max_train_minutes 105 --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 8 --remote_code --init_from_pipeline pipelines/ddpm-cifar10 --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v2 --resume_from_checkpoint latest > runs/train_cifar10_cfg_v2.log 2>&1 &
