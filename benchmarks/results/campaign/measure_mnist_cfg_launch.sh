#!/bin/bash
# Issue 12: measure a stopped launch of campaign_mnist_cfg_noattn.sh (RUN, default runs/ddpm-mnist-cfg-noattn) against
# the shipped pipelines/ddpm-mnist-cfg, paired: CFG with DDIM 50, n=1000, seeds 0 and 1 (the same noise and labels for
# both models), bf16 forwards, at the card's w=1.5 (GUIDANCE, comma-separated; the run is also read at w=2). Ship it
# when it is better at w=1.5 at both seeds with the labels >= 99%; where the seeds split, n=10,000 decides. Then the
# target at n=10,000 (labels >= 99%, FD <= 3x the label-balanced floor), about 35 minutes of one core:
#   python benchmarks/eval_samplers.py --rows cfg --guidance_scales 1.5 --conditional RUN --num_samples 10000 \
#     --batch_size 100 --seed 0 --fast_cpu_inference --output_json benchmarks/results/eval_samplers_n10000_cfg_w1.5_TAG.json
# About 18 minutes of one core (CORE, default 1: the other core may train meanwhile), 12 once the shipped folder's
# scores exist. Writes runs/eval_cfg_*.json.
RUN=${RUN:-runs/ddpm-mnist-cfg-noattn}
CORE=${CORE:-1}
TAG=${TAG:-$(basename "$RUN")}
GUIDANCE=${GUIDANCE:-1.5,2}
cd "$(dirname "$0")/../../.." && . .venv/bin/activate  # the repository root
set -e
SHIPPED=shipped-$(sha256sum pipelines/ddpm-mnist-cfg/unet/diffusion_pytorch_model.safetensors | cut -c1-8)  # names its scores
for seed in 0 1; do
  for model in pipelines/ddpm-mnist-cfg "$RUN"; do
    if [ "$model" = pipelines/ddpm-mnist-cfg ]; then name=$SHIPPED; scales=1.5; else name=$TAG; scales=$GUIDANCE; fi
    out="runs/eval_cfg_n1000_seed${seed}_${name}_bf16.json"
    # the shipped folder's scores do not change until its weights do: measured once per weights file
    if [ "$name" = "$SHIPPED" ] && [ -f "$out" ]; then continue; fi
    OMP_NUM_THREADS=1 taskset -c "$CORE" python benchmarks/eval_samplers.py --rows cfg --guidance_scales "$scales" --conditional "$model" \
      --num_samples 1000 --batch_size 100 --fast_cpu_inference --seed "$seed" --output_json "$out"
  done
done
python - "$SHIPPED" "$TAG" <<'PY'
import json, sys
for seed in (0, 1):
    for name in sys.argv[1:]:
        for row in json.load(open(f"runs/eval_cfg_n1000_seed{seed}_{name}_bf16.json"))["rows"]:
            print(f"seed {seed}  {name:28s} {row['sampler']:22s} FD {row['frechet_distance']:.3f} "
                  f"({row['ratio_to_label_balanced_floor']:.2f}x the label-balanced floor)  labels {100 * row['label_accuracy']:.1f}%")
PY
