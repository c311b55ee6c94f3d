#!/usr/bin/env python
"""The unconditional MNIST campaigns' curves: DDIM-50 FD at n=1000 (seeds 0 and 1) against CPU hours.

    python benchmarks/plot_campaign.py      # writes benchmarks/results/campaign/campaign_curve.png

Left: the first campaign (``mnist-small``, epsilon, sessions 1-10). Right: the second (``mnist-noattn``, v-prediction
with Min-SNR-5, lr 1e-3 over a 240-minute cosine; ``campaign_mnist_noattn.sh``, session 25 on), its checkpoints scored
paired with the shipped folder (``curve_mnist_noattn.sh``; bf16 forwards, so the shipped folder is re-scored in bf16
beside them). Reads the ``eval_samplers.py`` JSONs in ``benchmarks/results/campaign/``. Their steps and CPU hours are
the model card's and README's campaign tables (summed from the training logs, or the checkpoints' recorded training
minutes), kept here beside each file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CAMPAIGN = Path(__file__).resolve().parent / "results" / "campaign"
# (JSON stem without the seed, training steps, CPU hours of the lineage, what it is)
POINTS = [
    ("ddpm-mnist-6500steps", 6500, 3.1, "sessions 1-2, constant lr"),
    ("ddpm-mnist-10267steps", 10267, 4.2, "+ session 5, annealed"),
    ("ddpm-mnist-17141steps", 17141, 6.2, "+ sessions 6-7 (shipped)"),
    ("ddpm-mnist-v3-launch6", 22327, 7.8, "+ session 8, warm restart"),
    ("ddpm-mnist-v4-launch7", 18711, 7.1, "shipped + session 10 hour"),
]

# The second campaign: (step, training minutes recorded in that checkpoint). JSONs eval_n1000_seed{s}_{NOATTN_STEM}-{step}_bf16.json.
NOATTN_STEM = "ddpm-mnist-noattn"
# (step, training minutes); 1500, 5000: from the training log's progress bar (their checkpoints were pruned)
NOATTN_POINTS = [(1500, 9.37), (5000, 31.24), (10000, 62.13), (15000, 92.92), (20000, 124.36), (23886, 148.14),
                 (39245, 243.15)]
SHIPPED_BF16_STEM = "ddpm-mnist-17141steps_bf16"  # the shipped folder scored beside them, bf16 forwards


def frechet(stem: str, seed: int) -> float:
    """The DDIM-50 row's Frechet distance in ``eval_n1000_seed{seed}_{stem}.json``."""
    rows = json.loads((CAMPAIGN / f"eval_n1000_seed{seed}_{stem}.json").read_text())["rows"]
    return next(r["frechet_distance"] for r in rows if r["sampler"] == "DDIM 50")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(CAMPAIGN / "campaign_curve.png"))
    args = parser.parse_args(argv)
    fig, (ax, ax_new) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    print("| steps | CPU hours | seed 0 | seed 1 | mean | what |\n|---:|---:|---:|---:|---:|---|")
    for stem, steps, hours, what in POINTS:
        fds = [frechet(stem, seed) for seed in (0, 1)]
        mean = sum(fds) / 2
        print(f"| {steps} | {hours} | {fds[0]:.3f} | {fds[1]:.3f} | {mean:.3f} | {what} |")
        ax.scatter([hours, hours], fds, color="0.6", s=14)
        ax.scatter([hours], [mean], color="C0", s=30)
        ax.annotate(f"{steps} steps", (hours, mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    main_line = [p for p in POINTS if p[0] != "ddpm-mnist-v4-launch7"]
    ax.plot([p[2] for p in main_line], [sum(frechet(p[0], s) for s in (0, 1)) / 2 for p in main_line], color="C0")
    ax.set_xlabel("CPU hours of training (lineage)")
    ax.set_ylabel("DDIM 50 FD, n=1000 (judge features)")
    ax.set_title("mnist-small, epsilon (sessions 1-10)\nblue = two-seed mean, grey = seeds 0 and 1", fontsize=10)
    draw_noattn_campaign(ax_new)
    fig.tight_layout()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")
    return output


def draw_noattn_campaign(ax) -> None:
    """The second campaign's checkpoints (two-seed mean and seeds), with the shipped folder's bf16 mean as a line."""
    shipped = [frechet(SHIPPED_BF16_STEM, seed) for seed in (0, 1)]
    ax.axhline(sum(shipped) / 2, color="C3", linestyle="--",
               label=f"the 17,141-step mnist-small weights (bf16): {sum(shipped) / 2:.3f}")
    print("\n| steps | CPU hours | seed 0 | seed 1 | mean | what |\n|---:|---:|---:|---:|---:|---|")
    print(f"| 17141 | 6.2 | {shipped[0]:.3f} | {shipped[1]:.3f} | {sum(shipped) / 2:.3f} "
          "| mnist-small (shipped until session 26), bf16 forwards |")
    hours, means = [], []
    for step, minutes in NOATTN_POINTS:
        fds = [frechet(f"{NOATTN_STEM}-{step}_bf16", seed) for seed in (0, 1)]
        hours.append(minutes / 60)
        means.append(sum(fds) / 2)
        print(f"| {step} | {minutes / 60:.2f} | {fds[0]:.3f} | {fds[1]:.3f} | {means[-1]:.3f} | mnist-noattn, v + Min-SNR-5 |")
        ax.scatter([hours[-1]] * 2, fds, color="0.6", s=14)
        ax.annotate(f"{step}", (hours[-1], means[-1]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.plot(hours, means, color="C1", marker="o", markersize=5)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.1f"))
    ax.set_xlabel("CPU hours of training (one AMX core)")
    ax.set_title("mnist-noattn, v-prediction + Min-SNR-5 (sessions 25-)\norange = two-seed mean, bf16 forwards", fontsize=10)
    ax.legend(fontsize=8)


if __name__ == "__main__":
    main()
