"""Diffusion models as plug-and-play priors (Graikos, Malkin, Jojic, Samaras, NeurIPS 2022).

A frozen denoiser ``eps_theta`` is the prior for inferring an image ``x`` under a constraint ``c(x)``
(a :mod:`pnp_diffusers.constraints` object or any callable ``x -> (B,)``). This module is the pipeline:
its inputs, presets and output. The methods live one a module behind a registry
(:mod:`.registry`):

* ``method="prior"`` (:mod:`.method_prior`): the paper's Algorithm 1, optimise x itself;
* ``method="noise"`` (:mod:`.method_noise`): optimise the initial noise x_T through diffusers'
  DDIMScheduler under autograd;
* ``method="dps"`` (:mod:`.method_dps`): Diffusion Posterior Sampling (Chung et al. 2023), DDPM
  ancestral steps guided by the constraint on x0_hat; the same loop as :class:`~pnp_diffusers.DPSPipeline`.

Each method's settings are its own dataclass (:class:`PriorSettings`, :class:`NoiseSettings`,
:class:`DPSSettings`); a preset is an instance, and a call's keyword settings override its fields. A setting of another method
is an error, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ...constraints import as_constraint, evaluate_constraint, frozen_module
from ...hub import RemoteCodePipelineMixin
from ...utils import PREDICTION_TYPES, epsilon_from_model_output, postprocess_images
from ..pipeline_utils import OUTPUT_TYPES, check_call_inputs, image_shape, prepare_class_labels
from .registry import MethodSettings, get_method, resolve_settings


@dataclass
class PlugAndPlayPipelineOutput(BaseOutput):
    """Output of :class:`PlugAndPlayPipeline`.

    Attributes:
        images: B images, ``output_type`` "pil" (list of PIL), "np" ((B, H, W, C) in [0, 1]) or "pt"
            ((B, C, H, W) in [0, 1]).
        prior_loss: (B,) method "prior": the denoising loss ``mean((eps - eps_theta)^2)`` of the last
            iteration each sample ran; method "noise": the Gaussian-shell penalty of the final x_T;
            method "dps": 0 (no prior term).
        constraint_value: (B,) the constraint on the final images (clipped to [-1, 1]), unweighted.
        iterations: (B,) long, optimisation steps each sample ran (fewer than N if NaN-stopped);
            method "dps": the guided steps each sample received.
        nan_stopped: (B,) bool, True for samples frozen because their loss became NaN/inf (method
            "dps": whose guidance stopped; they finish as unguided samples).
        loss_history: (N, B) total loss per iteration (NaN once a sample has stopped); method "dps":
            (num_inference_steps, B) the constraint on x0_hat at every step.
        unet_forward_passes: UNet forward passes per sample (the whole run, final pass included).
        unet_backward_passes: UNet backward passes per sample.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    prior_loss: torch.Tensor
    constraint_value: torch.Tensor
    iterations: torch.Tensor
    nan_stopped: torch.Tensor
    loss_history: torch.Tensor
    unet_forward_passes: int
    unet_backward_passes: int


def output_images(images: torch.Tensor, output_type: str):
    """Model-space images (B, C, H, W) in [-1, 1] -> "pt" (B, C, H, W, on the CPU) / "np" (B, H, W, C) in [0, 1] / PIL list."""
    return postprocess_images(images.detach().cpu(), output_type)


