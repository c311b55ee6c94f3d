"""train/train.py's command line: its arguments, their checks, and the recipe a run adopts from the weights it continues.

A run's recipe (``RECIPE_KEYS``: network, noise schedule, Min-SNR gamma) comes, per argument left unset, from a resumed
checkpoint's record, else from the ``--init_from_pipeline`` folder's noise schedule, else from train.py's defaults; a
value set to something else than the weights' is refused by name before any data is read.
"""

from __future__ import annotations

import argparse
import os

from .checkpointing import recipe_of_checkpoint, resolve_resume_path
from .models import BETA_SCHEDULES, PREDICTION_TYPES, UNET_PRESETS
from .training_utils import (
    DECAY_SHAPES, DEFAULT_MODEL, DEFAULT_NUM_TRAIN_TIMESTEPS, DEFAULT_PREDICTION_TYPE, DEFAULT_SNR_GAMMA, MEMORY_FORMATS,
    RECIPE_KEYS, noise_schedule_of_pipeline, pipeline_unet_dir, planned_shape, preset_of_pipeline,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a DDPM on an image dataset with accelerate.")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="Hub id (ylecun/mnist, uoft-cs/cifar10) or local folder.")
    data.add_argument("--split", default="train")
    data.add_argument("--image_column", default=None, help="Default: image/img or the one Image feature.")
    data.add_argument("--label_column", default=None, help="Default: the one ClassLabel feature.")
    data.add_argument("--resolution", type=int, default=None, help="Default: the model's sample_size.")
    data.add_argument("--random_flip", choices=["auto", "on", "off"], default="auto",
                      help="Horizontal flips: auto = on for colour images, off for grey digits.")
    data.add_argument("--max_train_samples", type=int, default=None)
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=None, help=f"UNet preset, one of {sorted(UNET_PRESETS)}; default {DEFAULT_MODEL}, "
                       "or the --init_from_pipeline folder's preset.")
    model.add_argument("--model_config", default=None, help="A UNet2DModel config.json; overrides --model.")
    model.add_argument("--conditional", action="store_true", help="Class-conditional UNet for classifier-free guidance.")
    model.add_argument("--label_dropout", type=float, default=0.1,
                       help="Probability of replacing a label by the null class (Ho & Salimans 2022).")
    model.add_argument("--class_embedding_lr_scale", type=float, default=1.0,
                       help="The class embedding's learning rate as a multiple of --learning_rate. For a conditional run "
                            "started from an unconditional pipeline, whose class embedding starts at zero: at 1 it grew to "
                            "a norm of ~0.1 in 1740 steps (the trained CFG model's is ~10) and the labels were ignored.")
    model.add_argument("--beta_schedule", default=None, help=f"One of {BETA_SCHEDULES}; default linear for grey "
                       "images (MNIST) and squaredcos_cap_v2 (cosine) for colour ones (CIFAR-10).")
    model.add_argument("--num_train_timesteps", type=int, default=None, help=f"Default {DEFAULT_NUM_TRAIN_TIMESTEPS} "
                       "(or, as --beta_schedule and --prediction_type, a resumed checkpoint's or the --init_from_pipeline "
                       "folder's).")
    model.add_argument("--prediction_type", default=None, choices=PREDICTION_TYPES,
                       help=f"Default {DEFAULT_PREDICTION_TYPE} (Salimans & Ho 2022; epsilon before session 26).")
    model.add_argument("--no_clip_sample", action="store_true", help="Turn off x0 clamping in the saved scheduler.")
    model.add_argument("--init_from_pipeline", default=None,
                       help="A saved pipeline folder (e.g. pipelines/ddpm-mnist) whose unet/ weights start a new run; "
                            "its UNet must match the preset (without --model or --model_config: the folder's preset). "
                            "An unconditional folder may start a --conditional run: "
                            "the class embedding then starts at zero (the run begins as the unconditional model). "
                            "Ignored when a checkpoint is resumed.")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--train_batch_size", type=int, default=128, help="Per process.")
    optim.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_epochs.")
    optim.add_argument("--num_epochs", type=int, default=10)
    optim.add_argument("--max_train_minutes", type=float, default=None,
                       help="Wall-clock budget of this launch: once spent, checkpoint, save the pipeline and stop "
                            "(for lent or preemptible machines). With --lr_scheduler cosine or linear the decay is "
                            "planned to end with it (see --lr_schedule_minutes).")
    optim.add_argument("--snr_gamma", type=float, default=None,
                       help=f"Min-SNR-gamma loss weighting (Hang et al. 2023, who use 5), gamma > 0. Default "
                            f"{DEFAULT_SNR_GAMMA:g} (with v-prediction it passed the recipe sweep's rule, session 25), or "
                            "a resumed checkpoint's.")
    optim.add_argument("--no_snr_weighting", action="store_true", help="Train on the plain MSE instead.")
    optim.add_argument("--learning_rate", type=float, default=1e-3,
                       help="Peak lr (default 1e-3: the lever sweep's choice, session 24; 5e-4 before, 2e-3 worse).")
    optim.add_argument("--lr_scheduler", default="cosine",
                       help="diffusers.optimization.get_scheduler name: constant, cosine, linear, ...")
    optim.add_argument("--lr_schedule_minutes", type=float, default=None,
                       help="Plan the decay of --lr_scheduler (constant, linear or cosine) over this many training "
                            "minutes, summed over every launch of the run, instead of over steps. Default with "
                            "--max_train_minutes and a linear or cosine schedule: the minutes trained so far plus "
                            "this launch's budget, so a time-boxed launch ends annealed.")
    optim.add_argument("--lr_min_ratio", type=float, default=0.02,
                       help="Where a minute-planned decay ends, as a fraction of --learning_rate.")
    optim.add_argument("--lr_warmup_steps", type=int, default=100)
    optim.add_argument("--adam_beta1", type=float, default=0.9)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument("--adam_weight_decay", type=float, default=0.0)
    optim.add_argument("--max_grad_norm", type=float, default=1.0)
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--mixed_precision", choices=["auto", "no", "fp16", "bf16"], default="auto",
                       help="Autocast precision. auto (default): bf16 where the device runs it natively (a GPU, or a "
                            "CPU with AVX512-BF16, where it is ~1.3x faster), else no: on an AVX2-only CPU bf16 is "
                            "emulated and a step is ~10x slower.")
    optim.add_argument("--memory_format", choices=MEMORY_FORMATS, default="auto",
                       help="UNet memory format in training. auto (default): channels_last only with fp16/bf16 autocast "
                            "on a GPU, where tensor-core convolutions want NHWC; NCHW on the CPU, where it measured "
                            "faster with bf16 autocast on an AMX Xeon (one thread: mnist-small 0.49 s a step against "
                            "0.61 s channels_last, cifar10-cpu 0.69 s against 0.73 s) and with float32 on an AVX2 CPU "
                            "(2.19 s against 2.30 s).")
    optim.add_argument("--no_channels_last", dest="memory_format", action="store_const", const="nchw",
                       help="The same as --memory_format nchw (kept for older commands).")
    optim.add_argument("--torch_compile", action="store_true",
                       help="torch.compile the UNet (inductor, accelerate's dynamo plugin) in set-up, kept only if its gradients "
                            "match eager ones on a probe batch, else trained uncompiled with a warning (inductor on a CPU, torch "
                            "2.13, drops most of UNet2DModel's gradients). Checkpoints keep plain keys: resume with or without it.")
    optim.add_argument("--use_ema", action="store_true", default=True,
                       help="Keep an EMA of the weights and ship it (default; see --no_ema).")
    optim.add_argument("--no_ema", dest="use_ema", action="store_false", help="Train and ship the raw weights.")
    optim.add_argument("--ema_decay", type=float, default=0.9995,
                       help="Maximum EMA decay; the warmup (--ema_power) rises to it, so a short run's EMA "
                            "does not lag behind its weights.")
    optim.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warmup power (diffusers EMAModel).")
    optim.add_argument("--seed", type=int, default=0)

    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", default="ddpm-output")
    out.add_argument("--overwrite_output_dir", action="store_true")
    out.add_argument("--checkpointing_steps", type=int, default=500)
    out.add_argument("--checkpoints_total_limit", type=int, default=3)
    out.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint folder, or 'latest'.")
    out.add_argument("--save_images_steps", type=int, default=None,
                     help="Save a PNG grid of samples every N steps (rows = classes when conditional).")
    out.add_argument("--num_preview_steps", type=int, default=50, help="DDIM steps of the preview grids.")
    out.add_argument("--logger", choices=["none", "tensorboard"], default="none")
    out.add_argument("--remote_code", action="store_true",
                     help="Save the pipeline.py shim so DiffusionPipeline.from_pretrained(out, trust_remote_code=True) "
                     "returns pnp_diffusers.DiffusionSamplingPipeline (plain DDPMPipeline.from_pretrained then needs it too).")
    out.add_argument("--push_to_hub", action="store_true")
    out.add_argument("--hub_model_id", default=None)
    out.add_argument("--hub_private_repo", action="store_true")
    args = parser.parse_args(argv)
    validate_args(args)
    adopt_recipe_of_weights(args)
    if args.model is None and args.model_config is None:  # a folder's weights keep their network
        args.model = preset_of_pipeline(args.init_from_pipeline) if args.init_from_pipeline else DEFAULT_MODEL
    args.prediction_type = args.prediction_type or DEFAULT_PREDICTION_TYPE
    args.num_train_timesteps = args.num_train_timesteps or DEFAULT_NUM_TRAIN_TIMESTEPS
    args.snr_gamma = DEFAULT_SNR_GAMMA if args.snr_gamma is None else args.snr_gamma
    args.snr_gamma = args.snr_gamma or None  # None: the plain MSE
    return args


