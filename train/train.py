#!/usr/bin/env python
"""Train a DDPM (unconditional, or class-conditional for classifier-free guidance) with accelerate.

    accelerate launch train/train.py --dataset ../shared/datasets/mnist --model mnist-small \
        --max_train_steps 50 --output_dir out
    python train/train.py ...                      # the same, single process
    accelerate launch --multi_gpu --num_processes 2 train/train.py ...  # data parallel: NCCL on GPUs,
                                                                       # gloo on a CPU-only machine

Reads top to bottom: accelerator, data, model, loop, save (the arguments: ``pnp_diffusers.training_args``). At the end ``output_dir``
holds a pipeline in Hub layout: a stock ``UNet2DModel`` (EMA weights when ``--use_ema``) and a stock
``DDPMScheduler``, loadable by ``DDPMPipeline.from_pretrained(output_dir)`` and by
``pnp_diffusers.DiffusionSamplingPipeline.from_pretrained(output_dir)``.

Checkpoints (``output_dir/checkpoint-<step>``) are written to a temporary folder and renamed when
complete, so a run killed during a write never leaves a corrupt latest checkpoint;
``--resume_from_checkpoint latest`` continues from the newest complete one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time

import torch

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from pnp_diffusers.checkpointing import (  # noqa: F401  (list_checkpoints: used by tests)
    TRAINING_STATE_FILE,
    TrainingRNG,
    ema_weights,
    list_checkpoints,
    resolve_resume_path,
    save_checkpoint,
    time_budget_spent,
)
from pnp_diffusers.data import load_image_dataset
from pnp_diffusers.speed import resolve_mixed_precision
from pnp_diffusers.models import (
    DEFAULT_BETA_SCHEDULE,
    UNET_PRESETS,
    check_resolution,
    create_noise_scheduler,
    create_unet,
)
from pnp_diffusers.hub import push_folder_to_hub
from pnp_diffusers.training_args import parse_args, recipe_record, validate_args  # noqa: F401  (validate_args: tests)
from pnp_diffusers.training_utils import (  # noqa: F401  (parameter_groups: used by tests)
    TrainingClock, build_lr_scheduler, checked_compiled_module, diffusion_loss, load_unet_weights_from_pipeline,
    parameter_groups, probe_batch, use_channels_last,
)

logger = get_logger(__name__, log_level="INFO")


# ----------------------------------------------------------------------------------------------
# Model, data and noise
# ----------------------------------------------------------------------------------------------
def build_unet(args: argparse.Namespace, num_classes: int | None, channels: int) -> UNet2DModel:
    if args.model_config is not None:
        config = UNet2DModel.load_config(args.model_config)
        if args.resolution is not None:
            config["sample_size"] = args.resolution
        if num_classes is not None and config.get("num_class_embeds") is None:
            config["num_class_embeds"] = num_classes + 1
        check_resolution(config["sample_size"], len(config["block_out_channels"]), "--resolution")
        return UNet2DModel.from_config(config)
    preset = UNET_PRESETS[args.model]
    resolution = args.resolution or preset["sample_size"]
    check_resolution(resolution, len(preset["block_out_channels"]), "--resolution")
    return create_unet(args.model, num_classes=num_classes, sample_size=resolution, in_channels=channels)


# ----------------------------------------------------------------------------------------------
# Previews and the saved pipeline
# ----------------------------------------------------------------------------------------------
def save_preview_grid(unet, noise_scheduler, args, num_classes, path: str) -> None:
    """A grid of samples with DDIM: 10x10 unconditional, or one row per class (CFG scale 3)."""
    from diffusers import DDIMScheduler

    from pnp_diffusers import DiffusionSamplingPipeline
    from pnp_diffusers.utils import save_image_grid

    pipe = DiffusionSamplingPipeline(unet=unet, scheduler=DDIMScheduler.from_config(noise_scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(args.seed)
    if num_classes is None:
        images = pipe(batch_size=100, num_inference_steps=args.num_preview_steps, generator=generator, output_type="pt").images
        rows = 10
    else:
        per_class = 8
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        images = pipe(batch_size=len(labels), class_labels=labels, guidance_scale=3.0,
                      num_inference_steps=args.num_preview_steps, generator=generator, output_type="pt").images
        rows = num_classes
    save_image_grid(images, path, rows=rows)


def save_pipeline(unet, noise_scheduler, args, num_classes, global_step, command: str) -> None:
    """Write the final pipeline in Hub layout, with a model card, into ``args.output_dir``."""
    from pnp_diffusers import DiffusionSamplingPipeline

    card = dict(
        title=os.path.basename(os.path.normpath(args.output_dir)),
        description=(
            f"A {'class-conditional (classifier-free guidance) ' if num_classes else ''}DDPM trained with "
            f"pnp-diffusers' train/train.py on `{args.dataset}` for {global_step} steps "
            f"(preset `{args.model}`, {args.beta_schedule} schedule, {args.prediction_type} prediction"
            f"{f', Min-SNR-{args.snr_gamma:g} loss weighting' if args.snr_gamma else ''}"
            f"{', EMA ' + str(args.ema_decay) if args.use_ema else ''})."
        ),
        commands={"train": command},
        datasets=[args.dataset],
    )
    # remote_code=False keeps model_index.json stock, so `DDPMPipeline.from_pretrained(output_dir)` works;
    # with --remote_code the folder carries the pipeline.py shim for
    # `DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)` instead (diffusers then
    # routes every pipeline class through that shim, so the two cannot hold at once).
    DiffusionSamplingPipeline(unet=unet, scheduler=noise_scheduler).save_pretrained(
        args.output_dir, remote_code=args.remote_code, model_card=card)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "accelerate launch train/train.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    if os.path.isdir(args.output_dir) and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        if list_checkpoints(args.output_dir):
            raise ValueError(
                f"`--output_dir` {args.output_dir!r} already holds checkpoints: pass "
                "`--resume_from_checkpoint latest` to continue or `--overwrite_output_dir` to start over."
            )

    # Accelerator: precision, accumulation, data-order seeding (exact resume), logging.
    # With several processes and no GPU (torchrun, or `accelerate launch --multi_gpu` on a CPU machine),
    # accelerate only sets up gloo data parallelism when told it runs on the CPU.
    several_processes_without_gpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    args.mixed_precision = resolve_mixed_precision(args.mixed_precision)
    channels_last = use_channels_last(args.memory_format, args.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
    accelerator = Accelerator(
        cpu=several_processes_without_gpu,
        mixed_precision=args.mixed_precision,
        dynamo_backend="inductor" if args.torch_compile else None,  # None: accelerate's config or environment
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)

    # Data: decoded once into uint8 tensors; flips off for digits.
    flip = {"auto": None, "on": True, "off": False}[args.random_flip]
    preset_resolution = args.resolution or (UNET_PRESETS.get(args.model, {}).get("sample_size") if args.model_config is None else None)
    dataset = load_image_dataset(
        args.dataset, args.split, resolution=preset_resolution, random_flip=flip, image_column=args.image_column,
        label_column=args.label_column, max_samples=args.max_train_samples, show_progress=accelerator.is_local_main_process,
    )
    if args.conditional and dataset.labels is None:
        raise ValueError(
            f"`--conditional` needs class labels, but `--dataset` {args.dataset!r} has no ClassLabel column; "
            "pass `--label_column` or train unconditionally."
        )
    num_classes = dataset.num_classes if args.conditional else None
    if args.beta_schedule is None:
        args.beta_schedule = DEFAULT_BETA_SCHEDULE["mnist" if dataset.num_channels == 1 else "cifar10"]

    # Model and noise schedule.
    unet = build_unet(args, num_classes, dataset.num_channels)
    if unet.config.sample_size != dataset.resolution:
        raise ValueError(f"`--resolution`: the UNet takes {unet.config.sample_size}px but the data is {dataset.resolution}px.")
    if unet.config.in_channels != dataset.num_channels:
        raise ValueError(f"`--model_config` has in_channels={unet.config.in_channels} but the images have {dataset.num_channels}.")
    noise_scheduler = create_noise_scheduler(
        args.beta_schedule, num_train_timesteps=args.num_train_timesteps,
        prediction_type=args.prediction_type, clip_sample=not args.no_clip_sample,
    )
    if args.init_from_pipeline is not None and resolve_resume_path(args.resume_from_checkpoint, args.output_dir) is None:
        zero_class_embedding = load_unet_weights_from_pipeline(unet, args.init_from_pipeline)
        logger.info("Initialised the UNet from %s%s.", args.init_from_pipeline,
                    " (unconditional: the class embedding starts at zero)" if zero_class_embedding else "")
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    ema = None
    if args.use_ema:
        ema = EMAModel(unet.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=args.ema_power,
                       foreach=True, model_cls=UNet2DModel, model_config=unet.config)

    optimizer = torch.optim.AdamW(
        parameter_groups(unet, args.learning_rate, args.class_embedding_lr_scale), lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay, fused=True,
    )
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        num_workers=args.dataloader_num_workers,
    )
    if len(dataloader) == 0:
        raise ValueError(f"`--train_batch_size` {args.train_batch_size} is larger than the dataset ({len(dataset)} images).")
    updates_per_epoch = math.ceil(len(dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    clock = TrainingClock()
    minutes_at_launch = [0.0]  # set once a resumed checkpoint has restored the clock
    lr_scheduler = build_lr_scheduler(
        optimizer, clock, args.lr_scheduler, warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes, lr_schedule_minutes=args.lr_schedule_minutes,
        max_train_minutes=args.max_train_minutes, minutes_at_launch=lambda: minutes_at_launch[0], min_ratio=args.lr_min_ratio,
    )
    unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)
    training_rng = TrainingRNG(args.seed * 1000 + accelerator.process_index)
    accelerator.register_for_checkpointing(training_rng)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(clock)
    if accelerator.is_main_process and args.logger != "none":
        accelerator.init_trackers("train_ddpm", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))})

    # Resume.
    global_step = 0
    resume_path = resolve_resume_path(args.resume_from_checkpoint, args.output_dir)
    if args.resume_from_checkpoint == "latest" and resume_path is None:
        logger.info("No checkpoint in %s: starting a new run.", args.output_dir)
    if resume_path is not None:
        accelerator.load_state(resume_path)
        with open(os.path.join(resume_path, TRAINING_STATE_FILE)) as f:
            global_step = json.load(f)["global_step"]
        logger.info("Resumed from %s at step %d (%.1f training minutes).", resume_path, global_step, clock.minutes)
    if args.torch_compile:  # compile now, in set-up, and only keep it if its gradients are eager's
        # the training batch's shape, so the check's compile is the run's
        probe = probe_batch(args.train_batch_size, dataset.num_channels, dataset.resolution, num_classes, accelerator.device)
        unet = checked_compiled_module(unet, lambda model: diffusion_loss(model, noise_scheduler, probe, num_classes, 0.0,
            channels_last=channels_last, generator=torch.Generator().manual_seed(0), snr_gamma=args.snr_gamma), logger)
    minutes_at_launch[0] = clock.minutes
    clock.restart_launch()
    steps_per_epoch_batches = len(dataloader)  # batches per process per epoch
    first_epoch = (global_step * args.gradient_accumulation_steps) // steps_per_epoch_batches
    skip_batches = (global_step * args.gradient_accumulation_steps) % steps_per_epoch_batches

    logger.info(
        "Training %.2fM parameters on %d images (%s, %dpx, %d channels), %d steps, batch %d x %d processes x %d accumulation, "
        "precision %s, %s.",
        sum(p.numel() for p in unet.parameters()) / 1e6, len(dataset), "conditional" if num_classes else "unconditional",
        dataset.resolution, dataset.num_channels, max_train_steps, args.train_batch_size, accelerator.num_processes,
        args.gradient_accumulation_steps, args.mixed_precision, "channels_last" if channels_last else "NCHW",
    )

    # Loop.
    null_class = num_classes  # the last embedding index
    progress = tqdm(total=max_train_steps, initial=global_step, disable=not accelerator.is_local_main_process, desc="train")
    start_time, start_step = time.time(), global_step
    epoch = first_epoch
    out_of_time = False
    while global_step < max_train_steps and not out_of_time:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(dataloader, skip_batches) if skip_batches else dataloader
        skip_batches = 0
        unet.train()
        for batch in batches:
            with accelerator.accumulate(unet):
                loss = diffusion_loss(unet, noise_scheduler, batch, null_class, args.label_dropout,
                                      channels_last=channels_last, generator=training_rng.generator,
                                      snr_gamma=args.snr_gamma)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            if ema is not None:
                ema.step(unet.parameters())
            steps_per_s = (global_step - start_step) / max(time.time() - start_time, 1e-9)
            logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "steps/s": round(steps_per_s, 3)}
            if ema is not None:
                logs["ema_decay"] = round(ema.cur_decay_value, 5)
            progress.update(1)
            progress.set_postfix(**logs)
            accelerator.log(logs, step=global_step)

            out_of_time = time_budget_spent(accelerator, args.max_train_minutes, start_time)
            if global_step % args.checkpointing_steps == 0 or global_step == max_train_steps or out_of_time:
                save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit, clock,
                                recipe=recipe_record(args))
            if args.save_images_steps and global_step % args.save_images_steps == 0 and accelerator.is_main_process:
                with ema_weights(ema, unet, accelerator) as model:
                    save_preview_grid(model, noise_scheduler, args, num_classes,
                                      os.path.join(args.output_dir, "samples", f"step-{global_step:07d}.png"))
                unet.train()
            if global_step >= max_train_steps or out_of_time:
                break
        epoch += 1
    progress.close()
    if out_of_time:
        logger.info("Stopped at step %d: --max_train_minutes %g spent.", global_step, args.max_train_minutes)

    # Save: stock UNet2DModel (EMA weights) + stock DDPMScheduler, in Hub layout.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final_unet = accelerator.unwrap_model(unet, keep_torch_compile=False)
        if ema is not None:
            ema.copy_to(final_unet.parameters())
        final_unet = final_unet.to(memory_format=torch.contiguous_format)
        save_pipeline(final_unet, noise_scheduler, args, num_classes, global_step, command)
        logger.info("Saved the pipeline to %s.", args.output_dir)
        if args.push_to_hub:  # exactly the saved pipeline folder: no checkpoints, logs or previews
            push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private_repo or None,
                               ignore_patterns=["checkpoint-*", "*.tmp", "logs/*", "samples/*"])
    accelerator.end_training()


if __name__ == "__main__":
    main()
