#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 3 (session 15). runs/ was lost (new machine), so the warm start is again
# the shipped unconditional pipelines/ddpm-cifar10 (class embedding at zero), same recipe as launches 1-2, 110 minutes, seed 9. Shipped at its end whatever it measures (honest card), so later sessions continue from it instead of restarting.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 110 --max_train_minutes 110 --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 9 --remote_code --init_from_pipeline pipelines/ddpm-cifar10 --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v3 --resume_from_checkpoint latest > runs/train_cifar10_cfg_v3.log 2>&1 &