def adopt_recipe_of_weights(args: argparse.Namespace) -> None:
    """Fill the unset recipe arguments (``RECIPE_KEYS``) from the weights the run continues: a resumed checkpoint's
    record, else the ``--init_from_pipeline`` folder's noise schedule; a value set to something else is refused.
    Unset here: None, ``--conditional`` absent, no ``--snr_gamma`` (``--no_snr_weighting`` asks for gamma 0)."""
    requested = {key: getattr(args, key) for key in RECIPE_KEYS}
    requested["conditional"] = True if args.conditional else None
    requested["snr_gamma"] = 0.0 if args.no_snr_weighting else args.snr_gamma
    resume_path = resolve_resume_path(args.resume_from_checkpoint, args.output_dir)
    if resume_path is not None:  # the checkpoint's weights win: --init_from_pipeline is ignored on resume
        requested = recipe_of_checkpoint(resume_path, requested)
    elif args.init_from_pipeline is not None:  # the folder's weights were trained for its noise schedule
        requested = noise_schedule_of_pipeline(args.init_from_pipeline, requested)
    vars(args).update(requested, conditional=bool(requested["conditional"]))


def recipe_record(args: argparse.Namespace) -> dict:
    """The resolved recipe a checkpoint records (``RECIPE_KEYS``; Min-SNR off as gamma 0)."""
    return {key: getattr(args, key) for key in RECIPE_KEYS} | {"snr_gamma": args.snr_gamma or 0.0}


