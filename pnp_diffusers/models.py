"""UNet presets and noise schedules for MNIST and CIFAR-10.

Every model here is a stock :class:`diffusers.UNet2DModel` and every noise schedule a stock
:class:`diffusers.DDPMScheduler`, so saved pipelines stay loadable by plain diffusers.

Class-conditional convention (used by training, classifier-free guidance and plug-and-play):
``num_class_embeds = num_classes + 1`` and the last index, ``num_classes``, is the *null class*
used for label dropout during training and for the unconditional branch of guidance.
"""

from __future__ import annotations

import copy
from typing import Any

from diffusers import DDPMScheduler, UNet2DModel

# Each preset is a set of UNet2DModel keyword arguments. `sample_size` and `in_channels` are the
# dataset's defaults; `create_unet` may override them.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    # ~1.1 M parameters: 28 -> 14 -> 7, self-attention only at 7x7 where it is cheap.
    # About 1 s per training step at batch 128 on 2 CPU cores (bf16 autocast: 0.8 s).
    "mnist-small": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=16,
    ),
    # ~2.8 M parameters: a wider MNIST model, attention at 14x14 and 7x7.
    "mnist-base": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=16,
    ),
    # ~6.1 M parameters, a small CIFAR-10 model: 32 -> 16 -> 8 -> 4, attention at 8x8.
    "cifar10-small": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(64, 128, 128, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
        attention_head_dim=32,
        dropout=0.1,
    ),
    # Ho et al. 2020, CIFAR-10: 35.7 M parameters, channels 128,256,256,256, two residual blocks
    # per resolution, self-attention at 16x16, dropout 0.1.
    "cifar10-ddpm": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
        attention_head_dim=None,  # one head of width 256, as in the original
        dropout=0.1,
    ),
}

# ~1.1 M parameters: mnist-small's UNet for colour 32x32 images, 32 -> 16 -> 8, attention at 8x8, dropout 0.1.
# The CPU campaign's size: measured 2.0 s per step at batch 64 (bf16, one thread shared with another
# job) against cifar10-small's 5.6 s (a 3-step timing, session 7).
UNET_PRESETS["cifar10-cpu"] = dict(UNET_PRESETS["mnist-small"], sample_size=32, in_channels=3, out_channels=3, dropout=0.1)

# ~1.05 M parameters: mnist-small without self-attention (mid-block included), train.py's MNIST default since
# session 25. On one AMX core it takes 1.45x mnist-small's steps per minute and, trained 20 minutes from scratch,
# reaches 0.68x its FD (DDIM 50, n=1000; benchmarks/results/campaign/lever_sweep_s25.sh). Per step it is a little
# behind (1.14x mnist-small's FD at 1700 steps): attention helps less than it costs at this size.
# attention_head_dim stays mnist-small's (unused without attention), so the two configs differ only in attention.
UNET_PRESETS["mnist-noattn"] = dict(
    UNET_PRESETS["mnist-small"],
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    add_attention=False,
)

# The noise schedule each dataset family gets unless the user picks another.
DEFAULT_BETA_SCHEDULE = {"mnist": "linear", "cifar10": "squaredcos_cap_v2"}

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def create_unet(
    preset: str = "mnist-small",
    *,
    num_classes: int | None = None,
    sample_size: int | None = None,
    in_channels: int | None = None,
    **overrides: Any,
) -> UNet2DModel:
    """Build a :class:`UNet2DModel` from a named preset.

    Args:
        preset: one of ``UNET_PRESETS`` ("mnist-small", "mnist-noattn", "mnist-base", "cifar10-cpu", "cifar10-small",
            "cifar10-ddpm").
        num_classes: if given, the UNet is class-conditional with ``num_classes + 1`` class
            embeddings; index ``num_classes`` is the null class (classifier-free guidance).
        sample_size: image side in pixels; must be divisible by ``2 ** (len(block_out_channels) - 1)``.
        in_channels: image channels (1 grey, 3 colour); output channels follow.
        overrides: any other ``UNet2DModel`` argument.

    Returns:
        A randomly initialised UNet taking ``(B, C, H, W)`` images in [-1, 1] and returning
        ``(B, C, H, W)`` predictions.
    """
    if preset not in UNET_PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(UNET_PRESETS)}, got {preset!r}.")
    config = copy.deepcopy(UNET_PRESETS[preset])
    if sample_size is not None:
        config["sample_size"] = int(sample_size)
    if in_channels is not None:
        config["in_channels"] = config["out_channels"] = int(in_channels)
    if num_classes is not None:
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        config["num_class_embeds"] = int(num_classes) + 1
    config.update(overrides)
    check_resolution(config["sample_size"], len(config["block_out_channels"]), argument="resolution")
    return UNet2DModel(**config)


