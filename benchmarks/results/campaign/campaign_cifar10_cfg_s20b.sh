#!/bin/bash
# Issue 15: ddpm-cifar10-cfg, launch 8 (started at the end of session 20 from the shipped folder, i.e. launch 7's weights):
# the launch-7 recipe again (115-minute cosine, lr 3e-4, class embedding at 100x, bf16 autocast where the CPU runs it
# natively: --mixed_precision auto), seed 16. A session ends before 115 minutes: at the start of the next session on
# the same machine run this same script again (--resume_from_checkpoint latest picks it up at its last checkpoint, every
# 200 steps, and the minute plan continues: the checkpoints carry the minutes trained), with MINUTES set to what is left of
# the 115 (--max_train_minutes counts this launch only); on a new machine it starts again from the shipped folder.
# torch.compile stays off: it gave no gain for cifar10-cpu at one thread (benchmarks/results/bench_training_cifar10_amx_1thread.txt).
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 115 --max_train_minutes ${MINUTES:-115} --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed 16 --remote_code --init_from_pipeline pipelines/ddpm-cifar10-cfg --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 \
  --output_dir runs/ddpm-cifar10-cfg-v8 --resume_from_checkpoint latest >> runs/train_cifar10_cfg_v8.log 2>&1 &
