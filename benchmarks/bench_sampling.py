"""Sampling speed of DiffusionSamplingPipeline against stock diffusers, measured in one run.

Same UNet, same step count, same seed for each pair; the two sides of a pair are timed alternately
(A B A B ...) so that load from other processes hits both alike, and the median is reported.

Rows:
  1. DiffusionSamplingPipeline + DDPMScheduler   vs  diffusers DDPMPipeline
  2. DiffusionSamplingPipeline + DDIMScheduler   vs  diffusers DDIMPipeline
  3. classifier-free guidance, cond + uncond in one batched forward  vs  two separate forwards
  4. the fast CPU path, ``pipe.enable_fast_cpu_inference()``: UNet forwards through a bfloat16 copy
     [+ channels_last, + torch.compile]  vs  the default float32 path

"ratio" is the speed of the first over the second (median over back-to-back pairs of runs); "mean |dpixel|" is the mean absolute difference
of the two image sets in [0, 1] pixel space (0 = identical images).

Usage:
    python benchmarks/bench_sampling.py                       # random mnist-small UNet, a few minutes on 2 free cores
    python benchmarks/bench_sampling.py --pipeline pipelines/mnist-ddpm --batch_size 32 --repeats 5
    python benchmarks/bench_sampling.py --compile             # also time torch.compile in the fast path
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet, null_class_label


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="a saved pipeline folder to time (default: random mnist-small UNet)")
    parser.add_argument("--preset", default="mnist-small", help="create_unet preset when no --pipeline is given")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--ddpm_steps", type=int, default=10, help="DDPM steps (same for both sides)")
    parser.add_argument("--ddim_steps", type=int, default=10, help="DDIM steps (rows 2-4)")
    parser.add_argument("--guidance_scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (after one warm-up run)")
    parser.add_argument("--channels_last", action="store_true", help="add channels_last to the fast path")
    parser.add_argument("--compile", action="store_true", help="add torch.compile to the fast path (slow first call)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch.set_num_threads. 1 by default: on a CPU shared with other jobs, OpenMP threads waiting on each "
        "other made 2-thread runs ~10x slower here; pass --threads 2 (or more) on an idle machine",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch_size", "ddpm_steps", "ddim_steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    return args


@dataclass
class Row:
    name: str
    ours: float  # images/s (median run)
    baseline: float  # images/s (median run)
    ratio: float  # median over repeats of (baseline time / ours time), runs paired back to back
    pixel_diff: float


def time_pair(run_a: Callable[[], torch.Tensor], run_b: Callable[[], torch.Tensor], repeats: int, batch_size: int):
    """Warm both up, then time them alternately.

    Returns (images/s of a, images/s of b, speed ratio a/b, mean |a - b| in [0, 1]); the ratio is the median of
    the ratios of back-to-back runs, which is steadier than a ratio of medians when other processes share the CPU.
    """
    images_a, images_b = run_a(), run_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    pixel_diff = (images_a.float() - images_b.float()).abs().mean().item()
    ratio = statistics.median(b / a for a, b in zip(times_a, times_b))
    return batch_size / statistics.median(times_a), batch_size / statistics.median(times_b), ratio, pixel_diff


class TwoForwardGuidancePipeline(DiffusionSamplingPipeline):
    """The baseline of row 3: the same guidance formula with the conditional and unconditional halves
    run as two separate UNet forwards."""

    def predict_noise(self, sample, timestep, class_labels=None, guidance_scale=None):
        if class_labels is None or guidance_scale in (None, 0, 1):
            return super().predict_noise(sample, timestep, class_labels, guidance_scale)
        null_labels = torch.full_like(class_labels, null_class_label(self.unet))
        eps_cond = self.run_unet(sample, timestep, class_labels)
        eps_uncond = self.run_unet(sample, timestep, null_labels)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def load_models(args):
    """(unconditional UNet, class-conditional UNet or None, DDPM noise scheduler)."""
    if args.pipeline:
        pipe = DiffusionSamplingPipeline.from_pretrained(args.pipeline)
        unet = pipe.unet.eval()
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        conditional = unet if unet.config.num_class_embeds is not None else None
        return unet, conditional, scheduler
    torch.manual_seed(args.seed)
    unet = create_unet(args.preset).eval()
    conditional = create_unet(args.preset, num_classes=10).eval()
    return unet, conditional, create_noise_scheduler()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    unet, conditional_unet, noise_scheduler = load_models(args)
    config = noise_scheduler.config
    batch = args.batch_size
    seed = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731

    def quiet(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, "
          f"UNet {'from ' + args.pipeline if args.pipeline else args.preset + ' (random weights)'}, "
          f"{args.repeats} timed runs per side", flush=True)
    header = f"{'comparison':<58} {'ours img/s':>10} {'baseline img/s':>14} {'ratio':>6} {'mean |dpixel|':>13}"
    print(header)
    print("-" * len(header), flush=True)

    class Rows(list):
        def append(self, row: Row) -> None:  # print each row as soon as it is measured
            super().append(row)
            print(f"{row.name:<58} {row.ours:>10.2f} {row.baseline:>14.2f} {row.ratio:>5.2f}x {row.pixel_diff:>13.2e}",
                  flush=True)

    rows = Rows()
    # The stock pipelines pass no class labels: rows 1-2 need an unconditional UNet (skipped for a conditional
    # --pipeline), row 3 a conditional one (skipped for an unconditional --pipeline).
    if unet.config.num_class_embeds is None:
        for scheduler_class, stock_class, steps in ((DDPMScheduler, DDPMPipeline, args.ddpm_steps),
                                                    (DDIMScheduler, DDIMPipeline, args.ddim_steps)):
            ours = quiet(DiffusionSamplingPipeline(unet=unet, scheduler=scheduler_class.from_config(config)))
            stock = quiet(stock_class(unet=unet, scheduler=scheduler_class.from_config(config)))
            rows.append(Row(f"{scheduler_class.__name__} ({steps} steps) vs {stock_class.__name__}", *time_pair(
                lambda: ours(batch_size=batch, num_inference_steps=steps, generator=seed(), output_type="pt").images,
                lambda: stock(batch_size=batch, num_inference_steps=steps, generator=seed(), output_type="pt").images,
                args.repeats, batch)))

    if conditional_unet is not None:
        labels = torch.arange(batch) % (conditional_unet.config.num_class_embeds - 1)
        batched = quiet(DiffusionSamplingPipeline(unet=conditional_unet, scheduler=DDIMScheduler.from_config(config)))
        separate = quiet(TwoForwardGuidancePipeline(unet=conditional_unet, scheduler=DDIMScheduler.from_config(config)))
        cfg_kwargs = dict(batch_size=batch, class_labels=labels, guidance_scale=args.guidance_scale,
                          num_inference_steps=args.ddim_steps, output_type="pt")
        rows.append(Row(f"CFG w={args.guidance_scale:g}: one batched forward vs two forwards", *time_pair(
            lambda: batched(generator=seed(), **cfg_kwargs).images,
            lambda: separate(generator=seed(), **cfg_kwargs).images,
            args.repeats, batch)))

    # row 4: the same weights; the fast pipeline runs its forwards through a prepared bf16 copy
    base_unet = unet if unet.config.num_class_embeds is None else conditional_unet
    default = quiet(DiffusionSamplingPipeline(unet=base_unet, scheduler=DDIMScheduler.from_config(config)))
    fast = quiet(DiffusionSamplingPipeline(unet=base_unet, scheduler=DDIMScheduler.from_config(config)))
    fast.enable_fast_cpu_inference(bf16=True, channels_last=args.channels_last, compile=args.compile)
    fast_name = "bf16" + (" + channels_last" if args.channels_last else "") + (" + compile" if args.compile else "")
    fast_kwargs = dict(batch_size=batch, num_inference_steps=args.ddim_steps, output_type="pt")
    rows.append(Row(f"fast path ({fast_name}) vs default float32", *time_pair(
        lambda: fast(generator=seed(), **fast_kwargs).images,
        lambda: default(generator=seed(), **fast_kwargs).images,
        args.repeats, batch)))


if __name__ == "__main__":
    main()