def check_resolution(resolution: int, num_blocks: int, argument: str = "resolution") -> None:
    """Raise a ``ValueError`` naming ``argument`` if a UNet with ``num_blocks`` levels cannot take it.

    Every down block but the last halves the image, and the up path must give back the same sizes,
    so the side must be divisible by ``2 ** (num_blocks - 1)``.
    """
    factor = 2 ** (num_blocks - 1)
    if int(resolution) <= 0 or int(resolution) % factor != 0:
        raise ValueError(
            f"`{argument}`={resolution} cannot be taken by a UNet with {num_blocks} resolution levels: "
            f"it must be a positive multiple of {factor} (for example 28 or 32 for MNIST, 32 for CIFAR-10)."
        )


def create_noise_scheduler(
    beta_schedule: str = "linear",
    *,
    num_train_timesteps: int = 1000,
    prediction_type: str = "epsilon",
    clip_sample: bool = True,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> DDPMScheduler:
    """The stock DDPM noise schedule used for training and saved with every pipeline.

    Linear (Ho et al. 2020: beta from 1e-4 to 0.02 over T=1000) is the MNIST default,
    cosine (``squaredcos_cap_v2``, Nichol & Dhariwal 2021) the CIFAR-10 default. ``clip_sample``
    clamps the predicted x0 to [-1, 1] at every sampling step.
    """
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"`beta_schedule` must be one of {BETA_SCHEDULES}, got {beta_schedule!r}.")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=clip_sample,
    )


def is_class_conditional(unet: UNet2DModel) -> bool:
    """True when the UNet takes ``class_labels`` (it was built with ``num_class_embeds``)."""
    return getattr(unet.config, "num_class_embeds", None) is not None


def num_classes_of(unet: UNet2DModel) -> int | None:
    """The number of real classes of a conditional UNet (the null class excluded), else None."""
    if not is_class_conditional(unet):
        return None
    return int(unet.config.num_class_embeds) - 1


def null_class_label(unet: UNet2DModel) -> int:
    """Index of the null class (the unconditional branch of classifier-free guidance)."""
    n = num_classes_of(unet)
    if n is None:
        raise ValueError("`unet` is not class-conditional: it was built without `num_class_embeds`.")
    return n


def unconditional_unet_from_cfg(unet: UNet2DModel) -> UNet2DModel:
    """The unconditional branch of a classifier-free-guidance UNet, as a stock unconditional ``UNet2DModel``.

    ``UNet2DModel`` adds the class embedding to the timestep embedding, ``emb = linear_2(silu(linear_1(t))) +
    E[label]``, and uses ``emb`` nowhere else. For the null class that term is a constant vector, so it folds
    exactly into ``linear_2``'s bias: the returned UNet, with no class embedding at all, computes what ``unet``
    computes with ``class_labels = null class`` (up to float rounding), the eps(x_t, t, null) that CFG uses
    as its unconditional term (Ho & Salimans 2022, eq. 6). Plain diffusers' ``DDPMPipeline`` can then sample it.

    This is meaningful for UNets trained with label dropout (``train/train.py --conditional``, 10% by default):
    without it the null-class embedding was never trained.

    Args:
        unet: a class-conditional ``UNet2DModel`` of this project's convention (``num_class_embeds`` =
            classes + 1, the last index the null class) with the default ``class_embed_type`` (a lookup table).

    Returns:
        a new ``UNet2DModel`` (``num_class_embeds=None``) on ``unet``'s device and dtype; ``unet`` is not modified.
    """
    if not is_class_conditional(unet):
        raise ValueError("`unet` is not class-conditional (no `num_class_embeds`): it has no null class to fold.")
    if unet.config.class_embed_type is not None:
        raise ValueError(
            f"`unet` has class_embed_type={unet.config.class_embed_type!r}; only the default lookup table "
            "(class_embed_type=None) adds a constant per label that can be folded."
        )
    embedding = unet.time_embedding
    if getattr(embedding, "post_act", None) is not None or getattr(embedding, "cond_proj", None) is not None:
        raise ValueError("`unet.time_embedding` has a post-activation or a condition projection: the null class cannot be folded.")
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    config["num_class_embeds"] = None
    folded = UNet2DModel.from_config(config).to(unet.device)
    if folded.dtype != unet.dtype:
        folded = folded.to(unet.dtype)
    state = {key: value for key, value in unet.state_dict().items() if not key.startswith("class_embedding.")}
    null_embedding = unet.class_embedding.weight[null_class_label(unet)]
    state["time_embedding.linear_2.bias"] = state["time_embedding.linear_2.bias"] + null_embedding  # same module, same dtype
    folded.load_state_dict(state)  # strict: every weight of the unconditional network is accounted for
    folded.train(unet.training)
    return folded
