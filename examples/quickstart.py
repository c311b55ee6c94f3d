#!/usr/bin/env python
"""The main job: sample the shipped MNIST pipelines every way, and run the plug-and-play demo.

    python examples/quickstart.py                 # about 1-3 minutes on 2 CPU cores

Writes under ``outputs/quickstart/``:

- ``ddpm_unconditional.png``  8x8 unconditional samples, DDPM ancestral sampling;
- ``ddim50_unconditional.png`` the same noise, DDIM 50 steps;
- ``pc_unconditional.png``    predictor-corrector (Song et al. 2021), same noise;
- ``cfg_ddim50.png``          10x4 class-conditional grid with classifier-free guidance, row = digit;
- ``cfg_pc.png``              the same with the predictor-corrector sampler;
- ``interpolation.png``       a DDIM latent interpolation strip (slerp between two noises);
- ``plug_and_play.png``       plug-and-play (Graikos et al. 2022): digits by label through a classifier,
                              horizontal similarity and dissimilarity, "a symmetric 3".

and prints what it ran, how long each took, and the guide classifier's verdict on the CFG grid.
Every picture has a fixed seed: run it twice, get the same pictures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from pnp_diffusers import (  # noqa: E402
    ClassifierConstraint,
    DiffusionSamplingPipeline,
    PlugAndPlayPipeline,
    PredictorCorrectorScheduler,
    SymmetryConstraint,
)
from pnp_diffusers.metrics import classifier_probabilities  # noqa: E402
from pnp_diffusers.utils import save_image_grid  # noqa: E402
from pnp_diffusers.classifiers import load_classifier  # noqa: E402
from pnp_mnist import render_figure  # noqa: E402

PIPELINES = REPO / "pipelines"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unconditional", default=str(PIPELINES / "ddpm-mnist"), help="Unconditional pipeline (path or Hub id).")
    parser.add_argument("--conditional", default=str(PIPELINES / "ddpm-mnist-cfg"), help="Class-conditional (CFG) pipeline.")
    parser.add_argument("--classifier", default=str(PIPELINES / "mnist-classifier-guide"), help="Guide classifier.")
    parser.add_argument("--output_dir", default="outputs/quickstart")
    # The sizes keep the whole job under 3 minutes on 2 cores even where bf16 is emulated (float32 forwards).
    parser.add_argument("--grid", type=int, default=8, help="Side of the unconditional grids: grid x grid images.")
    parser.add_argument("--cfg_per_row", type=int, default=4, help="Images per digit in the CFG grids (10 rows, one per digit).")
    parser.add_argument("--ddpm_steps", type=int, default=100,
                        help="DDPM ancestral steps (1000 = the training chain; fewer skip steps, as diffusers' DDPMScheduler does).")
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--pc_steps", type=int, default=25, help="Noise levels of predictor-corrector (x2 model calls).")
    # w=1.5, the ddpm-mnist-cfg card's: at n=10,000 99.6% labels by the judge with FD 2.02x the label-balanced floor.
    parser.add_argument("--guidance_scale", type=float, default=1.5)
    parser.add_argument("--interpolation_frames", type=int, default=10)
    parser.add_argument("--pnp_per_row", type=int, default=2)
    parser.add_argument("--pnp_iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no_fast", action="store_true",
                        help="Sample in float32 instead of the fast path (pipe.enable_fast_cpu_inference(): bf16 forwards where the CPU runs bf16 natively).")
    args = parser.parse_args(argv)
    for name in ("grid", "cfg_per_row", "pnp_per_row", "interpolation_frames"):
        if getattr(args, name) < 1:
            parser.error(f"`--{name}` must be a positive integer, got {getattr(args, name)}.")
    return args


def timed(label: str):
    """Context manager printing how long a step took."""

    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            return self

        def __exit__(self, *exc):
            print(f"  {label}: {time.perf_counter() - self.start:.1f} s")
            return False

    return _Timer()


def sample_grid(pipe: DiffusionSamplingPipeline, scheduler, steps: int, n: int, seed: int, **kwargs) -> torch.Tensor:
    """n images (n, C, H, W) in [0, 1] from ``pipe`` with ``scheduler``, seeded."""
    pipe.scheduler = scheduler
    generator = torch.Generator().manual_seed(seed)
    return pipe(batch_size=n, num_inference_steps=steps, generator=generator, output_type="pt", **kwargs).images


def unconditional_grids(pipe: DiffusionSamplingPipeline, args, out: Path) -> dict[str, Path]:
    """The same seed through DDPM, DDIM and predictor-corrector: three grid x grid grids."""
    n, config = args.grid**2, pipe.scheduler.config
    samplers = {
        "ddpm_unconditional.png": (DDPMScheduler.from_config(config), args.ddpm_steps),
        "ddim50_unconditional.png": (DDIMScheduler.from_config(config), args.ddim_steps),
        "pc_unconditional.png": (PredictorCorrectorScheduler.from_config(config), args.pc_steps),
    }
    written = {}
    for name, (scheduler, steps) in samplers.items():
        with timed(f"{name} ({type(scheduler).__name__}, {steps} steps)"):
            images = sample_grid(pipe, scheduler, steps, n, args.seed)
        written[name] = out / name
        save_image_grid(images, written[name], rows=args.grid)
    return written


def cfg_grids(pipe: DiffusionSamplingPipeline, args, out: Path, classifier=None) -> dict[str, Path]:
    """Class-conditional grids with classifier-free guidance: row r holds digit r."""
    per_row = args.cfg_per_row
    labels = torch.arange(10).repeat_interleave(per_row)
    config = pipe.scheduler.config
    samplers = {
        "cfg_ddim50.png": (DDIMScheduler.from_config(config), args.ddim_steps),
        "cfg_pc.png": (PredictorCorrectorScheduler.from_config(config), args.pc_steps),
    }
    written = {}
    for name, (scheduler, steps) in samplers.items():
        with timed(f"{name} ({type(scheduler).__name__}, {steps} steps, guidance {args.guidance_scale})"):
            images = sample_grid(pipe, scheduler, steps, len(labels), args.seed, class_labels=labels,
                                 guidance_scale=args.guidance_scale)
        written[name] = out / name
        save_image_grid(images, written[name], rows=10)
        if classifier is not None:
            predicted = classifier_probabilities(classifier, images * 2 - 1).argmax(-1).cpu()
            print(f"    guide classifier agrees with the requested digit on {(predicted == labels).float().mean():.0%}")
    return written


def interpolation_strip(pipe: DiffusionSamplingPipeline, args, out: Path) -> Path:
    """Slerp between two noises, decoded with deterministic DDIM (Song et al. 2021, Sec. 5.3)."""
    path = out / "interpolation.png"
    with timed(f"interpolation.png ({args.interpolation_frames} frames, DDIM {args.ddim_steps})"):
        pipe.interpolate(args.interpolation_frames, num_inference_steps=args.ddim_steps,
                         generator=torch.Generator().manual_seed(args.seed + 1), save_path=path)
    return path


def plug_and_play_figure(prior: DiffusionSamplingPipeline, classifier, args, out: Path) -> Path:
    """Graikos et al. 2022 with the unconditional prior: label, symmetry and 'a symmetric 3' rows."""
    pnp = PlugAndPlayPipeline(unet=prior.unet, scheduler=DDPMScheduler.from_config(prior.scheduler.config))
    pnp.set_progress_bar_config(disable=True)
    k = args.pnp_per_row
    generator = torch.Generator().manual_seed(args.seed)
    settings = dict(method="prior", num_iterations=args.pnp_iterations, generator=generator, output_type="pt")
    path = out / "plug_and_play.png"
    with timed(f"plug_and_play.png ({args.pnp_iterations} iterations, method 'prior')"):
        digits = torch.arange(10).repeat_interleave(k)
        by_label = pnp(ClassifierConstraint(classifier, digits), batch_size=len(digits), **settings).images * 2 - 1
        rows = [(f"digit {d}", by_label[d * k : (d + 1) * k]) for d in range(10)]
        for name, constraint in [
            ("horizontal similarity", SymmetryConstraint("horizontal", "similar")),
            ("horizontal dissimilarity", SymmetryConstraint("horizontal", "dissimilar")),
            ("a symmetric 3", ClassifierConstraint(classifier, 3) + SymmetryConstraint("horizontal", "similar")),
        ]:  # pixel-level constraints: the preset made for them (annealed to t=0, weight 0.05)
            rows.append((name, pnp(constraint, batch_size=k, preset="fast-pixel", **settings).images * 2 - 1))
        render_figure(rows, path)
    judged = classifier_probabilities(classifier, by_label.to(classifier.device)).argmax(-1).cpu()
    print(f"    guide classifier agrees with the requested digit on {(judged == digits).float().mean():.0%} "
          "(the guide judging itself; benchmarks/eval_pnp.py uses an independent judge)")
    return path


def main(argv=None) -> dict[str, Path]:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    start = time.perf_counter()

    print(f"Loading {args.unconditional}, {args.conditional} and {args.classifier}")
    uncond = DiffusionSamplingPipeline.from_pretrained(args.unconditional).to(device)
    cond = DiffusionSamplingPipeline.from_pretrained(args.conditional).to(device)
    classifier = load_classifier(args.classifier, "--classifier", device, missing_ok=True)
    if classifier is None:
        raise ValueError(f"`--classifier` {args.classifier!r} holds no classifier (no config.json).")
    for pipe in (uncond, cond):
        pipe.set_progress_bar_config(leave=False)
        if device.type == "cpu" and not args.no_fast:
            pipe.enable_fast_cpu_inference()  # bf16 UNet forwards where native (else fp32), sampler arithmetic in fp32

    written = {}
    written.update(unconditional_grids(uncond, args, out))
    written.update(cfg_grids(cond, args, out, classifier))
    written["interpolation.png"] = interpolation_strip(uncond, args, out)
    written["plug_and_play.png"] = plug_and_play_figure(uncond, classifier, args, out)

    print(f"\nDone in {time.perf_counter() - start:.0f} s. Pictures:")
    for path in written.values():
        print(f"  {path}")
    return written


if __name__ == "__main__":
    main()
