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

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..utils import (
    PREDICTION_TYPES,
    broadcast_to_sample,
    epsilon_from_model_output,
    per_sample_norm,
    predict_original_sample,
    score_from_epsilon,
)

STEP_SIZE_RULES = ("snr", "sigma_ratio")


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


def snr_step_size(score: torch.Tensor, noise: torch.Tensor, snr: float, alpha: torch.Tensor | float) -> torch.Tensor:
    """Per-sample Langevin step ``2 alpha (snr ||z|| / ||s||)^2`` (Song et al. 2021, Algorithm 5), shape ``(B,)``.

    The norms are taken per sample (score_sde averages them over the batch): every sample then gets
    the step its own score calls for, independent of what else is in the batch. The ratio concentrates
    for images (hundreds of pixels); in very low dimension (say < 100 values a sample) it is noisy,
    the step depends on the state and the chain over-disperses (+30 % variance at 16 values).
    """
    score_norm = per_sample_norm(score).clamp_min(torch.finfo(score.dtype).tiny)
    noise_norm = per_sample_norm(noise)
    return 2 * torch.as_tensor(alpha, dtype=score.dtype, device=score.device) * (snr * noise_norm / score_norm) ** 2


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


class AnnealedLangevinScheduler(SchedulerMixin, ConfigMixin):
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
        snr: target signal-to-noise ratio ``r`` of the ``"snr"`` rule (0.16: score_sde's default).
        epsilon: base step ``epsilon`` of the ``"sigma_ratio"`` rule (2e-5: Song & Ermon 2019).
        denoise_final: finish with one noise-free Tweedie denoising call.
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1
    # Noise levels used when the pipeline is not told otherwise (x n_steps_each model calls).
    default_num_inference_steps = 100

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
        n_steps_each: int = 10,
        step_size_rule: str = "snr",
        snr: float = 0.16,
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
        self.noise_schedule = ddpm_noise_schedule(self.config)
        self.betas = self.noise_schedule.betas
        self.alphas = self.noise_schedule.alphas
        self.alphas_cumprod = self.noise_schedule.alphas_cumprod
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.noise_levels = None
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy())
        self._step_index = None

    @property
    def step_index(self) -> int | None:
        """Index in ``timesteps`` of the next call to ``step`` (``None`` before ``set_timesteps``)."""
        return self._step_index

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """The model takes ``x_t`` unscaled (VP); kept for interchangeability with other schedulers."""
        return sample

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose ``num_inference_steps`` noise levels and lay out one timestep per model call.

        ``timesteps`` repeats each level ``n_steps_each`` times, then (``denoise_final``) the last level once more.
        """
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
        self.noise_schedule.set_timesteps(num_inference_steps)
        levels = self.noise_schedule.timesteps.clone()
        timesteps = levels.repeat_interleave(self.config.n_steps_each)
        if self.config.denoise_final:
            timesteps = torch.cat([timesteps, levels[-1:]])
        self.num_inference_steps = num_inference_steps
        self.noise_levels = levels.to(device)
        self.timesteps = timesteps.to(device)
        self._step_index = 0

    def step_size(self, score: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
        """Langevin step ``eta`` at ``timestep``: a ``(B,)`` tensor (``"snr"``) or a scalar (``"sigma_ratio"``)."""
        if self.config.step_size_rule == "snr":
            return snr_step_size(score, noise, self.config.snr, self.alphas[timestep])
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

    def _check_step(self, timestep: int | torch.Tensor) -> int:
        if self._step_index is None:
            raise ValueError("`set_timesteps` must be called before `step`.")
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
