#!/usr/bin/env python
"""Plug-and-play priors on CIFAR-10 (Graikos et al., NeurIPS 2022): colour images, one figure, one table.

    OMP_NUM_THREADS=2 python examples/pnp_cifar10.py --prior pipelines/ddpm-cifar10 \
        --guide pipelines/cifar10-classifier-guide --judge pipelines/cifar10-classifier-judge

Writes ``outputs/pnp_cifar10.png`` with

- one row per class: samples of the frozen CIFAR-10 DDPM constrained to that class through the guide
  classifier (``ClassifierConstraint(guide, class)``), named by the guide's ``id2label``;
- inpainting: real test images with a centred box hidden (shown black), their completions under
  ``MaskedObservation``, and the truth.

With method "prior" the class rows use the "fast" preset and the inpainting row the "fast-pixel"
preset, as in ``examples/pnp_mnist.py``. Then prints what was measured on those samples: the judge's
accuracy (an independent classifier that did not guide), the hidden pixels' MSE and PSNR, UNet passes
and seconds per sample.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pnp_diffusers import ClassifierConstraint, MaskedObservation, PlugAndPlayPipeline
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.data import load_image_dataset, to_model_range
from pnp_diffusers.figures import labelled_rows_figure, markdown_table
from pnp_diffusers.metrics import hidden_pixel_error, label_accuracy

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default=str(REPO_ROOT / "pipelines" / "ddpm-cifar10"))
    parser.add_argument("--guide", default=str(REPO_ROOT / "pipelines" / "cifar10-classifier-guide"))
    parser.add_argument("--judge", default=str(REPO_ROOT / "pipelines" / "cifar10-classifier-judge"),
                        help="Classifier that judges the samples (skipped with a note if missing).")
    parser.add_argument("--dataset", default=str(REPO_ROOT.parent / "shared" / "datasets" / "cifar10"))
    parser.add_argument("--classes", default=None,
                        help="Comma-separated class indices for the class rows (default: every class of the guide).")
    parser.add_argument("--n_per_row", type=int, default=6)
    parser.add_argument("--method", default="prior", choices=("prior", "noise"))
    parser.add_argument("--preset", default=None, help="PlugAndPlayPipeline preset (default: fast / noise).")
    parser.add_argument("--num_iterations", type=int, default=None)
    parser.add_argument("--box", type=float, default=0.5, help="Side of the hidden centred box, as a fraction of the image.")
    parser.add_argument("--inpaint_weight", type=float, default=200.0,
                        help="Constraint weight of the inpainting row (observed pixels must match closely). On three "
                             "test images of the 2,353-step prior, fast-pixel preset: weight 1 left the observed pixels "
                             "at MSE 0.056 (in [-1, 1]) and 20 at 0.014, 200 at 0.0049; hidden-pixel MSE 0.050, 0.043, 0.043.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=str(REPO_ROOT / "outputs" / "pnp_cifar10.png"))
    args = parser.parse_args(argv)
    if args.n_per_row < 1:
        raise ValueError(f"`--n_per_row` must be positive, got {args.n_per_row}.")
    if not 0 < args.box < 1:
        raise ValueError(f"`--box` must be a fraction in (0, 1), got {args.box}.")
    if args.classes is not None:
        try:
            args.classes = [int(c) for c in args.classes.split(",")]
        except ValueError:
            raise ValueError(f"`--classes` must be comma-separated integers, got {args.classes!r}.") from None
    return args


def centred_box_mask(resolution: int, fraction: float) -> torch.Tensor:
    """(1, H, W) mask: 0 on a centred square of side ``fraction * H`` (hidden), 1 elsewhere (observed)."""
    side = max(1, round(resolution * fraction))
    start = (resolution - side) // 2
    mask = torch.ones(1, resolution, resolution)
    mask[:, start:start + side, start:start + side] = 0.0
    return mask


def class_indices(guide, classes: list[int] | None) -> list[int]:
    num_labels = int(guide.config.num_labels)
    classes = list(range(num_labels)) if classes is None else classes
    bad = [c for c in classes if not 0 <= c < num_labels]
    if bad:
        raise ValueError(f"`--classes` must lie in [0, {num_labels}) for the guide, got {bad}.")
    return classes


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    pipe = PlugAndPlayPipeline.from_pretrained(args.prior).to(device)
    pipe.set_progress_bar_config(disable=True)
    guide = load_classifier(args.guide, "--guide", device, missing_ok=True)
    if guide is None:
        raise ValueError(f"`--guide` {args.guide!r} holds no classifier; train it with train/train_classifier.py.")
    judge = load_classifier(args.judge, "--judge", device, missing_ok=True)
    classes = class_indices(guide, args.classes)
    names = guide.config.id2label
    k = args.n_per_row
    generator = torch.Generator().manual_seed(args.seed)
    settings = dict(method=args.method, preset=args.preset, num_iterations=args.num_iterations)
    pixel = {"preset": "fast-pixel"} if args.method == "prior" and args.preset is None else {}

    rows, measured = [], []

    def run(name: str, constraint, **overrides) -> tuple[torch.Tensor, dict]:
        start = time.perf_counter()
        output = pipe(constraint, batch_size=k, generator=generator, output_type="pt", **{**settings, **overrides})
        images = output.images.float().to(device) * 2 - 1
        record = {"row": name, "fwd+bwd / sample": output.unet_forward_passes + output.unet_backward_passes,
                  "s / sample": (time.perf_counter() - start) / k}
        measured.append(record)
        rows.append((name, images))
        print(f"{name}: {k} samples, {record['s / sample']:.2f} s each")
        return images, record

    def judge_accuracy(images: torch.Tensor, labels) -> float | None:
        """The independent judge's label accuracy; labels an int (every image) or a (k,) tensor."""
        return None if judge is None else label_accuracy(judge, images, torch.as_tensor(labels).expand(len(images)))

    for c in classes:
        images, record = run(names.get(c, str(c)), ClassifierConstraint(guide, c))
        record["judge accuracy"] = judge_accuracy(images, c)

    resolution = int(pipe.unet.config.sample_size)
    real = load_image_dataset(args.dataset, "test", resolution=resolution, max_samples=k, show_progress=False)
    truth = to_model_range(real.images[:k]).to(device)
    mask = centred_box_mask(resolution, args.box).to(device)
    rows.append(("observed (box hidden)", truth * mask - (1 - mask)))  # hidden pixels shown black
    images, record = run("inpainted", MaskedObservation(truth, mask), constraint_weight=args.inpaint_weight, **pixel)
    record["hidden MSE"], record["hidden PSNR (dB)"] = hidden_pixel_error(images, truth, mask)
    record["judge accuracy"] = judge_accuracy(images, real.labels[:k])
    rows.append(("ground truth", truth))

    path = labelled_rows_figure(rows, Path(args.output))
    print(f"wrote {path}\n")
    columns = ["row", "judge accuracy", "hidden MSE", "hidden PSNR (dB)", "fwd+bwd / sample", "s / sample"]
    print(markdown_table(measured, columns, {"judge accuracy": ".0%", "hidden MSE": ".4f", "hidden PSNR (dB)": ".2f",
                                             "fwd+bwd / sample": ".0f", "s / sample": ".2f"}))
    if judge is None:
        print("judge classifier missing: accuracies not measured (train it with train/train_classifier.py).")
    return {"figure": str(path), "measured": measured}


if __name__ == "__main__":
    main()
