"""Diffusion Posterior Sampling (Chung, Kim, Mccann, Klasky, Ye, ICLR 2023) with plug-and-play constraints.

Sampling-time guidance, the comparison point for :class:`PlugAndPlayPipeline`: the ordinary reverse
process (DDPM ancestral or DDIM steps of ``self.scheduler``), each step moved down the gradient of the
constraint on Tweedie's estimate x0_hat. The maths, the step-size rule and the guidance schedule are
documented in :mod:`pnp_diffusers.pipelines.plug_and_play.method_dps`, whose loop (:func:`dps_sample`)
this pipeline runs: ``PlugAndPlayPipeline(...)(constraint, method="dps")`` is the same method, and for the
same generator and settings on a DDPM scheduler the two give identical images.
"""

from __future__ import annotations

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
from ...utils import PREDICTION_TYPES
from ..pipeline_utils import OUTPUT_TYPES, check_call_inputs, image_shape, prepare_class_labels
from ..plug_and_play.method_dps import (  # noqa: F401  (re-exported: the names this module had)
    GUIDANCE_SCHEDULES,
    STEP_SIZE_RULES,
    DPSSettings,
    dps_sample,
    guidance_scale_at,
    guided_step_count,
    unet_model_fn,
)
from ..plug_and_play.pipeline_plug_and_play import output_images


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
    ) -> DPSSettings:
        """Raise a ``ValueError`` naming the first bad argument; returns the validated :class:`DPSSettings`."""
        if not callable(constraint):
            raise ValueError(f"`constraint` must be callable (x -> loss of shape (B,)), got {type(constraint).__name__}.")
        check_call_inputs(self, batch_size, output_type, latents, generator, callback_tensor_inputs, OUTPUT_TYPES)
        settings = DPSSettings(num_inference_steps, guidance_scale, step_size_rule, guidance_end, guidance_schedule)
        settings.validate(int(self.scheduler.config.num_train_timesteps))
        if getattr(self.scheduler, "alphas_cumprod", None) is None:
            raise ValueError(f"`scheduler` must have `alphas_cumprod` (DDPM/DDIM), got {type(self.scheduler).__name__}.")
        prediction_type = getattr(self.scheduler.config, "prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`scheduler.config.prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        return settings

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
            num_inference_steps: reverse steps, at most the scheduler's training timesteps (each: one UNet
                forward, plus one backward while guided).
            guidance_scale: zeta >= 0, the guidance strength (0 = unguided sampling).
            step_size_rule: "loss-norm" (DPS: zeta / sqrt(|L|) per sample) or "constant" (zeta).
            guidance_end: fraction in [0, 1] of the steps, from the first, that are guided; the others
                are an unguided clean-up (1 = every step, the paper).
            guidance_schedule: "constant" (the paper) or "linear" (zeta decays to zeta / n at the n-th, last guided step).
            class_labels: class(es) for a class-conditional UNet; None = the null class.
            generator: ``torch.Generator`` or a list of ``batch_size``; draws x_T and the step noise.
            latents: optional x_T ~ N(0, I), (B, C, H, W), finite.
            output_type: "pil", "np" or "pt".
            return_dict: return a :class:`DPSPipelineOutput` (True) or its fields as a tuple.
            callback_on_step_end: ``fn(pipe, i, t, callback_kwargs) -> dict`` after every step, with
                "latents" (x_{t-1}) and/or "pred_original_sample" (x0_hat); a returned "latents" replaces x.
            callback_on_step_end_tensor_inputs: names passed to the callback (default ["latents"]).

        Returns:
            :class:`DPSPipelineOutput`, or a tuple of its fields when ``return_dict`` is False. The same
            method as ``PlugAndPlayPipeline(...)(constraint, method="dps", ...)`` (:class:`DPSSettings`),
            which gives identical images for the same generator and settings on a DDPM scheduler.
        """
        callback_tensor_inputs = ["latents"] if callback_on_step_end_tensor_inputs is None else list(callback_on_step_end_tensor_inputs)
        settings = self.check_inputs(
            constraint, batch_size, num_inference_steps, guidance_scale, step_size_rule, output_type,
            latents, generator, callback_tensor_inputs, guidance_end, guidance_schedule,
        )
        constraint = as_constraint(constraint)
        device = self._execution_device
        labels = prepare_class_labels(self.unet, class_labels, batch_size, device)
        if latents is None:
            x = randn_tensor((batch_size, *self.image_shape), generator=generator, device=device, dtype=torch.float32)
        else:
            x = latents.to(device=device, dtype=torch.float32)

        def callback(i: int, t: int, x_prev: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor | None:
            if callback_on_step_end is None:
                return None
            tensors = {"latents": x_prev, "pred_original_sample": x0_hat}
            outputs = callback_on_step_end(self, i, t, {name: tensors[name] for name in callback_tensor_inputs}) or {}
            return outputs.get("latents")

        with frozen_module(self.unet):
            trace = dps_sample(unet_model_fn(self.unet, labels), self.scheduler, constraint, x, settings, generator,
                               callback, self.progress_bar)

        images = trace.images.detach().clamp(-1, 1)
        with torch.no_grad():
            constraint_value = evaluate_constraint(constraint, images).detach().float().cpu()
        self.maybe_free_model_hooks()
        output = DPSPipelineOutput(
            images=output_images(images, output_type),
            constraint_value=constraint_value,
            nan_stopped=(~trace.active).cpu(),
            guided_steps=trace.guided_steps.cpu(),
            constraint_history=trace.history,
            unet_forward_passes=trace.unet_forward_passes,
            unet_backward_passes=trace.unet_backward_passes,
        )
        if not return_dict:
            return output.to_tuple()
        return output
