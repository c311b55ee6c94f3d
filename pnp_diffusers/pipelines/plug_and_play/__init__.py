"""Plug-and-play inference with a diffusion prior (Graikos et al., NeurIPS 2022)."""

from .pipeline_plug_and_play import (
    FAST_PRIOR_SETTINGS,
    NOISE_SETTINGS,
    PAPER_MNIST_SETTINGS,
    PLUG_AND_PLAY_PRESETS,
    PlugAndPlayPipeline,
    PlugAndPlayPipelineOutput,
    PlugAndPlaySettings,
    constraint_weight_at,
    ddim_timesteps,
    gaussian_shell_penalty,
    graikos_t_schedule,
    linear_t_schedule,
)
