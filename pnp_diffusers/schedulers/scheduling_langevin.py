"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) for a VP diffusion model.

Song & Ermon sample a noise-conditional score model by running ``T`` steps of Langevin dynamics

    x <- x + eta_i * s(x, sigma_i) + sqrt(2 eta_i) z,        z ~ N(0, I)

at each noise level ``sigma_1 > ... > sigma_L`` in turn. Here the model is a DDPM (VP) noise
predictor; its score is ``s(x_t, t) = -eps(x_t, t) / sqrt(1 - abar_t)`` (Song et al. 2021, Eq. 17 for VP).

What this scheduler does, precisely:

- It works on the VP-scaled variable ``x_t`` itself: the Langevin chain at level ``t`` targets the
  noisy marginal ``p_t`` of ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``. The sample is not
  rescaled between levels (``p_t`` of one level is the starting point of the next, as in the paper).
- Noise levels are ``num_inference_steps`` training timesteps chosen like DDPM's (``timestep_spacing``);
  each appears ``n_steps_each`` times in ``timesteps``: one model call per Langevin step, the phase is
  kept in ``step_index`` (the way diffusers' Heun scheduler handles its repeated timesteps).
- Step size ``eta``, chosen by ``step_size_rule``:
    * ``"snr"`` (default): ``eta = 2 alpha_t (snr * ||z|| / ||s||)^2`` per sample, the signal-to-noise rule
      of Song et al. 2021 (Algorithm 5 for VP, ``alpha_t = 1 - beta_t``), which adapts to the score's size;
    * ``"sigma_ratio"``: the original ``alpha_i = epsilon * sigma_i^2 / sigma_L^2`` of Song & Ermon 2019 with
      ``sigma_i^2 = 1 - abar_t``, i.e. ``eta = alpha_i / 2`` (their update is ``x + alpha_i/2 s + sqrt(alpha_i) z``).
- With ``denoise_final`` (default) one more model call at the last level returns Tweedie's noise-free
  estimate ``E[x_0 | x_t] = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, clipped or thresholded like every
  ``x_0`` estimate (``clip_sample``, ``thresholding``). Langevin steps themselves estimate no ``x_0`` and
  are not clipped.

Model calls: ``num_inference_steps * n_steps_each (+ 1)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..utils import PREDICTION_TYPES, epsilon_from_model_output, predict_original_sample, score_from_epsilon
from .langevin_utils import (  # noqa: F401  (re-exported: their historical import path)
    LangevinSchedulerOutput,
    RepeatedLevelsMixin,
    clip_or_threshold,
    ddpm_noise_schedule,
    langevin_update,
    snr_step_size,
)

STEP_SIZE_RULES = ("snr", "sigma_ratio")


class AnnealedLangevinScheduler(RepeatedLevelsMixin, SchedulerMixin, ConfigMixin):
    """Annealed Langevin dynamics as a diffusers scheduler, for models trained as DDPM noise predictors.

    Builds from any DDPM config (``AnnealedLangevinScheduler.from_config(pipe.scheduler.config)``): the
    DDPM keys (betas, ``prediction_type``, ``clip_sample``, thresholding, ``timestep_spacing``) are reused,
    the others ignored. See the module docstring for the algorithm.

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, prediction_type, clip_sample,
        clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value, timestep_spacing,
        steps_offset, rescale_betas_zero_snr: as in :class:`~diffusers.DDPMScheduler`.
        n_steps_each: Langevin steps (model calls) per noise level (Song & Ermon's ``T``).
        step_size_rule: ``"snr"`` or ``"sigma_ratio"`` (see the module docstring).
        snr: target signal-to-noise ratio ``r`` of the ``"snr"`` rule. score_sde's 0.16 (its corrector's value,
            where a predictor moves the sample between levels) is far too small for Langevin alone on a VP
            model: the chain then barely moves within a level.

    Defaults (249 levels x 2 steps, snr 0.3, one final denoise: 499 model calls) come from
    ``benchmarks/sweep_samplers.py`` on the shipped 17,141-step MNIST prior at n=1000 (bf16 forwards, seed 0):
    FD 1.330, 1.34x DDIM 50's 0.991, inside a 1.5x target within 500 calls; 499 levels x 1 step (500 calls)
    gave 1.386 (1.40x) (``benchmarks/results/sweep_samplers_langevin_500calls_n1000.json``). The previous
    default, 100 levels x 4 steps at snr 0.5 (401 calls), was 1.49x on an n=250 screen but 2.10x at n=1000
    (``sweep_samplers_langevin_default_n1000.json``): without a predictor to carry the sample between
    levels, many levels with few steps each beat few levels with many, and snr <= 0.16 (score_sde's
    corrector value) leaves the chain 12-84x DDIM 50 (``sweep_samplers_screen_n250.md``).
        epsilon: base step ``epsilon`` of the ``"sigma_ratio"`` rule (2e-5: Song & Ermon 2019).
        denoise_final: finish with one noise-free Tweedie denoising call.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    # Noise levels used when the pipeline is not told otherwise (x n_steps_each model calls, + 1).
    default_num_inference_steps = 249

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        n_steps_each: int = 2,
        step_size_rule: str = "snr",
        snr: float = 0.3,
        epsilon: float = 2e-5,
        denoise_final: bool = True,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        if not isinstance(n_steps_each, int) or n_steps_each < 1:
            raise ValueError(f"`n_steps_each` must be a positive integer, got {n_steps_each!r}.")
        if step_size_rule not in STEP_SIZE_RULES:
            raise ValueError(f"`step_size_rule` must be one of {STEP_SIZE_RULES}, got {step_size_rule!r}.")
        if not snr > 0:
            raise ValueError(f"`snr` must be positive, got {snr!r}.")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive, got {epsilon!r}.")
        self._init_levels(self.config)

    @property
    def calls_per_level(self) -> int:
        return self.config.n_steps_each

    @property
    def extra_final_calls(self) -> int:
        return int(self.config.denoise_final)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: Sequence[int] | None = None) -> None:
        """Choose the noise levels and lay out one timestep per model call.

        Args:
            num_inference_steps: number of levels, spaced like DDPM's (``timestep_spacing``).
            device: where ``timesteps`` live.
            timesteps: custom levels instead, strictly decreasing in [0, T-1].

        ``timesteps`` repeats each level ``n_steps_each`` times, then (``denoise_final``) the last level once more.
        """
        levels = self._choose_levels(num_inference_steps, timesteps)
        layout = levels.repeat_interleave(self.config.n_steps_each)
        if self.config.denoise_final:
            layout = torch.cat([layout, levels[-1:]])
        self.noise_levels = levels.to(device)
        self.timesteps = layout.to(device)

    def step_size(self, score: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
        """Langevin step ``eta`` at ``timestep``: a ``(B,)`` tensor (``"snr"``) or a scalar (``"sigma_ratio"``)."""
        if self.config.step_size_rule == "snr":
            # Capped at the level's noise variance: a zero score would otherwise ask for an infinite step.
            return snr_step_size(score, noise, self.config.snr, self.alphas[timestep],
                                 max_step_size=1 - self.alphas_cumprod[timestep])
        sigma_sq = 1 - self.alphas_cumprod[timestep]
        sigma_last_sq = 1 - self.alphas_cumprod[int(self.noise_levels[-1])]
        return (self.config.epsilon * sigma_sq / sigma_last_sq / 2).to(score.device, score.dtype)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> LangevinSchedulerOutput | tuple:
        """One model call's worth of sampling: a Langevin step at ``timestep``, or the final denoise.

        Args:
            model_output: ``(B, C, H, W)`` model prediction at ``(sample, timestep)``.
            timestep: must equal ``timesteps[step_index]``.
            sample: ``(B, C, H, W)`` current ``x_t``.
            generator: torch generator(s) for the Langevin noise.
        """
        index = self._check_step(timestep)
        t = int(timestep)
        alpha_prod_t = self.alphas_cumprod[t].to(sample.device, sample.dtype)
        epsilon = epsilon_from_model_output(model_output, sample, alpha_prod_t, self.config.prediction_type)
        pred_original_sample = clip_or_threshold(
            predict_original_sample(sample, epsilon, alpha_prod_t), self.noise_schedule
        )
        is_final_denoise = self.config.denoise_final and index == len(self.timesteps) - 1
        if is_final_denoise:
            prev_sample = pred_original_sample
        else:
            score = score_from_epsilon(epsilon, alpha_prod_t)
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev_sample = langevin_update(sample, score, noise, self.step_size(score, noise, t))
        self._step_index += 1
        if not return_dict:
            return (prev_sample, pred_original_sample)
        return LangevinSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
