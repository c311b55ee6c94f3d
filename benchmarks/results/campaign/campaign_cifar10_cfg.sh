#!/bin/bash
# Issue 15: one launch of the ddpm-cifar10-cfg campaign, from the shipped folder (the best launch measured so far):
# the launch-7 recipe (115-minute cosine from lr 3e-4, class embedding at 100x, bf16 autocast where the CPU runs it
# natively: --mixed_precision auto), one pinned core. Set LAUNCH (the run folder runs/ddpm-cifar10-cfg-v$LAUNCH and its
# log) and SEED for each new launch:
#   launch 8 (sessions 20-21, shipped in session 21): LAUNCH=8 SEED=16, trained channels_last (train.py's CPU default
#            then); since session 21 the CPU default is NCHW (--memory_format auto: cifar10-cpu 0.69 s a step against
#            0.73 s channels_last on an AMX core), so a rerun of launch 8 would train NCHW;
#   launch 9 (prepared in session 21, the default): LAUNCH=9 SEED=17.
# A session that ends first: rerun this script on the same machine with the same LAUNCH and SEED and MINUTES set to what
# is left of the 115 (--max_train_minutes counts this launch only; --resume_from_checkpoint latest resumes at the last
# checkpoint, every 200 steps, and the minute plan continues because the checkpoints carry the minutes trained). On a new
# machine it restarts from the shipped folder.
# Measure the finished launch with measure_cifar10_launch.sh (same LAUNCH): CFG against the shipped CFG folder, and its
# null class, extracted, against pipelines/ddpm-cifar10 (since session 23 that folder is the CFG model's null class).
# --no_snr_weighting: the campaign's plain MSE, which train.py's default stopped being in session 26 (Min-SNR-5); the
# folder's epsilon parameterisation is adopted from it.
# torch.compile stays off: it gave no gain for cifar10-cpu at one thread (benchmarks/results/bench_training_cifar10_amx_1thread.txt).
LAUNCH=${LAUNCH:-9}
SEED=${SEED:-17}
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
OMP_NUM_THREADS=1 nohup nice -n 10 taskset -c 0 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  train/train.py --dataset ../shared/datasets/cifar10 --model cifar10-cpu --train_batch_size 64 --learning_rate 3e-4 \
  --lr_schedule_minutes 115 --max_train_minutes ${MINUTES:-115} --max_train_steps 1000000 --checkpointing_steps 200 --checkpoints_total_limit 2 \
  --seed "$SEED" --remote_code --init_from_pipeline pipelines/ddpm-cifar10-cfg --conditional --label_dropout 0.1 --class_embedding_lr_scale 100 --no_snr_weighting \
  --output_dir "runs/ddpm-cifar10-cfg-v$LAUNCH" --resume_from_checkpoint latest >> "runs/train_cifar10_cfg_v$LAUNCH.log" 2>&1 &
