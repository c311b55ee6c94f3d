"""What the Langevin-type schedulers (annealed Langevin, predictor-corrector) share.

Both lay out several model calls per noise level by repeating the level in ``timesteps`` and keep
their phase in ``step_index``, the way diffusers' ``HeunDiscreteScheduler`` does. This module holds
their common state machine (:class:`RepeatedLevelsMixin`: ``set_timesteps`` with DDPM spacing or
custom levels, ``order``, ``set_begin_index``, step checks, ``add_noise``) and the Langevin maths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.utils import BaseOutput

from ..utils import broadcast_to_sample, per_sample_norm


@dataclass
class LangevinSchedulerOutput(BaseOutput):
    """Output of a Langevin-type scheduler step.

    Args:
        prev_sample: ``(B, C, H, W)`` the sample after this step (after the final denoise: the image in [-1, 1]).
        pred_original_sample: ``(B, C, H, W)`` Tweedie's ``x_0`` estimate from this step's model output,
            clipped/thresholded as configured (for previews and callbacks).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


def snr_step_size(score: torch.Tensor, noise: torch.Tensor, snr: float, alpha: torch.Tensor | float,
                  max_step_size: torch.Tensor | float | None = None) -> torch.Tensor:
    """Per-sample Langevin step ``2 alpha (snr ||z|| / ||s||)^2`` (Song et al. 2021, Algorithm 5), shape ``(B,)``.

    The norms are taken per sample (score_sde averages them over the batch): every sample then gets
    the step its own score calls for, independent of what else is in the batch. The ratio concentrates
    for images (hundreds of pixels); in very low dimension (say < 100 values a sample) it is noisy,
    the step depends on the state and the chain over-disperses (+30 % variance at 16 values).

    A zero (or vanishing) score makes the rule's step infinite and ``inf * 0`` a NaN; ``max_step_size``
    caps it. The schedulers pass the level's noise variance ``1 - abar_t``: for a Gaussian of that
    variance the rule gives ``2 alpha snr^2 (1 - abar_t)`` (about 0.05 of the cap at snr 0.16), so the
    cap only binds where the score carries no information, and the step is then pure noise of the
    level's scale.
    """
    score_norm = per_sample_norm(score)
    noise_norm = per_sample_norm(noise)
    alpha = torch.as_tensor(alpha, dtype=score.dtype, device=score.device)
    step = 2 * alpha * (snr * noise_norm / score_norm.clamp_min(torch.finfo(score.dtype).tiny)) ** 2
    if max_step_size is not None:
        cap = torch.as_tensor(max_step_size, dtype=score.dtype, device=score.device)
        step = torch.where(torch.isfinite(step), step, cap).clamp_max(cap)
    return step


def langevin_update(
    sample: torch.Tensor, score: torch.Tensor, noise: torch.Tensor, step_size: torch.Tensor | float
) -> torch.Tensor:
    """One step of Langevin dynamics, ``x + eta s + sqrt(2 eta) z``; ``step_size`` is a scalar or ``(B,)``."""
    step_size = broadcast_to_sample(step_size, sample)
    return sample + step_size * score + (2 * step_size).sqrt() * noise


def clip_or_threshold(pred_original_sample: torch.Tensor, noise_schedule: DDPMScheduler) -> torch.Tensor:
    """Apply the ``x_0`` clamp of a DDPM config: dynamic thresholding (Saharia et al. 2022) or ``clip_sample``."""
    config = noise_schedule.config
    if config.thresholding:
        return noise_schedule._threshold_sample(pred_original_sample)
    if config.clip_sample:
        return pred_original_sample.clamp(-config.clip_sample_range, config.clip_sample_range)
    return pred_original_sample


def ddpm_noise_schedule(config) -> DDPMScheduler:
    """A stock DDPMScheduler with the noise schedule, timestep spacing and x_0 clamp of ``config``."""
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
        trained_betas=config.trained_betas,
        variance_type=getattr(config, "variance_type", "fixed_small"),
        clip_sample=config.clip_sample,
        prediction_type=config.prediction_type,
        thresholding=config.thresholding,
        dynamic_thresholding_ratio=config.dynamic_thresholding_ratio,
        clip_sample_range=config.clip_sample_range,
        sample_max_value=config.sample_max_value,
        timestep_spacing=config.timestep_spacing,
        steps_offset=config.steps_offset,
        rescale_betas_zero_snr=config.rescale_betas_zero_snr,
    )


def check_custom_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> list[int]:
    """Validate a custom list of noise levels: integers in [0, T-1], strictly decreasing."""
    values = [int(t) for t in (timesteps.tolist() if hasattr(timesteps, "tolist") else timesteps)]
    if len(values) == 0:
        raise ValueError("`timesteps` must hold at least one timestep.")
    if any(t < 0 or t >= num_train_timesteps for t in values):
        raise ValueError(f"`timesteps` must lie in [0, {num_train_timesteps - 1}], got {values}.")
    if any(a <= b for a, b in zip(values, values[1:])):
        raise ValueError(f"`timesteps` must be strictly decreasing, got {values}.")
    return values


