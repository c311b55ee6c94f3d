#!/usr/bin/env python
"""Train a small transformers image classifier (ResNet or ConvNeXt) on MNIST or CIFAR-10.

The classifier guides plug-and-play sampling (``ClassifierConstraint``) and judges samples
(``pnp_diffusers.metrics``). It is saved in the Hub layout, so
``AutoModelForImageClassification.from_pretrained(output_dir)`` loads it with everything the
differentiable preprocessing of ``pnp_diffusers.classifiers`` needs (``image_size``, ``image_mean``,
``image_std`` on its config).

    OMP_NUM_THREADS=1 python train/train_classifier.py --dataset ../shared/datasets/mnist \
        --architecture resnet --seed 0 --epochs 4 --output_dir pipelines/mnist-classifier-guide

Every epoch ends with a checkpoint (``output_dir/checkpoint-epoch-N``), so a killed run loses at most one
epoch: run the same command with ``--resume_from_checkpoint latest``. ``--max_train_minutes`` stops a run
on purpose at an epoch's end, to be resumed in a later session.

The script reads top to bottom: arguments, data, model, loop, evaluation, save.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pnp_diffusers.classifiers import CLASSIFIER_ARCHITECTURES, classifier_logits, small_classifier_config
from pnp_diffusers.data import load_image_dataset, to_model_range
from pnp_diffusers.hub import push_folder_to_hub, write_model_card
from pnp_diffusers.models import create_noise_scheduler
from pnp_diffusers.speed import resolve_mixed_precision

logger = logging.getLogger("train_classifier")

# Names that the Hub's `datasets:` card metadata understands, for the local copies used here.
KNOWN_HUB_DATASETS = {"mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10"}
CHECKPOINT_FILE = "training_state.pt"
# What a resumed run must share with the run that wrote the checkpoint (the rest, e.g. progress bars, may change).
RESUME_MUST_MATCH = ("dataset", "train_split", "architecture", "hidden_sizes", "depths", "image_size", "patch_size", "seed",
                     "epochs", "batch_size", "learning_rate", "weight_decay", "warmup_fraction", "label_smoothing",
                     "max_shift", "max_scale", "noise_std", "random_flip", "noise_aware", "max_train_samples")


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=str, required=True, help="Hub id or local folder (e.g. ../shared/datasets/mnist).")
    parser.add_argument("--train_split", type=str, default="train")
    parser.add_argument("--eval_split", type=str, default="test")
    parser.add_argument("--image_column", type=str, default=None)
    parser.add_argument("--label_column", type=str, default=None)
    parser.add_argument("--resolution", type=int, default=None, help="Dataset resolution (default: native; MNIST 28).")
    parser.add_argument("--architecture", type=str, default="resnet", help=f"One of {CLASSIFIER_ARCHITECTURES}.")
    parser.add_argument("--hidden_sizes", type=int, nargs="+", default=None, help="Width of each stage.")
    parser.add_argument("--depths", type=int, nargs="+", default=None, help="Blocks per stage.")
    parser.add_argument("--image_size", type=int, default=None,
                        help="Size the classifier sees (inputs are resized bilinearly); default: the dataset's.")
    parser.add_argument("--patch_size", type=int, default=None, help="ConvNeXt stem stride (default 4).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--eval_batch_size", type=int, default=500)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--warmup_fraction", type=float, default=0.05, help="Linear warm-up, then cosine decay.")
    parser.add_argument("--label_smoothing", type=float, default=0.0)
    parser.add_argument("--max_shift", type=float, default=2, help="Augmentation: random shift in pixels.")
    parser.add_argument("--max_scale", type=float, default=0.0, help="Augmentation: random zoom in [1-s, 1+s].")
    parser.add_argument("--noise_std", type=float, default=0.0,
                        help="Augmentation: add Gaussian noise of a std drawn per image from U(0, noise_std) (images in "
                             "[-1, 1]). A noise-trained guide has smoother, more image-like input gradients, so "
                             "plug-and-play optimises the digit rather than an adversarial pattern.")
    parser.add_argument("--random_flip", action="store_true", help="Augmentation: horizontal flips (CIFAR-10, not digits).")
    parser.add_argument("--noise_aware", action="store_true",
                        help="Train on noisy images x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps, t uniform, with t as "
                             "an extra input channel: the classifier of classifier guidance (Dhariwal & Nichol 2021).")
    parser.add_argument("--noise_schedule_from", type=str, default=None,
                        help="--noise_aware: a pipeline folder whose scheduler/ gives the noise schedule "
                             "(default: the project's linear DDPM schedule, that of the shipped MNIST pipelines).")
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", type=str, default=None)
    parser.add_argument("--hub_private", action="store_true")
    parser.add_argument("--no_progress", action="store_true", help="Disable progress bars.")
    parser.add_argument("--mixed_precision", choices=["auto", "no", "bf16"], default="auto",
                        help="bf16 autocast of the training forwards (weights, optimizer and evaluation stay float32). "
                             "auto (default): bf16 where the device runs it natively (a GPU, or a CPU with "
                             "AVX512-BF16: the CIFAR-10 judge's ResNet trained 1.36x faster a step on an AMX core, "
                             "the guide's ConvNeXt 1.07x), else float32.")
    parser.add_argument("--max_train_minutes", type=float, default=None,
                        help="Stop after the epoch in which this much training time is spent (its checkpoint is kept); "
                             "run again with --resume_from_checkpoint latest to go on.")
    parser.add_argument("--resume_from_checkpoint", type=str, default=None,
                        help="'latest' (the newest output_dir/checkpoint-epoch-N) or a checkpoint folder. Each epoch "
                             "ends with a checkpoint, so a killed run loses at most one epoch.")
    args = parser.parse_args(argv)
    validate_args(args)
    return args


def validate_args(args: argparse.Namespace) -> None:
    if args.architecture not in CLASSIFIER_ARCHITECTURES:
        raise ValueError(f"`--architecture` must be one of {CLASSIFIER_ARCHITECTURES}, got {args.architecture!r}.")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(args, name) <= 0:
            raise ValueError(f"`--{name}` must be a positive integer, got {getattr(args, name)}.")
    if not args.learning_rate > 0:
        raise ValueError(f"`--learning_rate` must be positive, got {args.learning_rate}.")
    if args.max_shift < 0:
        raise ValueError(f"`--max_shift` must be >= 0, got {args.max_shift}.")
    if args.noise_std < 0:
        raise ValueError(f"`--noise_std` must be >= 0, got {args.noise_std}.")
    if not 0 <= args.max_scale < 1:
        raise ValueError(f"`--max_scale` must be in [0, 1), got {args.max_scale}.")
    if not 0 <= args.warmup_fraction < 1:
        raise ValueError(f"`--warmup_fraction` must be in [0, 1), got {args.warmup_fraction}.")
    if args.hidden_sizes is not None and args.depths is not None and len(args.hidden_sizes) != len(args.depths):
        raise ValueError("`--hidden_sizes` and `--depths` must have the same number of stages.")
    if args.patch_size is not None and args.architecture != "convnext":
        raise ValueError("`--patch_size` only applies to `--architecture convnext`.")
    if args.noise_schedule_from is not None and not args.noise_aware:
        raise ValueError("`--noise_schedule_from` only applies with `--noise_aware`.")
    if args.noise_schedule_from is not None and not Path(args.noise_schedule_from, "scheduler").is_dir():
        raise ValueError(f"`--noise_schedule_from` {args.noise_schedule_from!r} must be a pipeline folder with scheduler/.")
    if args.max_train_minutes is not None and not args.max_train_minutes > 0:
        raise ValueError(f"`--max_train_minutes` must be a positive number of minutes, got {args.max_train_minutes}.")
    if args.resume_from_checkpoint not in (None, "latest") and not Path(args.resume_from_checkpoint, CHECKPOINT_FILE).is_file():
        raise ValueError(f"`--resume_from_checkpoint` {args.resume_from_checkpoint!r} is not a checkpoint folder "
                         f"(no {CHECKPOINT_FILE}); pass 'latest' or an output_dir/checkpoint-epoch-N folder.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("`--push_to_hub` needs `--hub_model_id` (for example `your-name/mnist-classifier`).")


# ----------------------------------------------------------------------------------------------
# Data helpers
# ----------------------------------------------------------------------------------------------
def resolve_bf16(mixed_precision: str, device: str) -> bool:
    """``--mixed_precision`` as a switch: ``auto`` follows ``pnp_diffusers.speed.resolve_mixed_precision``."""
    return resolve_mixed_precision(mixed_precision, device) == "bf16"


def load_labelled_split(args: argparse.Namespace, split: str, max_samples: int | None):
    dataset = load_image_dataset(
        args.dataset,
        split,
        resolution=args.resolution,
        image_column=args.image_column,
        label_column=args.label_column,
        max_samples=max_samples,
        random_flip=False,
        show_progress=not args.no_progress,
    )
    if dataset.labels is None:
        raise ValueError(
            f"`--dataset` {args.dataset!r} (split {split!r}) has no label column; a classifier needs "
            "class labels (pass `--label_column`)."
        )
    return dataset


def random_shift_and_scale(
    images: torch.Tensor, max_shift: float, max_scale: float, generator: torch.Generator
) -> torch.Tensor:
    """Augmentation: translate each image by up to ``max_shift`` pixels and zoom by up to ``max_scale``.

    Shifts are whole pixels when ``max_scale`` is 0 (pad with background, then crop: no resampling
    blur); with zoom the image is resampled bilinearly. Zoom makes the classifier robust to digits
    padded 28 -> 32 and resized back, which happens when it judges a 32x32 diffusion model.

    Args:
        images: (B, C, H, W) in [-1, 1]; -1 (MNIST's black background) fills the uncovered border.
    """
    batch, _, height, width = images.shape
    if max_scale == 0:
        shift = int(max_shift)
        if shift == 0:
            return images
        padded = F.pad(images, (shift,) * 4, value=-1.0)
        offsets = torch.randint(0, 2 * shift + 1, (batch, 2), generator=generator)
        return torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())]
        )
    # affine_grid maps output to input coordinates in [-1, 1]: a factor < 1 zooms in.
    zoom = 1.0 + (2 * torch.rand(batch, generator=generator) - 1) * max_scale
    shifts = (2 * torch.rand(batch, 2, generator=generator) - 1) * max_shift
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = 2 * shifts[:, 0] / width
    theta[:, 1, 2] = 2 * shifts[:, 1] / height
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Resample (x + 1) so that zero padding means background (-1).
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def add_random_noise(images: torch.Tensor, max_std: float, generator: torch.Generator) -> torch.Tensor:
    """images (B, C, H, W) in [-1, 1] plus N(0, s^2) noise, s ~ U(0, max_std) per image (not clipped)."""
    std = torch.rand(images.shape[0], 1, 1, 1, generator=generator) * max_std
    return images + std * torch.randn(images.shape, generator=generator)


def load_noise_schedule(args: argparse.Namespace):
    """The DDPMScheduler whose alphas_cumprod a noise-aware classifier is trained on."""
    if args.noise_schedule_from is None:
        return create_noise_scheduler()
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(args.noise_schedule_from, subfolder="scheduler")


def diffuse(images: torch.Tensor, timesteps: torch.Tensor, noise_schedule, generator: torch.Generator) -> torch.Tensor:
    """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4), eps from ``generator``."""
    noise = torch.randn(images.shape, generator=generator)
    return noise_schedule.add_noise(images, noise, timesteps)


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model, dataset, batch_size: int, show_progress: bool, timestep: int = 0, noise_schedule=None,
             seed: int = 0) -> float:
    """Top-1 accuracy in [0, 1] over the whole dataset; at ``timestep`` > 0, of its images diffused to x_t (fixed noise)."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for start in tqdm(range(0, len(dataset), batch_size), desc=f"eval t={timestep}", disable=not show_progress, leave=False):
        images = to_model_range(dataset.images[start : start + batch_size])
        t = torch.full((len(images),), timestep, dtype=torch.long)
        if timestep > 0:
            images = diffuse(images, t, noise_schedule, generator)
        logits = classifier_logits(model, images.to(device), t.to(device))
        correct += (logits.argmax(-1).cpu() == dataset.labels[start : start + batch_size]).sum().item()
    return correct / len(dataset)


