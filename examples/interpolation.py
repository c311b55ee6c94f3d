#!/usr/bin/env python
"""Reference figure: DDIM latent interpolation (Song et al. 2021, DDIM, Sec. 5.3).

    python examples/interpolation.py                 # the shipped MNIST pipeline, about a minute on 2 CPU cores
    python examples/interpolation.py --pipeline pipelines/ddpm-cifar10 --judge pipelines/cifar10-classifier-judge \
        --dataset ../shared/datasets/cifar10 --output_dir outputs/interpolation_cifar10

Deterministic DDIM (eta 0) maps each initial noise x_T to one image, so a spherical interpolation
(slerp) between two noises decodes to a smooth path between two images. Writes under
``outputs/interpolation/``:

- ``slerp.png``: ``--rows`` strips, each between two random noises;
- ``real_images.png``: strips between pairs of real test images (MNIST digits, CIFAR-10 photos),
  first mapped to their noises by DDIM inversion; the first and last frames are the reconstructions
  of the two images.

Prints the judge classifier's class (its ``id2label`` name) for every frame, and how close the
inverted-then-decoded endpoints come back to the real images (mean squared error in [-1, 1]).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from pnp_diffusers import DiffusionSamplingPipeline  # noqa: E402
from pnp_diffusers.data import load_image_dataset, to_model_range  # noqa: E402
from pnp_diffusers.metrics import classifier_probabilities  # noqa: E402
from pnp_diffusers.utils import save_image_grid  # noqa: E402
from pnp_diffusers.classifiers import load_classifier  # noqa: E402

PIPELINES = REPO / "pipelines"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(PIPELINES / "ddpm-mnist"), help="Unconditional pipeline (path or Hub id).")
    parser.add_argument("--judge", default=str(PIPELINES / "mnist-classifier-judge"), help="Classifier naming each frame; 'none' skips.")
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"), help="Real test images to invert (MNIST or CIFAR-10 folder or Hub id).")
    parser.add_argument("--output_dir", default="outputs/interpolation")
    parser.add_argument("--rows", type=int, default=4, help="Strips per figure.")
    parser.add_argument("--frames", type=int, default=10, help="Frames per strip, endpoints included.")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (inversion and decoding).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.frames < 2:
        raise ValueError(f"`--rows` must be >= 1 and `--frames` >= 2, got {args.rows} and {args.frames}.")
    return args


def frame_labels(judge, frames: torch.Tensor) -> str:
    """The judge's class name for each frame (frames in [0, 1]) as a string like '3 3 3 8 8' or 'cat cat dog'."""
    if judge is None:
        return ""
    names = judge.config.id2label
    return " ".join(names.get(c, str(c)) for c in classifier_probabilities(judge, frames * 2 - 1).argmax(-1).tolist())


def slerp_strips(pipe: DiffusionSamplingPipeline, judge, args, out: Path) -> list[str]:
    generator = torch.Generator().manual_seed(args.seed)
    strips, labels = [], []
    for _ in range(args.rows):
        frames = pipe.interpolate(args.frames, num_inference_steps=args.steps, generator=generator, output_type="pt").images
        strips.append(frames)
        labels.append(frame_labels(judge, frames))
    save_image_grid(torch.cat(strips), out / "slerp.png", rows=args.rows)
    return labels


def real_image_strips(pipe: DiffusionSamplingPipeline, judge, args, out: Path) -> tuple[list[str], list[float]]:
    resolution = int(pipe.unet.config.sample_size)
    images = load_image_dataset(args.dataset, "test", resolution=resolution, max_samples=2 * args.rows, show_progress=False)
    real = to_model_range(images.images).to(pipe.device)
    strips, labels, errors = [], [], []
    for i in range(args.rows):
        pair = real[2 * i : 2 * i + 2]
        frames = pipe.interpolate(args.frames, images=pair, num_inference_steps=args.steps, output_type="pt").images
        strips.append(frames)
        labels.append(frame_labels(judge, frames))
        ends = frames[[0, -1]].to(pair.device) * 2 - 1
        errors.append(float(((ends - pair) ** 2).mean()))
    save_image_grid(torch.cat(strips), out / "real_images.png", rows=args.rows)
    return labels, errors


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = DiffusionSamplingPipeline.from_pretrained(args.pipeline).to(device)
    pipe.set_progress_bar_config(disable=True)
    judge = None if args.judge.lower() == "none" else load_classifier(args.judge, "--judge", device, missing_ok=True)

    slerp = slerp_strips(pipe, judge, args, out)
    print(f"slerp between random noises, DDIM {args.steps} ({out / 'slerp.png'}); judge's class per frame:")
    for row in slerp:
        print(f"  {row}")
    real, errors = real_image_strips(pipe, judge, args, out)
    print(f"between real test images after DDIM inversion ({out / 'real_images.png'}); judge's class per frame:")
    for row, error in zip(real, errors):
        print(f"  {row}    endpoint reconstruction MSE {error:.4f}")
    return {"slerp_labels": slerp, "real_labels": real, "reconstruction_mse": errors}


if __name__ == "__main__":
    main()
