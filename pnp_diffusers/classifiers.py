"""Differentiable glue between diffusion-model images and transformers image classifiers.

A diffusion model works on images in [-1, 1] of shape (B, C, H, W). A transformers image
classifier (any ``AutoModelForImageClassification``) wants pixel values normalised by its own
mean and std, at its own size and channel count. Plug-and-play guidance (Graikos et al. 2022,
the ``-log c(x, y)`` term of their eq. 6) back-propagates through that conversion, so it is written
here in torch instead of with a (non-differentiable, PIL/numpy) image processor.

The preprocessing reads three *custom* attributes from ``classifier.config`` -- ``image_mean``,
``image_std``, ``image_size`` -- which :func:`small_classifier_config` (and therefore
``train/train_classifier.py``) stores on the config, so ``AutoModelForImageClassification.from_pretrained``
alone carries everything needed. Missing attributes fall back to mean 0.5, std 0.5 and "no resize".
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights, the same conversion PIL uses for mode "L".
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)

CLASSIFIER_ARCHITECTURES = ("resnet", "convnext")


def _check_classifier(classifier) -> None:
    if not isinstance(classifier, torch.nn.Module) or not hasattr(classifier, "config"):
        raise ValueError(
            f"`classifier` must be a transformers image-classification model (a torch.nn.Module with a "
            f"`config`), got {type(classifier).__name__}."
        )


def _check_images(x, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a tensor of shape (B, C, H, W) in [-1, 1], got {shape}.")


def _config_image_size(config) -> tuple[int, int] | None:
    """The classifier's (H, W) input size from its config, or None when the config does not say."""
    size = getattr(config, "image_size", None)
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, dict):  # image-processor style {"height": h, "width": w}
        return (int(size["height"]), int(size["width"]))
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def _per_channel(values, num_channels: int, default: float, name: str) -> torch.Tensor:
    """Broadcastable (1, C, 1, 1) tensor from a scalar or a per-channel list in the config."""
    if values is None:
        values = [default] * num_channels
    elif isinstance(values, (int, float)):
        values = [float(values)] * num_channels
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * num_channels
    if len(values) != num_channels:
        raise ValueError(
            f"`classifier.config.{name}` has {len(values)} values but the classifier has {num_channels} channels."
        )
    return torch.tensor(values).view(1, num_channels, 1, 1)


