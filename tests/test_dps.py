"""DPSPipeline: Diffusion Posterior Sampling (Chung et al. 2023) with plug-and-play constraints, tiny UNet."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline

from pnp_diffusers.constraints import MaskedObservation, SymmetryConstraint
from pnp_diffusers.models import create_noise_scheduler, create_unet
from pnp_diffusers.pipelines.dps import DPSPipeline, dps_step_size, straight_through_clip
from pnp_diffusers.pipelines.dps.pipeline_dps import guidance_scale_at, guided_step_count

TINY_UNET = dict(
    sample_size=8,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    pipe = DPSPipeline(unet=create_unet("mnist-small", **TINY_UNET), scheduler=create_noise_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def dark_image():
    return MaskedObservation(-torch.ones(1, 8, 8))


def test_straight_through_clip_and_step_size():
    x = torch.tensor([-3.0, -0.5, 0.2, 2.0], requires_grad=True)
    clipped = straight_through_clip(x)
    assert clipped.tolist() == pytest.approx([-1.0, -0.5, 0.2, 1.0])
    (grad,) = torch.autograd.grad((clipped * torch.arange(4.0)).sum(), x)
    assert grad.tolist() == [0.0, 1.0, 2.0, 3.0]  # identity backward, even where clipped
    loss = torch.tensor([4.0, 0.25, -9.0, 0.0])
    assert torch.allclose(dps_step_size(loss, 2.0, "loss-norm"), torch.tensor([1.0, 4.0, 2.0 / 3.0, 2.0 / 1e-4]))
    assert torch.equal(dps_step_size(loss, 2.0, "constant"), torch.full((4,), 2.0))


def test_zero_guidance_is_the_stock_ddpm_sampler(pipe):
    ours = pipe(dark_image(), batch_size=2, num_inference_steps=20, guidance_scale=0.0, generator=gen(0), output_type="np")
    stock = DDPMPipeline(unet=pipe.unet, scheduler=create_noise_scheduler())
    stock.set_progress_bar_config(disable=True)
    reference = stock(batch_size=2, num_inference_steps=20, generator=gen(0), output_type="np").images
    assert np.allclose(ours.images, reference, atol=1e-6)
    assert ours.unet_forward_passes == 20 and ours.unet_backward_passes == 0


def test_first_step_is_the_dps_update(pipe):
    """x_{t-1} = DDPM step(x_t) - zeta / sqrt(L) * grad_{x_t} L(clip(x0_hat(x_t)))."""
    constraint = SymmetryConstraint("vertical", "similar")
    steps = []
    pipe(constraint, batch_size=2, num_inference_steps=4, guidance_scale=0.3, generator=gen(1), output_type="pt",
         callback_on_step_end=lambda p, i, t, kw: steps.append(kw["latents"].clone()) or {})

    scheduler = create_noise_scheduler()
    scheduler.set_timesteps(4)
    t = scheduler.timesteps[0]
    generator = gen(1)
    x_t = torch.randn(2, 1, 8, 8, generator=generator).requires_grad_(True)
    eps = pipe.unet(x_t, t).sample
    abar = scheduler.alphas_cumprod[t]
    x0_hat = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    loss = constraint(x0_hat + (x0_hat.clamp(-1, 1) - x0_hat).detach())  # straight-through clip
    (grad,) = torch.autograd.grad(loss.sum(), x_t)
    prev = scheduler.step(eps.detach(), t, x_t.detach(), generator=generator).prev_sample
    expected = prev - (0.3 / loss.detach().sqrt()).view(2, 1, 1, 1) * grad
    assert torch.allclose(steps[0], expected, atol=1e-5)
    assert all(p.grad is None for p in pipe.unet.parameters())
    assert all(p.requires_grad for p in pipe.unet.parameters())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guidance_lowers_the_constraint(pipe, sampler):
    original = pipe.scheduler
    if sampler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(original.config)
    try:
        kwargs = dict(batch_size=3, num_inference_steps=20, generator=gen(2), output_type="pt")
        free = pipe(dark_image(), guidance_scale=0.0, **kwargs)
        guided = pipe(dark_image(), guidance_scale=1.0, **kwargs)
    finally:
        pipe.scheduler = original
    assert (guided.constraint_value < 0.5 * free.constraint_value).all(), (free.constraint_value, guided.constraint_value)
    assert guided.guided_steps.tolist() == [20, 20, 20] and not guided.nan_stopped.any()
    assert guided.constraint_history.shape == (20, 3)


def test_determinism_and_nan_stops_guidance_of_that_sample_only(pipe):
    base = dark_image()
    calls = {"n": 0}

    def poisoned(x):
        calls["n"] += 1
        loss = base(x)
        if calls["n"] > 3:
            loss = torch.cat([loss[:1], torch.full_like(loss[1:2], float("nan")), loss[2:]])
        return loss

    kwargs = dict(batch_size=3, num_inference_steps=8, guidance_scale=0.5, output_type="pt")
    clean = pipe(base, generator=gen(3), **kwargs)
    again = pipe(base, generator=gen(3), **kwargs)
    assert torch.equal(clean.images, again.images)
    stopped = pipe(poisoned, generator=gen(3), **kwargs)
    assert stopped.nan_stopped.tolist() == [False, True, False]
    assert stopped.guided_steps.tolist() == [8, 3, 8]
    assert torch.allclose(stopped.images[[0, 2]], clean.images[[0, 2]], atol=1e-6)
    assert torch.isfinite(stopped.images).all() and not torch.allclose(stopped.images[1], clean.images[1])


def test_bad_inputs(pipe):
    good = dark_image()
    with pytest.raises(ValueError, match="constraint"):
        pipe(lambda x: x.mean(), batch_size=2, num_inference_steps=2)
    with pytest.raises(ValueError, match="constraint"):
        pipe(None, num_inference_steps=2)
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe(good, guidance_scale=-1.0, num_inference_steps=2)
    with pytest.raises(ValueError, match="step_size_rule"):
        pipe(good, step_size_rule="adaptive", num_inference_steps=2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(good, num_inference_steps=0)
    with pytest.raises(ValueError, match="output_type"):
        pipe(good, num_inference_steps=2, output_type="latent")
    with pytest.raises(ValueError, match="latents"):
        pipe(good, batch_size=2, num_inference_steps=2, latents=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="class_labels"):
        pipe(good, num_inference_steps=2, class_labels=1)
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        pipe(good, num_inference_steps=2, callback_on_step_end_tensor_inputs=["noise"])
    with pytest.raises(ValueError, match="guidance_end"):
        pipe(good, num_inference_steps=2, guidance_end=1.5)
    with pytest.raises(ValueError, match="guidance_schedule"):
        pipe(good, num_inference_steps=2, guidance_schedule="cosine")


def test_guidance_schedule_values():
    assert [guidance_scale_at(i, 4, 2.0, "constant") for i in range(6)] == [2.0, 2.0, 2.0, 2.0, 0.0, 0.0]
    assert [guidance_scale_at(i, 4, 2.0, "linear") for i in range(5)] == [2.0, 1.5, 1.0, 0.5, 0.0]
    assert guided_step_count(200, 0.75) == 150 and guided_step_count(10, 0.0) == 0 and guided_step_count(10, 1.0) == 10


def test_clean_up_steps_are_unguided(pipe):
    """guidance_end < 1: the guided steps match a fully guided run, the rest are plain DDPM steps."""
    constraint = SymmetryConstraint("vertical", "similar")

    def run(**kwargs):
        steps = []
        out = pipe(constraint, batch_size=2, num_inference_steps=6, guidance_scale=0.3, generator=gen(2), output_type="pt",
                   callback_on_step_end=lambda p, i, t, kw: steps.append(kw["latents"].clone()) or {}, **kwargs)
        return out, steps

    full, full_steps = run()
    half, half_steps = run(guidance_end=0.5)
    for i in range(3):
        assert torch.equal(half_steps[i], full_steps[i])
    assert not torch.allclose(half_steps[3], full_steps[3])
    assert half.unet_backward_passes == 3 and full.unet_backward_passes == 6
    assert half.guided_steps.tolist() == [3, 3] and full.guided_steps.tolist() == [6, 6]
    # the clean-up step is the scheduler's own step from the same x and noise
    scheduler = create_noise_scheduler()
    scheduler.set_timesteps(6)
    t = scheduler.timesteps[3]
    generator = gen(2)
    torch.randn(2, 1, 8, 8, generator=generator)
    for _ in range(3):
        torch.randn(2, 1, 8, 8, generator=generator)  # the step noise of the first three steps
    with torch.no_grad():
        eps = pipe.unet(half_steps[2], t).sample
    expected = scheduler.step(eps, t, half_steps[2], generator=generator).prev_sample
    assert torch.allclose(half_steps[3], expected, atol=1e-5)
    linear, linear_steps = run(guidance_schedule="linear")
    assert torch.equal(linear_steps[0], full_steps[0]) and not torch.allclose(linear_steps[1], full_steps[1])


def test_save_pretrained_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert "from pnp_diffusers import DPSPipeline" in (tmp_path / "pipeline.py").read_text()
    loaded = DPSPipeline.from_pretrained(tmp_path)
    assert all(torch.equal(loaded.unet.state_dict()[k], v) for k, v in pipe.unet.state_dict().items())


# ----------------------------------------------------------------------------- the same method under PlugAndPlayPipeline


@pytest.mark.parametrize("settings", [
    dict(num_inference_steps=6, guidance_scale=0.3),
    dict(num_inference_steps=8, guidance_scale=0.5, step_size_rule="constant", guidance_end=0.5, guidance_schedule="linear"),
])
def test_plug_and_play_method_dps_is_exactly_dps_pipeline(pipe, settings):
    """method="dps" runs DPSPipeline's loop: same generator and settings, bit-identical images and counters."""
    from pnp_diffusers import PlugAndPlayPipeline

    pnp = PlugAndPlayPipeline(unet=pipe.unet, scheduler=create_noise_scheduler())
    pnp.set_progress_bar_config(disable=True)
    constraint = SymmetryConstraint("vertical", "similar")
    dps_steps, pnp_steps = [], []
    dps = pipe(constraint, batch_size=3, generator=gen(4), output_type="pt",
               callback_on_step_end=lambda p, i, t, kw: dps_steps.append((i, t, kw["latents"].clone())) or {}, **settings)
    ours = pnp(constraint, batch_size=3, method="dps", generator=gen(4), output_type="pt",
               callback_on_step_end=lambda p, i, t, kw: pnp_steps.append((i, t, kw["latents"].clone())) or {}, **settings)
    assert torch.equal(ours.images, dps.images)
    assert torch.equal(ours.constraint_value, dps.constraint_value)
    assert torch.equal(ours.loss_history, dps.constraint_history)
    assert torch.equal(ours.iterations, dps.guided_steps) and torch.equal(ours.nan_stopped, dps.nan_stopped)
    assert (ours.unet_forward_passes, ours.unet_backward_passes) == (dps.unet_forward_passes, dps.unet_backward_passes)
    assert torch.equal(ours.prior_loss, torch.zeros(3))
    assert len(pnp_steps) == len(dps_steps) == settings["num_inference_steps"]
    for (i, t, x), (j, s, y) in zip(pnp_steps, dps_steps):
        assert (i, t) == (j, s) and torch.equal(x, y)


