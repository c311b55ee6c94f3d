#!/bin/bash
# Issue 12, section 2: the single-lever sweep of train.py's recipe, prepared in session 22 for the training slots after
# ttq_amx_plain60.sh (which trains the baseline row "train.py" in the same --work_dir with the same budget). Each row is
# train.py at its defaults with ONE change, 20 minutes on one pinned core in 8 resumed launches (--checkpoints 8, so
# every row has the baseline's launch overheads), then every row is scored alike (DDIM 50, n=1000, bf16 forwards) and
# tabulated beside the plain loop with EMA: the lever that lowers the 20-minute FD becomes the default.
# About 20 minutes a row (8 rows: ~2.7 hours of one core, so spread over sessions); rerun this script after an
# interruption or in the next session: --reuse skips every finished row, and an unfinished row resumes after its last
# finished launch (at most 2.5 minutes lost). Only ONE training at a time on this machine: run it when no campaign trains.
# Decision rule, fixed before any row was scored (session 23): a lever becomes train.py's default when its 20-minute FD
# is at least 5% below the baseline row's both at equal minutes and at equal steps (bench_time_to_quality's sweep
# summary; the equal-steps view discounts rows that shared the machine with foreground work and got fewer steps per
# minute: snr5, vpred and lr1e-3 did in session 23). For the step-cost levers (batch128, mnist-base, compile) the
# equal-minutes view alone decides. A smaller difference is within what one training run per row can resolve.
# (--train_args="..." with '=': session 23's first run stopped at the compile row, whose value "--torch_compile" argparse
# read as an option; the seven rows before it were kept.)
# Rows: SNR weighting (Min-SNR-5), v-prediction, lr 1e-3 and 2e-4 (default 5e-4), EMA decay 0.999 (default 0.9995),
# batch 128 (default 64), the wider mnist-base preset, torch.compile of the training step; and (added in session 24, once
# lr 1e-3 had won, to cover the issue's range to its top) lr 2e-3.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
mkdir -p runs
COMMON="--minutes 20 --plain_minutes 60 --checkpoints 8 --work_dir runs/ttq_amx --reuse"
ROWS=(
  "snr5|--snr_gamma 5"
  "vpred|--prediction_type v_prediction"
  "lr1e-3|--learning_rate 1e-3"
  "lr2e-4|--learning_rate 2e-4"
  "ema0.999|--ema_decay 0.999"
  "batch128|--train_batch_size 128"
  "mnist-base|--model mnist-base"
  "compile|--torch_compile"
  "lr2e-3|--learning_rate 2e-3"
)
(
  tags=()
  for row in "${ROWS[@]}"; do
    tag=${row%%|*}; extra=${row#*|}; tags+=("$tag")
    OMP_NUM_THREADS=1 nice -n 10 taskset -c 0 python benchmarks/bench_time_to_quality.py --loops train.py --tag "$tag" \
      --train_args="$extra" $COMMON --no_score || exit 1
  done
  # scoring on core 1: core 0 is free for the next campaign as soon as the rows are trained. A checkpoint costs about
  # 110 s of one core (n=1000), so the lever rows are scored at 10 and 20 minutes only (--sweep_score_every 4: the rule
  # reads their 20-minute FDs; the baseline's 8 scored points give its FD at equal steps): about 35 minutes, not 2 hours.
  OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_time_to_quality.py --loops plain-ema,train.py --include_tags "$(IFS=,; echo "${tags[*]}")" \
    $COMMON --fast_cpu_inference --sweep_score_every 4 --output_json benchmarks/results/time_to_quality_lever_sweep.json
) >> runs/lever_sweep.log 2>&1 &