def _match_channels(x: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by luminance; anything else cannot be matched."""
    channels = x.shape[1]
    if channels == num_channels:
        return x
    if channels == 1 and num_channels == 3:
        return x.repeat(1, 3, 1, 1)
    if channels == 3 and num_channels == 1:
        weights = torch.tensor(_LUMA_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    raise ValueError(
        f"`classifier` expects {num_channels}-channel images but the images have {channels} channels; "
        "only 1 <-> 3 channel conversion is supported."
    )


def preprocess_for_classifier(x: torch.Tensor, classifier) -> torch.Tensor:
    """Map model-space images to the classifier's normalised input, differentiably.

    Args:
        x: images of shape (B, C, H, W) with values in [-1, 1] (values outside are not clipped, so
            gradients stay exact; clip beforehand if the caller wants the paper's ``clip(x, -1, 1)``).
        classifier: a transformers image classifier whose config has ``num_channels`` and optionally
            ``image_size``, ``image_mean``, ``image_std``.

    Returns:
        Tensor of shape (B, num_channels, H', W') with (H', W') the classifier's image size when known,
        else (H, W); values ``(x01 - mean) / std`` where ``x01 = (x + 1) / 2`` is in [0, 1].

    Raises:
        ValueError: ``x`` is not (B, C, H, W), or the channels cannot be matched (names ``classifier``).
    """
    _check_classifier(classifier)
    _check_images(x)
    config = classifier.config
    num_channels = int(getattr(config, "num_channels", x.shape[1]))
    param = next(classifier.parameters(), None)
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else x.dtype

    pixels = (x.to(dtype) + 1.0) / 2.0  # [-1, 1] -> [0, 1]
    pixels = _match_channels(pixels, num_channels)
    size = _config_image_size(config)
    if size is not None and tuple(pixels.shape[-2:]) != size:
        shrinking = size[0] < pixels.shape[-2] or size[1] < pixels.shape[-1]
        # antialias only when shrinking: it is what PIL's resize does, and keeps the op differentiable.
        pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    mean = _per_channel(getattr(config, "image_mean", None), num_channels, 0.5, "image_mean")
    std = _per_channel(getattr(config, "image_std", None), num_channels, 0.5, "image_std")
    return (pixels - mean.to(pixels)) / std.to(pixels)


def is_noise_aware(classifier) -> bool:
    """Whether a classifier takes noisy images x_t with their timestep (``train_classifier.py --noise_aware``)."""
    return bool(getattr(getattr(classifier, "config", None), "noise_aware", False))


def image_channels(classifier) -> int:
    """Channels of the images a classifier reads; a noise-aware one's extra timestep plane is not counted."""
    channels = int(getattr(classifier.config, "num_channels", 1))
    return channels - 1 if is_noise_aware(classifier) else channels


def _check_noise_aware_channels(x: torch.Tensor, classifier) -> None:
    """A noise-aware classifier's x_t has exactly its images' channels (no grey <-> RGB conversion of noise)."""
    expected = image_channels(classifier)
    if x.shape[1] != expected:
        raise ValueError(
            f"`classifier` is a noise-aware classifier of {expected}-channel images (plus its timestep plane), "
            f"but the images have {x.shape[1]} channels: use a noise-aware classifier trained on this dataset."
        )


def with_timestep_plane(x: torch.Tensor, timesteps: torch.Tensor | int, num_train_timesteps: int) -> torch.Tensor:
    """Append the timestep as one constant channel: (B, C, H, W) -> (B, C + 1, H, W).

    A noise-aware classifier sees ``t`` the way it sees pixels, as a plane of value ``2 t / (T - 1) - 1``
    in [-1, 1] (its own normalisation is 0.5 / 0.5, so the network gets that value): the simplest
    conditioning on t that keeps the classifier a stock transformers model.
    """
    t = torch.as_tensor(timesteps, device=x.device).to(x.dtype).reshape(-1)
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"`timesteps` must hold 1 or {x.shape[0]} (batch size) values, got {t.numel()}.")
    plane = (2 * t / max(int(num_train_timesteps) - 1, 1) - 1).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
    return torch.cat([x, plane], dim=1)


def classifier_logits(classifier, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
    """Logits of a transformers image classifier on model-space images.

    Args:
        classifier: a transformers image classifier (see :func:`preprocess_for_classifier`).
        x: images (B, C, H, W) in [-1, 1]; noisy images x_t for a noise-aware classifier.
        timesteps: for a noise-aware classifier, the diffusion timestep(s) of ``x`` (int or (B,));
            None means clean images (t = 0). Ignored by ordinary classifiers.

    Returns:
        Tensor (B, num_labels), differentiable with respect to ``x``.
    """
    if is_noise_aware(classifier):
        _check_images(x)
        _check_noise_aware_channels(x, classifier)
        x = with_timestep_plane(x, 0 if timesteps is None else timesteps, classifier.config.num_train_timesteps)
    pixel_values = preprocess_for_classifier(x, classifier)
    return classifier(pixel_values=pixel_values, return_dict=True).logits


def _pool(hidden: torch.Tensor) -> torch.Tensor:
    """Global-average-pool a hidden state to (B, D): spatial maps (B, D, H, W) or tokens (B, N, D)."""
    if hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if hidden.ndim == 3:
        return hidden.mean(dim=1)
    return hidden.flatten(1)


def classifier_features(classifier, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features of a transformers image classifier: the input of its classification head.

    Uses the backbone's ``pooler_output`` when it has one (ResNet: global average pool; ConvNeXt:
    global average pool followed by the final LayerNorm, exactly what the head sees), otherwise the
    global average of the last hidden state (``output_hidden_states=True``).

    Args:
        classifier: a transformers image classifier (see :func:`preprocess_for_classifier`).
        x: images (B, C, H, W) in [-1, 1].

    Returns:
        Tensor (B, D), differentiable with respect to ``x``.
    """
    if is_noise_aware(classifier):  # features of clean images: t = 0
        _check_images(x)
        _check_noise_aware_channels(x, classifier)
        x = with_timestep_plane(x, 0, classifier.config.num_train_timesteps)
    pixel_values = preprocess_for_classifier(x, classifier)
    backbone = classifier.base_model
    if backbone is not classifier:
        outputs = backbone(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
    else:
        outputs = classifier(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
    hidden_states = getattr(outputs, "hidden_states", None)
    last = getattr(outputs, "last_hidden_state", None)
    if last is None and hidden_states:
        last = hidden_states[-1]
    if last is None:
        raise ValueError(
            f"`classifier` ({type(classifier).__name__}) exposes neither a pooler output nor hidden states."
        )
    return _pool(last)


def small_classifier_config(
    architecture: str = "resnet",
    num_channels: int = 1,
    num_labels: int = 10,
    image_size: int = 28,
    hidden_sizes: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    image_mean: Sequence[float] | float | None = None,
    image_std: Sequence[float] | float | None = None,
    id2label: dict[int, str] | None = None,
    noise_aware: bool = False,
    num_train_timesteps: int = 1000,
    **overrides,
):
    """A small transformers ResNet or ConvNeXt config for 28x28 / 32x32 images.

    Both architectures downsample by 4 in their stem (ResNet: stride-2 conv + max-pool; ConvNeXt:
    4x4 patchify), so small images need only two or three stages.

    Args:
        architecture: "resnet" (basic blocks) or "convnext".
        num_channels: 1 (MNIST) or 3 (CIFAR-10).
        num_labels: number of classes.
        image_size: the square input size the classifier is trained at; stored on the config.
        hidden_sizes, depths: per-stage widths and block counts (defaults: (32, 64, 128) and (1, 1, 1)
            for ResNet, (32, 64, 128) and (2, 2, 2) for ConvNeXt).
        image_mean, image_std: normalisation stored on the config (default 0.5 per channel).
        id2label: class names; default ``{i: str(i)}``.
        noise_aware: a classifier of noisy images x_t and their timestep (Dhariwal & Nichol 2021), for
            classifier guidance: one extra input channel carries t (:func:`with_timestep_plane`), and the
            config records ``noise_aware`` and ``num_train_timesteps``.
        num_train_timesteps: T of the diffusion the noise-aware classifier is trained for.
        **overrides: any further keyword of ``ResNetConfig`` / ``ConvNextConfig``.

    Returns:
        A ``ResNetConfig`` or ``ConvNextConfig`` with the custom attributes ``image_size``,
        ``image_mean`` and ``image_std`` set.
    """
    from transformers import ConvNextConfig, ResNetConfig

    if architecture not in CLASSIFIER_ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {CLASSIFIER_ARCHITECTURES}, got {architecture!r}.")
    if num_channels not in (1, 3):
        raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels}.")
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"`num_labels` must be an int >= 2, got {num_labels!r}.")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"`image_size` must be an int >= 8, got {image_size!r}.")
    if id2label is None:
        id2label = {i: str(i) for i in range(num_labels)}
    if len(id2label) != num_labels:
        raise ValueError(f"`id2label` has {len(id2label)} entries but `num_labels` is {num_labels}.")
    id2label = {int(k): str(v) for k, v in id2label.items()}
    label2id = {v: k for k, v in id2label.items()}

    if architecture == "resnet":
        hidden_sizes = list(hidden_sizes or (32, 64, 128))
        depths = list(depths or [1] * len(hidden_sizes))
        kwargs = dict(
            embedding_size=hidden_sizes[0], layer_type="basic", downsample_in_first_stage=False
        )
        config_class = ResNetConfig
    else:
        hidden_sizes = list(hidden_sizes or (32, 64, 128))
        depths = list(depths or [2] * len(hidden_sizes))
        # layer_scale_init_value: ConvNeXt's 1e-6 starts every block near the identity, which suits deep
        # ImageNet models; a net of a few blocks learns faster from 1.0 (MNIST test accuracy after the
        # first of 6 epochs: 96.9% against 95.3%; about equal later).
        kwargs = dict(patch_size=4, num_stages=len(hidden_sizes), image_size=image_size, layer_scale_init_value=1.0)
        config_class = ConvNextConfig
    if len(depths) != len(hidden_sizes):
        raise ValueError(f"`depths` ({len(depths)} stages) and `hidden_sizes` ({len(hidden_sizes)}) must match.")
    kwargs.update(overrides)
    if noise_aware:
        image_mean = _as_channel_list(image_mean, num_channels, 0.5, "image_mean") + [0.5]  # the t plane
        image_std = _as_channel_list(image_std, num_channels, 0.5, "image_std") + [0.5]
        num_channels += 1
    config = config_class(
        num_channels=num_channels,
        hidden_sizes=hidden_sizes,
        depths=depths,
        id2label=id2label,
        label2id=label2id,
        **kwargs,
    )
    # Custom attributes: saved in config.json, so from_pretrained alone carries the preprocessing.
    config.image_size = image_size
    config.image_mean = _as_channel_list(image_mean, num_channels, 0.5, "image_mean")
    config.image_std = _as_channel_list(image_std, num_channels, 0.5, "image_std")
    if noise_aware:
        config.noise_aware = True
        config.num_train_timesteps = int(num_train_timesteps)
    return config


def _as_channel_list(values, num_channels: int, default: float, name: str) -> list[float]:
    if values is None:
        return [default] * num_channels
    if isinstance(values, (int, float)):
        return [float(values)] * num_channels
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * num_channels
    if len(values) != num_channels:
        raise ValueError(f"`{name}` must have 1 or {num_channels} (num_channels) values, got {values}.")
    return values


def load_classifier(path: str, argument: str = "--classifier", device=None, missing_ok: bool = False):
    """A saved transformers image classifier (a folder from ``train/train_classifier.py`` or a Hub id), in eval mode.

    Raises a ``ValueError`` naming ``argument`` when a local folder is missing or holds no ``config.json``;
    with ``missing_ok`` returns ``None`` instead. ``device``: where to put it (default: the CPU).
    """
    from pathlib import Path

    from transformers import AutoModelForImageClassification

    local = Path(path)
    looks_local = local.exists() or str(path).startswith((".", "/"))
    if missing_ok and looks_local and not (local / "config.json").exists():
        return None
    if local.exists() and not (local / "config.json").exists():
        raise ValueError(f"`{argument}` {path!r} holds no config.json; train one with train/train_classifier.py.")
    if not local.exists() and str(path).startswith((".", "/")):
        raise ValueError(
            f"`{argument}` {path!r} does not exist; train it with `python train/train_classifier.py "
            f"--dataset ../shared/datasets/mnist --output_dir {path}`."
        )
    model = AutoModelForImageClassification.from_pretrained(path).eval()
    return model if device is None else model.to(device)
