#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 9, prepared in session 21 for a later training slot: from the shipped folder (the
# best launch measured so far), the launch-7/8 recipe (115-minute cosine from lr 3e-4, class embedding at 100x, bf16
# autocast where the CPU runs it natively), seed 17. Since session 21 train.py trains NCHW on the CPU by default
# (--memory_format auto: cifar10-cpu 0.69 s a step against 0.73 s channels_last on an AMX core).
# A session that ends first: rerun this script on the same machine with MINUTES set to what is left of the 115
# (--resume_from_checkpoint latest; checkpoints every 200 steps carry the minutes trained). On a new machine it
# restarts from the shipped folder.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 115 --max_train_minutes ${MINUTES:-115} --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 17 --remote_code --init_from_pipeline pipelines/ddpm-cifar10-cfg --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v9 --resume_from_checkpoint latest >> runs/train_cifar10_cfg_v9.log 2>&1 &
