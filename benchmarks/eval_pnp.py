#!/usr/bin/env python
"""Plug-and-play on the MNIST prior: accuracy, realism and cost of every method, measured in one run.

    OMP_NUM_THREADS=2 python benchmarks/eval_pnp.py --prior pipelines/ddpm-mnist \
        --guide pipelines/mnist-classifier-guide --judge pipelines/mnist-classifier-judge --n_per_digit 64

    # a quick look (minutes): few samples, the paper's loop on 2 samples
    python benchmarks/eval_pnp.py --n_per_digit 4 --n_symmetry 8 --n_paper 2

Methods (rows of the table):

- ``prior-fast``: :class:`PlugAndPlayPipeline`, method "prior", batched, with the "fast" preset on the
  label task and the "fast-pixel" preset on the symmetry task;
- ``prior-paper``: the authors' loop (Graikos et al. 2022: Adam lr 0.01, 1000 iterations, batch 1),
  run on ``--n_paper`` samples per task only (it is slow) and reported per sample;
- ``noise``: method "noise" (x_T optimised through a differentiable DDIM sampler), batched;
- ``dps``: :class:`DPSPipeline` (Chung et al. 2023), DDPM ancestral steps, batched.

Tasks and metrics:

- label: for each digit 0-9 as the target of ``ClassifierConstraint(guide, digit)``, ``--n_per_digit``
  samples; accuracy judged by the *judge* classifier (it did not guide: other seed and architecture);
  Frechet distance in the judge's features to the real test digits, beside the distance of the
  prior's unconstrained samples (DDIM) and of real train digits (the floor) at the same n.
- symmetry: ``SymmetryConstraint("horizontal", "similar" | "dissimilar")``; the mean symmetry error
  against the 10th / 90th percentile of real test digits, and the fraction of samples the judge
  classifies with probability >= 0.9 (still digits?) beside the same fraction on real digits.
- cost: UNet forward and backward passes per sample, and wall seconds per sample.

Prints a table and writes the numbers as JSON (``--output_json``, default ``benchmarks/results/eval_pnp.json``).
Distances are in the judge's penultimate features and not comparable with Inception FID.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from pnp_diffusers import (  # noqa: E402
    ClassifierConstraint,
    DPSPipeline,
    DiffusionSamplingPipeline,
    PlugAndPlayPipeline,
    SymmetryConstraint,
)
from pnp_diffusers.classifiers import load_classifier as load_library_classifier  # noqa: E402
from pnp_diffusers.metrics import (  # noqa: E402
    classifier_probabilities,
    extract_features,
    frechet_distance,
    label_accuracy,
    real_data_floor,
    symmetry_error,
)

logger = logging.getLogger("eval_pnp")

METHODS = ("prior-fast", "prior-paper", "noise", "dps")
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "mnist"
CONFIDENT = 0.9  # judge probability above which a sample counts as a recognisable digit
PAPER_ITERATIONS = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=str, default=str(REPO_ROOT / "pipelines" / "ddpm-mnist"),
                        help="Saved diffusion pipeline folder (unet/ + scheduler/).")
    parser.add_argument("--guide", type=str, default=str(REPO_ROOT / "pipelines" / "mnist-classifier-guide"),
                        help="Classifier used by the label constraint.")
    parser.add_argument("--judge", type=str, default=str(REPO_ROOT / "pipelines" / "mnist-classifier-judge"),
                        help="Second classifier that judges accuracy and gives the Frechet features.")
    parser.add_argument("--dataset", type=str, default=str(DEFAULT_DATASET))
    parser.add_argument("--methods", type=str, default=",".join(METHODS), help=f"Comma-separated subset of {METHODS}.")
    parser.add_argument("--tasks", type=str, default="label,symmetry", help="Comma-separated subset of label,symmetry.")
    parser.add_argument("--n_per_digit", type=int, default=64, help="Label task: samples per digit (10 digits).")
    parser.add_argument("--n_symmetry", type=int, default=64, help="Symmetry task: samples per mode.")
    parser.add_argument("--n_paper", type=int, default=10,
                        help="Samples per task for the paper's 1000-iteration loop (digits cycle 0..9).")
    parser.add_argument("--paper_iterations", type=int, default=PAPER_ITERATIONS,
                        help="Iterations of the paper's loop (1000; fewer only for a smoke run).")
    parser.add_argument("--batch_size", type=int, default=64, help="Batch of the batched methods.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    # Tuning hooks: None keeps the pipeline's preset.
    parser.add_argument("--fast_iterations", type=int, default=None)
    parser.add_argument("--fast_learning_rate", type=float, default=None)
    parser.add_argument("--fast_constraint_weight", type=float, default=None)
    parser.add_argument("--fast_constraint_on", choices=("x", "denoised"), default=None)
    parser.add_argument("--fast_final_denoise_t", type=int, default=None)
    parser.add_argument("--fast_final_denoise_steps", type=int, default=None)
    parser.add_argument("--fast_t_schedule_end", type=int, default=None)
    parser.add_argument("--fast_final_guidance_scale", type=float, default=None)
    parser.add_argument("--noise_iterations", type=int, default=None)
    parser.add_argument("--noise_steps", type=int, default=None, help="DDIM steps K of the noise method.")
    parser.add_argument("--noise_learning_rate", type=float, default=None)
    parser.add_argument("--noise_constraint_weight", type=float, default=None)
    parser.add_argument("--noise_warm_start", type=int, default=None,
                        help="Warm start of the noise method: the best of this many noises per sample.")
    parser.add_argument("--noise_final_steps", type=int, default=None,
                        help="DDIM steps of the noise method's final render (default: its K).")
    parser.add_argument("--dps_steps", type=int, default=200, help="DDPM steps of DPS (200 = 1/5 of the paper's passes).")
    parser.add_argument("--dps_scale", type=float, default=1.0, help="DPS guidance scale zeta.")
    parser.add_argument("--dps_guidance_end", type=float, default=1.0,
                        help="Fraction of DPS's steps, from the first, that are guided (the rest: unguided clean-up).")
    parser.add_argument("--dps_schedule", choices=("constant", "linear"), default="constant",
                        help="DPS step-size schedule over the guided steps.")
    parser.add_argument("--uncond_steps", type=int, default=100, help="DDIM steps of the unconstrained prior samples.")
    parser.add_argument("--max_reference_samples", type=int, default=None, help="Real test digits used as reference.")
    parser.add_argument("--output_json", type=str, default=str(REPO_ROOT / "benchmarks" / "results" / "eval_pnp.json"))
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/eval_pnp.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.tasks = [t for t in args.tasks.split(",") if t]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"`--methods` must be among {METHODS}, got {unknown}.")
    if [t for t in args.tasks if t not in ("label", "symmetry")]:
        raise ValueError(f"`--tasks` must be among label,symmetry, got {args.tasks}.")
    for name in ("n_per_digit", "n_symmetry", "n_paper", "paper_iterations", "batch_size", "dps_steps", "uncond_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name}` must be positive, got {getattr(args, name)}.")
    if "label" in args.tasks and 10 * args.n_per_digit < 2:
        raise ValueError("`--n_per_digit` must give at least 2 samples for a Frechet distance.")
    return args


def load_classifier(path: str, role: str, device):
    """The guide or the judge (``role``); train the judge with another seed and architecture than the guide."""
    return load_library_classifier(path, f"--{role}", device)


# --------------------------------------------------------------------------------------------- runners


class Runner:
    """Runs one method on a list of constraints' targets, batch by batch, and counts its cost."""

    def __init__(self, name: str, pnp: PlugAndPlayPipeline, dps: DPSPipeline, args: argparse.Namespace):
        self.name, self.pnp, self.dps, self.args = name, pnp, dps, args
        self.batch_size = 1 if name == "prior-paper" else args.batch_size

    def __call__(self, make_constraint, targets: list, seed: int, task: str = "label") -> dict:
        """Samples for ``targets`` (one constraint target per sample), in [-1, 1], with cost counters."""
        images, forward, backward = [], 0, 0
        generator = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        for first in range(0, len(targets), self.batch_size):
            batch_targets = targets[first : first + self.batch_size]
            output = self.run_batch(make_constraint(batch_targets), len(batch_targets), generator, task)
            images.append(output.images.float() * 2 - 1)  # "pt" images are in [0, 1]
            forward += output.unet_forward_passes * len(batch_targets)
            backward += output.unet_backward_passes * len(batch_targets)
            logger.info("%s: %d/%d samples", self.name, first + len(batch_targets), len(targets))
        seconds = time.perf_counter() - start
        n = len(targets)
        return dict(images=torch.cat(images), seconds_per_sample=seconds / n,
                    forward_passes_per_sample=forward / n, backward_passes_per_sample=backward / n)

    def run_batch(self, constraint, batch_size: int, generator, task: str = "label"):
        a = self.args
        common = dict(batch_size=batch_size, generator=generator, output_type="pt")
        if self.name == "prior-fast":
            # Pixel-level constraints (symmetry) use the preset made for them; labels the default.
            preset = "fast-pixel" if task == "symmetry" else "fast"
            return self.pnp(constraint, method="prior", preset=preset, num_iterations=a.fast_iterations,
                            learning_rate=a.fast_learning_rate, constraint_weight=a.fast_constraint_weight,
                            constraint_on=a.fast_constraint_on,
                            final_denoise_t=a.fast_final_denoise_t, final_denoise_steps=a.fast_final_denoise_steps,
                            t_schedule_end=a.fast_t_schedule_end, final_guidance_scale=a.fast_final_guidance_scale,
                            **common)
        if self.name == "prior-paper":
            return self.pnp(constraint, method="prior", preset="paper", num_iterations=a.paper_iterations, **common)
        if self.name == "noise":
            return self.pnp(constraint, method="noise", num_iterations=a.noise_iterations,
                            num_inference_steps=a.noise_steps, learning_rate=a.noise_learning_rate,
                            constraint_weight=a.noise_constraint_weight, warm_start_candidates=a.noise_warm_start,
                            final_inference_steps=a.noise_final_steps, **common)
        return self.dps(constraint, num_inference_steps=a.dps_steps, guidance_scale=a.dps_scale,
                        guidance_end=a.dps_guidance_end, guidance_schedule=a.dps_schedule, **common)