# ----------------------------------------------------------------------------------------------
# Checkpoints: one per epoch, so a killed run loses at most one epoch
# ----------------------------------------------------------------------------------------------
def checkpoint_path(args: argparse.Namespace, epoch: int) -> Path:
    return Path(args.output_dir, f"checkpoint-epoch-{epoch}")


def existing_checkpoints(output_dir: str) -> list[Path]:
    found = [(int(p.name.rsplit("-", 1)[1]), p) for p in Path(output_dir).glob("checkpoint-epoch-*")
             if p.name.rsplit("-", 1)[1].isdigit() and (p / CHECKPOINT_FILE).is_file()]
    return [p for _, p in sorted(found)]


def save_checkpoint(args, epoch: int, model, optimizer, scheduler, generator, history, train_seconds: float) -> None:
    """``output_dir/checkpoint-epoch-{epoch}/training_state.pt``; older epochs' checkpoints are removed."""
    path = checkpoint_path(args, epoch)
    path.mkdir(parents=True, exist_ok=True)
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "history": history,
             "train_seconds": train_seconds, "args": {name: getattr(args, name) for name in RESUME_MUST_MATCH}}
    torch.save(state, path / (CHECKPOINT_FILE + ".tmp"))
    os.replace(path / (CHECKPOINT_FILE + ".tmp"), path / CHECKPOINT_FILE)  # a kill mid-write leaves the old one
    for old in existing_checkpoints(args.output_dir):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(args, model, optimizer, scheduler, generator) -> tuple[int, list, float]:
    """Restore a checkpoint into the freshly built objects; returns (epochs done, history, training seconds)."""
    if args.resume_from_checkpoint == "latest":
        found = existing_checkpoints(args.output_dir)
        if not found:
            logger.info("no checkpoint in %s: starting from scratch", args.output_dir)
            return 0, [], 0.0
        path = found[-1]
    else:
        path = Path(args.resume_from_checkpoint)
    state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    changed = {k: (v, getattr(args, k)) for k, v in state["args"].items() if getattr(args, k) != v}
    if changed:
        raise ValueError(f"`--resume_from_checkpoint` {str(path)!r} was written with other settings: "
                         + ", ".join(f"--{k} {old!r} (now {new!r})" for k, (old, new) in changed.items()))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    logger.info("resumed from %s (epoch %d done)", path, state["epoch"])
    return state["epoch"], state["history"], state["train_seconds"]


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------
def save_image_processor(config, output_dir: str) -> None:
    """A stock preprocessor_config.json so transformers' pipelines can also feed PIL images."""
    try:
        from transformers import ViTImageProcessorPil as processor_class  # no torchvision needed
    except ImportError:  # older transformers
        from transformers import ViTImageProcessor as processor_class
    processor = processor_class(
        do_resize=True,
        size={"height": config.image_size, "width": config.image_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
    )
    processor.save_pretrained(output_dir)


def write_card(args, model, results: dict) -> None:
    """README.md through pnp_diffusers.hub's card writer: what was trained, how well, with what command."""
    dataset_name = Path(args.dataset.rstrip("/")).name
    hub_dataset = KNOWN_HUB_DATASETS.get(dataset_name, args.dataset)
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = env + "python train/train_classifier.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    config = model.config
    channels = config.num_channels - (1 if args.noise_aware else 0)
    num_parameters = sum(p.numel() for p in model.parameters())
    noisy = (f" It is **noise-aware** (Dhariwal & Nichol 2021): it classifies noisy images x_t of a DDPM with "
             f"T = {config.num_train_timesteps}, the timestep entering as one extra input channel, for classifier "
             f"guidance (`DiffusionSamplingPipeline(..., classifier=, classifier_guidance_scale=)`).") if args.noise_aware else ""
    description = (
        f"A small {type(model).__name__} ({num_parameters / 1e6:.2f} M parameters; stages {list(config.hidden_sizes)}, "
        f"depths {list(config.depths)}, {channels} image channel(s), {config.image_size}x{config.image_size} input) "
        f"trained on `{dataset_name}` by `train/train_classifier.py` of pnp-diffusers "
        f"({results['train_samples']} training images, {args.epochs} epochs, seed {args.seed}, "
        f"{results['train_seconds'] / 60:.1f} minutes on CPU).{noisy}"
    )
    metrics = {f"{args.eval_split} accuracy ({results['eval_samples']} images)": f"{100 * results['eval_accuracy']:.2f}%"}
    for t, accuracy in results.get("noisy_eval_accuracy", {}).items():
        metrics[f"{args.eval_split} accuracy at t = {t} (x_t, fixed noise)"] = f"{100 * accuracy:.2f}%"
    shape = f"{channels}, {config.image_size}, {config.image_size}"
    usage = f"""## Usage

```python
import torch
from transformers import AutoModelForImageClassification
from pnp_diffusers.classifiers import classifier_logits, classifier_features

classifier = AutoModelForImageClassification.from_pretrained("PATH_OR_REPO_ID")
x = torch.rand(4, {shape}) * 2 - 1  # model-space images in [-1, 1]
logits = classifier_logits(classifier, x{", timesteps=500" if args.noise_aware else ""})  # (4, {config.num_labels}), differentiable in x
features = classifier_features(classifier, x)  # (4, D) penultimate features for Frechet distances
```

The preprocessing (to [0, 1], channel matching, resize to `config.image_size`, normalisation by
`config.image_mean` / `config.image_std`{", the timestep plane" if args.noise_aware else ""}) is read from `config.json`."""
    write_model_card(
        args.output_dir, title=Path(args.output_dir).name, description=description, metrics=metrics,
        commands={"Trained with (from the repository root)": command}, datasets=[hub_dataset],
        tags=["image-classification", config.model_type] + (["noise-aware", "classifier-guidance"] if args.noise_aware else []),
        pipeline_tag="image-classification", library_name="transformers", usage=usage,
    )


# ----------------------------------------------------------------------------------------------
# Main: data, model, loop, evaluation, save
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    show_progress = not args.no_progress

    # Data: decoded once into uint8 tensors.
    train_set = load_labelled_split(args, args.train_split, args.max_train_samples)
    eval_set = load_labelled_split(args, args.eval_split, args.max_eval_samples)
    if train_set.num_channels != eval_set.num_channels:
        raise ValueError("the train and eval splits have different channel counts.")

    # Model: a small transformers config carrying the preprocessing (image_size, mean, std).
    from transformers import AutoModelForImageClassification

    overrides = {"patch_size": args.patch_size} if args.patch_size is not None else {}
    config = small_classifier_config(
        args.architecture,
        num_channels=train_set.num_channels,
        num_labels=train_set.num_classes,
        image_size=args.image_size or train_set.resolution,
        hidden_sizes=args.hidden_sizes,
        depths=args.depths,
        id2label=dict(enumerate(train_set.class_names)),
        noise_aware=args.noise_aware,
        **overrides,
    )
    noise_schedule = load_noise_schedule(args) if args.noise_aware else None
    if args.noise_aware:
        config.num_train_timesteps = int(noise_schedule.config.num_train_timesteps)
    model = AutoModelForImageClassification.from_config(config).to(args.device)
    bf16 = resolve_bf16(args.mixed_precision, args.device)
    logger.info("%s: %.2f M parameters, training forwards in %s", type(model).__name__,
                sum(p.numel() for p in model.parameters()) / 1e6, "bf16 autocast" if bf16 else "float32")

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, int(args.warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, warmup_steps)
    )

    # Loop, resumable epoch by epoch.
    first_epoch, history, seconds_before = 0, [], 0.0
    if args.resume_from_checkpoint is not None:
        first_epoch, history, seconds_before = load_checkpoint(args, model, optimizer, scheduler, generator)
    start_time = time.time() - seconds_before
    for epoch in range(first_epoch, args.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=generator)
        progress = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", disable=not show_progress)
        seen, correct, loss_sum = 0, 0, 0.0
        for step in progress:
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            images = random_shift_and_scale(
                to_model_range(train_set.images[index]), args.max_shift, args.max_scale, generator
            )
            if args.random_flip:
                flip = torch.rand(len(index), generator=generator) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            if args.noise_std > 0:
                images = add_random_noise(images, args.noise_std, generator)
            timesteps = None
            if args.noise_aware:
                timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(index),), generator=generator)
                images = diffuse(images, timesteps, noise_schedule, generator)
                timesteps = timesteps.to(args.device)
            images, labels = images.to(args.device), train_set.labels[index].to(args.device)
            # The same differentiable preprocessing that guidance uses later, so train and use agree.
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16):
                logits = classifier_logits(model, images, timesteps).float()
            loss = F.cross_entropy(logits, labels, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(labels)
            correct += (logits.argmax(-1) == labels).sum().item()
            loss_sum += loss.item() * len(labels)
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        accuracy = evaluate(model, eval_set, args.eval_batch_size, show_progress)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "eval_accuracy": accuracy})
        logger.info("epoch %d: train loss %.4f, train acc %.4f, %s acc %.4f (%.0f s)", epoch + 1,
                    loss_sum / seen, correct / seen, args.eval_split, accuracy, time.time() - start_time)
        save_checkpoint(args, epoch + 1, model, optimizer, scheduler, generator, history, time.time() - start_time)
        if (args.max_train_minutes is not None and epoch + 1 < args.epochs
                and time.time() - start_time >= 60 * args.max_train_minutes):
            logger.info("stopped after epoch %d: --max_train_minutes %g spent; resume with --resume_from_checkpoint "
                        "latest", epoch + 1, args.max_train_minutes)
            return {"stopped_after_epoch": epoch + 1, "history": history}
    seconds = time.time() - start_time

    # Save in Hub layout: config.json + model.safetensors + preprocessor_config.json + README.md.
    model.eval().cpu()
    os.makedirs(args.output_dir, exist_ok=True)
    model.save_pretrained(args.output_dir, safe_serialization=True)
    save_image_processor(model.config, args.output_dir)
    final_accuracy = history[-1]["eval_accuracy"]
    results = {"eval_accuracy": final_accuracy, "eval_split": args.eval_split, "eval_samples": len(eval_set),
               "train_samples": len(train_set), "train_seconds": round(seconds, 1), "history": history}
    if args.noise_aware:
        big_t = noise_schedule.config.num_train_timesteps
        results["noisy_eval_accuracy"] = {
            t: evaluate(model, eval_set, args.eval_batch_size, show_progress, t, noise_schedule, args.seed)
            for t in (big_t // 4, big_t // 2, 3 * big_t // 4)
        }
        logger.info("noisy %s accuracy: %s", args.eval_split, results["noisy_eval_accuracy"])
    write_card(args, model, results)
    Path(args.output_dir, "training_results.json").write_text(json.dumps(results, indent=2) + "\n")
    for checkpoint in existing_checkpoints(args.output_dir):  # the folder now holds the finished model only
        shutil.rmtree(checkpoint, ignore_errors=True)
    logger.info("saved to %s; %s accuracy %.4f", args.output_dir, args.eval_split, final_accuracy)

    if args.push_to_hub:
        push_folder_to_hub(args.output_dir, args.hub_model_id, private=args.hub_private,
                           commit_message="Upload classifier trained with pnp-diffusers")
    return results


if __name__ == "__main__":
    main()
