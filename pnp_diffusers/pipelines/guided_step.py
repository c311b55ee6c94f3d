"""One reverse-diffusion step guided by a constraint: the DPS step (Chung et al., ICLR 2023, Algorithm 1).

Used for every step of DPS (:func:`~pnp_diffusers.pipelines.plug_and_play.method_dps.dps_sample`, run by
method "dps" and by :class:`~pnp_diffusers.DPSPipeline`) and by the plug-and-play prior method's guided
final pass, so the update is written once::

    x0_hat  = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)     (Ho et al. 2020, eq. 15)
    x_{t-1} = scheduler.step(eps_theta, t, x_t)                              (the unguided step, line 4-6)
    x_{t-1} -= zeta_t * grad_{x_t} L(clip(x0_hat))                           (line 7)

with ``zeta_t = guidance_scale / sqrt(|L|)`` per sample ("loss-norm", the gradient of the residual's
norm rather than its square, as in the authors' code) or ``guidance_scale`` ("constant"). Samples never
couple: each sample's loss is its own and the gradient of their sum is per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..constraints import constraint_on_denoised, masked_gradient
from ..utils import broadcast_to_sample, dps_step_size, epsilon_from_model_output


@dataclass
class GuidedStepOutput:
    """What one guided step gives back.

    Attributes:
        prev_sample: (B, C, H, W) x_{t-1}, guided, float32.
        pred_original_sample: (B, C, H, W) x0_hat of x_t (unclipped), or None without a constraint.
        loss: (B,) the constraint on clip(x0_hat), or None without a constraint.
        active: (B,) bool, samples still guided (a non-finite constraint stops a sample's guidance).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None
    loss: torch.Tensor | None
    active: torch.Tensor


def guided_step(
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    x: torch.Tensor,
    timestep: int,
    constraint=None,
    guidance_scale: float = 0.0,
    step_size_rule: str = "loss-norm",
    active: torch.Tensor | None = None,
    generator=None,
    prediction_type: str = "epsilon",
) -> GuidedStepOutput:
    """One step of ``scheduler`` from ``x`` at ``timestep``, moved down the constraint's gradient on x0_hat.

    Args:
        model_fn: ``(x_t (B, C, H, W), t (B,) long) -> model output (B, C, H, W)`` float32, what the
            scheduler's ``prediction_type`` says (eps, x0 or v).
        scheduler: a diffusers scheduler with ``alphas_cumprod`` and a DDPM-style ``step`` (DDPM, DDIM).
        x: (B, C, H, W) x_t.
        timestep: t, an entry of ``scheduler.timesteps``.
        constraint: callable ``images in [-1, 1] (B, C, H, W) -> (B,)``; None = an unguided step.
        guidance_scale: zeta (>= 0); 0 evaluates the constraint (if given) without its gradient.
        step_size_rule: "loss-norm" or "constant" (see the module docstring).
        active: (B,) bool of samples still guided (default: all).
        generator: the user's generator(s) for the step's noise.
        prediction_type: "epsilon", "sample" or "v_prediction".

    Returns:
        :class:`GuidedStepOutput`.
    """
    batch = x.shape[0]
    active = torch.ones(batch, dtype=torch.bool, device=x.device) if active is None else active
    guided = constraint is not None and guidance_scale > 0
    t_batch = torch.full((batch,), int(timestep), dtype=torch.long, device=x.device)
    loss = x0_hat = grad = None
    with torch.set_grad_enabled(guided):
        x_in = x.detach().requires_grad_(guided)
        output = model_fn(x_in, t_batch)
        if constraint is not None:
            alpha_prod = scheduler.alphas_cumprod[int(timestep)].to(device=x.device, dtype=torch.float32)
            eps = epsilon_from_model_output(output, x_in, alpha_prod, prediction_type)
            loss, x0_hat = constraint_on_denoised(constraint, x_in, eps, alpha_prod)
            active = active & torch.isfinite(loss)
            if guided and active.any():
                grad = masked_gradient(loss, x_in, active)
    prev = scheduler.step(output.detach(), timestep, x.detach(), generator=generator).prev_sample.float()
    if grad is not None:
        zeta = torch.where(active, dps_step_size(loss, guidance_scale, step_size_rule), torch.zeros_like(loss))
        prev = prev - broadcast_to_sample(zeta, prev) * grad  # DPS Algorithm 1, line 7
    return GuidedStepOutput(
        prev_sample=prev.detach(),
        pred_original_sample=None if x0_hat is None else x0_hat.detach(),
        loss=None if loss is None else loss.detach(),
        active=active,
    )
