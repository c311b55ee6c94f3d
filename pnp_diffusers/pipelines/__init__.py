"""Pipelines, one a folder (diffusers layout)."""

from .sampling import DiffusionSamplingPipeline

__all__ = ["DiffusionSamplingPipeline"]