def confident_fraction(judge, images: torch.Tensor) -> float:
    """Fraction of images the judge assigns to some digit with probability >= CONFIDENT."""
    return float((classifier_probabilities(judge, images).max(dim=-1).values >= CONFIDENT).double().mean())


# --------------------------------------------------------------------------------------------- evaluation


def evaluate(args: argparse.Namespace) -> dict:
    from diffusers import DDIMScheduler, DDPMScheduler

    from pnp_diffusers.data import load_image_dataset

    device = torch.device(args.device)
    pnp = PlugAndPlayPipeline.from_pretrained(args.prior).to(device)
    pnp.set_progress_bar_config(disable=True)
    dps = DPSPipeline(unet=pnp.unet, scheduler=DDPMScheduler.from_config(pnp.scheduler.config))
    dps.set_progress_bar_config(disable=True)
    guide = load_classifier(args.guide, "guide", device)
    judge = load_classifier(args.judge, "judge", device)
    show = not args.no_progress

    resolution = int(pnp.unet.config.sample_size)
    reference = load_image_dataset(args.dataset, "test", resolution=resolution,
                                   max_samples=args.max_reference_samples, show_progress=show)
    train_real = load_image_dataset(args.dataset, "train", resolution=resolution, show_progress=show)
    reference_features = extract_features(judge, reference.images, show_progress=show)
    real_symmetry = symmetry_error(reference.images, "horizontal")
    results: dict = {
        "command": args.command,
        "prior": args.prior, "guide": args.guide, "judge": args.judge,
        "reference": f"{args.dataset}:test ({len(reference)} images)",
        "real_symmetry_error_p10": float(real_symmetry.quantile(0.1)),
        "real_symmetry_error_p90": float(real_symmetry.quantile(0.9)),
        "real_confident_fraction": confident_fraction(judge, reference.images[:1000]),
        "methods": {},
    }

    if "label" in args.tasks:
        n = 10 * args.n_per_digit
        sampler = DiffusionSamplingPipeline(unet=pnp.unet, scheduler=DDIMScheduler.from_config(pnp.scheduler.config))
        sampler.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        uncond = torch.cat([
            sampler(batch_size=min(args.batch_size, n - i), num_inference_steps=args.uncond_steps,
                    generator=generator, output_type="pt").images.float() * 2 - 1
            for i in range(0, n, args.batch_size)
        ])
        results["unconditional"] = {
            "sampler": f"DDIM {args.uncond_steps} steps", "n": n,
            "frechet_distance": frechet_distance(extract_features(judge, uncond), reference_features),
            "seconds_per_sample": (time.perf_counter() - start) / n,
        }
        results["real_floor_label_n"] = real_data_floor(
            judge, train_real.images, None, n, generator=torch.Generator().manual_seed(args.seed),
            reference_features=reference_features, show_progress=show)

    for method in args.methods:
        runner = Runner(method, pnp, dps, args)
        row: dict = {}
        if "label" in args.tasks:
            per_digit = args.n_paper if method == "prior-paper" else 10 * args.n_per_digit
            targets = [i % 10 for i in range(per_digit)]
            out = runner(lambda labels: ClassifierConstraint(guide, labels), targets, args.seed)
            images, labels = out.pop("images"), torch.tensor(targets)
            predicted = classifier_probabilities(judge, images).argmax(dim=-1).cpu()
            row["label"] = {
                "n": len(targets),
                "accuracy": label_accuracy(judge, images, labels),
                "accuracy_per_digit": [float((predicted[labels == d] == d).double().mean()) if (labels == d).any() else None
                                       for d in range(10)],
                "frechet_distance": (frechet_distance(extract_features(judge, images), reference_features)
                                     if len(targets) >= 2 else None),
                **out,
            }
            if row["label"]["frechet_distance"] is not None and "unconditional" in results:
                row["label"]["frechet_ratio_to_unconditional"] = (
                    row["label"]["frechet_distance"] / results["unconditional"]["frechet_distance"])
        if "symmetry" in args.tasks:
            count = args.n_paper if method == "prior-paper" else args.n_symmetry
            for mode in ("similar", "dissimilar"):
                out = runner(lambda targets, mode=mode: SymmetryConstraint("horizontal", mode), [None] * count,
                             args.seed + 1, task="symmetry")
                images = out.pop("images")
                row[f"symmetry_{mode}"] = {
                    "n": count,
                    "mean_symmetry_error": float(symmetry_error(images, "horizontal").mean()),
                    "confident_fraction": confident_fraction(judge, images),
                    **out,
                }
        results["methods"][method] = row
    return results


