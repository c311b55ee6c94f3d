"""PlugAndPlayPipeline: Algorithm 1 (Graikos et al. 2022), presets, inputs and the method registry, on a tiny UNet
(the noise method: test_plug_and_play_noise.py)."""

import math

import numpy as np
import pytest
import torch

from pnp_diffusers.constraints import MaskedObservation, SymmetryConstraint
from pnp_diffusers.models import create_noise_scheduler, create_unet
from pnp_diffusers.pipelines.plug_and_play import (
    PAPER_MNIST_SETTINGS,
    PLUG_AND_PLAY_PRESETS,
    PlugAndPlayPipeline,
    constraint_weight_at,
    denoising_loss,
    gaussian_shell_penalty,
    graikos_t_schedule,
    guided_final_pass,
    linear_t_schedule,
)

TINY_UNET = dict(
    sample_size=8,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
)


def tiny_pipeline(num_classes=None) -> PlugAndPlayPipeline:
    torch.manual_seed(0)
    unet = create_unet("mnist-small", num_classes=num_classes, **TINY_UNET)
    pipe = PlugAndPlayPipeline(unet=unet, scheduler=create_noise_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def record_latents(store):
    def callback(pipeline, i, t, kwargs):
        store.append(kwargs["latents"].clone())
        return {}

    return callback


# ----------------------------------------------------------------------------- schedules


def test_graikos_t_schedule_matches_the_formula():
    n, big_t = 1000, 1000
    expected = []
    for i in range(n):  # the authors' notebook, then shifted to diffusers' 0-based timesteps
        t = ((n - i) + (n - i) // 4 * math.cos(i / 50)) / n * big_t
        expected.append(int(np.clip(np.array([t]).astype(int), 1, big_t)[0]) - 1)
    schedule = graikos_t_schedule(n, big_t)
    assert schedule.dtype == torch.long and schedule.tolist() == expected
    assert schedule[0] == big_t - 1 and schedule[-1] == 0 and schedule.min() >= 0
    # High to low on the whole, with a wiggle: not monotone.
    assert schedule[:100].float().mean() > schedule[450:550].float().mean() > schedule[-100:].float().mean()
    assert (schedule[1:] > schedule[:-1]).any()
    assert linear_t_schedule(4, 1000).tolist() == [999, 749, 499, 249]
    # The period generalises the "50"; a shorter run with a proportional period keeps the shape.
    short = graikos_t_schedule(200, 1000, period=10.0)
    assert short[0] == 999 and len(short) == 200
    assert short[-1] == 1000 // 200 - 1  # the last iteration sits at t = T / N


def test_t_schedule_end_maps_the_annealing_onto_the_upper_timesteps(pipe):
    seen = []

    def record_t(pipeline, i, t, kwargs):
        seen.append(t)
        return {}

    pipe(SymmetryConstraint(), num_iterations=20, t_schedule="graikos", t_schedule_end=400,  # fast preset: period 10
         final_denoise_t=400, final_denoise_steps=3, callback_on_step_end=record_t, generator=gen(0))
    # The formula over T - end = 600 timesteps, shifted up by 400: from 999 down to just above 400.
    assert seen == (graikos_t_schedule(20, 600, period=10.0) + 400).tolist()
    assert max(seen) == 999 and min(seen) >= 400
    seen.clear()
    pipe(SymmetryConstraint(), num_iterations=4, t_schedule="linear", t_schedule_end=600, final_denoise_t=0,
         callback_on_step_end=record_t)
    assert seen == [999, 899, 799, 699]
    with pytest.raises(ValueError, match="t_schedule_end"):
        pipe(SymmetryConstraint(), num_iterations=1, t_schedule_end=999)
    with pytest.raises(ValueError, match="t_schedule_end"):
        pipe(SymmetryConstraint(), num_iterations=1, method="noise", t_schedule_end=10)


def test_fast_presets_cost_one_fifth_of_the_papers_passes():
    for name in ("fast", "fast-pixel"):
        preset = PLUG_AND_PLAY_PRESETS[name]
        final_passes = preset.final_denoise_steps * (2 if preset.final_guidance_scale > 0 else 1)  # guided: + backward
        assert 2 * preset.num_iterations + final_passes == 2 * PAPER_MNIST_SETTINGS.num_iterations // 5
    assert PLUG_AND_PLAY_PRESETS["fast"].final_guidance_scale > 0
    assert PLUG_AND_PLAY_PRESETS["fast"].t_schedule_end == PLUG_AND_PLAY_PRESETS["fast"].final_denoise_t
    assert PLUG_AND_PLAY_PRESETS["fast-pixel"].t_schedule_end == 0


def test_paper_preset_and_weight_schedule():
    assert PAPER_MNIST_SETTINGS.num_iterations == 1000
    assert PAPER_MNIST_SETTINGS.learning_rate == 0.01 and PAPER_MNIST_SETTINGS.optimizer == "adam"
    weights = [constraint_weight_at(i, 1000, 0.01, "linear-decay") for i in (0, 500, 999)]
    assert weights == pytest.approx([0.01, 0.005, 0.00001])
    assert constraint_weight_at(7, 10, 2.0, "constant") == 2.0
    assert constraint_weight_at(3, 10, 2.0, lambda i, n: i / n) == pytest.approx(0.6)


def test_gaussian_shell_penalty_is_the_chi_negative_log_density():
    d = 64
    x = torch.randn(5, 1, 8, 8)
    r = x.flatten(1).norm(dim=1)
    minimum = -(d - 1) * math.log(math.sqrt(d - 1)) + (d - 1) / 2
    expected = -(d - 1) * torch.log(r) + r**2 / 2 - minimum
    assert torch.allclose(gaussian_shell_penalty(x), expected, atol=1e-4)
    on_shell = torch.ones(1, 1, 8, 8) * math.sqrt((d - 1) / d)  # norm sqrt(d - 1)
    on_shell.requires_grad_(True)
    penalty = gaussian_shell_penalty(on_shell)
    (grad,) = torch.autograd.grad(penalty.sum(), on_shell)
    assert penalty.item() == pytest.approx(0.0, abs=1e-4) and grad.abs().max() < 1e-4
    assert (gaussian_shell_penalty(2 * x) > gaussian_shell_penalty(x)).all()


# ----------------------------------------------------------------------------- Algorithm 1


def test_denoising_loss_is_the_noise_prediction_error(pipe):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    noise = torch.randn(2, 1, 8, 8)
    t = torch.tensor([10, 700])
    abar = pipe.scheduler.alphas_cumprod[t].view(2, 1, 1, 1)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    with torch.no_grad():
        expected = ((noise - pipe.unet(x_t, t).sample) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(denoising_loss(pipe, x, t, noise), expected, atol=1e-6)


def test_one_iteration_is_a_gradient_step_on_algorithm_1(pipe):
    """x_1 = x_0 - lr * grad_x [mean((eps - eps_theta(x_t, t))^2) + w_0 c(clip(x))], grads to x only."""
    unet = pipe.unet
    unet.train()
    frozen_name = "conv_in.bias"
    flags = {name: name != frozen_name for name, _ in unet.named_parameters()}
    for name, p in unet.named_parameters():
        p.requires_grad_(flags[name])
    weights_before = {k: v.clone() for k, v in unet.state_dict().items()}

    constraint = SymmetryConstraint("horizontal", "similar")
    x0 = torch.randn(2, 1, 8, 8, generator=gen(1)) * 1.5  # partly outside [-1, 1]: clip matters
    lr, t0 = 0.1, 999
    steps = []
    pipe(constraint, batch_size=2, latents=x0, learning_rate=lr, optimizer="sgd", constraint_on="x",
         t_schedule=[t0], constraint_weight=0.5, weight_schedule="constant", generator=gen(3),
         output_type="pt", callback_on_step_end=record_latents(steps))
    # The UNet is untouched: weights, requires_grad flags, no .grad, training mode restored.
    for k, v in unet.state_dict().items():
        assert torch.equal(v, weights_before[k]), k
    for name, p in unet.named_parameters():
        assert p.requires_grad == flags[name], name
        assert p.grad is None, name
    assert unet.training

    noise = torch.randn(2, 1, 8, 8, generator=gen(3))  # latents given: the first draw is eps_0
    x = x0.clone().requires_grad_(True)
    abar = pipe.scheduler.alphas_cumprod[t0]
    unet.eval()
    prediction = unet(abar.sqrt() * x + (1 - abar).sqrt() * noise, torch.tensor([t0, t0])).sample
    loss = ((noise - prediction) ** 2).mean(dim=(1, 2, 3)) + 0.5 * constraint(x.clamp(-1, 1))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.allclose(steps[0], x0 - lr * grad, atol=1e-5)
    # Clipped pixels get no constraint gradient, but the prior term still pulls them.
    assert grad.abs().sum() > 0
    unet.requires_grad_(True)


def test_constraint_on_denoised_estimate_is_a_gradient_step_through_the_denoiser(pipe):
    """constraint_on="denoised": the constraint sees x0_hat = (x_t - sqrt(1-abar) eps_theta) / sqrt(abar)."""
    constraint = SymmetryConstraint("horizontal", "similar")
    x0 = torch.randn(2, 1, 8, 8, generator=gen(1))
    lr, t0 = 0.1, 300
    seen, steps = [], []

    def recording(images):
        seen.append(images.detach().clone())
        return constraint(images)

    out = pipe(recording, batch_size=2, latents=x0, learning_rate=lr, optimizer="sgd", t_schedule=[t0],
               constraint_weight=0.5, weight_schedule="constant", constraint_on="denoised", final_denoise_t=0,
               generator=gen(3),
               output_type="pt", callback_on_step_end=record_latents(steps))
    assert out.unet_forward_passes == 1 and out.unet_backward_passes == 1  # no extra UNet call

    noise = torch.randn(2, 1, 8, 8, generator=gen(3))
    x = x0.clone().requires_grad_(True)
    abar = pipe.scheduler.alphas_cumprod[t0]
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * noise
    prediction = pipe.unet(x_t, torch.tensor([t0, t0])).sample
    denoised = (x_t - (1 - abar).sqrt() * prediction) / abar.sqrt()
    assert torch.allclose(seen[0], denoised.detach().clamp(-1, 1), atol=1e-5)
    assert not torch.allclose(seen[0], x0.clamp(-1, 1), atol=1e-2)
    loss = ((noise - prediction) ** 2).mean(dim=(1, 2, 3)) + 0.5 * constraint(denoised.clamp(-1, 1))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.allclose(steps[0], x0 - lr * grad, atol=1e-5)
    with pytest.raises(ValueError, match="constraint_on"):
        pipe(constraint, constraint_on="x0", num_iterations=1)
    with pytest.raises(ValueError, match="constraint_on"):
        pipe(constraint, method="noise", constraint_on="denoised", num_iterations=1)


def test_prior_method_lowers_the_objective_and_satisfies_the_constraint(pipe):
    constraint = SymmetryConstraint("vertical", "similar")
    out = pipe(constraint, batch_size=3, num_iterations=60, learning_rate=0.05, constraint_weight=10.0,
               weight_schedule="constant", t_schedule="linear", constraint_on="x", final_denoise_t=0,
               generator=gen(0), output_type="pt")
    start = torch.randn(3, 1, 8, 8, generator=gen(0)).clamp(-1, 1)
    # Mirror pixels clipped at opposite signs get no constraint gradient (the paper's clip), so not all reach 0.
    assert (out.constraint_value < 0.5 * constraint(start)).all()
    assert out.constraint_value.mean() < 0.25 * constraint(start).mean()
    assert out.iterations.tolist() == [60, 60, 60] and not out.nan_stopped.any()
    assert out.loss_history.shape == (60, 3) and torch.isfinite(out.prior_loss).all()
    assert out.unet_forward_passes == 60 and out.unet_backward_passes == 60
    assert out.images.min() >= 0 and out.images.max() <= 1


def test_samples_are_independent_and_deterministic(pipe):
    constraint = SymmetryConstraint("horizontal", "dissimilar")
    kwargs = dict(num_iterations=8, output_type="pt")
    batch = pipe(constraint, batch_size=3, generator=[gen(10), gen(11), gen(12)], **kwargs).images
    again = pipe(constraint, batch_size=3, generator=[gen(10), gen(11), gen(12)], **kwargs).images
    alone = pipe(constraint, batch_size=1, generator=[gen(12)], **kwargs).images
    assert torch.equal(batch, again)
    # A sample's result does not depend on its neighbours (up to the last bits of batched conv arithmetic).
    assert torch.allclose(batch[2:], alone, atol=1e-4)
    other = pipe(constraint, batch_size=3, generator=gen(99), **kwargs).images
    assert not torch.allclose(batch, other)


def test_nan_stops_only_that_sample(pipe):
    base = SymmetryConstraint("horizontal", "similar")
    calls = {"n": 0}

    def poisoned(x):
        calls["n"] += 1
        loss = base(x)
        if calls["n"] > 2:  # from the 3rd iteration on, sample 0's loss is NaN
            loss = torch.cat([torch.full_like(loss[:1], float("nan")), loss[1:]])
        return loss

    kwargs = dict(batch_size=3, num_iterations=6, weight_schedule="constant", output_type="pt")
    clean_steps, nan_steps = [], []
    pipe(base, generator=gen(5), callback_on_step_end=record_latents(clean_steps), **kwargs)
    stopped = pipe(poisoned, generator=gen(5), callback_on_step_end=record_latents(nan_steps), **kwargs)
    assert stopped.nan_stopped.tolist() == [True, False, False]
    assert stopped.iterations.tolist() == [2, 6, 6]
    assert torch.isnan(stopped.loss_history[2:, 0]).all() and torch.isfinite(stopped.loss_history[:, 1:]).all()
    assert torch.allclose(nan_steps[-1][1:], clean_steps[-1][1:], atol=1e-6)  # the others went on unchanged
    assert torch.equal(nan_steps[-1][0], clean_steps[1][0])  # sample 0 frozen after its 2 good steps
    assert torch.isfinite(stopped.images).all()


def test_final_ancestral_pass_and_output_types(pipe):
    constraint = SymmetryConstraint("horizontal", "similar")
    out = pipe(constraint, batch_size=2, num_iterations=3, final_denoise_t=20, final_denoise_steps=5,
               generator=gen(0), output_type="np")
    assert out.images.shape == (2, 8, 8, 1) and out.unet_forward_passes == 3 + 5
    again = pipe(constraint, batch_size=2, num_iterations=3, final_denoise_t=20, final_denoise_steps=5,
                 generator=gen(0), output_type="np")
    assert np.array_equal(out.images, again.images)
    plain = pipe(constraint, batch_size=2, num_iterations=3, final_denoise_t=0, generator=gen(0), output_type="np")
    assert not np.allclose(out.images, plain.images)
    preset_pass = pipe(constraint, batch_size=2, num_iterations=3, generator=gen(0), output_type="pt")
    assert preset_pass.unet_forward_passes == 3 + 100  # the fast preset's own final pass (t=650, 100 steps)
    assert pipe(constraint, batch_size=2, num_iterations=3, final_denoise_t=0, output_type="pt").unet_forward_passes == 3
    pil = pipe(constraint, batch_size=2, num_iterations=1, generator=gen(0))
    assert len(pil.images) == 2 and pil.images[0].size == (8, 8) and pil.images[0].mode == "L"
    fields = pipe(constraint, batch_size=2, num_iterations=1, generator=gen(0), output_type="pt", return_dict=False)
    assert isinstance(fields, tuple) and fields[0].shape == (2, 1, 8, 8)


def test_guided_final_pass_is_dps_on_the_constraint(pipe):
    dark = MaskedObservation(-torch.ones(1, 8, 8))
    weights = [p.detach().clone() for p in pipe.unet.parameters()]
    common = dict(batch_size=3, num_iterations=2, constraint_weight=0.0, final_denoise_t=500, final_denoise_steps=10,
                  generator=gen(3), output_type="pt")
    free = pipe(dark, final_guidance_scale=0.0, **common)
    common["generator"] = gen(3)
    guided = pipe(dark, final_guidance_scale=2.0, **common)
    common["generator"] = gen(3)
    preset_zeta = pipe(dark, final_guidance_scale=0.75, **common)
    common["generator"] = gen(3)
    assert torch.equal(pipe(dark, **common).images, preset_zeta.images)  # the fast preset's own zeta is 0.75
    assert not torch.equal(preset_zeta.images, guided.images)
    assert (guided.constraint_value < 0.5 * free.constraint_value).all(), (free.constraint_value, guided.constraint_value)
    assert (guided.unet_forward_passes, guided.unet_backward_passes) == (2 + 10, 2 + 10)
    assert (free.unet_forward_passes, free.unet_backward_passes) == (2 + 10, 2)
    assert all(p.grad is None for p in pipe.unet.parameters())
    assert all(torch.equal(p, w) for p, w in zip(pipe.unet.parameters(), weights))

    # One step from t0 straight to 0 is one DPS update: DDPM step(x_t) - zeta / sqrt(L) grad_{x_t} L(clip(x0_hat)).
    x0 = torch.zeros(2, 1, 8, 8)
    out = guided_final_pass(pipe, x0, 300, num_steps=1, generator=gen(4), constraint=dark, guidance_scale=0.7)
    abar = pipe.scheduler.alphas_cumprod[300]
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(2, 1, 8, 8, generator=gen(4))).requires_grad_(True)
    eps = pipe.unet(x_t, torch.full((2,), 300)).sample
    x0_hat = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    loss = dark(x0_hat + (x0_hat.clamp(-1, 1) - x0_hat).detach())
    (grad,) = torch.autograd.grad(loss.sum(), x_t)
    # To t = 0 the DDPM posterior mean is x0_hat itself (clipped, as the scheduler clips), with zero variance.
    step = x0_hat.detach().clamp(-1, 1) if pipe.scheduler.config.clip_sample else x0_hat.detach()
    expected = step - (0.7 / loss.detach().sqrt()).view(2, 1, 1, 1) * grad
    assert torch.allclose(out, expected, atol=1e-4)


def test_class_conditional_prior_defaults_to_the_null_class():
    pipe = tiny_pipeline(num_classes=3)
    seen = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["class_labels"].clone()), with_kwargs=True
    )
    constraint = SymmetryConstraint()
    pipe(constraint, batch_size=2, num_iterations=2, generator=gen(0), output_type="pt")
    assert all(labels.tolist() == [3, 3] for labels in seen)  # index num_classes = the null class
    seen.clear()
    pipe(constraint, batch_size=2, num_iterations=2, class_labels=[0, 2], generator=gen(0), output_type="pt")
    assert all(labels.tolist() == [0, 2] for labels in seen)
    hook.remove()
    with pytest.raises(ValueError, match="class_labels"):
        pipe(constraint, batch_size=2, num_iterations=1, class_labels=4)


