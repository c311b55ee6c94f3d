"""Method "dps": Diffusion Posterior Sampling (Chung, Kim, Mccann, Klasky, Ye, ICLR 2023).

Sampling-time guidance, the comparison point for the optimisation methods: run the ordinary reverse
process and after every step move the sample down the gradient of the constraint evaluated on
Tweedie's estimate of the clean image (DPS Algorithm 1), one shared step
(:func:`~pnp_diffusers.pipelines.guided_step.guided_step`)::

    x0_hat  = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)        (Ho et al. 2020, eq. 15)
    x_{t-1} = scheduler.step(eps_theta, t, x_t)                                 (the unguided step)
    x_{t-1} -= zeta_t * grad_{x_t} L(clip(x0_hat))

The gradient goes through the UNet (one forward + one backward per guided step). DPS scales the step
by the measurement residual: with ``L = ||y - A(x0_hat)||^2`` it uses ``zeta_t = zeta' / ||y - A(x0_hat)||``
(their Sec. 4 / code: the gradient of the norm). ``step_size_rule="loss-norm"`` (default) does the same
for any constraint: ``zeta_t = guidance_scale / sqrt(|L|)`` per sample. For a squared-norm loss that is
exactly DPS; :class:`~pnp_diffusers.constraints.MaskedObservation` averages over the ``n`` observed
pixels, so ``guidance_scale = zeta' * sqrt(n) / 2`` reproduces a DPS ``zeta'``. For other constraints
the rule is kept by analogy: ``-log p(y|x)`` of a classifier plays the role of a squared distance (for
a Gaussian likelihood it *is* ``||r||^2 / 2 sigma^2``), so the step shrinks with ``sqrt(-log p)`` as the
classifier becomes confident; a negative loss (``SymmetryConstraint(mode="dissimilar")``) uses ``|L|``;
``|L|`` is floored at ``1e-8``. ``step_size_rule="constant"`` uses ``zeta_t = guidance_scale`` unscaled.

The constraint sees ``x0_hat`` clipped to [-1, 1] by a straight-through clamp: the values are clipped
(the constraint's contract and the paper's ``clip``) but the gradient passes as if unclipped, because
early in sampling ``x0_hat`` lies mostly outside [-1, 1] and a hard clamp would zero its gradient.

Two levers shape the guidance over the steps (the step-size schedule DPS leaves open):

- ``guidance_end``: the fraction of the steps, from the first, that are guided; the rest are a plain
  unguided clean-up by the prior (no backward passes). Like diffusers' ``control_guidance_end``.
  The label of a digit is settled at high noise; guiding the last, nearly clean steps mostly adds
  stroke detail the guide classifier likes and the data does not have.
- ``guidance_schedule``: ``"constant"`` zeta on every guided step (the paper), or ``"linear"``, zeta
  decaying linearly from ``guidance_scale`` at the first step to ``guidance_scale / n`` at the last
  guided one (n the number of guided steps).

The loop is :func:`dps_sample`, shared by ``PlugAndPlayPipeline(...)(constraint, method="dps")`` (DDPM
ancestral steps on the prior's noise schedule, the paper's sampler) and
:class:`~pnp_diffusers.DPSPipeline` (any DDPM-style scheduler it holds, DDIM included): for the same
generator, settings and scheduler the two give identical images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDPMScheduler

from ...utils import DPS_STEP_SIZE_RULES as STEP_SIZE_RULES
from ..guided_step import guided_step
from .registry import MethodResult, MethodSettings, PlugAndPlayMethod, check_positive_int, check_real, register_method

GUIDANCE_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class DPSSettings(MethodSettings):
    """Settings of method "dps" (defaults: the "dps" preset, ``benchmarks/eval_pnp.py``'s DPS row).

    Attributes:
        num_inference_steps: reverse (DDPM ancestral) steps, each one UNet forward, plus one backward
            while guided. 200 is one fifth of the paper's 1000 steps.
        guidance_scale: zeta >= 0, the guidance strength (0 = unguided sampling from the prior).
        step_size_rule: "loss-norm" (DPS: ``zeta / sqrt(|L|)`` per sample) or "constant" (zeta).
        guidance_end: fraction in [0, 1] of the steps, from the first, that are guided; the others are
            an unguided clean-up (1 = every step, the paper).
        guidance_schedule: "constant" (the paper) or "linear" (zeta decays to zeta / n at the n-th,
            last guided step).
    """

    num_inference_steps: int = 200
    guidance_scale: float = 1.0
    step_size_rule: str = "loss-norm"
    guidance_end: float = 1.0
    guidance_schedule: str = "constant"

    def validate(self, num_train_timesteps: int) -> None:
        check_positive_int(self.num_inference_steps, "num_inference_steps")
        if self.num_inference_steps > num_train_timesteps:
            raise ValueError(f"`num_inference_steps` ({self.num_inference_steps}) cannot exceed the "
                             f"{num_train_timesteps} training timesteps.")
        if check_real(self.guidance_scale, "guidance_scale") < 0:
            raise ValueError(f"`guidance_scale` must be a finite number >= 0, got {self.guidance_scale!r}.")
        if self.step_size_rule not in STEP_SIZE_RULES:
            raise ValueError(f"`step_size_rule` must be one of {STEP_SIZE_RULES}, got {self.step_size_rule!r}.")
        if not 0 <= check_real(self.guidance_end, "guidance_end") <= 1:
            raise ValueError(f"`guidance_end` must be a fraction of the steps in [0, 1], got {self.guidance_end!r}.")
        if self.guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}, got {self.guidance_schedule!r}.")


# 200 DDPM steps at zeta 1, every step guided: what benchmarks/eval_pnp.py runs for its DPS row
# (--dps_steps 200 --dps_scale 1.0), one fifth of the paper's 1000 steps.
DPS_SETTINGS = DPSSettings()


def guided_step_count(num_steps: int, guidance_end: float) -> int:
    """How many of ``num_steps`` steps, from the first, are guided: ``round(guidance_end * num_steps)``."""
    return int(round(float(guidance_end) * num_steps))


def guidance_scale_at(step: int, num_guided: int, guidance_scale: float, schedule: str) -> float:
    """zeta of step ``step`` (0-based): ``guidance_scale`` ("constant") or ``guidance_scale * (n - step) / n``
    ("linear") for ``step < n = num_guided``, and 0 after (the unguided clean-up)."""
    if step >= num_guided:
        return 0.0
    if schedule == "linear":
        return float(guidance_scale) * (num_guided - step) / num_guided
    return float(guidance_scale)


def unet_model_fn(unet, class_labels: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x_t (B, C, H, W), t (B,) long) -> output (B, C, H, W)`` float32: the UNet's first C channels
    (so learned-variance models work), what the scheduler's ``prediction_type`` says (eps, x0 or v)."""
    def model_fn(x_t: torch.Tensor, t_batch: torch.Tensor) -> torch.Tensor:
        return unet(x_t.to(unet.dtype), t_batch, class_labels=class_labels).sample.float()[:, : x_t.shape[1]]

    return model_fn


@dataclass
class DPSTrace:
    """What :func:`dps_sample` returns.

    Attributes:
        images: (B, C, H, W) final x_0 in model space (about [-1, 1], not clipped), float32.
        active: (B,) bool, samples still guided at the end (a non-finite constraint stops a sample's guidance).
        guided_steps: (B,) long, guided steps each sample received.
        history: (num_inference_steps, B) the constraint on x0_hat at every step, on the CPU (NaN once stopped).
        unet_forward_passes, unet_backward_passes: UNet passes per sample.
    """

    images: torch.Tensor
    active: torch.Tensor
    guided_steps: torch.Tensor
    history: torch.Tensor
    unet_forward_passes: int
    unet_backward_passes: int


def dps_sample(
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    constraint,
    noise: torch.Tensor,
    settings: DPSSettings,
    generator=None,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    progress_bar=None,
) -> DPSTrace:
    """DPS: ``settings.num_inference_steps`` steps of ``scheduler`` from ``noise``, each a :func:`guided_step`.

    Args:
        model_fn: from :func:`unet_model_fn` (run it frozen: the gradient is wanted for x_t only).
        scheduler: a diffusers scheduler with ``alphas_cumprod`` and a DDPM-style ``step`` (DDPM, DDIM);
            ``set_timesteps`` is called here.
        constraint: callable ``images (B, C, H, W) in [-1, 1] -> (B,)`` (lower = better).
        noise: (B, C, H, W) x_T ~ N(0, I), float32 (scaled here by the scheduler's ``init_noise_sigma``).
        settings: validated :class:`DPSSettings`.
        generator: the user's ``torch.Generator`` (or one per sample) for the step noise.
        callback: ``(i, t, x_{t-1} (B, C, H, W), x0_hat (B, C, H, W)) -> replacement x_{t-1} or None``,
            called after every step.
        progress_bar: a pipeline's ``progress_bar`` (``progress_bar(total=n)`` context manager).

    Returns:
        :class:`DPSTrace`.
    """
    x = noise * float(getattr(scheduler, "init_noise_sigma", 1.0))
    batch_size, device = x.shape[0], x.device
    scheduler.set_timesteps(settings.num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
    guidance_scale = settings.guidance_scale
    num_guided = guided_step_count(len(timesteps), settings.guidance_end) if guidance_scale > 0 else 0
    active = torch.ones(batch_size, dtype=torch.bool, device=device)
    guided_steps = torch.zeros(batch_size, dtype=torch.long, device=device)
    history = torch.full((len(timesteps), batch_size), float("nan"))
    with progress_bar(total=len(timesteps)) as bar:
        for i, t in enumerate(timesteps):
            zeta = guidance_scale_at(i, num_guided, guidance_scale, settings.guidance_schedule)
            step = guided_step(model_fn, scheduler, x, t, constraint, zeta, settings.step_size_rule,
                               active=active, generator=generator, prediction_type=prediction_type)
            x, active = step.prev_sample, step.active
            history[i] = torch.where(active, step.loss, torch.nan).cpu()
            if zeta > 0:
                guided_steps += active.long()
            if callback is not None:
                replacement = callback(i, int(t), x, step.pred_original_sample)
                x = x if replacement is None else replacement
            bar.update()
    return DPSTrace(x, active, guided_steps, history, len(timesteps), num_guided)


def run_dps(pipe, constraint, start, settings: DPSSettings, class_labels, generator, callback) -> MethodResult:
    """DPS from x_T = ``start`` (B, C, H, W) with DDPM ancestral steps on the prior's noise schedule.

    The result's ``iterations`` are the guided steps each sample received, ``prior_loss`` is 0 (DPS
    optimises no prior term) and ``loss_history`` the constraint on x0_hat at every step.
    """
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    trace = dps_sample(unet_model_fn(pipe.unet, class_labels), scheduler, constraint, start, settings, generator,
                       lambda i, t, x, x0_hat: callback(i, t, x), pipe.progress_bar)
    no_prior = torch.zeros(start.shape[0], device=start.device)
    return MethodResult(trace.images, no_prior, trace.guided_steps, ~trace.active, trace.history,
                        trace.unet_forward_passes, trace.unet_backward_passes)


register_method(PlugAndPlayMethod(
    "dps", DPSSettings, run_dps, default_preset="dps", presets={"dps": DPS_SETTINGS},
    description="Diffusion Posterior Sampling (Chung et al. 2023): DDPM steps guided by the constraint on x0_hat",
))
