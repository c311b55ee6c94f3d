#!/usr/bin/env python
"""Does torch.compile's backward of a shipped UNet give eager's gradients? One batch, one line per backend.

    python benchmarks/check_compiled_gradients.py                          # pipelines/ddpm-mnist, eager/aot_eager/inductor
    python benchmarks/check_compiled_gradients.py --backends inductor --bf16 --pipeline pipelines/ddpm-cifar10

Session 24 found, on this project's CPU with torch 2.13, that inductor's backward of ``UNet2DModel`` leaves 136 of
mnist-small's 182 parameters without a gradient while dynamo's ``eager`` and ``aot_eager`` backends are exact; this is
the reproducer (and what ``train.py --torch_compile`` checks in set-up, through the same
``pnp_diffusers.training_utils.compiled_gradient_check``). It prints the modules whose parameters lost their gradient.
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
from diffusers import DDPMScheduler, UNet2DModel

from pnp_diffusers.training_utils import compiled_gradient_check, diffusion_loss, probe_batch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="pipelines/ddpm-mnist")
    parser.add_argument("--backends", default="eager,aot_eager,inductor")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast around both sides, as train.py on this CPU.")
    args = parser.parse_args(argv)
    unet = UNet2DModel.from_pretrained(args.pipeline, subfolder="unet").train()
    scheduler = DDPMScheduler.from_pretrained(args.pipeline, subfolder="scheduler")
    null_class = None if unet.config.num_class_embeds is None else unet.config.num_class_embeds - 1
    batch = probe_batch(args.batch_size, unet.config.in_channels, unet.config.sample_size, null_class)

    def loss_fn(model):
        with torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext():
            return diffusion_loss(model, scheduler, batch, null_class, 0.0, channels_last=False,
                                  generator=torch.Generator().manual_seed(1))

    results = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        torch._dynamo.reset()
        compiled = torch.compile(copy.deepcopy(unet), backend=backend)
        check = compiled_gradient_check(compiled, loss_fn)
        results[backend] = check
        print(f"{backend}: {check['missing']} of {check['parameters']} parameters get no gradient, relative error "
              f"{check['relative_error']:.3g}" + (f", error {check['error']}" if check["error"] else ""))
        if check["missing"] and not check["error"]:
            modules = sorted({name.rsplit(".", 1)[0] for name in check["missing_names"]})
            print(f"  modules without gradients ({len(modules)}): " + ", ".join(modules))
    print(f"torch {torch.__version__}, {args.pipeline}, batch {args.batch_size}, {'bf16 autocast' if args.bf16 else 'float32'}")
    return results


if __name__ == "__main__":
    main()
