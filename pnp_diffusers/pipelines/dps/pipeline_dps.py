"""Diffusion Posterior Sampling (Chung, Kim, Mccann, Klasky, Ye, ICLR 2023) with plug-and-play constraints.

Sampling-time guidance, the comparison point for :class:`PlugAndPlayPipeline`: run the ordinary
reverse process (DDPM ancestral or DDIM steps of ``self.scheduler``) and after every step move the
sample down the gradient of the constraint evaluated on Tweedie's estimate of the clean image
(DPS Algorithm 1)::

    x0_hat = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)        (Ho et al. 2020, eq. 15)
    x_{t-1} = scheduler.step(eps_theta, t, x_t)                                 (the unguided step)
    x_{t-1} -= zeta_t * grad_{x_t} L(x0_hat(x_t))

The gradient goes through the UNet (one forward + one backward per step). DPS scales the step by the
measurement residual: with ``L = ||y - A(x0_hat)||^2`` it uses ``zeta_t = zeta' / ||y - A(x0_hat)||``
(their Sec. 4 / code: the gradient of the norm). Here ``step_size_rule="loss-norm"`` (default) does the
same for any constraint: ``zeta_t = guidance_scale / sqrt(|L|)`` per sample. For a squared-norm loss
that is exactly DPS; our :class:`MaskedObservation` averages over the ``n`` observed pixels, so
``guidance_scale = zeta' * sqrt(n) / 2`` reproduces a DPS ``zeta'``. For other constraints the rule is
kept by analogy: ``-log p(y|x)`` of a classifier plays the role of a squared distance (for a Gaussian
likelihood it *is* ``||r||^2 / 2 sigma^2``), so the step shrinks with ``sqrt(-log p)`` as the classifier
becomes confident; a negative loss (``SymmetryConstraint(mode="dissimilar")``) uses ``|L|``; ``|L|`` is
floored at ``1e-8``. ``step_size_rule="constant"`` uses ``zeta_t = guidance_scale`` unscaled.

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
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ...constraints import as_constraint, evaluate_constraint, frozen_module
from ...hub import RemoteCodePipelineMixin
from ...utils import DPS_STEP_SIZE_RULES as STEP_SIZE_RULES
from ...utils import PREDICTION_TYPES
from ..guided_step import guided_step
from ..pipeline_utils import OUTPUT_TYPES, check_call_inputs, image_shape, prepare_class_labels
from ..plug_and_play.pipeline_plug_and_play import output_images

GUIDANCE_SCHEDULES = ("constant", "linear")


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


@dataclass
class DPSPipelineOutput(BaseOutput):
    """Output of :class:`DPSPipeline`.

    Attributes:
        images: B images, "pil" list / "np" (B, H, W, C) in [0, 1] / "pt" (B, C, H, W) in [0, 1].
        constraint_value: (B,) the constraint on the final images (clipped to [-1, 1]).
        nan_stopped: (B,) bool, samples whose constraint became NaN/inf: guidance stopped for them
            from that step on (they finish as unguided samples).
        guided_steps: (B,) long, the number of guided steps each sample received.
        constraint_history: (num_steps, B) the constraint on x0_hat at every step (NaN once stopped).
        unet_forward_passes: UNet forward passes per sample.
        unet_backward_passes: UNet backward passes per sample.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    constraint_value: torch.Tensor
    nan_stopped: torch.Tensor
    guided_steps: torch.Tensor
    constraint_history: torch.Tensor
    unet_forward_passes: int
    unet_backward_passes: int


