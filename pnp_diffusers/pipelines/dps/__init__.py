"""Diffusion Posterior Sampling (Chung et al., ICLR 2023) with plug-and-play constraints."""

from ...utils import dps_step_size, straight_through_clip
from .pipeline_dps import DPSPipeline, DPSPipelineOutput
