"""DDIM with quadratic timestep skipping (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", App. D.2).

diffusers' :class:`~diffusers.DDIMScheduler` spaces its timesteps evenly ("linspace", "leading",
"trailing") and computes the previous timestep as ``t - T // S``. The DDIM paper also uses a
*quadratic* sub-sequence, ``tau_i = floor(c * i^2)``, which spends more steps at low noise where
images get their detail. :class:`DDIMSkipScheduler` adds ``timestep_spacing="quadratic"`` and takes
the previous timestep from its own timestep list, so any decreasing sequence is stepped correctly.
For "leading" spacing it gives exactly the same numbers as ``DDIMScheduler``.

Usage::

    pipe.scheduler = DDIMSkipScheduler.from_config(pipe.scheduler.config, timestep_spacing="quadratic")
    images = pipe(num_inference_steps=20, eta=0.0).images
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from ..utils import epsilon_from_model_output, predict_original_sample

# The DDIM paper's quadratic sequence ends at 0.8 T (their CIFAR-10 setting): the last 20 % of the
# forward process is almost pure noise and gets no step of its own.
QUADRATIC_END_FRACTION = 0.8


def quadratic_timesteps(num_inference_steps: int, num_train_timesteps: int, steps_offset: int = 0) -> np.ndarray:
    """Decreasing timesteps ``floor(c i^2)``, ``i = 0..S-1``, with ``c`` chosen so the largest is ``0.8 T``.

    Near ``t = 0`` the squares of consecutive ``i`` can round to the same integer when ``S`` is large;
    those are pushed up by one so that every step moves (a tiny departure from the paper's formula).
    """
    if num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps}.")
    steps = (np.linspace(0, np.sqrt(num_train_timesteps * QUADRATIC_END_FRACTION), num_inference_steps) ** 2).astype(
        np.int64
    )
    for i in range(1, len(steps)):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    steps = steps + steps_offset
    if steps[-1] >= num_train_timesteps:
        raise ValueError(
            f"`num_inference_steps`={num_inference_steps} is too many for quadratic spacing over "
            f"{num_train_timesteps} training timesteps."
        )
    return steps[::-1].copy()


class DDIMSkipScheduler(DDIMScheduler):
    """:class:`~diffusers.DDIMScheduler` that also accepts ``timestep_spacing="quadratic"``.

    Same configuration as ``DDIMScheduler`` (so it builds from any DDPM/DDIM config) and the same
    ``step(model_output, timestep, sample, eta=0.0, ..., generator=None)`` interface; ``eta`` is the
    DDIM paper's eta (0 deterministic, 1 DDPM-like variance).
    """

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose the ``num_inference_steps`` timesteps (decreasing) for sampling."""
        if self.config.timestep_spacing != "quadratic":
            super().set_timesteps(num_inference_steps, device=device)
            return
        timesteps = quadratic_timesteps(num_inference_steps, self.config.num_train_timesteps, self.config.steps_offset)
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(timesteps).to(device)

    def previous_timestep(self, timestep: int | torch.Tensor) -> int:
        """The timestep after ``timestep`` in ``self.timesteps``, or ``-1`` after the last one."""
        timestep = int(timestep)
        matches = (self.timesteps == timestep).nonzero(as_tuple=True)[0]
        if len(matches) == 0:
            if self.num_inference_steps is None:
                raise ValueError("`set_timesteps` must be called before `step`.")
            raise ValueError(
                f"`timestep`={timestep} is not one of this scheduler's {len(self.timesteps)} timesteps "
                f"({self.timesteps.tolist()}): pass an entry of `scheduler.timesteps`."
            )
        index = int(matches[0])
        return int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else -1

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | list[torch.Generator] | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDIMSchedulerOutput | tuple:
        """One DDIM step from ``timestep`` to the next timestep of the list (DDIM paper, Eq. 12).

        ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z`` with
        ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))`` (Eq. 16);
        ``x0_hat`` is clipped or thresholded as configured.

        Args:
            model_output: ``(B, C, H, W)`` model prediction at ``timestep``.
            timestep: current timestep, one of ``self.timesteps``.
            sample: ``(B, C, H, W)`` current ``x_t``.
            eta: DDIM's eta in [0, 1].
            use_clipped_model_output: recompute ``eps_hat`` from the clipped ``x0_hat``.
            generator: torch generator(s) for the noise when ``eta > 0``.
            variance_noise: the noise itself instead of a generator.
        """
        if self.num_inference_steps is None:
            raise ValueError("`set_timesteps` must be called before `step`.")
        if variance_noise is not None and generator is not None:
            raise ValueError("Pass either `generator` or `variance_noise`, not both.")
        prev_timestep = self.previous_timestep(timestep)
        alpha_prod_t = self.alphas_cumprod[int(timestep)].to(sample.device, sample.dtype)
        alpha_prod_t_prev = (
            self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        ).to(sample.device, sample.dtype)

        pred_epsilon = epsilon_from_model_output(model_output, sample, alpha_prod_t, self.config.prediction_type)
        pred_original_sample = predict_original_sample(sample, pred_epsilon, alpha_prod_t)
        if self.config.prediction_type == "sample":
            pred_original_sample = model_output
        if self.config.thresholding:
            pred_original_sample = self._threshold_sample(pred_original_sample)
        elif self.config.clip_sample:
            pred_original_sample = pred_original_sample.clamp(
                -self.config.clip_sample_range, self.config.clip_sample_range
            )
        if use_clipped_model_output:
            pred_epsilon = (sample - alpha_prod_t.sqrt() * pred_original_sample) / (1 - alpha_prod_t).sqrt()

        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = eta * variance.sqrt()
        direction = (1 - alpha_prod_t_prev - std_dev_t**2).clamp_min(0).sqrt() * pred_epsilon
        prev_sample = alpha_prod_t_prev.sqrt() * pred_original_sample + direction
        if eta > 0:
            if variance_noise is None:
                variance_noise = randn_tensor(
                    model_output.shape, generator=generator, device=model_output.device, dtype=model_output.dtype
                )
            prev_sample = prev_sample + std_dev_t * variance_noise

        if not return_dict:
            return (prev_sample, pred_original_sample)
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
