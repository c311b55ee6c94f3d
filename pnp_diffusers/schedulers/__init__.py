"""Samplers as diffusers schedulers; each builds from a DDPM config with ``from_config``."""

from .scheduling_ddim_skip import DDIMSkipScheduler
from .scheduling_langevin import AnnealedLangevinScheduler, LangevinSchedulerOutput
from .scheduling_predictor_corrector import PredictorCorrectorScheduler

__all__ = [
    "AnnealedLangevinScheduler",
    "DDIMSkipScheduler",
    "LangevinSchedulerOutput",
    "PredictorCorrectorScheduler",
]
