#!/usr/bin/env python
"""Inverse problems on real MNIST test digits: every plug-and-play method against a replacement baseline.

    OMP_NUM_THREADS=2 python benchmarks/eval_inverse.py                       # 100 digits, every task and method
    python benchmarks/eval_inverse.py --tasks box,denoise-0.5 --methods prior,replacement --reuse

Tasks (``--num_digits`` real test digits, the first of a seeded permutation of the test split):

- ``random-50``: half the pixels observed, chosen at random per digit;
- ``top-half``: the top 14 rows observed;
- ``box``: everything but a centred 14x14 box observed;
- ``denoise-0.2``, ``denoise-0.5``: every pixel observed through Gaussian noise of that standard deviation
  (model space [-1, 1]).

Methods, each given the observation as ``MaskedObservation(observed, mask[, noise_std])``:

- ``prior``: :class:`PlugAndPlayPipeline`, method "prior", preset "fast-pixel" (Algorithm 1, made for
  pixel-level constraints);
- ``noise``: method "noise" (x_T optimised through diffusers' DDIM);
- ``dps``: :class:`DPSPipeline` (Chung et al. 2023), ``--dps_steps`` DDPM ancestral steps;
- ``replacement``: the baseline, RePaint-style replacement without resampling (Lugmayr et al. 2022): DDIM
  ``--replacement_steps`` sampling of the prior with the observed pixels re-imposed after every step,
  noised to the step's level. For denoising, where every pixel is observed but noisy, the matching
  baseline is to start DDIM at the noise level of the observation: ``x_t = sqrt(abar_t) y`` with
  ``abar_t = 1 / (1 + sigma^2)``, which is what y is up to scale (Kadkhodaie & Simoncelli's view of a
  denoiser as a prior; SDEdit without the extra noise).

Metrics: MSE and PSNR on the hidden pixels (the box, the unobserved half; for denoising every pixel
against the clean digit), in [0, 1] pixel units; the judge's accuracy on the completions against the
digits' true labels; UNet forward/backward passes and seconds per digit. Prints a table, writes a JSON
(``--output_json``) and a figure (``--figure``): for a few digits per task, the observation, each
method's completion and the truth. ``--reuse`` keeps (task, method) results already in the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pnp_diffusers import DiffusionSamplingPipeline, DPSPipeline, MaskedObservation, PlugAndPlayPipeline
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.data import load_image_dataset, to_model_range
from pnp_diffusers.figures import labelled_rows_figure
from pnp_diffusers.metrics import hidden_pixel_error, label_accuracy

REPO = Path(__file__).resolve().parents[1]
TASKS = ("random-50", "top-half", "box", "denoise-0.2", "denoise-0.5")
METHODS = ("replacement", "prior", "noise", "dps")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default=str(REPO / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--num_digits", type=int, default=100)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"Comma-separated subset of {TASKS}.")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {METHODS}.")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--dps_steps", type=int, default=200, help="DPS steps (forward + backward each).")
    parser.add_argument("--dps_scale", type=float, default=1.0)
    parser.add_argument("--replacement_steps", type=int, default=50)
    parser.add_argument("--figure_digits", type=int, default=4, help="Digits per task in the figure.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="Keep (task, method) results already in --output_json.")
    parser.add_argument("--output_json", default=str(REPO / "benchmarks" / "results" / "eval_inverse.json"))
    parser.add_argument("--figure", default=str(REPO / "docs" / "inverse_problems.png"))
    args = parser.parse_args(argv)
    for name, allowed in (("tasks", TASKS), ("methods", METHODS)):
        chosen = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        if not chosen or any(v not in allowed for v in chosen):
            raise ValueError(f"`--{name}` must name some of {allowed}, got {getattr(args, name)!r}.")
        setattr(args, name, chosen)
    if args.num_digits < 1 or args.batch_size < 1:
        raise ValueError("`--num_digits` and `--batch_size` must be positive.")
    return args


# ----------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------
def observe(task: str, truth: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """(observed (B, 1, H, W) in model space, mask (B, 1, H, W) of observed pixels, noise std or None)."""
    batch, _, height, width = truth.shape
    mask = torch.ones_like(truth)
    if task == "random-50":
        mask = (torch.rand(truth.shape, generator=generator) < 0.5).float()
    elif task == "top-half":
        mask[..., height // 2:, :] = 0
    elif task == "box":
        top, left = (height - height // 2) // 2, (width - width // 2) // 2
        mask[..., top:top + height // 2, left:left + width // 2] = 0
    if task.startswith("denoise-"):
        sigma = float(task.split("-")[1])
        return truth + sigma * torch.randn(truth.shape, generator=generator), mask, sigma
    return truth * mask, mask, None


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------
def run_replacement(sampler: DiffusionSamplingPipeline, observed, mask, sigma, steps: int, generator) -> tuple[torch.Tensor, int]:
    """The baseline; returns (completions (B, 1, H, W) in model space, UNet forwards per digit)."""
    scheduler = DDIMScheduler.from_config(sampler.scheduler.config)
    scheduler.set_timesteps(steps)
    batch = observed.shape[0]
    latents = torch.randn(observed.shape, generator=generator)
    if sigma is not None:  # start DDIM where the observation's own noise puts it
        abar_target = 1.0 / (1.0 + sigma**2)
        begin = int((scheduler.alphas_cumprod[scheduler.timesteps] - abar_target).abs().argmin())
        abar = scheduler.alphas_cumprod[scheduler.timesteps[begin]]
        out = sampler.denoise(abar.sqrt() * observed, scheduler, steps, generator=generator, begin_index=begin)
        return out, steps - begin

    def reimpose(pipe, i, t, tensors):
        timesteps = scheduler.timesteps
        latents = tensors["latents"]
        if i + 1 < len(timesteps):  # the next model call sees x at timesteps[i + 1]: noise y to that level
            noise = torch.randn(observed.shape, generator=generator)
            known = scheduler.add_noise(observed, noise, timesteps[i + 1:i + 2].expand(batch))
        else:
            known = observed
        return {"latents": mask * known + (1 - mask) * latents}

    first = scheduler.add_noise(observed, torch.randn(observed.shape, generator=generator), scheduler.timesteps[:1].expand(batch))
    latents = mask * first + (1 - mask) * latents
    out = sampler.denoise(latents, scheduler, steps, generator=generator, callback_on_step_end=reimpose)
    return out, steps


def run_method(method: str, pipes: dict, observed, mask, sigma, args, generator) -> dict:
    constraint = MaskedObservation(observed, mask, noise_std=sigma)
    batch = observed.shape[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.no_grad() if method == "replacement" else torch.enable_grad():
        if method == "replacement":
            images, forward = run_replacement(pipes["sampler"], observed, mask, sigma, args.replacement_steps, generator)
            backward = 0
        elif method == "dps":
            out = pipes["dps"](constraint, batch_size=batch, num_inference_steps=args.dps_steps,
                               guidance_scale=args.dps_scale, generator=generator, output_type="pt")
            images, forward, backward = out.images * 2 - 1, out.unet_forward_passes, out.unet_backward_passes
        else:
            kwargs = {"preset": "fast-pixel"} if method == "prior" else {}
            out = pipes["pnp"](constraint, batch_size=batch, method=method, generator=generator, output_type="pt", **kwargs)
            images, forward, backward = out.images * 2 - 1, out.unet_forward_passes, out.unet_backward_passes
    return {"images": images.detach().float().cpu(), "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start, "forward": forward, "backward": backward}


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def save(output: Path, figure_file: Path, args, results: dict, figures: dict) -> dict:
    payload = {"config": {k: v for k, v in vars(args).items()}, "threads": torch.get_num_threads(), "results": results}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2) + "\n")
    torch.save(figures, figure_file)
    return payload


def main(argv=None) -> dict:
    args = parse_args(argv)
    output = Path(args.output_json)
    stored = json.loads(output.read_text()) if args.reuse and output.exists() else {}
    results = stored.get("results", {})
    figure_file = output.with_suffix(".figure.pt")  # the figure's digits of every (task, method), uint8
    figures = torch.load(figure_file) if args.reuse and figure_file.exists() else {}
    judge = load_classifier(args.judge, "--judge")
    sampler = DiffusionSamplingPipeline.from_pretrained(args.prior)
    pnp = PlugAndPlayPipeline(unet=sampler.unet, scheduler=DDPMScheduler.from_config(sampler.scheduler.config))
    dps = DPSPipeline(unet=sampler.unet, scheduler=DDPMScheduler.from_config(sampler.scheduler.config))
    for pipe in (sampler, pnp, dps):
        pipe.set_progress_bar_config(disable=True)
    pipes = {"sampler": sampler, "pnp": pnp, "dps": dps}
    test = load_image_dataset(args.dataset, "test", resolution=int(sampler.unet.config.sample_size), show_progress=False)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.num_digits]
    truth_all, labels_all = to_model_range(test.images[order]), test.labels[order]

    figure_rows = []
    for task in args.tasks:
        observed_all, mask_all, sigma = observe(task, truth_all, torch.Generator().manual_seed(args.seed + 1))
        k = min(args.figure_digits, args.num_digits)
        figure_rows.append((f"{task}: observed", torch.where(mask_all[:k].bool(), observed_all[:k], torch.zeros(1))))
        for method in args.methods:
            key = f"{task}/{method}"
            if args.reuse and key in results and key in figures:
                print(f"{key:<26} reused from {output}")
                figure_rows.append((f"{task}: {method}", figures[key].float() / 127.5 - 1))
                continue
            parts, seconds, cpu_seconds, forward, backward = [], 0.0, 0.0, 0, 0
            generator = torch.Generator().manual_seed(args.seed + 2)
            for begin in range(0, args.num_digits, args.batch_size):
                chunk = slice(begin, begin + args.batch_size)
                run = run_method(method, pipes, observed_all[chunk], mask_all[chunk], sigma, args, generator)
                parts.append(run["images"])
                seconds += run["seconds"]
                cpu_seconds += run["cpu_seconds"]
                forward, backward = run["forward"], run["backward"]
            images = torch.cat(parts)
            mse, psnr = hidden_pixel_error(images, truth_all, mask_all, sigma is not None)
            figures[key] = ((images[:k].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            results[key] = {"task": task, "method": method, "n": args.num_digits, "hidden_mse": mse, "psnr_db": psnr,
                            "judge_accuracy": label_accuracy(judge, images, labels_all),
                            "unet_forward_per_digit": forward, "unet_backward_per_digit": backward,
                            "seconds_per_digit": seconds / args.num_digits,
                            # CPU time of this process: unlike wall time, not inflated by other jobs or a pause
                            "cpu_seconds_per_digit": cpu_seconds / args.num_digits}
            save(output, figure_file, args, results, figures)  # a killed run keeps what it measured (--reuse)
            print(f"{key:<26} PSNR {psnr:6.2f} dB  judge {100 * results[key]['judge_accuracy']:5.1f}%  "
                  f"{forward}+{backward} passes  {seconds / args.num_digits:.2f} s/digit", flush=True)
            figure_rows.append((f"{task}: {method}", images[:k]))
        figure_rows.append((f"{task}: truth", truth_all[:k]))

    print(f"\n{'task':<12} {'method':<12} {'PSNR dB':>8} {'MSE':>8} {'judge %':>8} {'passes':>9} {'s/digit':>8}")
    for row in results.values():
        print(f"{row['task']:<12} {row['method']:<12} {row['psnr_db']:8.2f} {row['hidden_mse']:8.4f} "
              f"{100 * row['judge_accuracy']:8.1f} {row['unet_forward_per_digit']:>4}+{row['unet_backward_per_digit']:<4} "
              f"{row['seconds_per_digit']:8.2f}")
    payload = save(output, figure_file, args, results, figures)
    labelled_rows_figure(figure_rows, args.figure, label_width_inches=2.0)
    print(f"wrote {output} and {args.figure}")
    return payload


if __name__ == "__main__":
    main()
