"""DDIM latent interpolation and DDIM inversion for :class:`DiffusionSamplingPipeline` (a mixin)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ...models import is_class_conditional, null_class_label
from ...utils import epsilon_from_model_output, save_image_grid, slerp

# Spacings for which diffusers' DDIMInverseScheduler walks exactly the DDIM timesteps backwards.
INVERTIBLE_SPACINGS = ("leading", "trailing")
DEFAULT_DDIM_STEPS = 50


class InterpolationMixin:
    """``interpolate``, ``invert`` and their DDIM scheduler; needs the sampling pipeline's ``denoise``,
    ``predict_noise``, ``check_inputs``, ``prepare_class_labels``, ``sample_shape`` and ``postprocess``."""

    @torch.no_grad()
    def interpolate(
        self,
        num_frames: int = 8,
        *,
        latents: torch.Tensor | Sequence[torch.Tensor] | None = None,
        images: torch.Tensor | Sequence[torch.Tensor] | None = None,
        num_inference_steps: int = DEFAULT_DDIM_STEPS,
        class_labels: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        save_path: str | os.PathLike | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Frames along a spherical interpolation (slerp) between two initial noises, decoded with deterministic DDIM.

        DDIM with eta 0 maps each ``x_T`` to one image, so a smooth path between two noises gives a smooth
        path between two images (Song et al. 2021, DDIM, Sec. 5.3). The endpoints are either two noises or
        two real images mapped to their noises by deterministic DDIM inversion (diffusers'
        :class:`~diffusers.DDIMInverseScheduler`).

        The decoder is the pipeline's scheduler when it is a DDIM scheduler, else a ``DDIMScheduler`` built from
        its config. Frame 0 and frame ``num_frames - 1`` are exactly what ``pipe(latents=..., eta=0)`` with that
        scheduler and ``num_inference_steps`` gives for the two noises. Inversion needs "leading" or "trailing"
        spacing; other spacings are replaced by "leading" (for inversion and decoding alike).

        Args:
            num_frames: number of frames, endpoints included (>= 2).
            latents: two noises, a ``(2, C, H, W)`` tensor or a pair of ``(C, H, W)``/``(1, C, H, W)`` tensors.
            images: two real images in [-1, 1], same forms as ``latents``; inverted with DDIM.
            num_inference_steps: DDIM steps for inversion and decoding.
            class_labels: one class for all frames (conditional UNet), or ``None`` for unconditional.
            guidance_scale: classifier-free guidance weight, as in ``__call__``.
            generator: draws the two noises when neither ``latents`` nor ``images`` is given.
            output_type, return_dict: as in ``__call__``.
            save_path: if given, the frames side by side are saved there as one PNG strip.

        Returns:
            :class:`ImagePipelineOutput` whose ``images`` are the ``num_frames`` frames.
        """
        if latents is not None and images is not None:
            raise ValueError("Pass either `latents` (two noises) or `images` (two real images), not both.")
        if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 2:
            raise ValueError(f"`num_frames` must be an integer >= 2, got {num_frames!r}.")
        if class_labels is not None and not isinstance(class_labels, (int, np.integer)):
            raise ValueError(f"`class_labels` must be one int (the class of every frame) or None, got {class_labels!r}.")
        self.check_inputs(1, num_inference_steps, generator, None, 0.0, output_type, ("latents",))
        if isinstance(generator, list):
            raise ValueError("`generator` must be a single torch.Generator for `interpolate`.")
        device, dtype = self._execution_device, self.unet.dtype
        shape = self.sample_shape(2)
        needs_inversion = images is not None
        scheduler = self.interpolation_scheduler(invertible=needs_inversion)
        labels = self.prepare_class_labels(class_labels, guidance_scale, num_frames, device)
        if needs_inversion:
            pair = self.stack_pair(images, "images", shape).to(device, dtype)
            if pair.min() < -1 - 1e-3 or pair.max() > 1 + 1e-3:
                raise ValueError("`images` must be in [-1, 1] (model space), e.g. `2 * x - 1` for x in [0, 1].")
            pair_labels = None if labels is None else labels[:2]
            endpoints = self.invert(pair, num_inference_steps, scheduler, pair_labels, guidance_scale)
        elif latents is not None:
            endpoints = self.stack_pair(latents, "latents", shape).to(device, dtype)
        else:
            endpoints = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        weights = torch.linspace(0, 1, num_frames, dtype=torch.float64)
        path = slerp(endpoints[0], endpoints[1], weights) * scheduler.init_noise_sigma
        frames = self.denoise(path, scheduler, num_inference_steps, class_labels=labels, guidance_scale=guidance_scale)
        if save_path is not None:
            save_image_grid((frames.float() / 2 + 0.5).clamp(0, 1), save_path, rows=1, padding=0)
        output = self.postprocess(frames, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output,)
        return ImagePipelineOutput(images=output)

    @torch.no_grad()
    def invert(
        self,
        images: torch.Tensor,
        num_inference_steps: int = DEFAULT_DDIM_STEPS,
        scheduler: DDIMScheduler | None = None,
        class_labels: torch.Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """Deterministic DDIM inversion: the ``x_T`` that DDIM (eta 0) decodes back to about ``images``.

        Runs diffusers' :class:`~diffusers.DDIMInverseScheduler` over the same timesteps as ``scheduler``
        (default: :meth:`interpolation_scheduler`), from ``t = 0`` upwards.

        Args:
            images: ``(B, C, H, W)`` images in [-1, 1].
            class_labels: ``(B,)`` long tensor for a conditional UNet (null class = unconditional), or ``None``.

        Returns:
            ``(B, C, H, W)`` latents.
        """
        scheduler = scheduler or self.interpolation_scheduler(invertible=True)
        # The inverse step reads its model output at the level below t, where the sample is, though the model was
        # asked at t (the inversion's approximation). For epsilon that is the same noise; a v (or x0) output read
        # with the other level's abar means another noise. So the output becomes the model's own eps at t first.
        prediction_type = scheduler.config.prediction_type
        inverse = DDIMInverseScheduler.from_config(scheduler.config, prediction_type="epsilon")
        inverse.set_timesteps(num_inference_steps, device=images.device)
        alphas_cumprod = inverse.alphas_cumprod.to(images.device)
        if class_labels is None and is_class_conditional(self.unet):
            class_labels = torch.full((images.shape[0],), null_class_label(self.unet), device=images.device)
        sample = images
        with self.progress_bar(total=len(inverse.timesteps)) as progress_bar:
            for t in inverse.timesteps:
                model_output = self.predict_noise(sample, t, class_labels, guidance_scale)
                noise_pred = epsilon_from_model_output(model_output, sample, alphas_cumprod[t], prediction_type)
                sample = inverse.step(noise_pred, t, sample).prev_sample
                progress_bar.update()
        return sample

    def interpolation_scheduler(self, invertible: bool = False) -> DDIMScheduler:
        """A fresh deterministic DDIM scheduler with the pipeline's noise schedule (see :meth:`interpolate`)."""
        config = dict(self.scheduler.config)
        ddim_class = type(self.scheduler) if isinstance(self.scheduler, DDIMScheduler) else DDIMScheduler
        if invertible and config.get("timestep_spacing") not in INVERTIBLE_SPACINGS:
            return DDIMScheduler.from_config(config, timestep_spacing="leading")
        return ddim_class.from_config(config)

    @staticmethod
    def stack_pair(pair: torch.Tensor | Sequence[torch.Tensor], argument: str, shape: tuple[int, ...]) -> torch.Tensor:
        """Two tensors, as ``(2, C, H, W)`` or a pair of ``(C, H, W)``/``(1, C, H, W)``, stacked to ``shape``."""
        if isinstance(pair, torch.Tensor):
            stacked = pair
        elif isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, torch.Tensor) for p in pair):
            stacked = torch.cat([p.reshape(1, *p.shape[-3:]) if p.ndim >= 3 else p for p in pair])
        else:
            raise ValueError(f"`{argument}` must be a (2, C, H, W) tensor or a pair of tensors, got {type(pair).__name__}.")
        if tuple(stacked.shape) != shape:
            raise ValueError(f"`{argument}` must stack to shape {shape}, got {tuple(stacked.shape)}.")
        return stacked
