"""img2img / SDEdit in DiffusionSamplingPipeline: image= and strength= for every scheduler, with CFG, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image

from conftest import ALL_SCHEDULERS, SCHEDULER_IDS
from pnp_diffusers import DiffusionSamplingPipeline

SCHEDULERS, IDS = ALL_SCHEDULERS, SCHEDULER_IDS


def make_pipe(unet, scheduler):
    pipe = DiffusionSamplingPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def an_image(batch=1):
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(7))


def calls(pipe, **kwargs):
    seen = []

    def count(pipe, i, t, tensors):
        seen.append(int(t))
        return {}

    pipe(output_type="pt", callback_on_step_end=count, **kwargs)
    return seen


@pytest.mark.parametrize("make_scheduler", SCHEDULERS, ids=IDS)
def test_strength_zero_returns_the_input(tiny_unet, make_scheduler):
    pipe = make_pipe(tiny_unet, make_scheduler())
    image = an_image(2)
    out = pipe(image=image, strength=0.0, num_inference_steps=6, output_type="pt").images
    torch.testing.assert_close(out, image)
    assert calls(pipe, image=image, strength=0.0, num_inference_steps=6) == []


@pytest.mark.parametrize("make_scheduler", SCHEDULERS, ids=IDS)
def test_strength_one_is_plain_sampling_from_the_same_generator(tiny_unet, make_scheduler):
    pipe = make_pipe(tiny_unet, make_scheduler())
    plain = pipe(batch_size=2, num_inference_steps=6, generator=torch.Generator().manual_seed(0), output_type="pt").images
    edited = pipe(image=an_image(2), strength=1.0, num_inference_steps=6, generator=torch.Generator().manual_seed(0),
                  output_type="pt").images
    torch.testing.assert_close(plain, edited, rtol=0, atol=0)


@pytest.mark.parametrize("make_scheduler", SCHEDULERS, ids=IDS)
def test_half_strength_runs_the_last_half_of_the_levels_from_a_level_boundary(tiny_unet, make_scheduler):
    pipe = make_pipe(tiny_unet, make_scheduler())
    full = calls(pipe, batch_size=1, num_inference_steps=6)
    half = calls(pipe, image=an_image(), strength=0.5, num_inference_steps=6)
    order = getattr(pipe.scheduler, "order", 1)
    assert half == full[3 * order:]  # t_start = 6 - int(6 * 0.5) = 3 levels skipped
    if order > 1:
        assert half[:order] == [half[0]] * order  # a whole level, not half of one


def test_the_start_is_the_image_noised_to_the_entry_level(tiny_unet):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) z with z the generator's first draw (Meng et al. 2022, eq. 3)."""
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=100))
    image = an_image()
    caught = {}

    def first(pipe, i, t, tensors):
        caught.setdefault("t", int(t))
        return {}

    original_step = pipe.scheduler.step

    def spy(model_output, timestep, sample, **kwargs):
        caught.setdefault("x_t", sample.clone())
        return original_step(model_output, timestep, sample, **kwargs)

    pipe.scheduler.step = spy
    pipe(image=image, strength=0.4, num_inference_steps=10, generator=torch.Generator().manual_seed(3),
         output_type="pt", callback_on_step_end=first)
    noise = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    abar = pipe.scheduler.alphas_cumprod[caught["t"]]
    torch.testing.assert_close(caught["x_t"], abar.sqrt() * (2 * image - 1) + (1 - abar).sqrt() * noise)


def test_one_image_gives_batch_size_completions_with_cfg(tiny_conditional_unet):
    pipe = make_pipe(tiny_conditional_unet, DDIMScheduler(num_train_timesteps=100))
    out = pipe(image=an_image(), batch_size=3, strength=0.6, class_labels=[0, 1, 2], guidance_scale=2.0,
               num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("form", ["pil", "pil-list", "numpy-hw", "numpy-bhwc", "tensor-chw"])
def test_image_forms(tiny_unet, form):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=100))
    array = (an_image()[0, 0].numpy() * 255).round().astype(np.uint8)
    image = {
        "pil": Image.fromarray(array, mode="L"),
        "pil-list": [Image.fromarray(array, mode="L")] * 2,
        "numpy-hw": array / 255.0,
        "numpy-bhwc": (array / 255.0)[None, ..., None],
        "tensor-chw": torch.from_numpy(array / 255.0).float()[None],
    }[form]
    out = pipe(image=image, strength=0.0, num_inference_steps=4, output_type="pt").images
    torch.testing.assert_close(out[0, 0], torch.from_numpy(array / 255.0).float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image": an_image(), "strength": 1.5}, "`strength` must be a number in \\[0, 1\\]"),
        ({"image": an_image(), "strength": -0.1}, "`strength`"),
        ({"strength": 0.5}, "`strength` needs an `image`"),
        ({"image": torch.rand(1, 3, 8, 8)}, "`image` must have 1 channel"),
        ({"image": torch.rand(1, 1, 9, 8)}, "8x8 pixels"),
        ({"image": torch.rand(1, 1, 8, 8) * 2 - 1}, "`image` values must lie in \\[0, 1\\]"),
        ({"image": torch.full((1, 1, 8, 8), float("nan"))}, "`image` holds 64 NaN"),
        ({"image": torch.rand(2, 1, 8, 8), "batch_size": 3}, "`batch_size`=3 but `image` holds 2"),
        ({"image": an_image(), "latents": torch.randn(1, 1, 8, 8)}, "either `image`"),
        ({"image": "digit.png"}, "`image` must be a PIL image"),
        ({"latents": torch.full((1, 1, 8, 8), float("inf"))}, "`latents` holds 64 NaN or infinite"),
    ],
)
def test_bad_img2img_input_names_the_argument(tiny_unet, kwargs, message):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match=message):
        pipe(num_inference_steps=3, output_type="pt", **kwargs)


def test_one_null_class_rule_across_pipelines(tiny_conditional_unet):
    """Sampling, plug-and-play and DPS: None is the null class, one label broadcasts, the null index is refused."""
    from conftest import TINY_NUM_CLASSES

    from pnp_diffusers import DPSPipeline, PlugAndPlayPipeline, SymmetryConstraint
    from pnp_diffusers.pipelines.pipeline_utils import prepare_class_labels

    null = TINY_NUM_CLASSES
    assert prepare_class_labels(tiny_conditional_unet, None, 2, "cpu").tolist() == [null, null]
    assert prepare_class_labels(tiny_conditional_unet, [1], 3, "cpu").tolist() == [1, 1, 1]
    scheduler = DDPMScheduler(num_train_timesteps=1000)  # the plug-and-play presets stop at t=650
    calls = {
        "sampling": lambda labels: make_pipe(tiny_conditional_unet, scheduler)(
            batch_size=2, class_labels=labels, num_inference_steps=2, output_type="pt"),
        "plug-and-play": lambda labels: PlugAndPlayPipeline(unet=tiny_conditional_unet, scheduler=scheduler)(
            SymmetryConstraint(), batch_size=2, class_labels=labels, num_iterations=1, output_type="pt"),
        "dps": lambda labels: DPSPipeline(unet=tiny_conditional_unet, scheduler=scheduler)(
            SymmetryConstraint(), batch_size=2, class_labels=labels, num_inference_steps=2, output_type="pt"),
    }
    for name, call in calls.items():
        for labels in ([0, null], null, -1):
            with pytest.raises(ValueError, match=r"`class_labels` must lie in \[0, 3\)"):
                call(labels)
        assert call([2]) is not None, name  # one label for the batch
