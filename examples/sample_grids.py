#!/usr/bin/env python
"""Reference figure: unconditional, conditional and classifier-free-guidance sample grids.

    python examples/sample_grids.py                       # the shipped MNIST pipelines, ~4 minutes on 2 CPU cores
    python examples/sample_grids.py --full_ddpm           # also DDPM with all 1000 steps (~10 more minutes)
    python examples/sample_grids.py --unconditional path/to/cifar10-pipeline --conditional none --judge none
    python examples/sample_grids.py --conditional none --unconditional_samplers none   # only the classifier-guided grid

Writes under ``outputs/sample_grids/`` (grid x grid images each, one fixed seed for all samplers, so
the unconditional grids show what each sampler makes of the same noise):

- ``unconditional_ddpm<steps>.png``, ``unconditional_ddim50.png``, ``unconditional_pc<levels>.png``;
- ``conditional_w<scale>.png`` for each guidance scale (row r = class r): w=0 is the unconditional
  branch, w=1 the plain conditional model, w>1 classifier-free guidance (Ho & Salimans 2022);
- ``classifier_guided_s<scale>.png``: the *unconditional* pipeline steered by a noise-aware classifier
  (``--noise_aware_classifier``; classifier guidance, Dhariwal & Nichol 2021), row r = class r;
- beside each class-major grid, ``*_labelled.png``: the same rows with their class names (``--class_names``).

Prints, per grid, the seconds it took, and with a judge classifier the fraction of the conditional
grid's images it assigns to the requested class.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from pnp_diffusers import DiffusionSamplingPipeline, PredictorCorrectorScheduler  # noqa: E402
from pnp_diffusers.metrics import classifier_probabilities  # noqa: E402
from pnp_diffusers.models import num_classes_of  # noqa: E402
from pnp_diffusers.utils import save_image_grid  # noqa: E402
from pnp_diffusers.classifiers import image_channels, load_classifier  # noqa: E402
from pnp_diffusers.figures import labelled_rows_figure  # noqa: E402

PIPELINES = REPO / "pipelines"
DEFAULT_NOISE_AWARE = str(PIPELINES / "mnist-classifier-noise-aware")
UNCONDITIONAL_SAMPLERS = ("ddpm", "ddim", "pc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unconditional", default=str(PIPELINES / "ddpm-mnist"), help="Pipeline path or Hub id; 'none' skips.")
    parser.add_argument("--conditional", default=str(PIPELINES / "ddpm-mnist-cfg"), help="Class-conditional pipeline; 'none' skips.")
    parser.add_argument("--judge", default=str(PIPELINES / "mnist-classifier-judge"), help="Classifier scoring the conditional grids; 'none' skips.")
    parser.add_argument("--output_dir", default="outputs/sample_grids")
    parser.add_argument("--grid", type=int, default=10, help="Grid side (the conditional grids have one row per class).")
    parser.add_argument("--ddpm_steps", type=int, default=100, help="DDPM ancestral steps (1000 = the full chain).")
    parser.add_argument("--full_ddpm", action="store_true", help="Also the full 1000-step DDPM grid.")
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--pc_levels", type=int, default=50, help="Predictor-corrector noise levels (2 model calls each).")
    parser.add_argument("--guidance_scales", default="0,1,3", help="Comma-separated CFG scales of the conditional grids.")
    parser.add_argument("--noise_aware_classifier", default=DEFAULT_NOISE_AWARE,
                        help="Classifier of x_t for the classifier-guided grid of the unconditional pipeline; 'none' skips "
                             "(skipped too when the folder does not exist).")
    parser.add_argument("--classifier_guidance_scale", type=float, default=10.0,
                        help="s of the classifier-guided grid (10: 96%% judge labels at n=1000 on the shipped prior, s=3 88%% at n=100).")
    parser.add_argument("--unconditional_samplers", default=",".join(UNCONDITIONAL_SAMPLERS),
                        help=f"Comma-separated unconditional grids to draw, a subset of {','.join(UNCONDITIONAL_SAMPLERS)}, "
                             "or 'none' (then only the classifier-guided grid of --unconditional).")
    parser.add_argument("--class_names", default=None,
                        help="Comma-separated class names for the labelled grids (default 0..9 for MNIST; "
                             "CIFAR-10: airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no_fast", action="store_true", help="Keep the UNet in float32 on the CPU (default: the fast path, bf16 forwards where native).")
    args = parser.parse_args(argv)
    if args.grid < 1:
        raise ValueError(f"`--grid` must be >= 1, got {args.grid}.")
    chosen = [] if args.unconditional_samplers.strip().lower() == "none" else [
        name.strip().lower() for name in args.unconditional_samplers.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(UNCONDITIONAL_SAMPLERS))
    if unknown:
        raise ValueError(f"`--unconditional_samplers` takes a subset of {','.join(UNCONDITIONAL_SAMPLERS)} or 'none', "
                         f"got {unknown}.")
    args.unconditional_samplers = chosen
    try:
        args.guidance_scales = [float(s) for s in args.guidance_scales.split(",") if s.strip()]
    except ValueError as error:
        raise ValueError(f"`--guidance_scales` must be comma-separated numbers, got {args.guidance_scales!r}.") from error
    return args


def load_pipeline(path: str, device: torch.device, fast: bool) -> DiffusionSamplingPipeline | None:
    if path.lower() == "none":
        return None
    pipe = DiffusionSamplingPipeline.from_pretrained(path).to(device)
    pipe.set_progress_bar_config(leave=False)
    if device.type == "cpu" and fast:
        pipe.enable_fast_cpu_inference()
    return pipe


def draw(pipe: DiffusionSamplingPipeline, scheduler, steps: int, n: int, seed: int, **kwargs) -> tuple[torch.Tensor, float]:
    """n images (n, C, H, W) in [0, 1] and the seconds they took."""
    pipe.scheduler = scheduler
    start = time.perf_counter()
    images = pipe(batch_size=n, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                  output_type="pt", **kwargs).images
    return images, time.perf_counter() - start


def unconditional_grids(pipe: DiffusionSamplingPipeline, args, out: Path) -> list[dict]:
    config, n = pipe.scheduler.config, args.grid**2
    samplers = []
    if "ddpm" in args.unconditional_samplers:
        samplers.append((f"unconditional_ddpm{args.ddpm_steps}.png", DDPMScheduler.from_config(config), args.ddpm_steps))
        if args.full_ddpm and args.ddpm_steps != 1000:
            samplers.append(("unconditional_ddpm1000.png", DDPMScheduler.from_config(config), 1000))
    if "ddim" in args.unconditional_samplers:
        samplers.append((f"unconditional_ddim{args.ddim_steps}.png", DDIMScheduler.from_config(config), args.ddim_steps))
    if "pc" in args.unconditional_samplers:
        samplers.append((f"unconditional_pc{args.pc_levels}.png", PredictorCorrectorScheduler.from_config(config),
                         args.pc_levels))
    rows = []
    for name, scheduler, steps in samplers:
        images, seconds = draw(pipe, scheduler, steps, n, args.seed)
        save_image_grid(images, out / name, rows=args.grid)
        rows.append({"grid": name, "sampler": type(scheduler).__name__, "steps": steps, "seconds": seconds})
        print(f"  {name:<32} {type(scheduler).__name__} {steps} steps: {seconds:.1f} s")
    return rows


def conditional_grids(pipe: DiffusionSamplingPipeline, judge, args, out: Path) -> list[dict]:
    num_classes = num_classes_of(pipe.unet)
    if num_classes is None:
        raise ValueError(f"`--conditional` {args.conditional!r} is not class-conditional (no class embedding).")
    labels = torch.arange(num_classes).repeat_interleave(args.grid)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    rows = []
    for scale in args.guidance_scales:
        name = f"conditional_w{scale:g}.png"
        images, seconds = draw(pipe, pipe.scheduler, args.ddim_steps, len(labels), args.seed,
                               class_labels=labels, guidance_scale=scale)
        save_image_grid(images, out / name, rows=num_classes)
        save_labelled_rows(images, num_classes, args, out / name.replace(".png", "_labelled.png"))
        row = {"grid": name, "guidance_scale": scale, "sampler": f"DDIM {args.ddim_steps}", "seconds": seconds}
        line = f"  {name:<32} DDIM {args.ddim_steps} steps, w={scale:g}: {seconds:.1f} s"
        rows.append(row)
        print(line + judge_grid(judge, images, labels, row))
    return rows


def judge_grid(judge, images: torch.Tensor, labels: torch.Tensor, row: dict) -> str:
    """Record the judge's label accuracy on a class-major grid (images in [0, 1]) in ``row``; the text to print."""
    if judge is None:
        return ""
    predicted = classifier_probabilities(judge, images * 2 - 1).argmax(-1).cpu()
    row["judge_label_accuracy"] = float((predicted == labels).double().mean())
    return f", judge label accuracy {row['judge_label_accuracy']:.1%} (n={len(labels)})"


