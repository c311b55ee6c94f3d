#!/usr/bin/env python
"""Training throughput: train/train.py's step against a plain diffusers loop, measured in one run.

Both sides train the same UNet preset on the same MNIST images with the same batch size:

* **plain diffusers**: the loop of diffusers' ``train_unconditional.py`` example: a ``datasets``
  split decoded per batch by ``set_transform`` (PIL -> tensor), ``UNet2DModel`` in fp32 and NCHW,
  ``DDPMScheduler.add_noise`` and ``torch.optim.AdamW`` with its default implementation.
* **train.py defaults**: the images decoded once into a uint8 tensor (``load_image_dataset``),
  the precision and memory format ``train.py`` picks by default on this CPU (bf16 autocast through
  accelerate where the CPU runs bf16 natively, else float32; NCHW, see ``use_channels_last``), fused
  AdamW and ``train.py``'s own loss function.
* **train.py + torch.compile**: the same with the UNet compiled by inductor after ``prepare``, as
  ``train.py --torch_compile`` does (accelerate's dynamo plugin compiles the prepared model). Its
  warm-up pays the compile; the compile time printed is that first step's wall time minus a steady
  step (inductor's on-disk cache, warm or cold, changes it a lot: the cache hits are printed). Its
  gradients are then checked against eager ones on one batch, as ``train.py`` does before it keeps the
  compile: on this project's CPU (torch 2.13) inductor's backward drops 136 of the UNet's 182 parameter
  gradients, so that side's speed is printed with "NOT usable".

The sides are timed in alternating blocks so that background load hits all alike, and the ratios of
steps/s to the plain loop are printed, with each side's utilisation of this machine's matmul peak.

    python benchmarks/bench_training.py                 # ~3 minutes on 2 CPU cores, plus the compile
    python benchmarks/bench_training.py --no_compile    # the two uncompiled sides only
    python benchmarks/bench_training.py --steps 20 --blocks 3 --batch_size 128
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]

from accelerate import Accelerator  # noqa: E402
from diffusers import DDPMScheduler  # noqa: E402

from pnp_diffusers.data import find_image_column, load_image_dataset  # noqa: E402
from pnp_diffusers.models import create_noise_scheduler, create_unet  # noqa: E402
from pnp_diffusers.speed import matmul_peak_flops, resolve_mixed_precision, unet_flops  # noqa: E402
from pnp_diffusers.training_utils import compiled_gradient_check, diffusion_loss, use_channels_last  # noqa: E402


def plain_diffusers_loader(dataset_path: str, batch_size: int, num_samples: int):
    """The example script's data path: datasets + a per-batch PIL -> tensor transform."""
    import datasets

    ds = datasets.load_dataset(dataset_path, split=f"train[:{num_samples}]")
    column = find_image_column(ds, dataset_path)  # "image" (MNIST) or "img" (CIFAR-10)
    mode = ds[0][column].mode if ds[0][column].mode in ("L", "RGB") else "RGB"

    def transform(examples):
        arrays = (np.asarray(im.convert(mode), dtype=np.float32) for im in examples[column])
        images = [torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()) / 127.5 - 1.0 for a in arrays]
        return {"input": images}

    ds.set_transform(transform)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)


def endless(loader):
    while True:
        yield from loader


