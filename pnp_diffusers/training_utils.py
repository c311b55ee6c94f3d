"""Training levers that diffusers' ``training_utils`` lacks: min-SNR loss weights for every prediction
type, a learning-rate schedule planned in wall-clock minutes, and initialising a UNet from a saved
pipeline folder (with the noise schedule its weights were trained for), and checking that a torch.compile'd UNet's
gradients are those of the eager one.

Used by ``train/train.py`` and ``benchmarks/bench_time_to_quality.py``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import compute_snr

# ----------------------------------------------------------------------------------------------
# Loss weighting
# ----------------------------------------------------------------------------------------------


def min_snr_loss_weights(noise_scheduler, timesteps: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    """Per-sample weights of the Min-SNR-gamma strategy (Hang et al. 2023, eq. 9 and Table 1).

    With SNR(t) = alpha_bar_t / (1 - alpha_bar_t):

    * epsilon prediction: ``min(SNR, gamma) / SNR``;
    * v-prediction:       ``min(SNR, gamma) / (SNR + 1)``;
    * x0 ("sample") prediction: ``min(SNR, gamma)``.

    Args:
        noise_scheduler: a ``DDPMScheduler`` (its ``alphas_cumprod`` and ``prediction_type`` are read).
        timesteps: (B,) long training timesteps.
        snr_gamma: the clamp gamma > 0 (the paper uses 5).

    Returns:
        (B,) float32 weights on ``timesteps.device``.
    """
    if not snr_gamma > 0:
        raise ValueError(f"`snr_gamma` must be positive, got {snr_gamma}.")
    snr = compute_snr(noise_scheduler, timesteps).float()
    clamped = torch.clamp(snr, max=snr_gamma)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return clamped / snr
    if kind == "v_prediction":
        return clamped / (snr + 1)
    if kind == "sample":
        return clamped
    raise ValueError(f"`prediction_type` {kind!r} has no min-SNR weighting.")


# ----------------------------------------------------------------------------------------------
# The training objective
# ----------------------------------------------------------------------------------------------
def drop_labels(labels: torch.Tensor, null_class: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null class with probability p: trains p(x) and p(x|y) in one model."""
    if p <= 0:
        return labels
    drop = (torch.rand(labels.shape, generator=generator) < p).to(labels.device)
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def training_target(noise_scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict (Ho et al. 2020 eq. 14 for epsilon; Salimans & Ho 2022 for v)."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return clean
    return noise_scheduler.get_velocity(clean, noise, timesteps)


MEMORY_FORMATS = ("auto", "channels_last", "nchw")


def use_channels_last(memory_format: str, mixed_precision: str, device_type: str) -> bool:
    """Whether to train in channels_last (NHWC) memory format.

    ``auto``: only with fp16/bf16 autocast on a GPU, whose tensor-core convolutions want NHWC. On the CPU oneDNN's
    NCHW path was faster in every case measured: bf16 autocast on an AMX Xeon at one thread, mnist-small 0.49 s a
    step against 0.61 s and cifar10-cpu 0.69 s against 0.73 s; float32 on an AVX2 CPU, 2.19 s against 2.30 s.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"`memory_format` must be one of {MEMORY_FORMATS}, got {memory_format!r}.")
    if memory_format != "auto":
        return memory_format == "channels_last"
    return device_type == "cuda" and mixed_precision in ("fp16", "bf16")


def diffusion_loss(unet, noise_scheduler, batch: dict, null_class: int | None, label_dropout: float,
                   channels_last: bool = True, generator: torch.Generator | None = None,
                   snr_gamma: float | None = None) -> torch.Tensor:
    """The simple DDPM objective (Ho et al. 2020, eq. 14) on one batch.

    ``batch["pixel_values"]``: (B, C, H, W) in [-1, 1]; ``batch["class_labels"]``: (B,) long, used when
    ``null_class`` is not None (a conditional UNet), with labels dropped to the null class at rate
    ``label_dropout``. ``generator`` (on the CPU) draws the noise, timesteps and dropout.
    ``snr_gamma`` weights each sample's error by Min-SNR-gamma (Hang et al. 2023).
    Returns the scalar (weighted) mean squared error in fp32.
    """
    clean = batch["pixel_values"]
    if channels_last:
        clean = clean.to(memory_format=torch.channels_last)
    noise = torch.randn(clean.shape, generator=generator).to(clean.device, memory_format=torch.preserve_format)
    if channels_last:
        noise = noise.to(memory_format=torch.channels_last)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],), generator=generator)
    timesteps = timesteps.to(clean.device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)  # q(x_t | x_0), Ho et al. eq. 4
    labels = None
    if null_class is not None:
        labels = drop_labels(batch["class_labels"], null_class, label_dropout, generator)
    prediction = unet(noisy, timesteps, class_labels=labels).sample
    target = training_target(noise_scheduler, clean, noise, timesteps).float()
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target)
    per_sample = F.mse_loss(prediction.float(), target, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * min_snr_loss_weights(noise_scheduler, timesteps, snr_gamma)).mean()


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule planned in minutes
# ----------------------------------------------------------------------------------------------
DECAY_SHAPES = ("constant", "linear", "cosine")


class TrainingClock:
    """Training minutes accumulated over every launch of a run, saved in each checkpoint.

    A time-boxed run plans its learning-rate decay on this clock, so a run killed and resumed
    continues the decay where it stopped instead of restarting it.
    """

    def __init__(self, minutes_before: float = 0.0):
        self.minutes_before = float(minutes_before)
        self.launch_start = time.time()

    def restart_launch(self) -> None:
        """Count from now on (call once set-up, data loading and resume are done)."""
        self.launch_start = time.time()

    @property
    def minutes(self) -> float:
        return self.minutes_before + (time.time() - self.launch_start) / 60.0

    def state_dict(self) -> dict:
        return {"minutes": self.minutes}

    def load_state_dict(self, state: dict) -> None:
        self.minutes_before = float(state["minutes"])
        self.launch_start = time.time()


def planned_decay(progress: float, shape: str = "cosine", min_ratio: float = 0.0) -> float:
    """The decay multiplier at ``progress`` in [0, 1] of a plan: 1 (constant), ``1 - p`` (linear) or
    ``(1 + cos(pi p)) / 2`` (cosine, Loshchilov & Hutter 2017), rescaled to end at ``min_ratio``."""
    progress = min(max(float(progress), 0.0), 1.0)
    if shape == "constant":
        value = 1.0
    elif shape == "linear":
        value = 1.0 - progress
    elif shape == "cosine":
        value = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"`shape` must be one of {DECAY_SHAPES}, got {shape!r}.")
    return min_ratio + (1.0 - min_ratio) * value


def minute_planned_scheduler(optimizer, clock: TrainingClock, planned_minutes, shape: str = "cosine",
                             warmup_steps: int = 0, min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR``: linear warmup over ``warmup_steps`` steps, then a decay planned in training minutes.

    ``lr(step) = lr * min(1, (step + 1) / warmup_steps) * planned_decay(clock.minutes / planned_minutes)``,
    so the run reaches ``min_ratio * lr`` exactly when ``planned_minutes`` of training (summed over its
    launches by ``clock``) are spent, however many steps that turns out to be on this machine.
    The multiplier is a closure: the scheduler's checkpoint keeps only its step count, and the plan
    comes from the command line and the checkpointed clock, so a resumed launch may extend the plan.
    ``planned_minutes`` is a number, or a callable returning it (read at every step: a plan that is
    only known once the clock has been restored from a checkpoint).
    """
    plan = planned_minutes if callable(planned_minutes) else (lambda: planned_minutes)
    if not plan() > 0:
        raise ValueError(f"`planned_minutes` must be positive, got {plan()}.")
    if shape not in DECAY_SHAPES:
        raise ValueError(f"`shape` must be one of {DECAY_SHAPES}, got {shape!r}.")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"`min_ratio` must be in [0, 1], got {min_ratio}.")

    def factor(step: int) -> float:
        warmup = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
        return warmup * planned_decay(clock.minutes / plan(), shape, min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def planned_shape(lr_scheduler: str) -> str | None:
    """The minute-planned decay shape of a ``get_scheduler`` name, None when it has none."""
    return {"constant": "constant", "constant_with_warmup": "constant", "linear": "linear", "cosine": "cosine"}.get(lr_scheduler)


def build_lr_scheduler(optimizer, clock: TrainingClock, lr_scheduler: str, *, warmup_steps: int, num_training_steps: int,
                       lr_schedule_minutes: float | None = None, max_train_minutes: float | None = None,
                       minutes_at_launch=lambda: 0.0, min_ratio: float = 0.0):
    """train.py's lr schedule: ``get_scheduler``'s, over steps, or the same shape planned over training minutes.

    The minute plan is used with ``lr_schedule_minutes`` (minutes summed over all launches of a run), or with a
    time-boxed launch (``max_train_minutes``) and a decaying schedule (linear, cosine): then the plan ends where the
    launch does, ``minutes_at_launch() + max_train_minutes``, so a time-boxed run ends annealed rather than at its
    peak lr. ``minutes_at_launch`` is a callable because a resumed run only knows it once its clock is restored.
    """
    if lr_schedule_minutes is not None or (max_train_minutes is not None and lr_scheduler in ("linear", "cosine")):
        return minute_planned_scheduler(
            optimizer, clock, planned_minutes=lambda: lr_schedule_minutes or (minutes_at_launch() + max_train_minutes),
            shape=planned_shape(lr_scheduler), warmup_steps=warmup_steps, min_ratio=min_ratio,
        )
    return get_scheduler(lr_scheduler, optimizer=optimizer, num_warmup_steps=warmup_steps, num_training_steps=num_training_steps)


def parameter_groups(unet: UNet2DModel, learning_rate: float, class_embedding_lr_scale: float) -> list[dict]:
    """AdamW groups: the class embedding at ``class_embedding_lr_scale`` x the lr, everything else at the lr.

    The lr schedule multiplies each group's own lr, so the ratio holds through warmup and decay.
    """
    embedding = getattr(unet, "class_embedding", None)
    if embedding is None or class_embedding_lr_scale == 1.0:
        return [{"params": list(unet.parameters())}]
    embedding_ids = {id(p) for p in embedding.parameters()}
    rest = [p for p in unet.parameters() if id(p) not in embedding_ids]
    return [{"params": rest}, {"params": list(embedding.parameters()), "lr": learning_rate * class_embedding_lr_scale}]


# ----------------------------------------------------------------------------------------------
# Initialising from a saved pipeline
# ----------------------------------------------------------------------------------------------
ARCHITECTURE_KEYS = (
    "sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
    "down_block_types", "up_block_types", "norm_num_groups", "attention_head_dim", "num_class_embeds",
    "add_attention", "time_embedding_type", "class_embed_type",
)


def _normalise(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def starts_conditioning(source: UNet2DModel, unet: UNet2DModel) -> bool:
    """Whether ``source`` is the unconditional twin of the class-conditional ``unet`` (all else equal)."""
    return source.config.get("num_class_embeds") is None and unet.config.get("num_class_embeds") is not None and all(
        _normalise(source.config.get(key)) == _normalise(unet.config.get(key))
        for key in ARCHITECTURE_KEYS if key != "num_class_embeds"
    )


def pipeline_unet_dir(pipeline_path: str, argument: str = "--init_from_pipeline") -> str:
    """``<pipeline_path>/unet``, after checking it holds a UNet config; else a ``ValueError`` naming ``argument``."""
    unet_dir = os.path.join(pipeline_path, "unet")
    if not os.path.isfile(os.path.join(unet_dir, "config.json")):
        raise ValueError(f"`{argument}` {pipeline_path!r} is not a pipeline folder: it has no unet/config.json.")
    return unet_dir


# What train.py builds without --model or --model_config, when it does not start from a pipeline folder.
DEFAULT_MODEL = "mnist-noattn"
# The keys a preset must share with a folder's UNet for the folder to be "that preset" (class conditioning aside:
# --conditional decides it, and an unconditional folder may start a conditional run).
_PRESET_KEYS = tuple(key for key in ARCHITECTURE_KEYS if key != "num_class_embeds") + ("dropout",)


def preset_of_pipeline(pipeline_path: str, argument: str = "--init_from_pipeline") -> str:
    """The ``UNET_PRESETS`` name of the network in ``<pipeline_path>/unet``: the preset a run started from that
    folder trains unless ``--model`` or ``--model_config`` is given.

    Raises a ``ValueError`` naming ``argument`` when the folder has no UNet, or when its UNet is none of the presets
    (then ``--model_config <folder>/unet/config.json`` trains it).
    """
    from .models import UNET_PRESETS

    config_file = os.path.join(pipeline_unet_dir(pipeline_path, argument), "config.json")
    with open(config_file) as f:
        folder = json.load(f)
    defaults = {name: parameter.default for name, parameter in inspect.signature(UNet2DModel.__init__).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    for name, preset in UNET_PRESETS.items():
        config = {**defaults, **preset}
        if all(_normalise(folder.get(key, defaults.get(key))) == _normalise(config.get(key)) for key in _PRESET_KEYS):
            return name
    raise ValueError(
        f"`{argument}` {pipeline_path!r} holds a UNet that is none of the presets {sorted(UNET_PRESETS)}; pass "
        f"`--model_config {config_file}` (or the matching `--model` and "
        "`--resolution`) to continue it."
    )


def load_unet_weights_from_pipeline(unet: UNet2DModel, pipeline_path: str, argument: str = "--init_from_pipeline") -> bool:
    """Copy the weights of ``<pipeline_path>/unet`` into ``unet`` after checking both are the same network.

    An unconditional folder may also start a class-conditional run of the same network: every weight is
    copied and the class embedding starts at zero. It is added to the timestep embedding, so at step 0
    the conditional UNet is exactly the unconditional one for every label (null class included), and
    training only has to learn what the label adds (zero-initialised conditioning, as ControlNet's
    zero convolutions; Zhang et al. 2023).

    Returns:
        True when the class embedding was started at zero (an unconditional source), else False.

    Raises a ``ValueError`` naming ``argument`` when the folder has no UNet, or when its architecture
    or class conditioning differ from ``unet``'s otherwise (the preset, ``--model_config`` or ``--conditional``).
    """
    source = UNet2DModel.from_pretrained(pipeline_unet_dir(pipeline_path, argument))
    if starts_conditioning(source, unet):
        missing, unexpected = unet.load_state_dict(source.state_dict(), strict=False)
        if unexpected or any(not key.startswith("class_embedding.") for key in missing):
            raise ValueError(f"`{argument}` {pipeline_path!r}: unexpected weights {unexpected}, missing {missing}.")
        torch.nn.init.zeros_(unet.class_embedding.weight)
        return True
    mismatched = [
        f"{key}: folder {_normalise(source.config.get(key))!r}, run {_normalise(unet.config.get(key))!r}"
        for key in ARCHITECTURE_KEYS
        if _normalise(source.config.get(key)) != _normalise(unet.config.get(key))
    ]
    if mismatched:
        hint = ""
        if any(m.startswith("num_class_embeds") for m in mismatched):
            hint = " (class conditioning differs: add or drop `--conditional`"
            if source.config.get("num_class_embeds") is not None and unet.config.get("num_class_embeds") is None:
                hint += "; for the unconditional branch of a CFG folder, write it out with train/extract_unconditional.py first"
            hint += ")"
        raise ValueError(
            f"`{argument}` {pipeline_path!r} holds a UNet that does not match this run's model{hint}: "
            + "; ".join(mismatched)
        )
    unet.load_state_dict(source.state_dict())
    return False


# The noise schedule a UNet's weights are tied to: continuing them under another one changes what the network is asked
# to predict (epsilon vs v, linear vs cosine betas, T), so train.py adopts a starting folder's and refuses a clash.
NOISE_SCHEDULE_KEYS = ("beta_schedule", "prediction_type", "num_train_timesteps")
# v-prediction with Min-SNR-5 since session 26: the pair passed the recipe sweep's rule on its rerun (0.79x the
# 20-minute FD at equal minutes and at equal steps, lever_sweep_s25.sh); epsilon and the plain MSE before.
DEFAULT_PREDICTION_TYPE = "v_prediction"
DEFAULT_NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_SNR_GAMMA = 5.0
# A run's recipe: its network (preset or config file, conditioning), what its weights were trained for (the noise
# schedule) and with (the loss weighting; 0 = plain MSE). Checkpoints record it, so a resumed run keeps it whatever
# train.py's defaults have become since.
RECIPE_KEYS = ("model", "model_config", "conditional") + NOISE_SCHEDULE_KEYS + ("snr_gamma",)
# The recipe of a checkpoint that records none: one written before session 26, at the defaults of then.
LEGACY_CHECKPOINT_RECIPE = {"prediction_type": "epsilon", "snr_gamma": 0.0}


def adopt_settings(source: dict, requested: dict, argument: str, path: str, what: str) -> dict:
    """``requested`` with every None filled from ``source``; a value set to something else than ``source``'s is refused.

    Args:
        source: the settings the weights at ``path`` were trained with (a key it lacks or holds as None is free).
        requested: ``{key: value or None}``; None means "not set on the command line".
        argument, path, what: for the error message (``--init_from_pipeline``, the folder, "the folder's").

    Raises a ``ValueError`` naming each ``--key`` whose value clashes with ``source``'s.
    """
    clashes = [f"`--{key}` {value!r} ({what} is {source[key]!r})" for key, value in requested.items()
               if value is not None and source.get(key) is not None and source[key] != value]
    if clashes:
        raise ValueError(
            f"`{argument}` {path!r} was trained with another recipe than this run asks for: " + "; ".join(clashes)
            + ". Its weights would be continued on a different task; leave these arguments unset to continue with "
            f"{what}."
        )
    return {key: source.get(key) if value is None else value for key, value in requested.items()}


def noise_schedule_of_pipeline(pipeline_path: str, requested: dict, argument: str = "--init_from_pipeline") -> dict:
    """The noise-schedule settings of a run that starts from ``pipeline_path``'s weights.

    Args:
        requested: ``{key: value or None}`` for ``NOISE_SCHEDULE_KEYS`` (other keys pass through); None means "not set
            on the command line".

    Returns:
        ``requested`` with every None of ``NOISE_SCHEDULE_KEYS`` filled from the folder's
        ``scheduler/scheduler_config.json`` (unchanged when the folder has none).

    Raises a ``ValueError`` naming each ``--key`` set to a value other than the folder's.
    """
    config_file = os.path.join(pipeline_path, "scheduler", "scheduler_config.json")
    if not os.path.isfile(config_file):
        return dict(requested)
    with open(config_file) as f:
        folder = json.load(f)
    return adopt_settings({key: folder.get(key) for key in NOISE_SCHEDULE_KEYS}, requested, argument, pipeline_path,
                          "the folder's")


# ----------------------------------------------------------------------------------------------
# torch.compile: trust, but check the gradients
# ----------------------------------------------------------------------------------------------

COMPILED_GRADIENT_TOLERANCE = 0.05  # bf16 autocast alone moves gradients by ~0.4% here; a broken backward by far more


def probe_batch(batch_size: int, channels: int, resolution: int, num_classes: int | None, device="cpu") -> dict:
    """A fixed random batch shaped like training ones for the compiled-gradient check: ``pixel_values``
    (B, C, R, R) in [-1, 1] and ``class_labels`` (B,) in [0, num_classes) (zeros without classes). Drawn from its own
    seeded generator, so a run's data order and noise stay untouched."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, channels, resolution, resolution)
    return {"pixel_values": (torch.rand(shape, generator=generator) * 2 - 1).to(device),
            "class_labels": torch.randint(0, num_classes or 1, (batch_size,), generator=generator).to(device)}


def compiled_gradient_check(compiled: torch.nn.Module, loss_fn) -> dict:
    """The parameter gradients of a ``torch.compile``'d module against its eager original (``compiled._orig_mod``)
    on one batch.

    Why: on this project's CPU (torch 2.13, inductor) the compiled backward of ``UNet2DModel`` gave 136 of 182
    parameters no gradient (every block below the first resolution): training ran, 7x worse (session 24). The
    check costs one eager and one compiled step, and the compiled one is the compile the run pays anyway.

    Args:
        compiled: the compiled module; its ``_orig_mod`` (or itself) holds the parameters.
        loss_fn: ``loss_fn(model) -> scalar loss``; must draw the same batch and noise on every call.

    Returns:
        ``{"relative_error": ||g_compiled - g_eager|| / ||g_eager||, "missing": parameters with an eager gradient
        but none (or zero) from the compiled module, "missing_names": their names, "parameters": count, "error": the
        compiled step's exception text or None, "passed": no parameter missing and the relative error under
        ``COMPILED_GRADIENT_TOLERANCE``}``. Every ``.grad`` is left at None.
    """
    eager = getattr(compiled, "_orig_mod", compiled)
    named = [(name, p) for name, p in eager.named_parameters() if p.requires_grad]
    params = [p for _, p in named]

    def gradients(model) -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        loss_fn(model).backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.detach().float().clone() for p in params]

    reference, error = gradients(eager), None
    try:
        got = gradients(compiled)
    except Exception as exc:  # a backend that cannot differentiate this module: the caller falls back to eager
        error = repr(exc)
    finally:
        for p in params:
            p.grad = None
    if error is not None:
        return {"relative_error": float("inf"), "missing": len(params), "missing_names": [n for n, _ in named],
                "parameters": len(params), "error": error, "passed": False}
    missing_names = [name for (name, _), r, g in zip(named, reference, got)
                     if float(r.abs().sum()) > 0 and float(g.abs().sum()) == 0]
    relative_error = float(torch.sqrt(sum(((g - r) ** 2).sum() for r, g in zip(reference, got)))
                           / torch.sqrt(sum((r ** 2).sum() for r in reference)).clamp_min(1e-30))
    return {"relative_error": relative_error, "missing": len(missing_names), "missing_names": missing_names,
            "parameters": len(params), "error": None,
            "passed": not missing_names and relative_error < COMPILED_GRADIENT_TOLERANCE}


def checked_compiled_module(compiled: torch.nn.Module, loss_fn, log=None) -> torch.nn.Module:
    """``compiled`` when :func:`compiled_gradient_check` passes, else its eager original, with a warning through ``log``
    (a ``logging.Logger``): a run that asked for speed gets correct gradients rather than a quietly worse model."""
    start = time.time()
    check = compiled_gradient_check(compiled, loss_fn)
    seconds = time.time() - start
    if check["passed"]:
        if log is not None:
            log.info("torch.compile: compiled and checked in %.1f s (set-up, before the training clock): gradients "
                     "match eager, relative error %.2g.", seconds, check["relative_error"])
        return compiled
    if log is not None:
        log.warning("torch.compile: the compiled backward is wrong here (%s; %d of %d parameters get no gradient, "
                    "relative error %.3g against eager), so this run trains WITHOUT compile. Checked in %.1f s.",
                    check["error"] or "no exception", check["missing"], check["parameters"], check["relative_error"], seconds)
    return getattr(compiled, "_orig_mod", compiled)
