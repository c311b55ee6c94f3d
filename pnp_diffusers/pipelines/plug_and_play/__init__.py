"""Plug-and-play inference with a diffusion prior (Graikos et al., NeurIPS 2022).

One module per method, each ending with its ``register_method`` line; importing them here registers them.
"""

from .registry import (
    PLUG_AND_PLAY_METHODS,
    PLUG_AND_PLAY_PRESETS,
    MethodResult,
    MethodSettings,
    PlugAndPlayMethod,
    register_method,
)
from .optimisation import OptimisationSettings, constraint_weight_at, optimise
from .method_prior import (  # noqa: F401  (registers method "prior")
    FAST_PIXEL_SETTINGS,
    FAST_PRIOR_SETTINGS,
    PAPER_MNIST_SETTINGS,
    PriorSettings,
    denoising_loss,
    graikos_t_schedule,
    guided_final_pass,
    linear_t_schedule,
)
from .method_noise import NOISE_SETTINGS, NoiseSettings, differentiable_ddim, gaussian_shell_penalty  # noqa: F401
from .method_dps import DPS_SETTINGS, DPSSettings, dps_sample  # noqa: F401  (registers method "dps")
from .pipeline_plug_and_play import PlugAndPlayPipeline, PlugAndPlayPipelineOutput