def plain_step(unet, scheduler: DDPMScheduler, optimizer, batch) -> float:
    clean = batch["input"]
    noise = torch.randn_like(clean)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],))
    noisy = scheduler.add_noise(clean, noise, timesteps)
    loss = F.mse_loss(unet(noisy, timesteps).sample, noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def ours_step(accelerator, unet, scheduler, optimizer, batch, channels_last: bool) -> float:
    loss = diffusion_loss(unet, scheduler, batch, None, 0.0, channels_last=channels_last)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def time_block(step_fn, batches, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step_fn(next(batches))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--model", default="mnist-small")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15, help="Steps per timed block.")
    parser.add_argument("--blocks", type=int, default=3, help="Alternating timed blocks per side.")
    parser.add_argument("--num_samples", type=int, default=6400)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--no_compile", action="store_true",
                        help="Skip the train.py + torch.compile side (and its compile time).")
    parser.add_argument("--compile_backend", default="inductor",
                        help="torch.compile backend of that side (inductor, as train.py --torch_compile; the tests "
                             "use aot_eager, which needs no C++ build).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    base = create_unet(args.model)
    scheduler = create_noise_scheduler("linear")

    plain_unet = copy.deepcopy(base).train()
    plain_opt = torch.optim.AdamW(plain_unet.parameters(), lr=1e-4)
    plain_batches = endless(plain_diffusers_loader(args.dataset, args.batch_size, args.num_samples))

    precision = resolve_mixed_precision("auto", "cpu")  # train.py's --mixed_precision auto
    channels_last = use_channels_last("auto", precision, "cpu")  # train.py's --memory_format auto
    layout = torch.channels_last if channels_last else torch.contiguous_format
    ours_name = (f"train.py defaults ({'bf16' if precision == 'bf16' else 'fp32'}, "
                 f"{'channels_last' if channels_last else 'NCHW'}, fused AdamW, pre-decoded)")
    accelerator = Accelerator(mixed_precision=precision)
    data = load_image_dataset(args.dataset, f"train[:{args.num_samples}]", show_progress=False)
    our_unet = copy.deepcopy(base).to(memory_format=layout).train()
    our_opt = torch.optim.AdamW(our_unet.parameters(), lr=1e-4, fused=True)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    our_unet, our_opt, loader = accelerator.prepare(our_unet, our_opt, loader)
    our_batches = endless(loader)

    plain = lambda b: plain_step(plain_unet, scheduler, plain_opt, b)  # noqa: E731
    ours = lambda b: ours_step(accelerator, our_unet, scheduler, our_opt, b, channels_last)  # noqa: E731
    loops = [("plain diffusers (fp32, NCHW, AdamW, per-batch decode)", plain, plain_batches),
             (ours_name, ours, our_batches)]
    first_compiled_step = None
    if not args.no_compile:
        compiled_unet = copy.deepcopy(base).to(memory_format=layout).train()
        compiled_opt = torch.optim.AdamW(compiled_unet.parameters(), lr=1e-4, fused=True)
        compiled_unet, compiled_opt = accelerator.prepare(compiled_unet, compiled_opt)
        # What Accelerator(dynamo_backend=...).prepare does last (train.py --torch_compile): compile the prepared
        # model, bf16 autocast wrapper included. One Accelerator here, so the uncompiled side stays uncompiled.
        compiled_unet = torch.compile(compiled_unet, backend=args.compile_backend)
        compiled = lambda b: ours_step(accelerator, compiled_unet, scheduler, compiled_opt, b, channels_last)  # noqa: E731
        torch._dynamo.utils.counters.clear()
        first_compiled_step = time_block(compiled, our_batches, 1)  # compiles forward and backward
        cache = dict(torch._dynamo.utils.counters["inductor"])
        name = f"train.py + torch.compile (defaults + {args.compile_backend}, compile excluded)"
        loops.append((name, compiled, our_batches))
    for _, fn, batches in loops:  # warm-up: allocator, kernels, first batches
        time_block(fn, batches, 2)

    times = {name: [] for name, _, _ in loops}
    names = list(times)
    for _ in range(args.blocks):
        for name, fn, batches in loops:
            times[name].append(time_block(fn, batches, args.steps))

    print(f"\nTraining throughput, {args.model} ({sum(p.numel() for p in base.parameters()) / 1e6:.2f}M params), "
          f"batch {args.batch_size}, {args.blocks} x {args.steps} steps per side, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<68} {'steps/s':>8} {'images/s':>9}")
    rates = {}
    for name, blocks in times.items():
        rates[name] = args.steps * len(blocks) / sum(blocks)
        print(f"{name:<68} {rates[name]:>8.3f} {rates[name] * args.batch_size:>9.1f}")
    print(f"ratio train.py / plain diffusers: {rates[names[1]] / rates[names[0]]:.2f}x")
    if first_compiled_step is not None:
        compile_seconds = first_compiled_step - 1 / rates[names[2]]  # the first step minus a steady one
        print(f"ratio train.py + torch.compile / plain diffusers: {rates[names[2]] / rates[names[0]]:.2f}x")
        print(f"compile time ({args.compile_backend}): {compile_seconds:.1f} s (first step {first_compiled_step:.1f} s "
              f"minus a steady step; paid once per launch; fx graph cache hits {cache.get('fxgraph_cache_hit', 0)}, "
              f"misses {cache.get('fxgraph_cache_miss', 0)})")
        # Speed is only worth having with the right gradients: the check train.py --torch_compile runs in set-up.
        probe = next(our_batches)
        check = compiled_gradient_check(compiled_unet, lambda m: diffusion_loss(
            m, scheduler, probe, None, 0.0, channels_last=channels_last, generator=torch.Generator().manual_seed(0)))
        print(f"compiled gradients against eager ({args.compile_backend}): {check['missing']} of {check['parameters']} "
              f"parameters get no gradient, relative error {check['relative_error']:.3g}: "
              + ("usable" if check["passed"] else "NOT usable, train.py --torch_compile trains uncompiled here"))

    # Utilisation: model FLOPs per step over the step time, against the matmul peak measured now.
    fp32_flops = unet_flops(base, args.batch_size, backward=True)
    peaks = {"fp32": matmul_peak_flops(torch.float32), "bf16": matmul_peak_flops(torch.bfloat16)}
    print(f"\nmodel FLOPs per training step (forward + backward, batch {args.batch_size}): {fp32_flops / 1e9:.2f} GFLOP")
    print(f"matmul peak measured now (1024^2, {torch.get_num_threads()} threads): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    for name in names:
        achieved = fp32_flops * rates[name]
        peak = "bf16" if precision == "bf16" and not name.startswith("plain") else "fp32"
        print(f"  {name:<68} {achieved / 1e9:7.1f} GFLOP/s = {100 * achieved / peaks[peak]:5.1f}% of the {peak} peak")


if __name__ == "__main__":
    main()
