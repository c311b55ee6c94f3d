#!/usr/bin/env python
"""The unconditional MNIST campaign's curve: DDIM-50 FD at n=1000 (seeds 0 and 1) against CPU hours.

    python benchmarks/plot_campaign.py      # writes benchmarks/results/campaign/campaign_curve.png

Reads the ``eval_samplers.py`` JSONs in ``benchmarks/results/campaign/``. Their steps and CPU hours are the
model card's and README's campaign table (summed from the training logs), kept here beside each file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

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


def frechet(stem: str, seed: int) -> float:
    """The DDIM-50 row's Frechet distance in ``eval_n1000_seed{seed}_{stem}.json``."""
    rows = json.loads((CAMPAIGN / f"eval_n1000_seed{seed}_{stem}.json").read_text())["rows"]
    return next(r["frechet_distance"] for r in rows if r["sampler"] == "DDIM 50")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(CAMPAIGN / "campaign_curve.png"))
    args = parser.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7, 4))
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
    ax.set_title("mnist-small unconditional: blue = two-seed mean, grey = seeds 0 and 1")
    fig.tight_layout()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