def test_plug_and_play_dps_preset_and_given_noise_match_dps_pipeline(pipe):
    """The "dps" preset is 200 steps at zeta 1 (eval_pnp's DPS row); a call's override and latents work as in DPSPipeline."""
    from pnp_diffusers import DPS_SETTINGS, DPSSettings, PlugAndPlayPipeline

    assert DPS_SETTINGS == DPSSettings(num_inference_steps=200, guidance_scale=1.0, step_size_rule="loss-norm",
                                       guidance_end=1.0, guidance_schedule="constant")
    pnp = PlugAndPlayPipeline(unet=pipe.unet, scheduler=create_noise_scheduler())
    pnp.set_progress_bar_config(disable=True)
    assert pnp.resolve_settings("dps") == DPS_SETTINGS
    noise = torch.randn(2, 1, 8, 8, generator=gen(7))
    ours = pnp(dark_image(), batch_size=2, method="dps", num_inference_steps=5, latents=noise, generator=gen(8), output_type="pt")
    dps = pipe(dark_image(), batch_size=2, num_inference_steps=5, latents=noise, generator=gen(8), output_type="pt")
    assert torch.equal(ours.images, dps.images) and ours.unet_backward_passes == 5
    with pytest.raises(ValueError, match="guidance_end"):
        pnp(dark_image(), method="dps", num_inference_steps=2, guidance_end=2.0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pnp(dark_image(), method="dps", num_inference_steps=1001)
