"""Remote-code entry point: `DiffusionPipeline.from_pretrained(path, trust_remote_code=True)` imports
DiffusionSamplingPipeline from the installed `pnp_diffusers` package (pip install pnp-diffusers)."""

from pnp_diffusers import DiffusionSamplingPipeline  # noqa: F401

__all__ = ["DiffusionSamplingPipeline"]
