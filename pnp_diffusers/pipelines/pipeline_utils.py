"""What the pipelines share: one class-label rule, one input validator, image inputs, finiteness checks,
the image shape and mid-schedule (img2img / SDEdit) starts."""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..models import is_class_conditional, null_class_label, num_classes_of
from ..utils import labels_to_tensor


def check_finite(tensor: torch.Tensor, argument: str) -> None:
    """Raise a ``ValueError`` naming ``argument`` when ``tensor`` holds NaN or infinity."""
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"`{argument}` holds {bad} NaN or infinite values; every value must be finite.")


OUTPUT_TYPES = ("pil", "np", "pt")


def check_call_inputs(
    pipe,
    batch_size: Any,
    output_type: Any,
    latents: Any,
    generator: Any,
    callback_tensor_inputs: Sequence[str],
    output_types: tuple[str, ...] = OUTPUT_TYPES,
) -> None:
    """The input checks every pipeline call shares, each a ``ValueError`` naming the argument.

    Args:
        pipe: the pipeline (its ``unet`` gives the image shape (C, H, W), its ``_callback_tensor_inputs``
            the tensor names a callback may ask for).
        batch_size: must be a positive integer.
        output_type: must be one of ``output_types``.
        latents: None or a finite tensor of shape ``(batch_size, C, H, W)``.
        generator: None, a ``torch.Generator`` or a list of ``batch_size`` of them (one per sample).
        callback_tensor_inputs: names asked for by ``callback_on_step_end_tensor_inputs``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if isinstance(generator, list):
        if len(generator) != batch_size or not all(isinstance(g, torch.Generator) for g in generator):
            raise ValueError(f"`generator` as a list must hold one torch.Generator per image ({batch_size}), "
                             f"got {len(generator)} items.")
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator, a list of them or None, got {type(generator).__name__}.")
    if latents is not None:
        expected = (int(batch_size), *image_shape(pipe.unet))
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"`latents` must be a tensor of shape {expected} (batch_size, C, H, W), got {got}.")
        check_finite(latents, "latents")
    if output_type not in output_types:
        raise ValueError(f"`output_type` must be one of {output_types}, got {output_type!r}.")
    unknown = [k for k in callback_tensor_inputs if k not in pipe._callback_tensor_inputs]
    if unknown:
        raise ValueError(f"`callback_on_step_end_tensor_inputs` must be among {pipe._callback_tensor_inputs}, got {unknown}.")


def _as_tensor(image: Any, argument: str) -> torch.Tensor:
    """PIL image(s), a numpy array (H, W[, C]) / (B, H, W, C) or a tensor (C, H, W) / (B, C, H, W) -> (B, C, H, W)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = [image]
    if isinstance(image, (list, tuple)) and image and all(isinstance(i, Image.Image) for i in image):
        arrays = [np.asarray(i, dtype=np.float32) / 255.0 for i in image]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"`{argument}`: every PIL image must have the same size and mode.")
        image = np.stack(arrays)
        if image.ndim == 3:
            image = image[..., None]
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32)
        if array.ndim == 2:
            array = array[None, ..., None]
        elif array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"`{argument}` as a numpy array must be (H, W), (H, W, C) or (B, H, W, C), got {image.shape}.")
        return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    if isinstance(image, torch.Tensor):
        tensor = image.float()
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4:
            raise ValueError(f"`{argument}` as a tensor must be (C, H, W) or (B, C, H, W), got {tuple(image.shape)}.")
        return tensor
    raise ValueError(
        f"`{argument}` must be a PIL image, a list of them, a numpy array or a torch tensor, got {type(image).__name__}."
    )


def preprocess_image(image: Any, shape: Sequence[int], argument: str = "image") -> torch.Tensor:
    """Validate an input image batch and map it to model space.

    Args:
        image: values in [0, 1]: PIL image(s) (0-255 become [0, 1]), a numpy array ``(H, W)``, ``(H, W, C)`` or
            ``(B, H, W, C)``, or a tensor ``(C, H, W)`` or ``(B, C, H, W)``.
        shape: the model's ``(C, H, W)``.

    Returns:
        ``(B, C, H, W)`` float32 tensor in [-1, 1].
    """
    tensor = _as_tensor(image, argument)
    channels, height, width = (int(s) for s in shape)
    if tensor.shape[1] != channels or tuple(tensor.shape[2:]) != (height, width):
        raise ValueError(
            f"`{argument}` must have {channels} channel(s) and {height}x{width} pixels (the UNet's sample size), "
            f"got {tensor.shape[1]} channel(s) and {tensor.shape[2]}x{tensor.shape[3]}."
        )
    check_finite(tensor, argument)
    low, high = float(tensor.min()), float(tensor.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"`{argument}` values must lie in [0, 1] (an image, as pipelines return it), got [{low:.3g}, {high:.3g}]; "
            "for a model-space x in [-1, 1] pass (x + 1) / 2."
        )
    return tensor.clamp(0, 1) * 2 - 1


def check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or not 0 <= strength <= 1:
        raise ValueError(f"`strength` must be a number in [0, 1] (0 returns the image, 1 ignores it), got {strength!r}.")
    return float(strength)


def img2img_begin_index(scheduler: SchedulerMixin, num_inference_steps: int, strength: float) -> int:
    """Where an img2img / SDEdit run enters ``scheduler.timesteps`` (Meng et al. 2022), after ``set_timesteps``.

    As in diffusers' img2img pipelines: the last ``int(num_inference_steps * strength)`` noise levels are
    run, starting at ``timesteps[t_start * order]``, a level boundary for schedulers that call the model
    ``order`` times per level. Returns ``len(scheduler.timesteps)`` when no level is run (strength 0).
    """
    levels = getattr(scheduler, "num_inference_steps", None) or num_inference_steps
    init_levels = min(int(levels * strength), levels)
    t_start = max(levels - init_levels, 0)
    if init_levels == 0:
        return len(scheduler.timesteps)
    return t_start * int(getattr(scheduler, "order", 1))


def prepare_class_labels(unet, class_labels: Any, batch_size: int, device) -> torch.Tensor | None:
    """The one class-label rule of every pipeline: a ``(batch_size,)`` long tensor, or None for an unconditional UNet.

    For a class-conditional UNet (``num_class_embeds = num_classes + 1``): ``None`` is the null class (index
    ``num_classes``, the unconditional branch); an int, or a list/tensor of one label, is broadcast to the
    batch; otherwise one label per image, each a real class in ``[0, num_classes)``. The null class is
    reached through ``None`` only, so a label out of range is always an error. An unconditional UNet
    takes no labels.
    """
    if not is_class_conditional(unet):
        if class_labels is not None:
            raise ValueError("`class_labels` need a class-conditional UNet (built with `num_class_embeds`); "
                             "this UNet is unconditional.")
        return None
    if class_labels is None:
        return torch.full((batch_size,), null_class_label(unet), dtype=torch.long, device=device)
    labels = labels_to_tensor(class_labels, batch_size, broadcast_single=True)
    num_classes = num_classes_of(unet)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`class_labels` must lie in [0, {num_classes}) for this UNet ({num_classes} classes; the null class "
            f"{num_classes} is used by passing class_labels=None), got {labels.tolist()}."
        )
    return labels.to(device=device, dtype=torch.long).contiguous()


def image_shape(unet) -> tuple[int, int, int]:
    """(C, H, W) of the images a UNet2DModel takes (its ``in_channels`` and ``sample_size``)."""
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (int(unet.config.in_channels), int(height), int(width))