def save_labelled_rows(images: torch.Tensor, num_classes: int, args, path: Path) -> None:
    """The same grid as a figure with one labelled row per class (images (N, C, H, W) in [0, 1], class-major)."""
    names = args.class_names.split(",") if args.class_names else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"`--class_names` must name {num_classes} classes, got {len(names)}.")
    per_class = images.shape[0] // num_classes
    rows = [(names[c], images[c * per_class:(c + 1) * per_class] * 2 - 1) for c in range(num_classes)]
    # About 0.075 inch a character at the figure's 9-point labels: no empty band left of one-digit names.
    labelled_rows_figure(rows, path, label_width_inches=0.15 + 0.075 * max(len(name) for name in names))


def classifier_guided_grid(pipe: DiffusionSamplingPipeline, classifier, judge, args, out: Path) -> dict:
    """One row per class of the unconditional pipeline, each steered by classifier guidance (DDIM)."""
    num_classes = int(classifier.config.num_labels)
    labels = torch.arange(num_classes).repeat_interleave(args.grid)
    scale = args.classifier_guidance_scale
    name = f"classifier_guided_s{scale:g}.png"
    images, seconds = draw(pipe, DDIMScheduler.from_config(pipe.scheduler.config), args.ddim_steps, len(labels), args.seed,
                           class_labels=labels, classifier=classifier, classifier_guidance_scale=scale)
    save_image_grid(images, out / name, rows=num_classes)
    save_labelled_rows(images, num_classes, args, out / name.replace(".png", "_labelled.png"))
    row = {"grid": name, "classifier_guidance_scale": scale, "sampler": f"DDIM {args.ddim_steps}", "seconds": seconds}
    line = f"  {name:<32} DDIM {args.ddim_steps} steps, classifier guidance s={scale:g}: {seconds:.1f} s"
    print(line + judge_grid(judge, images, labels, row))
    return row


