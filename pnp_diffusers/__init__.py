"""pnp-diffusers: DDPM samplers as diffusers schedulers, and diffusion models as plug-and-play priors."""

__version__ = "0.1.0"

from .models import (
    UNET_PRESETS,
    create_noise_scheduler,
    create_unet,
    is_class_conditional,
    null_class_label,
    num_classes_of,
    unconditional_unet_from_cfg,
)
from .classifiers import (
    classifier_features,
    classifier_logits,
    preprocess_for_classifier,
    small_classifier_config,
)
from .fidelity_diversity import precision_recall_density_coverage
from .metrics import (
    classifier_frechet_distance,
    classifier_probabilities,
    classifier_score,
    extract_features,
    feature_statistics,
    frechet_distance,
    kernel_distance,
    frechet_distance_from_statistics,
    label_accuracy,
    real_data_floor,
    symmetry_error,
)
from .schedulers import AnnealedLangevinScheduler, DDIMSkipScheduler, PredictorCorrectorScheduler
from .pipelines import DiffusionSamplingPipeline
from .hub import push_folder_to_hub, write_model_card
from .constraints import (
    CallableConstraint,
    ClassifierConstraint,
    CombinedConstraint,
    Constraint,
    MaskedObservation,
    SymmetryConstraint,
    as_constraint,
    evaluate_constraint,
)
from .pipelines.plug_and_play import (
    DPS_SETTINGS,
    FAST_PIXEL_SETTINGS,
    FAST_PRIOR_SETTINGS,
    NOISE_SETTINGS,
    PAPER_MNIST_SETTINGS,
    PLUG_AND_PLAY_METHODS,
    PLUG_AND_PLAY_PRESETS,
    DPSSettings,
    MethodSettings,
    NoiseSettings,
    PlugAndPlayMethod,
    PlugAndPlayPipeline,
    PlugAndPlayPipelineOutput,
    PriorSettings,
    graikos_t_schedule,
    register_method,
)
from .pipelines.dps import DPSPipeline, DPSPipelineOutput
