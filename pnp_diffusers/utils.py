"""Small tensor helpers shared by the schedulers and pipelines.

All functions are pure: no state, no randomness (noise is always drawn by the caller with the
user's ``torch.Generator``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
DPS_STEP_SIZE_RULES = ("loss-norm", "constant")  # see DPSPipeline
LOSS_FLOOR = 1e-8  # |L| floor of the "loss-norm" step size


def broadcast_to_sample(values: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
    """Reshape a scalar or a per-sample vector ``(B,)`` so that it broadcasts against ``sample`` ``(B, ...)``."""
    values = torch.as_tensor(values, device=sample.device, dtype=sample.dtype)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (sample.ndim - 1)))


def per_sample_norm(tensor: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each sample of a ``(B, ...)`` tensor, shape ``(B,)``."""
    return torch.linalg.vector_norm(tensor.reshape(tensor.shape[0], -1), dim=1)


def epsilon_from_model_output(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    alpha_prod_t: torch.Tensor | float,
    prediction_type: str,
) -> torch.Tensor:
    """The noise ``eps`` a VP diffusion model predicts, whatever it was trained to output.

    With ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020, Eq. 4):

    - ``"epsilon"``: the output is ``eps``;
    - ``"sample"``: the output is ``x_0``, so ``eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)``;
    - ``"v_prediction"`` (Salimans & Ho 2022): ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``,
      so ``eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t``.

    Args:
        model_output: ``(B, C, H, W)`` model prediction.
        sample: ``(B, C, H, W)`` noisy sample ``x_t``.
        alpha_prod_t: ``abar_t``, a scalar or ``(B,)``.
        prediction_type: one of ``PREDICTION_TYPES``.
    """
    alpha_prod_t = broadcast_to_sample(alpha_prod_t, sample)
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "sample":
        return (sample - alpha_prod_t.sqrt() * model_output) / (1 - alpha_prod_t).sqrt()
    if prediction_type == "v_prediction":
        return alpha_prod_t.sqrt() * model_output + (1 - alpha_prod_t).sqrt() * sample
    raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")


def score_from_epsilon(epsilon: torch.Tensor, alpha_prod_t: torch.Tensor | float) -> torch.Tensor:
    """Score of the noisy marginal, ``grad log p_t(x_t) = -eps / sqrt(1 - abar_t)`` (Song et al. 2021, Eq. 17 for VP)."""
    return -epsilon / broadcast_to_sample(1 - torch.as_tensor(alpha_prod_t), epsilon).sqrt()


def predict_original_sample(
    sample: torch.Tensor, epsilon: torch.Tensor, alpha_prod_t: torch.Tensor | float
) -> torch.Tensor:
    """Tweedie's estimate ``E[x_0 | x_t] = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (Ho et al. 2020, Eq. 15)."""
    alpha_prod_t = broadcast_to_sample(alpha_prod_t, sample)
    return (sample - (1 - alpha_prod_t).sqrt() * epsilon) / alpha_prod_t.sqrt()


def straight_through_clip(x: torch.Tensor, limit: float = 1.0) -> torch.Tensor:
    """``clamp(x, -limit, limit)`` in the forward pass, the identity in the backward pass."""
    return x + (x.clamp(-limit, limit) - x).detach()


def dps_step_size(loss: torch.Tensor, guidance_scale: float, rule: str) -> torch.Tensor:
    """Per-sample step size zeta_t (B,): ``guidance_scale / sqrt(max(|L|, 1e-8))`` ("loss-norm") or constant."""
    if rule == "constant":
        return torch.full_like(loss, float(guidance_scale))
    return float(guidance_scale) / loss.detach().abs().clamp_min(LOSS_FLOOR).sqrt()


def slerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical linear interpolation between two tensors of the same shape (Shoemake 1985).

    Gaussian noise in high dimension concentrates on a sphere, so the straight line between two noises
    passes through low-norm points the model never saw; slerp keeps the norm (Song et al. 2021, DDIM, Sec. 5.3).
    Computed in float64 so that weights 0 and 1 give back ``start`` and ``end`` exactly.

    Args:
        start, end: tensors of identical shape ``S``.
        weights: ``(N,)`` interpolation weights in [0, 1].
        dot_threshold: above this cosine the two are almost parallel and plain linear interpolation is used.

    Returns:
        ``(N, *S)`` tensor, one interpolant a weight, in the dtype of ``start``.
    """
    if start.shape != end.shape:
        raise ValueError(f"`start` and `end` must have the same shape, got {tuple(start.shape)} and {tuple(end.shape)}.")
    a, b = start.double().flatten(), end.double().flatten()
    w = torch.as_tensor(weights, dtype=torch.float64, device=a.device).reshape(-1, 1)
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-30)
    if cos.abs() > dot_threshold:
        out = (1 - w) * a + w * b
    else:
        theta = torch.arccos(cos)
        # coefficients first: sin(theta) / sin(theta) is exactly 1, so the endpoints are exact
        coef_start = torch.sin((1 - w) * theta) / torch.sin(theta)
        coef_end = torch.sin(w * theta) / torch.sin(theta)
        out = coef_start * a + coef_end * b
    return out.reshape(-1, *start.shape).to(start.dtype)


def image_grid(images: torch.Tensor, rows: int | None = None, padding: int = 0, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``(B, C, H, W)`` images row by row into one ``(C, rows*H + pads, cols*W + pads)`` image.

    ``rows`` defaults to about ``sqrt(B)``; columns are ``ceil(B / rows)`` and missing cells are ``pad_value``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"`images` must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}.")
    batch, channels, height, width = images.shape
    rows = rows or max(1, int(round(batch**0.5)))
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"`rows` must be a positive integer, got {rows!r}.")
    cols = -(-batch // rows)
    grid = images.new_full(
        (channels, rows * height + (rows - 1) * padding, cols * width + (cols - 1) * padding), pad_value
    )
    for index in range(batch):
        row, col = divmod(index, cols)
        top, left = row * (height + padding), col * (width + padding)
        grid[:, top : top + height, left : left + width] = images[index]
    return grid


def save_image_grid(images: torch.Tensor, path, rows: int | None = None, padding: int = 2):
    """Save ``(B, C, H, W)`` images in [0, 1] (a pipeline's ``output_type="pt"``) as one PNG grid; returns the PIL image.

    ``rows=1`` gives a strip. Grey images (C = 1) are saved as mode "L", colour ones as "RGB".
    """
    import os

    from PIL import Image

    grid = image_grid(images.detach().float().clamp(0, 1).cpu(), rows=rows, padding=padding)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    image.save(path)
    return image


def postprocess_images(samples: torch.Tensor, output_type: str):
    """Model-space samples (B, C, H, W), about [-1, 1], to images in [0, 1]: ``"pt"`` (B, C, H, W) tensor on
    the samples' device, ``"np"`` (B, H, W, C) float array, or ``"pil"`` list of PIL images."""
    from diffusers import DiffusionPipeline

    images = (samples.detach().float() / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return images
    array = images.cpu().permute(0, 2, 3, 1).numpy()
    if output_type == "pil":
        return DiffusionPipeline.numpy_to_pil(array)
    return array


def labels_to_tensor(
    class_labels: int | Sequence[int] | torch.Tensor, batch_size: int, broadcast_single: bool = False
) -> torch.Tensor:
    """An int, list or tensor of class indices as a ``(batch_size,)`` long tensor (an int is broadcast).

    With ``broadcast_single`` a list or tensor of one label is broadcast too; otherwise it must hold
    one label per image. Raises a ValueError naming ``class_labels`` for anything else.
    """
    if isinstance(class_labels, bool):
        raise ValueError(f"`class_labels` must be ints, got {class_labels!r}.")
    if isinstance(class_labels, (int, np.integer)):
        return torch.full((batch_size,), int(class_labels), dtype=torch.long)
    if isinstance(class_labels, torch.Tensor):
        if class_labels.is_floating_point() or class_labels.is_complex() or class_labels.dtype == torch.bool:
            raise ValueError(f"`class_labels` must be an integer tensor, got dtype {class_labels.dtype}.")
        labels = class_labels.reshape(-1).long() if class_labels.ndim == 0 else class_labels.long()
        if class_labels.ndim == 0:
            labels = labels.expand(batch_size).clone()
    elif isinstance(class_labels, (list, tuple)):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in class_labels):
            raise ValueError(f"`class_labels` must be a list of ints, got {class_labels!r}.")
        labels = torch.tensor([int(c) for c in class_labels], dtype=torch.long)
    else:
        raise ValueError(f"`class_labels` must be an int, a list of ints or a tensor, got {type(class_labels).__name__}.")
    if broadcast_single and labels.ndim == 1 and labels.shape[0] == 1:
        labels = labels.expand(batch_size).clone()
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"`class_labels` must hold one label per image ({batch_size}), got shape {tuple(labels.shape)}.")
    return labels
