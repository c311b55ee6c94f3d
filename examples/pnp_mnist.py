#!/usr/bin/env python
"""Plug-and-play priors on MNIST (Graikos et al., NeurIPS 2022): one figure, one measured table.

    OMP_NUM_THREADS=2 python examples/pnp_mnist.py --prior pipelines/ddpm-mnist \
        --guide pipelines/mnist-classifier-guide --judge pipelines/mnist-classifier-judge

Writes ``outputs/pnp_mnist.png`` with one row each of:

- samples constrained to each digit 0-9 (``ClassifierConstraint(guide, digit)``);
- horizontal similarity and dissimilarity (``SymmetryConstraint("horizontal", ...)``: the mirror is
  the upside-down flip, as in the paper);
- "a symmetric 3": the classifier and the similarity constraint added together;
  (with method "prior", the label rows use the "fast" preset and the symmetry, symmetric-3 and
  inpainting rows the "fast-pixel" preset);
- inpainting: real test digits with the bottom half hidden (shown grey), and their completions
  under ``MaskedObservation``.

Then prints what was measured on those samples: the judge classifier's accuracy (it did not guide),
symmetry errors against real digits' 10th/90th percentiles, inpainting errors, UNet passes and seconds
per sample. The full benchmark (64 samples a digit, every method) is ``benchmarks/eval_pnp.py``;
its n=640 tables on the shipped prior are printed too where their JSONs are in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

from pnp_diffusers import (  # noqa: E402
    ClassifierConstraint,
    MaskedObservation,
    PlugAndPlayPipeline,
    SymmetryConstraint,
)
from pnp_diffusers.classifiers import load_classifier  # noqa: E402
from pnp_diffusers.data import load_image_dataset, to_model_range  # noqa: E402
from pnp_diffusers.figures import labelled_rows_figure, markdown_table  # noqa: E402
from pnp_diffusers.metrics import label_accuracy, symmetry_error  # noqa: E402



def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default=str(REPO_ROOT / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--guide", default=str(REPO_ROOT / "pipelines" / "mnist-classifier-guide"))
    parser.add_argument("--judge", default=str(REPO_ROOT / "pipelines" / "mnist-classifier-judge"),
                        help="Classifier that judges the samples (skipped with a note if missing).")
    parser.add_argument("--dataset", default=str(REPO_ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--n_per_row", type=int, default=8)
    parser.add_argument("--method", default="prior", choices=("prior", "noise"))
    parser.add_argument("--preset", default=None, help="PlugAndPlayPipeline preset (default: fast / noise).")
    parser.add_argument("--num_iterations", type=int, default=None)
    parser.add_argument("--inpaint_weight", type=float, default=1.0,
                        help="Constraint weight of the inpainting rows (observed pixels must match closely).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=str(REPO_ROOT / "outputs" / "pnp_mnist.png"))
    args = parser.parse_args(argv)
    if args.n_per_row < 1:
        raise ValueError(f"`--n_per_row` must be positive, got {args.n_per_row}.")
    return args


def load_benchmark_module(name: str):
    """A script of benchmarks/ as a module, loaded from its file (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_figure(rows: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """One labelled row of images per entry; images (k, 1, H, W) in [-1, 1]."""
    return labelled_rows_figure(rows, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    pipe = PlugAndPlayPipeline.from_pretrained(args.prior).to(device)
    pipe.set_progress_bar_config(disable=True)
    guide = load_classifier(args.guide, "--guide", device, missing_ok=True)
    if guide is None:
        raise ValueError(f"`--guide` {args.guide!r} holds no classifier; train it with train/train_classifier.py.")
    judge = load_classifier(args.judge, "--judge", device, missing_ok=True)
    k = args.n_per_row
    generator = torch.Generator().manual_seed(args.seed)
    settings = dict(method=args.method, preset=args.preset, num_iterations=args.num_iterations)

    resolution = int(pipe.unet.config.sample_size)
    real = load_image_dataset(args.dataset, "test", resolution=resolution, max_samples=2000, show_progress=False)
    real_symmetry = symmetry_error(real.images, "horizontal")
    p10, p90 = float(real_symmetry.quantile(0.1)), float(real_symmetry.quantile(0.9))

    rows, measured = [], []

    def run(name: str, constraint, **overrides):
        start = time.perf_counter()
        output = pipe(constraint, batch_size=k, generator=generator, output_type="pt", **{**settings, **overrides})
        seconds = (time.perf_counter() - start) / k
        images = output.images.float() * 2 - 1
        record = {"row": name, "fwd+bwd / sample": output.unet_forward_passes + output.unet_backward_passes,
                  "s / sample": seconds, "symmetry error": float(symmetry_error(images, "horizontal").mean())}
        measured.append(record)
        rows.append((name, images))
        print(f"{name}: {k} samples, {seconds:.2f} s each")
        return images, record

    def judge_accuracy(images, labels) -> float | None:
        """The independent judge's label accuracy; labels an int (every image) or a (k,) tensor."""
        return None if judge is None else label_accuracy(judge, images, torch.as_tensor(labels).expand(len(images)))

    for digit in range(10):
        images, record = run(f"digit {digit}", ClassifierConstraint(guide, digit))
        record["judge accuracy"] = judge_accuracy(images, digit)
    # Pixel-level constraints get the preset made for them (annealed to t=0, weight 0.05).
    pixel = {"preset": "fast-pixel"} if args.method == "prior" and args.preset is None else {}
    run("horizontal similarity", SymmetryConstraint("horizontal", "similar"), **pixel)
    run("horizontal dissimilarity", SymmetryConstraint("horizontal", "dissimilar"), **pixel)
    images, record = run("a symmetric 3", ClassifierConstraint(guide, 3) + SymmetryConstraint("horizontal", "similar"),
                         **pixel)
    record["judge accuracy"] = judge_accuracy(images, 3)

    # Inpainting: the top half is observed, the bottom half is to be filled in.
    truth = to_model_range(real.images[:k]).to(device)
    mask = torch.zeros(1, resolution, resolution, device=device)
    mask[:, : resolution // 2] = 1.0
    rows.append(("observed (bottom hidden)", truth * mask))  # hidden pixels shown mid-grey (0)
    images, record = run("inpainted", MaskedObservation(truth, mask), constraint_weight=args.inpaint_weight, **pixel)
    images = images.to(device)
    record["observed MSE"] = float(((images - truth) ** 2 * mask).sum() / (mask.sum() * k))
    record["hidden MSE"] = float(((images - truth) ** 2 * (1 - mask)).sum() / ((1 - mask).sum() * k))
    record["judge accuracy"] = judge_accuracy(images, real.labels[:k])
    rows.append(("ground truth", truth))

    path = Path(args.output)
    render_figure(rows, path)
    print(f"wrote {path}")
    print_measured(measured, p10, p90, judge is not None)
    print_benchmark_tables()
    return {"figure": str(path), "measured": measured}


# the n=640 runs of benchmarks/eval_pnp.py on the shipped 17,141-step prior, one per method (README, "Plug-and-play")
BENCHMARK_RESULTS = (
    "eval_pnp_prior_fast_label_n640_17141.json",
    "eval_pnp_symmetry_n64_17141.json",
    "eval_pnp_noise_warm32_it23_n640_17141.json",
    "eval_pnp_dps_n640_17141.json",
)


def print_benchmark_tables() -> None:
    """Print the full benchmark's tables (64 samples a digit) where their JSONs are in benchmarks/results/."""
    results = REPO_ROOT / "benchmarks" / "results"
    found = [results / name for name in BENCHMARK_RESULTS if (results / name).exists()]
    if not found:
        print("\nThe full benchmark table (64 samples a digit, every method): python benchmarks/eval_pnp.py")
        return
    print_report = load_benchmark_module("eval_pnp").print_report
    for path in found:
        print(f"\nFull benchmark ({path.relative_to(REPO_ROOT)}):")
        print_report(json.loads(path.read_text()))


def print_measured(measured: list[dict], p10: float, p90: float, judged: bool) -> None:
    columns = ["row", "judge accuracy", "symmetry error", "observed MSE", "hidden MSE", "fwd+bwd / sample", "s / sample"]
    formats = {"judge accuracy": ".0%", "symmetry error": ".3f", "observed MSE": ".4f", "hidden MSE": ".4f",
               "fwd+bwd / sample": ".0f", "s / sample": ".2f"}
    print()
    print(markdown_table(measured, columns, formats))
    print(f"\nreal test digits' horizontal symmetry error: p10 {p10:.3f} (similarity should be below), "
          f"p90 {p90:.3f} (dissimilarity above).")
    if not judged:
        print("judge classifier missing: accuracies not measured (train it with train/train_classifier.py).")


if __name__ == "__main__":
    main()