class PlugAndPlayPipeline(RemoteCodePipelineMixin, DiffusionPipeline):
    r"""Infer images under a constraint with a frozen diffusion model as the prior (Graikos et al. 2022).

    Args:
        unet: a (class-conditional or not) :class:`UNet2DModel` trained as a DDPM denoiser.
        scheduler: the training noise schedule, a :class:`DDPMScheduler` (its ``alphas_cumprod``,
            ``prediction_type`` and ``clip_sample`` are used).

    Example::

        pipe = PlugAndPlayPipeline.from_pretrained("pipelines/ddpm-mnist")
        three = ClassifierConstraint(classifier, 3) + SymmetryConstraint("horizontal", "similar")
        out = pipe(three, batch_size=8, preset="fast-pixel", generator=torch.Generator().manual_seed(0))
        out.images[0].save("symmetric_3.png")
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def _default_model_card(self) -> dict[str, Any]:
        """The card ``save_pretrained`` writes when none is given: how to load and call this pipeline."""
        card = super()._default_model_card()
        card.pop("class_name", None)  # the generic usage snippet calls the pipeline without a constraint
        card["description"] += (
            "\n\nPlug-and-play inference (Graikos et al., NeurIPS 2022) with this diffusion model as the prior:\n\n"
            "```python\n"
            "import torch\n"
            "from pnp_diffusers import PlugAndPlayPipeline, SymmetryConstraint\n\n"
            'pipe = PlugAndPlayPipeline.from_pretrained("PATH_OR_REPO_ID")\n'
            'out = pipe(SymmetryConstraint("horizontal", "similar"), batch_size=8, preset="fast-pixel",\n'
            "           generator=torch.Generator().manual_seed(0))\n"
            "```"
        )
        return card

    # ----------------------------------------------------------------------------------------- model

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the UNet's images."""
        return image_shape(self.unet)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``abar_t`` for t = 0 .. T-1 (diffusers indexing), float32 on the execution device."""
        return self.scheduler.alphas_cumprod.to(device=self._execution_device, dtype=torch.float32)

    @property
    def prediction_type(self) -> str:
        prediction_type = getattr(self.scheduler.config, "prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`scheduler.config.prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        return prediction_type

    def model_output(self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """The UNet's raw output (B, C, H, W) in float32: its first C channels, so learned-variance models work."""
        output = self.unet(x_t.to(self.unet.dtype), timesteps, class_labels=class_labels).sample.float()
        return output[:, : x_t.shape[1]]

    def predict_noise(self, x_t: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """``eps_theta(x_t, t)`` (B, C, H, W) in float32, whatever the model predicts (eps, x0 or v)."""
        output = self.model_output(x_t, timesteps, class_labels)
        return epsilon_from_model_output(output, x_t, self.alphas_cumprod[timesteps], self.prediction_type)

    # ----------------------------------------------------------------------------------------- call

    def check_inputs(self, constraint, batch_size, output_type, latents, generator, callback_tensor_inputs):
        if not callable(constraint):
            raise ValueError(f"`constraint` must be callable (x -> loss of shape (B,)), got {type(constraint).__name__}.")
        check_call_inputs(self, batch_size, output_type, latents, generator, callback_tensor_inputs, OUTPUT_TYPES)

    def resolve_settings(self, method: str = "prior", preset: str | MethodSettings | None = None, **settings) -> MethodSettings:
        """The settings a call with these arguments would run with, validated (see :meth:`__call__`)."""
        chosen = get_method(method)
        resolved = resolve_settings(chosen, preset, settings)
        resolved.validate(int(self.scheduler.config.num_train_timesteps))
        return resolved

    def __call__(
        self,
        constraint: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 1,
        method: str = "prior",
        preset: str | MethodSettings | None = None,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[["PlugAndPlayPipeline", int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        **settings: Any,
    ) -> PlugAndPlayPipelineOutput | tuple:
        r"""Infer ``batch_size`` independent images under ``constraint``.

        Args:
            constraint: a :mod:`pnp_diffusers.constraints` object or any callable mapping images
                (B, C, H, W) in [-1, 1] to a per-sample loss (B,) (lower = better).
            batch_size: number of independent samples, optimised together.
            method: "prior" (Algorithm 1, optimise x), "noise" (optimise x_T through DDIM) or "dps"
                (DDPM steps guided by the constraint on x0_hat, Chung et al. 2023), or any method registered with :func:`~pnp_diffusers.pipelines.plug_and_play.register_method`.
            preset: a preset name of the method or an instance of its settings class. "prior":
                "fast" (default: 100 iterations down to t=650, then 100 ancestral steps guided by the
                constraint; for labels), "fast-pixel" (195 iterations down to t=0, weight 0.05; for
                symmetry and masked observations), "paper" (the authors' MNIST loop, 1000 iterations).
                "noise": "noise" (default). "dps": "dps" (default: 200 DDPM steps, zeta 1, every step guided).
            class_labels: for a class-conditional prior, the class(es) to condition on (int, or one
                per sample); None = the null (unconditional) class.
            generator: ``torch.Generator`` or a list of ``batch_size`` of them; it draws the
                initial x (or x_T), every iteration's eps and the final pass's noise (method "dps": x_T
                and every step's noise).
            latents: optional initial x (method "prior") or x_T (methods "noise", "dps"), (B, C, H, W),
                finite, about N(0, I).
            output_type: "pil", "np" or "pt" (see :class:`PlugAndPlayPipelineOutput`).
            return_dict: return a :class:`PlugAndPlayPipelineOutput` (True) or its fields as a tuple.
            callback_on_step_end: ``fn(pipe, i, t, callback_kwargs) -> dict`` called after every
                optimisation step (method "dps": every reverse step); ``callback_kwargs["latents"]`` is
                the current x (or x_T; method "dps": x_{t-1}), and a returned "latents" replaces it.
            callback_on_step_end_tensor_inputs: tensor names passed to the callback (["latents"]).
            **settings: fields of the method's settings (:class:`PriorSettings`,
                :class:`NoiseSettings`, :class:`DPSSettings`) overriding the preset's, e.g. ``num_iterations=100``; None
                keeps the preset's value. A field of another method raises a ValueError.

        Returns:
            :class:`PlugAndPlayPipelineOutput`, or a tuple of its fields when ``return_dict`` is False.
        """
        callback_tensor_inputs = ["latents"] if callback_on_step_end_tensor_inputs is None else list(callback_on_step_end_tensor_inputs)
        self.check_inputs(constraint, batch_size, output_type, latents, generator, callback_tensor_inputs)
        chosen = get_method(method)
        resolved = self.resolve_settings(method, preset, **settings)
        constraint = as_constraint(constraint)
        device = self._execution_device
        labels = prepare_class_labels(self.unet, class_labels, batch_size, device)
        if latents is None:
            start = randn_tensor((batch_size, *self.image_shape), generator=generator, device=device, dtype=torch.float32)
        else:
            start = latents.to(device=device, dtype=torch.float32)

        def callback(i: int, t: int, parameter: torch.Tensor) -> torch.Tensor | None:
            if callback_on_step_end is None:
                return None
            outputs = callback_on_step_end(self, i, t, {name: parameter for name in callback_tensor_inputs}) or {}
            return outputs.get("latents")

        with torch.enable_grad(), frozen_module(self.unet):
            result = chosen.run(self, constraint, start, resolved, labels, generator, callback)

        images = result.images.detach().clamp(-1, 1)
        with torch.no_grad():
            constraint_value = evaluate_constraint(constraint, images).detach().float().cpu()
        self.maybe_free_model_hooks()
        output = PlugAndPlayPipelineOutput(
            images=output_images(images, output_type),
            prior_loss=result.prior_loss.cpu(),
            constraint_value=constraint_value,
            iterations=result.iterations.cpu(),
            nan_stopped=result.nan_stopped.cpu(),
            loss_history=result.loss_history.cpu(),
            unet_forward_passes=result.unet_forward_passes,
            unet_backward_passes=result.unet_backward_passes,
        )
        if not return_dict:
            return output.to_tuple()
        return output
