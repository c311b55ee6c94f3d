"""Sampling speed of DiffusionSamplingPipeline against stock diffusers, measured in one run.

Same UNet, same step count, same seed for each pair; the two sides of a pair are timed alternately
(A B A B ...) so that load from other processes hits both alike, and the median is reported.

Rows:
  1. DiffusionSamplingPipeline + DDPMScheduler   vs  diffusers DDPMPipeline
  2. DiffusionSamplingPipeline + DDIMScheduler   vs  diffusers DDIMPipeline
     (rows 1b, 2b: the same with ``enable_fast_cpu_inference(bf16=False, trace=True)``: float32 forwards replayed
     from a TorchScript trace, bit-identical images; the one-off trace time is printed under the row)
  3. classifier-free guidance, cond + uncond in one batched forward  vs  two separate forwards
  4. the fast CPU path, ``pipe.enable_fast_cpu_inference()``: UNet forwards through a bfloat16 copy (float32
     where bf16 is not native) [+ channels_last] replayed from its trace  vs  the default float32 path, at each of
     ``--fast_batch_sizes``
  5. with ``--compile``: the fast path + ``torch.compile`` vs float32, its compile time excluded (steady
     state) and included (one call of ``--repeats`` runs paying the compile once)

Then the UNet's achieved GFLOP/s (``torch.utils.flop_counter`` FLOPs per image x steps x images/s) on each
path of row 4, against this machine's fp32 and bf16 matmul peaks measured in the same run. With
``--fd_samples N`` the fast path's images are judged as images, not by a pixel difference: the Frechet
distance in the judge's features of N fast-path and N float32 DDIM samples from the same noise, each
against the test split, beside the real-data floor at N (``--judge``, ``--dataset``).

"ratio" is the speed of the first over the second (median over back-to-back pairs of runs); "mean |dpixel|" is the mean absolute difference
of the two image sets in [0, 1] pixel space (0 = identical images).

Usage:
    python benchmarks/bench_sampling.py                       # random mnist-small UNet, a few minutes on 2 free cores
    python benchmarks/bench_sampling.py --pipeline pipelines/mnist-ddpm --batch_size 32 --repeats 5
    python benchmarks/bench_sampling.py --compile             # also time torch.compile in the fast path
    python benchmarks/bench_sampling.py --pipeline pipelines/ddpm-mnist --threads 2 --fd_samples 1000 --fd_steps 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet, null_class_label
from pnp_diffusers.speed import has_fast_bf16, matmul_peak_flops, unet_flops

REPO = Path(__file__).resolve().parents[1]


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
    parser.add_argument("--fast_batch_sizes", default="8,64", help="comma-separated batch sizes of the fast-path rows")
    parser.add_argument("--fd_samples", type=int, default=0, help="judge the fast path by FD at this n (0: skip)")
    parser.add_argument("--fd_steps", type=int, default=50, help="DDIM steps of the FD samples")
    parser.add_argument("--judge", default=str(REPO / "pipelines" / "mnist-classifier-judge"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch_size", "ddpm_steps", "ddim_steps", "repeats", "threads", "fd_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    try:
        args.fast_batch_sizes = [int(b) for b in args.fast_batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--fast_batch_sizes must be comma-separated integers, got {args.fast_batch_sizes!r}")
    if any(b < 1 for b in args.fast_batch_sizes) or args.fd_samples < 0 or args.fd_samples == 1:
        parser.error("--fast_batch_sizes must be positive and --fd_samples 0 or at least 2")
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
            trace_row(rows, args, ours, stock, scheduler_class, stock_class, steps, seed, quiet)

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

    # row 4: the same weights; the fast pipeline runs its forwards through a prepared copy, bf16 where this CPU
    # runs bf16 natively (the pipeline's own choice, bf16=None); on an AVX2-only CPU bf16 is emulated and ~20x
    # slower, so there the fast path is float32 and only --channels_last / --compile change anything
    base_unet = unet if unet.config.num_class_embeds is None else conditional_unet
    default = quiet(DiffusionSamplingPipeline(unet=base_unet, scheduler=DDIMScheduler.from_config(config)))
    fast = quiet(DiffusionSamplingPipeline(unet=base_unet, scheduler=DDIMScheduler.from_config(config)))
    native_bf16 = has_fast_bf16(base_unet.device)
    fast.enable_fast_cpu_inference(bf16=None, channels_last=args.channels_last)  # with its trace (trace=None)
    fast_name = ("bf16" if native_bf16 else "float32") + (" + channels_last" if args.channels_last else "") + " + trace"
    print(f"this CPU {'runs' if native_bf16 else 'has no native'} bfloat16 kernels (oneDNN's check): the fast path is "
          f"{fast_name}", flush=True)
    rates = {}
    for fast_batch in args.fast_batch_sizes:
        fast_kwargs = dict(batch_size=fast_batch, num_inference_steps=args.ddim_steps, output_type="pt")
        row = Row(f"fast path ({fast_name}) vs default float32, batch {fast_batch}", *time_pair(
            lambda: fast(generator=seed(), **fast_kwargs).images,
            lambda: default(generator=seed(), **fast_kwargs).images,
            args.repeats, fast_batch))
        rows.append(row)
        rates[fast_batch] = (row.ours, row.baseline)

    if args.compile:
        for fast_batch in args.fast_batch_sizes:
            compile_row(args, default, seed, quiet, fast_batch, native_bf16)
    print_utilisation(base_unet, args.ddim_steps, rates, fast_name, native_bf16)
    if args.fd_samples:
        judge_fast_path(args, default, fast)


def trace_row(rows, args, ours, stock, scheduler_class, stock_class, steps: int, seed, quiet) -> None:
    """Row 1b/2b: the same float32 pipeline with ``enable_fast_cpu_inference(bf16=False, trace=True)`` (bit-identical
    images) against the stock pipeline; the one-off trace (its first call, less a steady call) is printed apart."""
    traced = quiet(DiffusionSamplingPipeline(unet=ours.unet, scheduler=scheduler_class.from_config(ours.scheduler.config)))
    traced.enable_fast_cpu_inference(bf16=False, trace=True)
    kwargs = dict(batch_size=args.batch_size, num_inference_steps=steps, output_type="pt")
    start = time.perf_counter()
    traced(generator=seed(), **kwargs)
    first_call = time.perf_counter() - start
    row = Row(f"{scheduler_class.__name__} + trace (float32) vs {stock_class.__name__}", *time_pair(
        lambda: traced(generator=seed(), **kwargs).images, lambda: stock(generator=seed(), **kwargs).images,
        args.repeats, args.batch_size))
    rows.append(row)
    trace_seconds = max(0.0, first_call - args.batch_size / row.ours)
    print(f"  (its trace, paid once per input shape: {trace_seconds:.2f} s)", flush=True)


def compile_row(args, default: DiffusionSamplingPipeline, seed, quiet, batch: int, native_bf16: bool) -> None:
    """Row 5: torch.compile on the fast path against the float32 ``default`` pipeline at ``batch``, steady state and
    with the compile paid inside the timing (a fresh compiled copy per batch size, so each pays its own compile)."""
    kwargs = dict(batch_size=batch, num_inference_steps=args.ddim_steps, output_type="pt")
    compiled = quiet(DiffusionSamplingPipeline(unet=default.unet, scheduler=DDIMScheduler.from_config(default.scheduler.config)))
    compiled.enable_fast_cpu_inference(bf16=None, channels_last=args.channels_last, compile=True)
    name = "bf16" if native_bf16 else "float32"
    start = time.perf_counter()
    compiled(generator=seed(), **kwargs)
    first_call = time.perf_counter() - start
    steady, baseline, ratio, pixel_diff = time_pair(lambda: compiled(generator=seed(), **kwargs).images,
                                                    lambda: default(generator=seed(), **kwargs).images, args.repeats, batch)
    run_seconds = batch / steady
    compile_seconds = max(0.0, first_call - run_seconds)
    with_compile = args.repeats * batch / (compile_seconds + args.repeats * run_seconds)
    print(f"{f'fast path ({name} + compile) vs float32, batch {batch}, compile excluded':<58} {steady:>10.2f} {baseline:>14.2f} "
          f"{ratio:>5.2f}x {pixel_diff:>13.2e}")
    print(f"{f'  the same with the compile ({compile_seconds:.0f} s) in {args.repeats} runs':<58} {with_compile:>10.2f} "
          f"{baseline:>14.2f} {with_compile / baseline:>5.2f}x")


def print_utilisation(unet, steps: int, rates: dict, fast_name: str, native_bf16: bool) -> None:
    """Achieved UNet GFLOP/s of the fast and float32 paths against the matmul peaks measured now."""
    per_image = unet_flops(unet, batch_size=1)
    peaks = {"fp32": matmul_peak_flops(torch.float32), "bf16": matmul_peak_flops(torch.bfloat16)}
    print(f"\nUNet forward: {per_image / 1e9:.3f} GFLOP per image (torch.utils.flop_counter); matmul peak measured now "
          f"(1024^2, {torch.get_num_threads()} threads): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    for batch, (fast_rate, default_rate) in rates.items():
        fast_precision = "bf16" if native_bf16 else "fp32"
        for name, rate, precision in ((f"fast path ({fast_name})", fast_rate, fast_precision), ("float32", default_rate, "fp32")):
            achieved = per_image * steps * rate
            print(f"  batch {batch:>3}, {name:<24} {achieved / 1e9:7.1f} GFLOP/s = {100 * achieved / peaks[precision]:5.1f}% "
                  f"of the {precision} peak")


def judge_fast_path(args, default, fast) -> None:
    """FD in the judge's features of fast-path and float32 samples from the same noises, each against the test split."""
    from pnp_diffusers.classifiers import load_classifier
    from pnp_diffusers.metrics import extract_features, frechet_distance, reference_features_and_floor

    judge = load_classifier(args.judge, "--judge")
    resolution = int(default.unet.config.sample_size)
    reference, floor = reference_features_and_floor(judge, args.dataset, resolution, args.fd_samples, seed=args.seed)
    print(f"\nthe fast path judged as images: DDIM {args.fd_steps}, n={args.fd_samples}, judge {args.judge}; "
          f"real-data floor {floor:.3f}")
    batch = max(args.fast_batch_sizes)
    for name, pipe in (("float32", default), ("fast path", fast)):
        generator, images = torch.Generator().manual_seed(args.seed), []
        start = time.perf_counter()
        for first in range(0, args.fd_samples, batch):
            size = min(batch, args.fd_samples - first)
            images.append(pipe(batch_size=size, num_inference_steps=args.fd_steps, generator=generator, output_type="pt").images)
        seconds = time.perf_counter() - start
        distance = frechet_distance(extract_features(judge, torch.cat(images) * 2 - 1), reference)
        print(f"  {name:<10} FD {distance:.3f} ({distance / floor:.2f}x the floor), {seconds:.0f} s")


if __name__ == "__main__":
    main()
