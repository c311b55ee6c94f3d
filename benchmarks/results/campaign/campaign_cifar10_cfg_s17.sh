#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 4, third try (session 17, a new machine: runs/ was gone, so it starts again from the shipped folder): continues the shipped folder
# (launch 3's weights). A 110-minute cosine (ends ~50 min before the session does, for the evaluation) sized to end with time to evaluate in the same session: run this same script again at the start of
# the next session on the same machine (--resume_from_checkpoint latest picks it up where it was killed);
# on a new machine it starts again from the shipped folder.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 110 --max_train_minutes 110 --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 12 --remote_code --init_from_pipeline pipelines/ddpm-cifar10-cfg --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v4c --resume_from_checkpoint latest >> runs/train_cifar10_cfg_v4c.log 2>&1 &