def test_bad_inputs_raise_value_errors_naming_the_argument(pipe):
    good = SymmetryConstraint()
    with pytest.raises(ValueError, match="constraint"):
        pipe(lambda x: x.flatten(1).mean(), batch_size=2, num_iterations=1)  # scalar, not (B,)
    with pytest.raises(ValueError, match="constraint"):
        pipe(lambda x: x.flatten(1), batch_size=2, num_iterations=1, method="noise", num_inference_steps=1)
    with pytest.raises(ValueError, match="constraint"):
        pipe("symmetric", num_iterations=1)
    with pytest.raises(ValueError, match="method"):
        pipe(good, method="langevin")
    with pytest.raises(ValueError, match="t_schedule"):
        pipe(good, num_iterations=3, t_schedule=[999, 500])
    with pytest.raises(ValueError, match="t_schedule"):
        pipe(good, num_iterations=2, t_schedule=[1000, 5])
    with pytest.raises(ValueError, match="t_schedule"):
        pipe(good, num_iterations=2, t_schedule="cosine")
    with pytest.raises(ValueError, match="optimizer"):
        pipe(good, num_iterations=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="weight_schedule"):
        pipe(good, num_iterations=1, weight_schedule="exponential")
    with pytest.raises(ValueError, match="num_iterations"):
        pipe(good, num_iterations=0)
    with pytest.raises(ValueError, match="learning_rate"):
        pipe(good, num_iterations=1, learning_rate=-1.0)
    with pytest.raises(ValueError, match="final_denoise_t"):
        pipe(good, num_iterations=1, final_denoise_t=1000)
    with pytest.raises(ValueError, match="final_guidance_scale"):
        pipe(good, num_iterations=1, final_guidance_scale=-1.0)
    with pytest.raises(ValueError, match="final_guidance_scale"):
        pipe(good, num_iterations=1, final_denoise_t=0, final_guidance_scale=1.0)  # no final pass to guide
    with pytest.raises(ValueError, match="final_guidance_scale"):
        pipe(good, num_iterations=1, method="noise", final_guidance_scale=1.0)
    with pytest.raises(ValueError, match="output_type"):
        pipe(good, num_iterations=1, output_type="latent")
    with pytest.raises(ValueError, match="latents"):
        pipe(good, batch_size=2, num_iterations=1, latents=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="class_labels"):
        pipe(good, num_iterations=1, class_labels=0)  # unconditional UNet
    with pytest.raises(ValueError, match="preset"):
        pipe(good, preset="slow")
    with pytest.raises(ValueError, match="generator"):
        pipe(good, batch_size=2, num_iterations=1, generator=[gen(0)] * 3)


