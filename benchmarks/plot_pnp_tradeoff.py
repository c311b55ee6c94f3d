#!/usr/bin/env python
"""Plug-and-play accuracy/realism trade-off: label accuracy against FD / FD(unconstrained), one point a setting.

    python benchmarks/plot_pnp_tradeoff.py benchmarks/results/tuning/noise_n160_*.json \
        benchmarks/results/tuning/dps_n160_*.json --output benchmarks/results/tuning/pnp_tradeoff_n160.png

Reads ``benchmarks/eval_pnp.py`` JSONs (their ``methods.<name>.label`` results) and draws each setting as a
point, coloured by method, with issue 14's target region shaded: label accuracy >= 95% by the judge and the
label samples' Frechet distance at most 2x the prior's unconstrained samples'. Only files measured on the
same prior, n and seed are comparable; the printed table gives each file's prior and n so a mix shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ACCURACY_TARGET = 0.95
RATIO_TARGET = 2.0


def label_points(path: Path) -> list[dict]:
    """One dict per method with a label result in the eval_pnp JSON at ``path``."""
    data = json.loads(path.read_text())
    points = []
    for method, results in data.get("methods", {}).items():
        label = results.get("label")
        if label is None or label.get("frechet_ratio_to_unconditional") is None:
            continue
        accuracy, ratio = label["accuracy"], label["frechet_ratio_to_unconditional"]
        passes = label.get("forward_passes_per_sample", 0) + label.get("backward_passes_per_sample", 0)
        points.append({
            "setting": path.stem, "method": method, "n": label["n"], "prior": data.get("prior", "?"),
            "accuracy": accuracy, "ratio": ratio, "passes": passes,
            "meets": accuracy >= ACCURACY_TARGET and ratio <= RATIO_TARGET,
        })
    return points


def draw(points: list[dict], output: Path, title: str) -> None:
    """Scatter accuracy (%) against the FD ratio, target region shaded, each point named by its file."""
    fig, ax = plt.subplots(figsize=(8, 5))
    max_ratio = max([p["ratio"] for p in points] + [RATIO_TARGET]) * 1.15
    ax.fill_between([0, RATIO_TARGET], 100 * ACCURACY_TARGET, 101, color="0.9", zorder=0)
    ax.axhline(100 * ACCURACY_TARGET, color="0.5", ls="--", lw=1)
    ax.axvline(RATIO_TARGET, color="0.5", ls="--", lw=1)
    methods = sorted({p["method"] for p in points})
    placed: list[tuple[float, float]] = []  # label anchors so far, to stack labels of near points
    for i, method in enumerate(methods):
        mine = [p for p in points if p["method"] == method]
        ax.scatter([p["ratio"] for p in mine], [100 * p["accuracy"] for p in mine], color=f"C{i}", s=36,
                   label=method, zorder=3)
        for p in mine:
            near = sum(abs(p["ratio"] - r) < 0.35 * max_ratio / 2.5 and abs(100 * p["accuracy"] - a) < 1.5
                       for r, a in placed)
            placed.append((p["ratio"], 100 * p["accuracy"]))
            ax.annotate(f"{p['setting']} ({p['passes']:.0f} passes)", (p["ratio"], 100 * p["accuracy"]),
                        textcoords="offset points", xytext=(5, 3 - 9 * near), fontsize=7)
    ax.set_xlim(0, max_ratio)
    low = min(100 * p["accuracy"] for p in points)
    ax.set_ylim(max(0, low - 5), 101)
    ax.set_xlabel("FD (label samples) / FD (unconstrained prior samples)   [target: at most 2]")
    ax.set_ylabel("label accuracy by the judge, %   [target: at least 95]")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jsons", nargs="+", help="eval_pnp.py output JSONs.")
    parser.add_argument("--output", default="benchmarks/results/tuning/pnp_tradeoff.png")
    parser.add_argument("--title", default="plug-and-play, label task: accuracy against realism (shaded: both targets)")
    args = parser.parse_args(argv)
    points = [p for path in args.jsons for p in label_points(Path(path))]
    if not points:
        raise SystemExit(f"none of {args.jsons} holds an eval_pnp label result with an FD ratio")
    print("| setting | method | prior | n | label accuracy | FD ratio | passes / sample | both targets |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for p in sorted(points, key=lambda p: (p["method"], p["ratio"])):
        print(f"| {p['setting']} | {p['method']} | {Path(p['prior']).name} | {p['n']} | {100 * p['accuracy']:.1f}% "
              f"| {p['ratio']:.2f} | {p['passes']:.0f} | {'yes' if p['meets'] else 'no'} |")
    output = Path(args.output)
    draw(points, output, args.title)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
