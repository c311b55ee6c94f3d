"""Classifier guidance (Dhariwal & Nichol, NeurIPS 2021) for every scheduler of DiffusionSamplingPipeline.

A noise-aware classifier ``p_phi(y | x_t, t)`` (``train/train_classifier.py --noise_aware``) shifts the
model's noise prediction along its gradient (their Algorithm 2 / eq. 14, the score form)::

    eps_hat = eps_theta(x_t) - s * sqrt(1 - abar_t) * grad_{x_t} log p_phi(y | x_t, t)

so the sampler follows the score of ``p(x_t) p(y | x_t)^s``. Written on the model output, the shift works
for every scheduler (DDPM, DDIM, Langevin, predictor-corrector), each using the guided prediction as it
would the plain one, and it composes with classifier-free guidance (the CFG output is shifted). For
models that predict x0 or v the same shift is expressed in their parameterisation:

    x0_hat = x0 + s (1 - abar_t) / sqrt(abar_t) * g,        v_hat = v - s sqrt(1 - abar_t) / sqrt(abar_t) * g
"""

from __future__ import annotations

import math
import numbers

import torch

from ...classifiers import _check_classifier, classifier_logits, is_noise_aware
from ...utils import labels_to_tensor


def check_classifier_guidance(classifier, classifier_guidance_scale, class_labels) -> float | None:
    """Validate the classifier-guidance arguments; return the scale (None when guidance is off)."""
    if classifier is None:
        if classifier_guidance_scale is not None:
            raise ValueError("`classifier_guidance_scale` needs a `classifier` (a noise-aware classifier to guide with).")
        return None
    _check_classifier(classifier)
    if not is_noise_aware(classifier):
        raise ValueError(
            "`classifier` must be noise-aware (trained on x_t with `train/train_classifier.py --noise_aware`, e.g. "
            "pipelines/mnist-classifier-noise-aware); to steer with a classifier of clean images use "
            "ClassifierConstraint with PlugAndPlayPipeline or DPSPipeline."
        )
    scale = 1.0 if classifier_guidance_scale is None else classifier_guidance_scale
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"`classifier_guidance_scale` must be a finite number >= 0, got {classifier_guidance_scale!r}.")
    if class_labels is None:
        raise ValueError("`classifier` guidance needs `class_labels` (the class(es) to guide towards).")
    return float(scale)


def class_log_probability_gradient(classifier, sample: torch.Tensor, timestep, labels: torch.Tensor) -> torch.Tensor:
    """``grad_{x_t} log p_phi(y | x_t, t)`` (B, C, H, W), per sample (each sample's log-probability is its own)."""
    with torch.enable_grad():
        x = sample.detach().float().requires_grad_(True)
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(x.shape[0])
        log_probs = torch.log_softmax(classifier_logits(classifier, x, t).float(), dim=-1)
        chosen = log_probs.gather(1, labels.to(x.device).long().view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(chosen, x)
    return grad


def classifier_guided_output(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    timestep,
    labels: torch.Tensor,
    classifier,
    scale: float,
    scheduler,
) -> torch.Tensor:
    """The model output (B, C, H, W) shifted by classifier guidance, in the scheduler's ``prediction_type``.

    Args:
        model_output: the (CFG-combined) UNet output at ``(sample, timestep)``.
        sample: (B, C, H, W) x_t, the UNet's input.
        timestep: the diffusion timestep of ``sample`` (an index into ``scheduler.alphas_cumprod``).
        labels: (B,) long, the classes to guide towards.
        classifier: a noise-aware transformers classifier.
        scale: s >= 0.
        scheduler: gives ``alphas_cumprod`` and ``config.prediction_type``.
    """
    big_t = len(scheduler.alphas_cumprod)
    if int(classifier.config.num_train_timesteps) != big_t:
        raise ValueError(f"`classifier` was trained for T = {classifier.config.num_train_timesteps} timesteps but the "
                         f"scheduler has {big_t}.")
    if scale == 0:
        return model_output
    grad = class_log_probability_gradient(classifier, sample, timestep, labels).to(model_output.dtype)
    alpha_prod = scheduler.alphas_cumprod[int(timestep)].to(device=model_output.device, dtype=model_output.dtype)
    sigma = (1 - alpha_prod).sqrt()
    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
    if prediction_type == "epsilon":
        shift = -scale * sigma * grad  # Dhariwal & Nichol 2021, eq. 14
    elif prediction_type == "sample":
        shift = scale * (1 - alpha_prod) / alpha_prod.sqrt() * grad
    elif prediction_type == "v_prediction":
        shift = -scale * sigma / alpha_prod.sqrt() * grad
    else:
        raise ValueError(f"`scheduler.config.prediction_type` {prediction_type!r} is not supported by classifier guidance.")
    return model_output + shift


def classifier_target_labels(classifier, class_labels, batch_size: int, device) -> torch.Tensor:
    """The classes to guide towards, (batch_size,) long in [0, classifier.config.num_labels): an int or one label broadcasts."""
    labels = labels_to_tensor(class_labels, batch_size, broadcast_single=True)
    num_labels = int(classifier.config.num_labels)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"`class_labels` must lie in [0, {num_labels}) for this classifier, got {labels.tolist()}.")
    return labels.to(device)
