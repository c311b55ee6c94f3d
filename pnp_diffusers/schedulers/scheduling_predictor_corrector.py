"""Predictor-corrector sampling (Song et al. 2021, "Score-Based Generative Modeling through SDEs", Alg. 2/3 for VP).

At every noise level ``t`` (from high noise to low):

1. **corrector**: ``n_corrector_steps`` Langevin steps that pull ``x_t`` towards the noisy marginal
   ``p_t``: ``x <- x + eta s + sqrt(2 eta) z`` with ``eta = 2 alpha_t (snr ||z|| / ||s||)^2``
   (Algorithm 5, VP: ``alpha_t = 1 - beta_t``; norms per sample) and score ``s = -eps / sqrt(1 - abar_t)``;
2. **predictor**: one ancestral DDPM step ``t -> t_prev`` (the "ancestral sampling" predictor, Eq. 47),
   i.e. diffusers' :class:`~diffusers.DDPMScheduler` step with the saved ``variance_type``, ``x_0``
   clipping and thresholding.

The order (corrector, then predictor at the same ``t``) follows the score_sde reference code, so the
last model call is the predictor at the lowest level: it adds no noise and returns the noise-free mean
(score_sde's ``noise_removal``). Each corrector step is a model call, so every level appears
``n_corrector_steps + 1`` times in ``timesteps`` and the phase is kept in ``step_index``.

Defaults (``snr=0.16``, ``n_corrector_steps=1``) are those of the score_sde code's CIFAR-10 configs
(``sampling.snr = 0.16``, ``sampling.n_steps_each = 1``); with ``num_inference_steps = num_train_timesteps``
this is the paper's "PC1000" sampler (2000 model calls for a 1000-step DDPM).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..utils import PREDICTION_TYPES, epsilon_from_model_output, predict_original_sample, score_from_epsilon
from .langevin_utils import (
    LangevinSchedulerOutput,
    RepeatedLevelsMixin,
    clip_or_threshold,
    langevin_update,
    snr_step_size,
)


class PredictorCorrectorScheduler(RepeatedLevelsMixin, SchedulerMixin, ConfigMixin):
    """Ancestral DDPM predictor + Langevin corrector, as a diffusers scheduler.

    Builds from any DDPM config: ``PredictorCorrectorScheduler.from_config(pipe.scheduler.config)``.
    ``num_inference_steps`` counts noise levels (predictor steps); the model is called
    ``num_inference_steps * (n_corrector_steps + 1)`` times.

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, variance_type, prediction_type,
        clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value,
        timestep_spacing, steps_offset, rescale_betas_zero_snr: as in :class:`~diffusers.DDPMScheduler`.
        n_corrector_steps: Langevin corrector steps per level (``M`` in Algorithm 2); 0 gives plain DDPM.
        snr: target signal-to-noise ratio ``r`` of the corrector step size.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        variance_type: str = "fixed_small",
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        n_corrector_steps: int = 1,
        snr: float = 0.16,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        if not isinstance(n_corrector_steps, int) or n_corrector_steps < 0:
            raise ValueError(f"`n_corrector_steps` must be a non-negative integer, got {n_corrector_steps!r}.")
        if not snr > 0:
            raise ValueError(f"`snr` must be positive, got {snr!r}.")
        # The predictor is exactly a DDPM step; this stock scheduler also holds the betas.
        self._init_levels(self.config)

    @property
    def predictor(self):
        """The stock DDPMScheduler whose ``step`` is the predictor."""
        return self.noise_schedule

    @property
    def default_num_inference_steps(self) -> int:
        """One level per training timestep, as in the paper's PC1000."""
        return self.config.num_train_timesteps

    @property
    def calls_per_level(self) -> int:
        return self.config.n_corrector_steps + 1

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: Sequence[int] | None = None) -> None:
        """Choose the noise levels and repeat each ``n_corrector_steps + 1`` times.

        Args:
            num_inference_steps: number of levels (predictor steps), spaced like DDPM's (``timestep_spacing``).
            device: where ``timesteps`` live.
            timesteps: custom levels instead, strictly decreasing in [0, T-1] (the predictor steps between them).
        """
        levels = self._choose_levels(num_inference_steps, timesteps)
        self.noise_levels = levels.to(device)
        self.timesteps = levels.repeat_interleave(self.calls_per_level).to(device)

    def is_corrector_step(self, step_index: int | None = None) -> bool:
        """True when the call at ``step_index`` (default: the next one) is a corrector step."""
        index = step_index if step_index is not None else self._step_index
        if index is None:
            index = self._begin_index or 0
        return index % self.calls_per_level < self.config.n_corrector_steps

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> LangevinSchedulerOutput | tuple:
        """A corrector (Langevin) step at ``timestep`` or the predictor step to the next level, by phase.

        Args:
            model_output: ``(B, C, H, W)`` model prediction at ``(sample, timestep)``.
            timestep: must equal ``timesteps[step_index]``.
            sample: ``(B, C, H, W)`` current ``x_t``.
            generator: torch generator(s) for the corrector and predictor noise.
        """
        self._check_step(timestep)
        t = int(timestep)
        if self.is_corrector_step():
            alpha_prod_t = self.alphas_cumprod[t].to(sample.device, sample.dtype)
            epsilon = epsilon_from_model_output(model_output, sample, alpha_prod_t, self.config.prediction_type)
            pred_original_sample = clip_or_threshold(
                predict_original_sample(sample, epsilon, alpha_prod_t), self.predictor
            )
            score = score_from_epsilon(epsilon, alpha_prod_t)
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            # Capped at the level's noise variance: a zero score would otherwise ask for an infinite step.
            step_size = snr_step_size(score, noise, self.config.snr, self.alphas[t], max_step_size=1 - self.alphas_cumprod[t])
            prev_sample = langevin_update(sample, score, noise, step_size)
        else:
            output = self.predictor.step(model_output, t, sample, generator=generator)
            prev_sample, pred_original_sample = output.prev_sample, output.pred_original_sample
        self._step_index += 1
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return LangevinSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
