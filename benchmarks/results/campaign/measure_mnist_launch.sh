#!/bin/bash
# Issue 12: measure a stopped launch of campaign_mnist_noattn.sh (RUN, default runs/ddpm-mnist-noattn) against the
# shipped pipelines/ddpm-mnist, paired: DDIM 50, n=1000, seeds 0 and 1, bf16 forwards, the same noise for both. Ship it
# when it is better at both seeds; where the seeds split, DDIM 50 at n=10,000 decides (the first row of
# measure_mnist_targets.sh, against the shipped folder's own n=10,000 JSON). measure_mnist_targets.sh then gives the
# card its targets (DDIM 50 at n=10,000, DDPM 1000 at n=2,000, plug-and-play at n=640).
# About 10 minutes of one core (CORE, default 1: the other core may train meanwhile), 5 once the shipped folder's
# scores exist. Writes runs/eval_mnist_*.json. A checkpoint between launches: export_mnist_checkpoint.sh, then RUN=<its folder>.
RUN=${RUN:-runs/ddpm-mnist-noattn}
CORE=${CORE:-1}
TAG=${TAG:-$(basename "$RUN")}
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
set -e
SHIPPED=shipped-$(sha256sum pipelines/ddpm-mnist/unet/diffusion_pytorch_model.safetensors | cut -c1-8)  # names its scores
for seed in 0 1; do
  for model in pipelines/ddpm-mnist "$RUN"; do
    name=$([ "$model" = pipelines/ddpm-mnist ] && echo "$SHIPPED" || echo "$TAG")
    out="runs/eval_mnist_n1000_seed${seed}_${name}_bf16.json"
    # the shipped folder's scores do not change until its weights do: measured once per weights file
    if [ "$name" = "$SHIPPED" ] && [ -f "$out" ]; then continue; fi
    OMP_NUM_THREADS=1 taskset -c "$CORE" python benchmarks/eval_samplers.py --rows "DDIM 50" --conditional none --unconditional "$model" \
      --num_samples 1000 --batch_size 250 --fast_cpu_inference --seed "$seed" --output_json "$out"
  done
done