# --------------------------------------------------------------------------------------------- report


def table_rows(results: dict) -> list[list[str]]:
    """One row per method: accuracy, realism, symmetry and cost."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    header = ["method", "label acc", "FD (label)", "FD / uncond", "sym. similar", "sym. dissimilar",
              "judged digits", "fwd+bwd / sample", "vs paper", "s / sample"]
    rows = [header]
    paper_passes = PAPER_ITERATIONS * 2
    for method, row in results["methods"].items():
        label = row.get("label", {})
        similar, dissimilar = row.get("symmetry_similar", {}), row.get("symmetry_dissimilar", {})
        cost = label or similar
        passes = cost.get("forward_passes_per_sample", 0) + cost.get("backward_passes_per_sample", 0) if cost else None
        judged = [r["confident_fraction"] for r in (similar, dissimilar) if r]
        rows.append([
            method + (f" (n={label['n']})" if method == "prior-paper" and label else ""),
            fmt(label.get("accuracy"), ".1%"),
            fmt(label.get("frechet_distance"), ".2f"),
            fmt(label.get("frechet_ratio_to_unconditional"), ".2f"),
            fmt(similar.get("mean_symmetry_error"), ".3f"),
            fmt(dissimilar.get("mean_symmetry_error"), ".3f"),
            "/".join(f"{j:.0%}" for j in judged) or "-",
            fmt(passes, ".0f"),
            fmt(passes / paper_passes if passes else None, ".2f"),
            fmt(cost.get("seconds_per_sample") if cost else None, ".2f"),
        ])
    return rows


def print_report(results: dict) -> None:
    rows = table_rows(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
        if k == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")
    print(f"\nreal digits: symmetry error p10 {results['real_symmetry_error_p10']:.3f} (target for 'similar': below), "
          f"p90 {results['real_symmetry_error_p90']:.3f} (target for 'dissimilar': above); "
          f"judged digits (p >= {CONFIDENT}) {results['real_confident_fraction']:.0%}")
    if "unconditional" in results:
        u = results["unconditional"]
        print(f"prior's unconstrained samples ({u['sampler']}, n={u['n']}): FD {u['frechet_distance']:.2f}; "
              f"real train digits at the same n (floor): FD {results['real_floor_label_n']:.2f}")
    print("'vs paper': UNet passes per sample relative to the paper's loop (1000 forward + 1000 backward); "
          "'judged digits': similar/dissimilar samples the judge classifies with p >= 0.9.")


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    results = evaluate(args)
    print_report(results)
    output = Path(args.output_json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return results


if __name__ == "__main__":
    main()
