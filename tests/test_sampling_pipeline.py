"""DiffusionSamplingPipeline: equivalence with stock diffusers, guidance, determinism, interpolation, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_NUM_CLASSES, GaussianEpsilonModel
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler
from PIL import Image

from pnp_diffusers import (
    AnnealedLangevinScheduler,
    DDIMSkipScheduler,
    DiffusionSamplingPipeline,
    PredictorCorrectorScheduler,
)
from pnp_diffusers.pipelines.sampling.pipeline_sampling import default_num_inference_steps
from pnp_diffusers.pipelines.sampling.traced_unet import TracedUNet

T = 30  # training timesteps of the tiny pipelines: enough to exercise every sampler, fast


def make_pipe(unet, scheduler=None):
    pipe = DiffusionSamplingPipeline(unet=unet, scheduler=scheduler or DDPMScheduler(num_train_timesteps=T))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


class ForwardRecorder:
    """Records the batch size of every UNet forward."""

    def __init__(self, module):
        self.batch_sizes = []
        self.handle = module.register_forward_hook(lambda m, args, out: self.batch_sizes.append(args[0].shape[0]))


# ------------------------------------------------------------------------- same as stock diffusers


def test_ddpm_scheduler_gives_exactly_diffusers_ddpm_pipeline(tiny_unet):
    ours = make_pipe(tiny_unet)(batch_size=2, generator=seeded(0), output_type="np").images
    stock = DDPMPipeline(unet=tiny_unet, scheduler=DDPMScheduler(num_train_timesteps=T))
    stock.set_progress_bar_config(disable=True)
    reference = stock(batch_size=2, generator=seeded(0), num_inference_steps=T, output_type="np").images
    np.testing.assert_array_equal(ours, reference)


def test_ddim_scheduler_with_eta_gives_exactly_diffusers_ddim_pipeline(tiny_unet):
    config = DDPMScheduler(num_train_timesteps=T).config
    ours = make_pipe(tiny_unet, DDIMScheduler.from_config(config))(
        batch_size=2, num_inference_steps=10, eta=0.7, generator=seeded(1), output_type="np"
    ).images
    stock = DDIMPipeline(unet=tiny_unet, scheduler=DDIMScheduler.from_config(config))
    stock.set_progress_bar_config(disable=True)
    # With x0 clamping on, the pipeline runs DDIM with the noise consistent with the clamped x0.
    reference = stock(batch_size=2, num_inference_steps=10, eta=0.7, generator=seeded(1), output_type="np",
                      use_clipped_model_output=True).images
    np.testing.assert_array_equal(ours, reference)


def test_ddim_under_clamping_uses_the_noise_consistent_with_the_clamped_x0():
    """Song et al. 2021 eq. 12 with x0 clamped: x_prev = sqrt(abar_prev) x0c + sqrt(1 - abar_prev) eps(x0c)."""
    scheduler = DDIMScheduler(num_train_timesteps=T, clip_sample=True)
    kwargs = DiffusionSamplingPipeline.prepare_extra_step_kwargs(scheduler, None, 0.0)
    assert kwargs["use_clipped_model_output"] is True
    scheduler.set_timesteps(10)
    t, prev_t = int(scheduler.timesteps[0]), int(scheduler.timesteps[1])
    sample, eps = torch.randn(2, 1, 4, 4), 3 * torch.randn(2, 1, 4, 4)  # x0 estimate far outside [-1, 1]
    abar, abar_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[prev_t]
    x0 = ((sample - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
    eps_consistent = (sample - abar.sqrt() * x0) / (1 - abar).sqrt()
    expected = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps_consistent
    out = scheduler.step(eps, t, sample, **kwargs).prev_sample
    torch.testing.assert_close(out, expected)
    unclamped = DDIMScheduler(num_train_timesteps=T, clip_sample=False)
    assert "use_clipped_model_output" not in DiffusionSamplingPipeline.prepare_extra_step_kwargs(unclamped, None, 0.0)


def test_default_number_of_steps_per_sampler():
    config = DDPMScheduler(num_train_timesteps=1000).config
    assert default_num_inference_steps(DDPMScheduler.from_config(config)) == 1000
    assert default_num_inference_steps(DDIMScheduler.from_config(config)) == 50
    assert default_num_inference_steps(DDIMSkipScheduler.from_config(config)) == 50
    assert default_num_inference_steps(PredictorCorrectorScheduler.from_config(config)) == 1000
    assert default_num_inference_steps(AnnealedLangevinScheduler.from_config(config)) == 249
    assert default_num_inference_steps(DDIMScheduler(num_train_timesteps=20)) == 20


# ------------------------------------------------------------------ every sampler through one loop


@pytest.mark.parametrize(
    "scheduler_class, kwargs",
    [
        (DDPMScheduler, {}),
        (DDIMScheduler, {}),
        (DDIMSkipScheduler, {"timestep_spacing": "quadratic"}),
        (PredictorCorrectorScheduler, {"n_corrector_steps": 2}),
        (AnnealedLangevinScheduler, {"n_steps_each": 3}),
    ],
)
def test_one_line_sampler_swap_calls_the_model_once_per_timestep(tiny_unet, scheduler_class, kwargs):
    pipe = make_pipe(tiny_unet)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config, **kwargs)
    recorder = ForwardRecorder(tiny_unet)
    totals, steps = [], []
    original_progress_bar = pipe.progress_bar

    def progress_bar(*args, **kw):
        totals.append(kw.get("total"))
        return original_progress_bar(*args, **kw)

    pipe.progress_bar = progress_bar
    images = pipe(
        batch_size=2,
        num_inference_steps=5,
        generator=seeded(0),
        output_type="pt",
        callback_on_step_end=lambda p, i, t, k: steps.append((i, int(t))) or {},
    ).images
    calls = len(pipe.scheduler.timesteps)
    assert totals == [calls] and len(recorder.batch_sizes) == calls == len(steps)
    assert [t for _, t in steps] == pipe.scheduler.timesteps.tolist()
    assert [i for i, _ in steps] == list(range(calls))
    assert images.shape == (2, 1, 8, 8) and 0 <= images.min() and images.max() <= 1 and torch.isfinite(images).all()


# ------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, PredictorCorrectorScheduler, AnnealedLangevinScheduler])
def test_same_seed_same_images_other_seed_other_images(tiny_unet, scheduler_class):
    pipe = make_pipe(tiny_unet)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    run = lambda seed: pipe(batch_size=2, num_inference_steps=4, generator=seeded(seed), output_type="pt").images  # noqa: E731
    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def test_per_image_generators_reproduce_single_image_runs(tiny_unet):
    pipe = make_pipe(tiny_unet, PredictorCorrectorScheduler(num_train_timesteps=T))
    batch = pipe(batch_size=3, num_inference_steps=5, generator=[seeded(s) for s in (7, 8, 9)], output_type="pt").images
    for index, seed in enumerate((7, 8, 9)):
        single = pipe(batch_size=1, num_inference_steps=5, generator=seeded(seed), output_type="pt").images
        torch.testing.assert_close(batch[index : index + 1], single, atol=1e-5, rtol=1e-5)


def test_given_latents_are_the_starting_noise(tiny_unet):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    noise = torch.randn(2, 1, 8, 8, generator=seeded(3))
    drawn = pipe(batch_size=2, num_inference_steps=5, generator=seeded(3), output_type="pt").images
    given = pipe(batch_size=2, num_inference_steps=5, latents=noise, output_type="pt").images
    assert torch.equal(drawn, given)


def test_output_types_and_return_dict(tiny_unet):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    kwargs = dict(batch_size=2, num_inference_steps=3)
    pt = pipe(generator=seeded(0), output_type="pt", **kwargs).images
    array = pipe(generator=seeded(0), output_type="np", **kwargs).images
    pil = pipe(generator=seeded(0), **kwargs).images
    (as_tuple,) = pipe(generator=seeded(0), output_type="pt", return_dict=False, **kwargs)
    assert pt.shape == (2, 1, 8, 8) and array.shape == (2, 8, 8, 1) and array.dtype == np.float32
    np.testing.assert_allclose(array, pt.permute(0, 2, 3, 1).numpy())
    assert isinstance(pil, list) and len(pil) == 2 and isinstance(pil[0], Image.Image) and pil[0].size == (8, 8)
    np.testing.assert_array_equal(np.asarray(pil[0]), (array[0, ..., 0] * 255).round().astype(np.uint8))
    assert torch.equal(as_tuple, pt)


def test_device_and_dtype_come_from_the_unet(tiny_unet):
    pipe = make_pipe(tiny_unet.to(torch.float64), DDIMScheduler(num_train_timesteps=T))
    seen = []
    pipe(batch_size=1, num_inference_steps=2, generator=seeded(0), output_type="pt",
         callback_on_step_end=lambda p, i, t, k: seen.append((k["latents"].dtype, k["latents"].device)) or {})
    assert seen == [(torch.float64, torch.device("cpu"))] * 2


def test_callback_can_replace_latents_and_see_the_noise_prediction(tiny_unet):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    seen = []

    def zero_at_the_end(pipe, i, t, tensors):
        seen.append(sorted(tensors))
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 2 else {}

    images = pipe(batch_size=1, num_inference_steps=3, generator=seeded(0), output_type="pt",
                  callback_on_step_end=zero_at_the_end, callback_on_step_end_tensor_inputs=["latents", "noise_pred"]).images
    assert seen == [["latents", "noise_pred"]] * 3
    assert torch.equal(images, torch.full_like(images, 0.5))  # model-space 0 -> grey


# ---------------------------------------------------------------------- classifier-free guidance


def test_guidance_one_is_the_conditional_model_and_zero_the_unconditional_one(tiny_conditional_unet):
    pipe = make_pipe(tiny_conditional_unet, DDIMScheduler(num_train_timesteps=T))
    recorder = ForwardRecorder(tiny_conditional_unet)
    run = lambda **kw: pipe(batch_size=2, num_inference_steps=3, generator=seeded(0), output_type="pt", **kw).images  # noqa: E731
    conditional = run(class_labels=[0, 2])
    assert torch.equal(run(class_labels=[0, 2], guidance_scale=1.0), conditional)
    unconditional = run()
    assert torch.equal(run(class_labels=[0, 2], guidance_scale=0.0), unconditional)
    assert (conditional - unconditional).abs().max() > 1e-4
    assert set(recorder.batch_sizes) == {2}  # w in {None, 0, 1}: never a doubled batch


def test_guidance_is_one_batched_forward_of_the_ho_salimans_combination(tiny_conditional_unet):
    pipe = make_pipe(tiny_conditional_unet)
    x = torch.randn(2, 1, 8, 8, generator=seeded(0))
    labels = torch.tensor([1, 2])
    null = torch.full_like(labels, TINY_NUM_CLASSES)
    recorder = ForwardRecorder(tiny_conditional_unet)
    guided = pipe.predict_noise(x, 10, labels, guidance_scale=3.0)
    assert recorder.batch_sizes == [4]
    eps_cond = tiny_conditional_unet(x, 10, class_labels=labels).sample
    eps_uncond = tiny_conditional_unet(x, 10, class_labels=null).sample
    torch.testing.assert_close(guided, eps_uncond + 3.0 * (eps_cond - eps_uncond), atol=1e-5, rtol=1e-5)


def test_guided_gaussian_samples_have_the_guided_mean():
    """With class Gaussians of equal variance, CFG weight w samples N(m_u + w (m_c - m_u), s^2)."""
    model = GaussianEpsilonModel(class_means=[-0.5, 0.4, 0.1])  # 2 classes + null class (mean 0.1)
    pipe = make_pipe(model, DDPMScheduler(num_train_timesteps=1000, clip_sample=False))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    caught = {}

    def catch(pipe, i, t, tensors):
        caught["x"] = tensors["latents"]
        return {}

    for w, label in ((3.0, 1), (0.0, 0), (1.0, 0), (2.0, 0)):
        pipe(batch_size=200, class_labels=label, guidance_scale=w, num_inference_steps=100, generator=seeded(0),
             output_type="pt", callback_on_step_end=catch)
        expected = 0.1 + w * ([-0.5, 0.4][label] - 0.1)
        assert abs(caught["x"].mean().item() - expected) < 0.03, (w, label)


def test_class_labels_forms_are_equivalent(tiny_conditional_unet):
    pipe = make_pipe(tiny_conditional_unet, DDIMScheduler(num_train_timesteps=T))
    run = lambda labels: pipe(batch_size=2, class_labels=labels, guidance_scale=2.0, num_inference_steps=2,  # noqa: E731
                              generator=seeded(0), output_type="pt").images
    reference = run([1, 1])
    for form in (1, torch.tensor([1, 1]), torch.tensor(1), np.int64(1), (1, 1)):
        assert torch.equal(run(form), reference)


# ---------------------------------------------------------------------------------- interpolation


def test_interpolation_endpoints_reproduce_the_two_samples(tiny_unet, tmp_path):
    pipe = make_pipe(tiny_unet)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    noises = torch.randn(2, 1, 8, 8, generator=seeded(4))
    frames = pipe.interpolate(num_frames=5, latents=noises, num_inference_steps=10, output_type="pt",
                              save_path=tmp_path / "strip.png").images
    ends = pipe(batch_size=2, latents=noises, num_inference_steps=10, eta=0.0, output_type="pt").images
    assert frames.shape == (5, 1, 8, 8)
    torch.testing.assert_close(frames[[0, -1]], ends, atol=1e-5, rtol=1e-5)
    assert (frames[2] - frames[0]).abs().max() > 1e-3  # the middle is something else
    strip = Image.open(tmp_path / "strip.png")
    assert strip.size == (5 * 8, 8)
    np.testing.assert_array_equal(np.asarray(strip)[:, :8], (frames[0, 0].numpy() * 255).round().astype(np.uint8))


def test_interpolation_path_is_spherical(tiny_unet):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    noises = torch.randn(2, 1, 8, 8, generator=seeded(5))
    noises[1] *= noises[0].norm() / noises[1].norm()  # equal norms: the path is an arc of one circle
    starts = []
    pipe.denoise = lambda latents, *a, **k: starts.append(latents) or latents  # catch the interpolated noises
    pipe.interpolate(num_frames=7, latents=noises, output_type="pt")
    path = starts[0].flatten(1).double()
    a, b = noises.flatten(1).double()
    assert torch.equal(starts[0][0], noises[0]) and torch.equal(starts[0][-1], noises[1])
    # constant norm, and the angle from the first noise grows linearly (Shoemake's slerp)
    torch.testing.assert_close(path.norm(dim=1), a.norm().expand(7), atol=1e-4, rtol=1e-5)
    theta = torch.arccos(a @ b / (a.norm() * b.norm()))
    angles = torch.arccos((path @ a / (path.norm(dim=1) * a.norm())).clamp(-1, 1))
    torch.testing.assert_close(angles, torch.linspace(0, 1, 7, dtype=torch.float64) * theta, atol=1e-3, rtol=1e-4)


def test_interpolation_between_real_images_inverts_them(gaussian_model):
    pipe = make_pipe(gaussian_model, DDPMScheduler(num_train_timesteps=1000, clip_sample=False))
    images = (0.3 + 0.5 * torch.randn(2, 1, 4, 4, generator=seeded(6))).clamp(-1, 1)
    target = (images / 2 + 0.5).clamp(0, 1)
    errors = []
    for steps in (20, 100):
        frames = pipe.interpolate(num_frames=3, images=images, num_inference_steps=steps, output_type="pt").images
        errors.append((frames[[0, -1]] - target).abs().max().item())
    # DDIM inversion is approximate (eps(x_{t-1}, t) stands for eps(x_t, t)) and converges with the step count
    assert errors[1] < errors[0] and errors[1] < 0.02
    assert (target[0] - target[1]).abs().max() > 0.2
    latents = pipe.invert(images, num_inference_steps=100)
    assert abs(latents.std().item() - 1) < 0.5 and (latents - images).abs().mean() > 0.3  # it is noise now


def test_interpolation_with_a_class_and_guidance(tiny_conditional_unet):
    pipe = make_pipe(tiny_conditional_unet, DDIMScheduler(num_train_timesteps=T))
    frames = pipe.interpolate(num_frames=3, class_labels=1, guidance_scale=2.0, num_inference_steps=4,
                              generator=seeded(0), output_type="pt").images
    ends = pipe.interpolate(num_frames=3, class_labels=1, guidance_scale=2.0, num_inference_steps=4,
                            generator=seeded(0), output_type="pt").images
    assert torch.equal(frames, ends) and frames.shape == (3, 1, 8, 8)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(num_frames=1), "num_frames"),
        (dict(latents=torch.zeros(2, 1, 8, 8), images=torch.zeros(2, 1, 8, 8)), "latents"),
        (dict(latents=torch.zeros(3, 1, 8, 8)), "latents"),
        (dict(latents="noise"), "latents"),
        (dict(images=torch.full((2, 1, 8, 8), 200.0)), "images"),
        (dict(class_labels=[0, 1]), "class_labels"),
        (dict(generator=[torch.Generator(), torch.Generator()]), "generator"),
        (dict(output_type="jpg"), "output_type"),
    ],
)
def test_interpolation_bad_inputs_raise(tiny_unet, kwargs, argument):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    with pytest.raises(ValueError, match=argument):
        pipe.interpolate(**{"num_inference_steps": 2, **kwargs})


# ------------------------------------------------------------------------------------- fast path


def test_fast_cpu_path_stays_close_and_can_be_disabled(tiny_unet):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    run = lambda: pipe(batch_size=2, num_inference_steps=5, generator=seeded(0), output_type="pt").images  # noqa: E731
    reference = run()
    pipe.enable_fast_cpu_inference(bf16=True, channels_last=True)
    fast = run()
    assert fast.dtype == torch.float32 and (fast - reference).abs().mean() < 0.05
    pipe.disable_fast_cpu_inference()
    assert torch.equal(run(), reference)


def test_traced_float32_path_gives_identical_images_with_one_trace_per_signature(tiny_conditional_unet):
    # The trace replays eager's ATen calls without diffusers' Python, so float32 images must be bit-identical,
    # with classifier-free guidance (a doubled batch with labels) as well as without.
    pipe = make_pipe(tiny_conditional_unet, DDIMScheduler(num_train_timesteps=T))

    def run(**kwargs):
        return pipe(batch_size=2, num_inference_steps=4, generator=seeded(0), output_type="pt", **kwargs).images

    reference, reference_cfg = run(), run(class_labels=[1, 2], guidance_scale=3.0)
    pipe.enable_fast_cpu_inference(bf16=False, trace=True)
    assert torch.equal(run(), reference) and torch.equal(run(class_labels=[1, 2], guidance_scale=3.0), reference_cfg)
    # null-class unconditional (2 images) and the CFG batch (4 images) are two signatures, traced once each
    assert pipe._fast_unet.num_traces == 2
    pipe.disable_fast_cpu_inference()
    assert pipe._fast_unet is None


def test_traced_unet_takes_any_timestep_form_and_runs_autograd_eagerly(tiny_unet):
    traced = TracedUNet(tiny_unet.eval())
    config = tiny_unet.config
    x = torch.randn(3, config.in_channels, config.sample_size, config.sample_size)
    with torch.no_grad():
        expected = tiny_unet(x, 7).sample
        for timestep in (7, torch.tensor(7), torch.full((3,), 7)):
            assert torch.equal(traced(x, timestep).sample, expected)
        assert traced.num_traces == 1  # the three forms become the same (3,) int64 timesteps
        traced(x[:1], 7)
        assert traced.num_traces == 2  # a new batch size is a new signature
    x.requires_grad_(True)
    traced(x, 7).sample.sum().backward()
    assert x.grad is not None and traced.num_traces == 2


def test_trace_and_compile_are_exclusive(tiny_unet):
    with pytest.raises(ValueError, match="`trace` and `compile`"):
        make_pipe(tiny_unet).enable_fast_cpu_inference(trace=True, compile=True)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_default_fast_path_uses_bf16_only_where_the_device_runs_it_natively(tiny_unet, monkeypatch, native_bf16):
    # On an AVX2-only CPU bf16 is emulated (a mnist-small forward 20x slower), so the default stays float32.
    import pnp_diffusers.pipelines.sampling.pipeline_sampling as sampling_module

    monkeypatch.setattr(sampling_module, "has_fast_bf16", lambda device: native_bf16)
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T)).enable_fast_cpu_inference()
    assert isinstance(pipe._fast_unet, TracedUNet)  # the trace is on by default: same images, less Python
    if native_bf16:
        assert pipe._fast_dtype == torch.bfloat16 and next(pipe._fast_unet.parameters()).dtype == torch.bfloat16
    else:
        assert pipe._fast_dtype is None and next(pipe._fast_unet.parameters()).dtype == torch.float32
    assert not isinstance(pipe.enable_fast_cpu_inference(compile=True)._fast_unet, TracedUNet)


def test_has_fast_bf16_agrees_with_onednn_on_the_cpu():
    from pnp_diffusers.speed import has_fast_bf16

    assert has_fast_bf16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert has_fast_bf16("meta") is False


# ------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(class_labels=1), "class_labels"),
        (dict(guidance_scale=2.0), "guidance_scale"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.0), "batch_size"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(output_type="jpeg"), "output_type"),
        (dict(batch_size=2, generator=[torch.Generator()]), "generator"),
        (dict(generator=123), "generator"),
        (dict(latents=torch.zeros(1, 1, 4, 4)), "latents"),
        (dict(eta=0.5), "eta"),  # DDPMScheduler.step takes no eta
        (dict(eta=1.5), "eta"),
        (dict(callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["x0"]), "callback_on_step_end_tensor_inputs"),
    ],
)
def test_bad_inputs_on_an_unconditional_unet_raise(tiny_unet, kwargs, argument):
    pipe = make_pipe(tiny_unet)
    with pytest.raises(ValueError, match=argument):
        pipe(**{"num_inference_steps": 2, **kwargs})


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(class_labels=TINY_NUM_CLASSES), "class_labels"),  # the null class is not a label
        (dict(class_labels=-1), "class_labels"),
        (dict(batch_size=3, class_labels=[0, 1]), "class_labels"),
        (dict(class_labels=torch.tensor([0.0])), "class_labels"),
        (dict(class_labels="cat"), "class_labels"),
        (dict(class_labels=[True]), "class_labels"),
        (dict(guidance_scale=3.0), "guidance_scale"),  # guidance without labels
        (dict(class_labels=0, guidance_scale=-1.0), "guidance_scale"),
        (dict(class_labels=0, guidance_scale=float("nan")), "guidance_scale"),
        (dict(class_labels=0, guidance_scale="3"), "guidance_scale"),
    ],
)
def test_bad_inputs_on_a_conditional_unet_raise(tiny_conditional_unet, kwargs, argument):
    pipe = make_pipe(tiny_conditional_unet)
    with pytest.raises(ValueError, match=argument):
        pipe(**{"num_inference_steps": 2, **kwargs})