def load_noise_aware_classifier(args, pipe: DiffusionSamplingPipeline, device: torch.device):
    """The ``--noise_aware_classifier`` for ``pipe``'s images, or None (skipped, or the default MNIST one on other data)."""
    if args.noise_aware_classifier.lower() == "none":
        return None
    classifier = load_classifier(args.noise_aware_classifier, "--noise_aware_classifier", device, missing_ok=True)
    channels = int(pipe.unet.config.in_channels)
    if classifier is None or image_channels(classifier) == channels:
        return classifier
    if args.noise_aware_classifier == DEFAULT_NOISE_AWARE:
        print(f"  (no classifier-guided grid: the default --noise_aware_classifier is MNIST's, the pipeline draws "
              f"{channels}-channel images)")
        return None
    raise ValueError(
        f"`--noise_aware_classifier` {args.noise_aware_classifier} reads {image_channels(classifier)}-channel images but "
        f"`--unconditional` draws {channels}-channel ones: pass a noise-aware classifier of this dataset, or 'none'."
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    judge = None if args.judge.lower() == "none" else load_classifier(args.judge, "--judge", device, missing_ok=True)
    measured: dict = {}
    uncond = load_pipeline(args.unconditional, device, not args.no_fast)
    if uncond is not None:
        print(f"Unconditional: {args.unconditional}")
        measured["unconditional"] = unconditional_grids(uncond, args, out)
        noisy = load_noise_aware_classifier(args, uncond, device)
        if noisy is not None:
            measured["classifier_guided"] = classifier_guided_grid(uncond, noisy, judge, args, out)
    cond = load_pipeline(args.conditional, device, not args.no_fast)
    if cond is not None:
        print(f"Conditional: {args.conditional}")
        measured["conditional"] = conditional_grids(cond, judge, args, out)
    if not measured:
        raise ValueError("Nothing to draw: `--unconditional` and `--conditional` are both 'none'.")
    print(f"Pictures in {out}/")
    return measured


if __name__ == "__main__":
    main()