class DPSPipeline(RemoteCodePipelineMixin, DiffusionPipeline):
    r"""Diffusion Posterior Sampling: reverse diffusion guided by a constraint's gradient on x0_hat.

    Args:
        unet: a (class-conditional or not) :class:`UNet2DModel` DDPM denoiser.
        scheduler: the sampler, a :class:`DDPMScheduler` (ancestral, the DPS paper's) or
            :class:`DDIMScheduler` (any scheduler with ``alphas_cumprod`` and a DDPM-style ``step``).

    Example::

        pipe = DPSPipeline.from_pretrained("pipelines/ddpm-mnist")
        out = pipe(MaskedObservation(digit, mask), batch_size=4, num_inference_steps=250, guidance_scale=10.0)
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "pred_original_sample"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def _default_model_card(self) -> dict:
        """The card ``save_pretrained`` writes when none is given: how to load and call this pipeline."""
        card = super()._default_model_card()
        card.pop("class_name", None)  # the generic usage snippet calls the pipeline without a constraint
        card["description"] += (
            "\n\nDiffusion Posterior Sampling (Chung et al., ICLR 2023) with plug-and-play constraints:\n\n"
            "```python\n"
            "import torch\n"
            "from pnp_diffusers import DPSPipeline, SymmetryConstraint\n\n"
            'pipe = DPSPipeline.from_pretrained("PATH_OR_REPO_ID")\n'
            'out = pipe(SymmetryConstraint("horizontal", "similar"), batch_size=8, num_inference_steps=250,\n'
            "           generator=torch.Generator().manual_seed(0))\n"
            "```"
        )
        return card

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the UNet's images."""
        return image_shape(self.unet)

    def check_inputs(
        self, constraint, batch_size, num_inference_steps, guidance_scale, step_size_rule, output_type,
        latents, generator, callback_tensor_inputs, guidance_end=1.0, guidance_schedule="constant",
    ):
        if not callable(constraint):
            raise ValueError(f"`constraint` must be callable (x -> loss of shape (B,)), got {type(constraint).__name__}.")
        for name, value in (("batch_size", batch_size), ("num_inference_steps", num_inference_steps)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) or not (
            math.isfinite(guidance_scale) and guidance_scale >= 0
        ):
            raise ValueError(f"`guidance_scale` must be a finite number >= 0, got {guidance_scale!r}.")
        if step_size_rule not in STEP_SIZE_RULES:
            raise ValueError(f"`step_size_rule` must be one of {STEP_SIZE_RULES}, got {step_size_rule!r}.")
        if isinstance(guidance_end, bool) or not isinstance(guidance_end, numbers.Real) or not 0 <= guidance_end <= 1:
            raise ValueError(f"`guidance_end` must be a fraction of the steps in [0, 1], got {guidance_end!r}.")
        if guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"`guidance_schedule` must be one of {GUIDANCE_SCHEDULES}, got {guidance_schedule!r}.")
        check_call_inputs(self, batch_size, output_type, latents, generator, callback_tensor_inputs, OUTPUT_TYPES)
        if getattr(self.scheduler, "alphas_cumprod", None) is None:
            raise ValueError(f"`scheduler` must have `alphas_cumprod` (DDPM/DDIM), got {type(self.scheduler).__name__}.")
        prediction_type = getattr(self.scheduler.config, "prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`scheduler.config.prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")

    def __call__(
        self,
        constraint: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 1,
        num_inference_steps: int = 1000,
        guidance_scale: float = 1.0,
        step_size_rule: str = "loss-norm",
        guidance_end: float = 1.0,
        guidance_schedule: str = "constant",
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[["DPSPipeline", int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> DPSPipelineOutput | tuple:
        r"""Sample ``batch_size`` images guided by ``constraint``.

        Args:
            constraint: a :mod:`pnp_diffusers.constraints` object or any callable mapping images
                (B, C, H, W) in [-1, 1] to a per-sample loss (B,) (lower = better).
            batch_size: number of independent samples.
            num_inference_steps: reverse steps (each: one UNet forward + backward).
            guidance_scale: zeta, the guidance strength (0 = unguided sampling).
            step_size_rule: "loss-norm" (DPS: zeta / sqrt(|L|) per sample) or "constant" (zeta).
            guidance_end: fraction in [0, 1] of the steps, from the first, that are guided; the others
                are an unguided clean-up (1 = every step, the paper).
            guidance_schedule: "constant" (the paper) or "linear" (zeta decays to zeta / n at the n-th, last guided step).
            class_labels: class(es) for a class-conditional UNet; None = the null class.
            generator: ``torch.Generator`` or a list of ``batch_size``; draws x_T and the step noise.
            latents: optional x_T, (B, C, H, W).
            output_type: "pil", "np" or "pt".
            return_dict: return a :class:`DPSPipelineOutput` (True) or its fields as a tuple.
            callback_on_step_end: ``fn(pipe, i, t, callback_kwargs) -> dict`` after every step, with
                "latents" (x_{t-1}) and/or "pred_original_sample" (x0_hat); a returned "latents" replaces x.
            callback_on_step_end_tensor_inputs: names passed to the callback (default ["latents"]).

        Returns:
            :class:`DPSPipelineOutput`, or a tuple of its fields when ``return_dict`` is False.
        """
        callback_tensor_inputs = ["latents"] if callback_on_step_end_tensor_inputs is None else list(callback_on_step_end_tensor_inputs)
        self.check_inputs(
            constraint, batch_size, num_inference_steps, guidance_scale, step_size_rule, output_type,
            latents, generator, callback_tensor_inputs, guidance_end, guidance_schedule,
        )
        constraint = as_constraint(constraint)
        device = self._execution_device
        labels = prepare_class_labels(self.unet, class_labels, batch_size, device)
        shape = (batch_size, *self.image_shape)
        if latents is None:
            x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        else:
            x = latents.to(device=device, dtype=torch.float32)
        x = x * float(getattr(self.scheduler, "init_noise_sigma", 1.0))
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        prediction_type = getattr(self.scheduler.config, "prediction_type", "epsilon")
        channels = shape[1]

        def model_fn(x_t: torch.Tensor, t_batch: torch.Tensor) -> torch.Tensor:
            return self.unet(x_t.to(self.unet.dtype), t_batch, class_labels=labels).sample.float()[:, :channels]

        num_guided = guided_step_count(len(timesteps), guidance_end) if guidance_scale > 0 else 0
        active = torch.ones(batch_size, dtype=torch.bool, device=device)
        guided_steps = torch.zeros(batch_size, dtype=torch.long, device=device)
        history = torch.full((len(timesteps), batch_size), float("nan"))
        with frozen_module(self.unet), self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                zeta = guidance_scale_at(i, num_guided, guidance_scale, guidance_schedule)
                step = guided_step(model_fn, self.scheduler, x, t, constraint, zeta, step_size_rule,
                                   active=active, generator=generator, prediction_type=prediction_type)
                x, active = step.prev_sample, step.active
                history[i] = torch.where(active, step.loss, torch.nan).cpu()
                if zeta > 0:
                    guided_steps += active.long()

                if callback_on_step_end is not None:
                    tensors = {"latents": x, "pred_original_sample": step.pred_original_sample}
                    callback_kwargs = {name: tensors[name] for name in callback_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, int(t), callback_kwargs) or {}
                    x = callback_outputs.get("latents", x)
                progress_bar.update()

        images = x.detach().clamp(-1, 1)
        with torch.no_grad():
            constraint_value = evaluate_constraint(constraint, images).detach().float().cpu()
        self.maybe_free_model_hooks()
        steps = len(timesteps)
        output = DPSPipelineOutput(
            images=output_images(images, output_type),
            constraint_value=constraint_value,
            nan_stopped=(~active).cpu(),
            guided_steps=guided_steps.cpu(),
            constraint_history=history,
            unet_forward_passes=steps,
            unet_backward_passes=num_guided,
        )
        if not return_dict:
            return output.to_tuple()
        return output