# ----------------------------------------------------------------------------- saving


def test_save_pretrained_writes_the_remote_code_shim(pipe, tmp_path):
    import json

    from diffusers import DiffusionPipeline

    pipe.save_pretrained(tmp_path)
    assert "from pnp_diffusers import PlugAndPlayPipeline" in (tmp_path / "pipeline.py").read_text()
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == ["pipeline", "PlugAndPlayPipeline"]
    for loaded in (PlugAndPlayPipeline.from_pretrained(tmp_path),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(loaded).__name__ == "PlugAndPlayPipeline"
        for key, value in pipe.unet.state_dict().items():
            assert torch.equal(loaded.unet.state_dict()[key], value), key


# ----------------------------------------------------------------------------- registry and settings


def test_a_new_method_registers_in_one_place_and_runs(pipe):
    """A toy method (gradient descent on the constraint alone) is one dataclass, one run, one register line."""
    from dataclasses import dataclass

    from pnp_diffusers.pipelines.plug_and_play import PLUG_AND_PLAY_METHODS, OptimisationSettings, optimise
    from pnp_diffusers.pipelines.plug_and_play.registry import PRESET_OWNERS, MethodResult, PlugAndPlayMethod, register_method

    @dataclass(frozen=True)
    class ToySettings(OptimisationSettings):
        num_iterations: int = 3
        learning_rate: float = 0.1
        constraint_weight: float = 1.0

    def run_toy(pipe, constraint, start, settings, class_labels, generator, callback):
        x = start.detach().clone().requires_grad_(True)
        trace = optimise(x, settings, lambda i: (settings.constraint_weight * constraint(x), torch.zeros(x.shape[0])),
                         [0] * settings.num_iterations, callback, pipe.progress_bar)
        return MethodResult(x.detach(), trace.last_prior, trace.iterations, trace.nan_stopped, trace.history, 0, 0)

    register_method(PlugAndPlayMethod("toy", ToySettings, run_toy, presets={"toy": ToySettings()}, default_preset="toy"))
    try:
        dark = MaskedObservation(-torch.ones(1, 8, 8))
        start = torch.zeros(2, 1, 8, 8)
        out = pipe(dark, batch_size=2, method="toy", latents=start, output_type="pt")
        assert out.iterations.tolist() == [3, 3] and (out.loss_history[-1] < out.loss_history[0]).all()
        longer = pipe(dark, batch_size=2, method="toy", num_iterations=5, latents=start, output_type="pt")
        assert longer.iterations.tolist() == [5, 5]
        with pytest.raises(ValueError, match="`final_denoise_t` does not apply to method 'toy'"):
            pipe(dark, method="toy", final_denoise_t=10)
        with pytest.raises(ValueError, match="preset"):
            pipe(dark, method="toy", preset="fast")  # a preset of method "prior"
    finally:
        PLUG_AND_PLAY_METHODS.pop("toy")
        PLUG_AND_PLAY_PRESETS.pop("toy")
        PRESET_OWNERS.pop("toy")


def test_settings_of_another_method_raise_naming_it(pipe):
    good = SymmetryConstraint()
    with pytest.raises(ValueError, match=r"`num_inference_steps` does not apply to method 'prior'.*method 'noise'"):
        pipe(good, num_iterations=1, num_inference_steps=5)
    with pytest.raises(ValueError, match=r"`final_denoise_t`, `t_schedule` do not apply to method 'noise'"):
        pipe(good, method="noise", num_iterations=1, final_denoise_t=10, t_schedule="linear")
    with pytest.raises(ValueError, match="num_iteration"):
        pipe(good, num_iteration=1)  # a typo is not silently ignored
    with pytest.raises(ValueError, match=r"preset.*'noise'"):
        pipe(good, preset="noise")  # the noise method's preset under method "prior"
    assert pipe.resolve_settings("noise", num_iterations=7).num_iterations == 7
    assert pipe.resolve_settings("prior", "paper", t_schedule=[999, 500]).num_iterations == 2


def test_settings_of_another_method_are_refused_by_dps_and_dps_settings_by_the_others(pipe):
    """No method silently ignores a setting: prior/noise settings under method="dps" and DPS ones under "prior"."""
    import dataclasses

    from pnp_diffusers import DPSSettings, NoiseSettings, PriorSettings

    good = SymmetryConstraint()
    dps_names = {f.name for f in dataclasses.fields(DPSSettings)}
    for settings_class, owner in ((PriorSettings, "prior"), (NoiseSettings, "noise")):
        for field in dataclasses.fields(settings_class):
            if field.name in dps_names:  # num_inference_steps: DPS's reverse steps, noise's DDIM steps
                continue
            value = field.default if field.default is not None else 1
            with pytest.raises(ValueError, match=rf"`{field.name}` does not apply to method 'dps'.*method '{owner}'"):
                pipe(good, method="dps", num_inference_steps=2, **{field.name: value})
    with pytest.raises(ValueError, match=r"`regularization_weight`, `warm_start_candidates` do not apply to method 'dps'"):
        pipe(good, method="dps", regularization_weight=1.0, warm_start_candidates=4)
    for name in ("guidance_end", "guidance_schedule", "step_size_rule", "guidance_scale"):
        with pytest.raises(ValueError, match=rf"`{name}` does not apply to method 'prior'.*belongs to method 'dps'"):
            pipe(good, num_iterations=1, **{name: getattr(DPSSettings(), name)})
    with pytest.raises(ValueError, match=r"`guidance_scale` does not apply to method 'noise'.*method 'dps'"):
        pipe(good, method="noise", num_iterations=1, guidance_scale=1.0)
    with pytest.raises(ValueError, match=r"preset.*'dps'"):
        pipe(good, preset="dps")  # the DPS preset under method "prior"
    with pytest.raises(ValueError, match=r"preset.*'prior'"):
        pipe(good, method="dps", preset="fast")
