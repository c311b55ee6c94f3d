"""PlugAndPlayPipeline, method="noise": the initial noise optimised through diffusers' DDIMScheduler, on a tiny UNet."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from pnp_diffusers.constraints import SymmetryConstraint
from pnp_diffusers.pipelines.plug_and_play import differentiable_ddim, gaussian_shell_penalty
from pnp_diffusers.pipelines.plug_and_play.method_noise import ddim_scheduler, warm_start

from test_plug_and_play import gen, pipe, record_latents  # noqa: F401  (pipe: the module-scoped fixture)


# ----------------------------------------------------------------------------- noise method


def test_noise_method_differentiates_through_diffusers_ddim(pipe):
    """The noise method's sampler is DDIMScheduler.step under autograd: the same images as a no-grad DDIM
    loop, and a gradient in x_T that matches finite differences of that loop."""
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True)
    scheduler.set_timesteps(5)
    assert ddim_scheduler(pipe.scheduler.config, 5).timesteps.tolist() == scheduler.timesteps.tolist() == [999, 799, 599, 399, 199]

    def plain_ddim(x):
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0).prev_sample
        return x

    x = torch.randn(2, 1, 8, 8, generator=gen(0))
    assert torch.allclose(differentiable_ddim(pipe, x, ddim_scheduler(pipe.scheduler.config, 5)), plain_ddim(x), atol=1e-5)
    # The gradient, against central differences; without x0 clipping, whose kinks finite differences straddle.
    scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    scheduler.set_timesteps(5)
    noise = x.clone().requires_grad_(True)
    ours = differentiable_ddim(pipe, noise, scheduler)
    direction = torch.randn(2, 1, 8, 8, generator=gen(1))
    (grad,) = torch.autograd.grad((ours * direction).sum(), noise)
    probe = torch.randn(2, 1, 8, 8, generator=gen(2))
    h = 1e-3
    finite = ((plain_ddim(x + h * probe) - plain_ddim(x - h * probe)) * direction).sum() / (2 * h)
    assert float((grad * probe).sum()) == pytest.approx(float(finite), rel=2e-2, abs=1e-3)


def test_noise_method_keeps_x_T_on_the_gaussian_shell(pipe):
    def brighter(x):  # pushes x0 towards +1 everywhere: a strong pull on x_T's norm
        return -x.flatten(1).mean(dim=1)

    d = 64
    kwargs = dict(method="noise", batch_size=4, num_iterations=15, num_inference_steps=3, warm_start_candidates=1,
                  learning_rate=0.1, constraint_weight=5.0, generator=gen(0), output_type="pt")
    steps, free_steps = [], []
    out = pipe(brighter, callback_on_step_end=record_latents(steps), **kwargs)
    pipe(brighter, regularization_weight=0.0, callback_on_step_end=record_latents(free_steps), **kwargs)
    radius = steps[-1].flatten(1).norm(dim=1)
    free_radius = free_steps[-1].flatten(1).norm(dim=1)
    assert ((radius - math.sqrt(d)).abs() < 0.1 * math.sqrt(d)).all(), radius
    assert (free_radius - math.sqrt(d)).abs().mean() > 2 * (radius - math.sqrt(d)).abs().mean()
    assert (out.loss_history[-1] < out.loss_history[0]).all()
    assert out.unet_forward_passes == 15 * 3 + 3 and out.unet_backward_passes == 15 * 3
    assert torch.allclose(out.prior_loss, gaussian_shell_penalty(steps[-1]), atol=1e-4)


def test_noise_method_gradient_checkpointing_gives_the_same_result(pipe):
    constraint = SymmetryConstraint("vertical", "similar")
    kwargs = dict(method="noise", batch_size=2, num_iterations=3, num_inference_steps=3, warm_start_candidates=1,
                  output_type="pt")
    plain = pipe(constraint, generator=gen(4), **kwargs)
    checkpointed = pipe(constraint, generator=gen(4), gradient_checkpointing=True, **kwargs)
    assert torch.allclose(plain.images, checkpointed.images, atol=1e-6)
    assert checkpointed.unet_forward_passes == 3 * 6 + 3


def gen_after(seed, draws, shape=(3, 1, 8, 8)):
    """A generator seeded ``seed`` that has already drawn ``draws`` noises of ``shape``."""
    generator = gen(seed)
    for _ in range(draws):
        torch.randn(*shape, generator=generator)
    return generator


def test_noise_method_warm_start_picks_the_best_candidate_per_sample(pipe):
    """warm_start_candidates=k: each sample starts from whichever of k generator draws renders with the
    lowest constraint; the draws are the pipeline's first noise then k - 1 more from the same generator."""
    constraint = SymmetryConstraint("vertical", "similar")
    scheduler = ddim_scheduler(pipe.scheduler.config, 3)
    generator = gen(5)
    candidates = [torch.randn(3, 1, 8, 8, generator=generator) for _ in range(4)]
    losses = torch.stack([constraint(differentiable_ddim(pipe, c, scheduler).clamp(-1, 1)) for c in candidates])
    best = losses.argmin(dim=0)
    expected = torch.stack([candidates[int(best[b])][b] for b in range(3)])
    assert torch.equal(warm_start(pipe, constraint, candidates[0], 4, scheduler, None, gen_after(5, 1)), expected)
    assert len(set(best.tolist())) > 1 or best.tolist() != [0, 0, 0]  # the choice is per sample, not always the first
    steps = []
    out = pipe(constraint, method="noise", batch_size=3, num_iterations=2, num_inference_steps=3, learning_rate=1e-9,
               warm_start_candidates=4, generator=gen(5), output_type="pt", callback_on_step_end=record_latents(steps))
    assert torch.allclose(steps[0], expected, atol=1e-6)  # lr ~ 0: the first iterate is the warm start
    assert out.unet_forward_passes == 4 * 3 + 2 * 3 + 3 and out.unet_backward_passes == 2 * 3