def validate_args(args: argparse.Namespace) -> None:
    """Raise a ValueError naming the argument before any data is read or any step is taken."""
    if args.model is not None and args.model not in UNET_PRESETS:
        raise ValueError(f"`--model` must be one of {sorted(UNET_PRESETS)}, got {args.model!r}.")
    if args.model_config is not None and not os.path.isfile(args.model_config):
        raise ValueError(f"`--model_config` {args.model_config!r} is not a file.")
    if args.beta_schedule is not None and args.beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"`--beta_schedule` must be one of {BETA_SCHEDULES}, got {args.beta_schedule!r}.")
    if not args.class_embedding_lr_scale > 0:
        raise ValueError(f"`--class_embedding_lr_scale` must be > 0, got {args.class_embedding_lr_scale}.")
    if not 0.0 <= args.label_dropout < 1.0:
        raise ValueError(f"`--label_dropout` must be in [0, 1), got {args.label_dropout}.")
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "num_epochs"):
        if getattr(args, name) <= 0:
            raise ValueError(f"`--{name}` must be a positive integer, got {getattr(args, name)}.")
    for name in ("max_train_steps", "save_images_steps", "max_train_samples", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise ValueError(f"`--{name}` must be a positive integer, got {getattr(args, name)}.")
    for name in ("max_train_minutes", "lr_schedule_minutes"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            raise ValueError(f"`--{name}` must be a positive number of minutes, got {getattr(args, name)}.")
    if args.snr_gamma is not None and not args.snr_gamma > 0:
        raise ValueError(f"`--snr_gamma` must be positive (Hang et al. use 5; `--no_snr_weighting` for the plain MSE), "
                         f"got {args.snr_gamma}.")
    if args.snr_gamma is not None and args.no_snr_weighting:
        raise ValueError(f"`--snr_gamma` {args.snr_gamma} and `--no_snr_weighting` contradict each other: pass one.")
    if not 0.0 <= args.lr_min_ratio <= 1.0:
        raise ValueError(f"`--lr_min_ratio` must be in [0, 1], got {args.lr_min_ratio}.")
    if args.lr_schedule_minutes is not None and planned_shape(args.lr_scheduler) is None:
        raise ValueError(
            f"`--lr_schedule_minutes` plans a {'/'.join(DECAY_SHAPES)} decay; `--lr_scheduler` {args.lr_scheduler!r} "
            "has no minute-planned form."
        )
    if args.init_from_pipeline is not None:
        pipeline_unet_dir(args.init_from_pipeline)
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("`--push_to_hub` needs `--hub_model_id` (for example user/ddpm-mnist).")
    if args.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(args.resume_from_checkpoint):
        raise ValueError(
            f"`--resume_from_checkpoint` {args.resume_from_checkpoint!r} is not a checkpoint folder; "
            "pass a path to output_dir/checkpoint-<step> or 'latest'."
        )
