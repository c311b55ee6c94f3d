#!/usr/bin/env python
"""Write the unconditional branch of a classifier-free-guidance pipeline as an unconditional pipeline folder.

    python train/extract_unconditional.py --pipeline pipelines/ddpm-cifar10-cfg --output_dir runs/ddpm-cifar10-from-cfg

A CFG UNet trained with label dropout (``train/train.py --conditional``) is also an unconditional model: its null
class. :func:`pnp_diffusers.unconditional_unet_from_cfg` folds the null-class embedding into the timestep
embedding's last bias, which gives a stock unconditional ``UNet2DModel`` that computes exactly that branch. The
folder written here holds it beside the same ``DDPMScheduler``, so ``DDPMPipeline.from_pretrained`` loads it, and
``train/train.py --init_from_pipeline`` can continue training it as an unconditional model.

Before writing, the script checks the fold on random inputs at several timesteps and prints the largest difference
between the two networks' outputs (float32: ~1e-6); it refuses to write when they differ by more than ``--atol``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import torch

from pnp_diffusers import DiffusionSamplingPipeline, null_class_label, unconditional_unet_from_cfg


CONDITIONAL_TAGS = {"classifier-free-guidance", "class-conditional"}  # not carried over to the unconditional card


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="A class-conditional pipeline folder or Hub id (its unet/ and scheduler/).")
    parser.add_argument("--output_dir", required=True, help="Where the unconditional pipeline folder is written.")
    parser.add_argument("--remote_code", action="store_true",
                        help="Write the pipeline.py shim for DiffusionPipeline.from_pretrained(..., trust_remote_code=True), as "
                             "the shipped folders do (without it, model_index.json stays stock for DDPMPipeline).")
    parser.add_argument("--atol", type=float, default=1e-4, help="Largest output difference the check accepts.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the check's random inputs.")
    return parser.parse_args(argv)


def largest_fold_error(cfg_unet, folded_unet, num_train_timesteps: int, seed: int, batch_size: int = 4) -> float:
    """Max |eps_folded(x, t) - eps_cfg(x, t, null)| over random x ~ N(0, I) and timesteps spread over [0, T)."""
    generator = torch.Generator().manual_seed(seed)
    config = cfg_unet.config
    shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
    sample = torch.randn(shape, generator=generator)
    timesteps = torch.linspace(0, num_train_timesteps - 1, batch_size).round().long()
    null = torch.full((batch_size,), null_class_label(cfg_unet), dtype=torch.long)
    with torch.no_grad():
        expected = cfg_unet(sample, timesteps, class_labels=null).sample
        got = folded_unet(sample, timesteps).sample
    return float((expected - got).abs().max())


def source_card_metadata(pipeline: str) -> tuple[list[str], list[str]]:
    """The ``datasets`` and ``tags`` of a local pipeline folder's model card (empty for a Hub id or no card)."""
    card_path = os.path.join(pipeline, "README.md")
    if not os.path.isfile(card_path):
        return [], []
    from huggingface_hub import ModelCard

    data = ModelCard.load(card_path).data
    return list(data.datasets or []), [tag for tag in (data.tags or []) if tag not in CONDITIONAL_TAGS]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = DiffusionSamplingPipeline.from_pretrained(args.pipeline)
    try:
        folded = unconditional_unet_from_cfg(cfg.unet)
    except ValueError as error:
        raise ValueError(f"`--pipeline` {args.pipeline!r}: {error}") from None
    error = largest_fold_error(cfg.unet, folded, cfg.scheduler.config.num_train_timesteps, args.seed)
    print(f"largest |unconditional UNet - CFG UNet at the null class| on random inputs: {error:.2e}")
    if error > args.atol:
        raise RuntimeError(f"the folded UNet differs from the null-class branch by {error:.2e} > `--atol` {args.atol:g}.")
    datasets, tags = source_card_metadata(args.pipeline)
    command = "python train/extract_unconditional.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    card = dict(
        title=os.path.basename(os.path.normpath(args.output_dir)),
        description=(
            f"The unconditional branch (null class {null_class_label(cfg.unet)}) of the classifier-free-guidance pipeline "
            f"`{args.pipeline}`, folded into a stock unconditional UNet2DModel (largest output difference on random "
            f"inputs: {error:.1e})."
        ),
        commands={"extract": command},
        datasets=datasets,
        tags=tags,
    )
    DiffusionSamplingPipeline(unet=folded, scheduler=cfg.scheduler).save_pretrained(
        args.output_dir, remote_code=args.remote_code, model_card=card)
    print(f"wrote {args.output_dir}")
    return {"max_abs_error": error, "output_dir": args.output_dir}


if __name__ == "__main__":
    main()