def test_noise_preset_warm_starts_from_32_candidates(pipe):
    """The preset's measured default (98.1% labels at n=640 on the shipped prior): the best of 32 noises,
    each rendered with the K-step DDIM, before the loop; warm_start_candidates=1 switches it off."""
    constraint = SymmetryConstraint("vertical", "similar")
    kwargs = dict(method="noise", batch_size=2, num_iterations=2, num_inference_steps=3, output_type="pt")
    preset = pipe(constraint, generator=gen(7), **kwargs)
    assert preset.unet_forward_passes == 32 * 3 + 2 * 3 + 3
    plain = pipe(constraint, generator=gen(7), warm_start_candidates=1, **kwargs)
    assert plain.unet_forward_passes == 2 * 3 + 3
    assert not torch.allclose(preset.images, plain.images)


def test_noise_method_final_render_uses_more_ddim_steps(pipe):
    constraint = SymmetryConstraint("vertical", "similar")
    kwargs = dict(method="noise", batch_size=2, num_iterations=2, num_inference_steps=3, warm_start_candidates=1,
                  output_type="pt")
    steps = []
    fine = pipe(constraint, generator=gen(6), final_inference_steps=10, callback_on_step_end=record_latents(steps), **kwargs)
    with torch.no_grad():
        expected = differentiable_ddim(pipe, steps[-1], ddim_scheduler(pipe.scheduler.config, 10)).clamp(-1, 1)
    assert torch.allclose(fine.images * 2 - 1, expected, atol=1e-5)
    assert fine.unet_forward_passes == 2 * 3 + 10
    with pytest.raises(ValueError, match="final_inference_steps"):
        pipe(constraint, final_inference_steps=0, **kwargs)
    with pytest.raises(ValueError, match="warm_start_candidates"):
        pipe(constraint, **{**kwargs, "warm_start_candidates": 0})


# ----------------------------------------------------------------------------- bad inputs