class RepeatedLevelsMixin:
    """The state machine of a scheduler that calls the model ``calls_per_level`` times at each noise level.

    A subclass sets ``self.noise_schedule`` (a stock :class:`DDPMScheduler`) in ``__init__`` through
    :meth:`_init_levels`, and defines ``calls_per_level`` and ``extra_final_calls``.

    Conventions, as in diffusers' multi-call schedulers (Heun):

    * ``timesteps`` repeats each level ``calls_per_level`` times, and ``order == calls_per_level``, so
      an img2img start ``timesteps[t_start * order:]`` begins at a level boundary;
    * ``set_begin_index(i)`` (a level boundary) makes the next ``step`` call the ``i``-th entry; without
      it the first ``step`` finds its place from its timestep (the first call of that level);
    * ``set_timesteps(timesteps=[...])`` takes custom, strictly decreasing levels.
    """

    calls_per_level: int
    extra_final_calls: int = 0

    def _init_levels(self, config) -> None:
        self.noise_schedule = ddpm_noise_schedule(config)
        self.betas = self.noise_schedule.betas
        self.alphas = self.noise_schedule.alphas
        self.alphas_cumprod = self.noise_schedule.alphas_cumprod
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.noise_levels = None
        self.timesteps = torch.from_numpy(np.arange(0, config.num_train_timesteps)[::-1].copy())
        self._step_index = None
        self._begin_index = None

    @property
    def order(self) -> int:
        """Model calls per noise level: ``timesteps[k * order]`` is the first call of level ``k``."""
        return self.calls_per_level

    @property
    def step_index(self) -> int | None:
        """Index in ``timesteps`` of the last ``step`` call's successor (``None`` before the first step)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index the first ``step`` starts from, when a pipeline set one with ``set_begin_index``."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next sampling run at ``timesteps[begin_index]``, which must open a noise level.

        img2img / SDEdit pipelines call it after ``set_timesteps``, as with diffusers' schedulers.
        """
        if self.num_inference_steps is None:
            raise ValueError("`set_begin_index` needs the noise levels: call `set_timesteps` first.")
        levels_calls = len(self.timesteps) - self.extra_final_calls
        if not isinstance(begin_index, int) or not 0 <= begin_index < levels_calls or begin_index % self.order:
            raise ValueError(
                f"`begin_index` must open a noise level: a multiple of `order`={self.order} in [0, {levels_calls - 1}], "
                f"got {begin_index!r}."
            )
        self._begin_index = begin_index

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """The model takes ``x_t`` unscaled (VP); kept for interchangeability with other schedulers."""
        return sample

    def _choose_levels(self, num_inference_steps: int | None, timesteps: Sequence[int] | None) -> torch.Tensor:
        """The noise levels: DDPM's spacing for ``num_inference_steps``, or custom ``timesteps``."""
        if timesteps is not None:
            if num_inference_steps is not None:
                raise ValueError("Pass either `num_inference_steps` or `timesteps`, not both.")
            levels = check_custom_timesteps(timesteps, self.config.num_train_timesteps)
            self.noise_schedule.set_timesteps(timesteps=levels)
        else:
            if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
                raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
            self.noise_schedule.set_timesteps(num_inference_steps)
        levels = self.noise_schedule.timesteps.clone()
        self.num_inference_steps = len(levels)
        self._step_index = None
        self._begin_index = None
        return levels

    def _init_step_index(self, timestep: int) -> None:
        if self._begin_index is not None:
            self._step_index = self._begin_index
            return
        matches = (self.timesteps == int(timestep)).nonzero(as_tuple=True)[0]
        if len(matches) == 0:
            raise ValueError(
                f"`timestep`={int(timestep)} is not one of this scheduler's timesteps "
                f"(levels {self.noise_levels.tolist()}): pass an entry of `scheduler.timesteps`."
            )
        self._step_index = int(matches[0])

    def _check_step(self, timestep: int | torch.Tensor) -> int:
        """Place the call in ``timesteps`` and check that ``timestep`` is the one due there."""
        if self.num_inference_steps is None:
            raise ValueError("`set_timesteps` must be called before `step`.")
        if self._step_index is None:
            self._init_step_index(timestep)
        if self._step_index >= len(self.timesteps):
            raise ValueError(f"All {len(self.timesteps)} steps were taken; call `set_timesteps` to sample again.")
        expected = int(self.timesteps[self._step_index])
        if int(timestep) != expected:
            raise ValueError(
                f"`timestep`={int(timestep)} but step {self._step_index} of this scheduler is at timestep {expected}: "
                "call `step` once for each entry of `timesteps`, in order."
            )
        return self._step_index

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.IntTensor) -> torch.Tensor:
        """Forward process ``q(x_t | x_0)``, as in DDPMScheduler."""
        return self.noise_schedule.add_noise(original_samples, noise, timesteps)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
