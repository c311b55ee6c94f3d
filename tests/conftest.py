"""Shared test fixtures: tiny UNets and an exact noise predictor for Gaussian data.

Fixtures (function-scoped, deterministic, all CPU float32):

- ``tiny_unet``: an unconditional :class:`UNet2DModel`, 1 x 8 x 8 images, ~10 k parameters.
- ``tiny_conditional_unet``: the same with ``TINY_NUM_CLASSES`` classes (+ the null class).
- ``gaussian_model``: :class:`GaussianEpsilonModel` for data ``N(0.3, 0.5^2 I)`` of shape 1 x 4 x 4,
  paired with ``gaussian_scheduler`` (stock DDPM, linear betas, T = 1000, no x0 clipping).

:class:`GaussianEpsilonModel` is importable too (``from conftest import GaussianEpsilonModel``) to build
other Gaussian problems, e.g. class-conditional ones.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput

TINY_NUM_CLASSES = 3
GAUSSIAN_MEAN = 0.3
GAUSSIAN_STD = 0.5


class GaussianEpsilonModel(ModelMixin, ConfigMixin):
    """The exact noise predictor for Gaussian data, with the ``UNet2DModel`` call interface.

    If ``x_0 ~ N(m, s^2 I)`` and ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, then
    ``x_t ~ N(sqrt(abar_t) m, v_t I)`` with ``v_t = abar_t s^2 + 1 - abar_t``; its score is
    ``-(x_t - sqrt(abar_t) m) / v_t`` and the optimal (MMSE) noise prediction is
    ``E[eps | x_t] = -sqrt(1 - abar_t) * score = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m) / v_t``.
    A correct sampler driven by this model must return samples with mean ``m`` and variance ``s^2``.

    Class-conditional variant: ``class_means`` lists one mean per class, the last entry being the
    null class (``num_class_embeds = len(class_means)``, as the project's UNets). All classes share
    ``std``, so guided noise ``eps_u + w (eps_c - eps_u)`` is the exact noise predictor of
    ``N(m_u + w (m_c - m_u), s^2 I)``: classifier-free guidance has a closed form here.

    Args:
        sample_size, in_channels: image shape ``(in_channels, sample_size, sample_size)``.
        mean, std: the data distribution (unconditional model).
        class_means: per-class means, null class last; makes the model class-conditional.
        num_train_timesteps, beta_start, beta_end, beta_schedule: the DDPM noise schedule it is exact for.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 4,
        in_channels: int = 1,
        mean: float = GAUSSIAN_MEAN,
        std: float = GAUSSIAN_STD,
        class_means: list[float] | None = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
    ):
        super().__init__()
        # The pipeline reads these like a UNet2DModel config.
        self.register_to_config(
            out_channels=in_channels, num_class_embeds=len(class_means) if class_means is not None else None
        )
        schedule = DDPMScheduler(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end, beta_schedule=beta_schedule
        )
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.double().float())
        means = [mean] if class_means is None else list(class_means)
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple:
        batch = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device).long().reshape(-1).expand(batch)
        alpha_prod = self.alphas_cumprod[t].double().reshape(batch, 1, 1, 1)
        if self.config.num_class_embeds is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when doing class conditioning")
            mean = self.means[class_labels.long()].double().reshape(batch, 1, 1, 1)
        else:
            mean = self.means[0].double()
        variance = alpha_prod * self.config.std**2 + 1 - alpha_prod
        epsilon = (1 - alpha_prod).sqrt() * (sample.double() - alpha_prod.sqrt() * mean) / variance
        epsilon = epsilon.to(sample.dtype)
        return UNet2DOutput(sample=epsilon) if return_dict else (epsilon,)


def make_tiny_unet(num_classes: int | None = None, sample_size: int = 8, seed: int = 0) -> UNet2DModel:
    """A 2-level UNet2DModel (8/16 channels, 4 groups) small enough for CPU tests."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
        num_class_embeds=None if num_classes is None else num_classes + 1,
    ).eval()


@pytest.fixture
def tiny_unet() -> UNet2DModel:
    return make_tiny_unet()


@pytest.fixture
def tiny_conditional_unet() -> UNet2DModel:
    return make_tiny_unet(num_classes=TINY_NUM_CLASSES)


@pytest.fixture
def gaussian_model() -> GaussianEpsilonModel:
    return GaussianEpsilonModel()


@pytest.fixture
def gaussian_scheduler() -> DDPMScheduler:
    """The DDPM noise schedule ``gaussian_model`` is exact for; no x0 clipping (Gaussian tails exceed [-1, 1])."""
    return DDPMScheduler(num_train_timesteps=1000, clip_sample=False)


def all_schedulers() -> tuple[list, list[str]]:
    """One factory per scheduler the sampling pipeline takes (T = 100, tiny), and their test ids."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from pnp_diffusers import AnnealedLangevinScheduler, DDIMSkipScheduler, PredictorCorrectorScheduler

    factories = [
        lambda: DDPMScheduler(num_train_timesteps=100),
        lambda: DDIMScheduler(num_train_timesteps=100),
        lambda: DDIMSkipScheduler(num_train_timesteps=100, timestep_spacing="quadratic"),
        lambda: AnnealedLangevinScheduler(num_train_timesteps=100, n_steps_each=2),
        lambda: PredictorCorrectorScheduler(num_train_timesteps=100, n_corrector_steps=1),
    ]
    return factories, ["ddpm", "ddim", "ddim-skip", "langevin", "pc"]


ALL_SCHEDULERS, SCHEDULER_IDS = all_schedulers()
