from .pipeline_sampling import DiffusionSamplingPipeline

__all__ = ["DiffusionSamplingPipeline"]
