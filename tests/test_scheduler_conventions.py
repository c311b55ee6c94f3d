"""What diffusers' own scheduler tests check of DDPM, DDIM and Heun, checked of our three schedulers.

begin index and ``order`` for mid-schedule starts, custom timesteps, finite steps for any finite model
output (zero included), ``add_noise``, config round trips and ``from_config`` swaps, full-loop
determinism, every ``timestep_spacing``, and error messages that say what is wrong.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pnp_diffusers import AnnealedLangevinScheduler, DDIMSkipScheduler, PredictorCorrectorScheduler

LANGEVIN_TYPES = [
    (AnnealedLangevinScheduler, {"n_steps_each": 3}),
    (AnnealedLangevinScheduler, {"n_steps_each": 2, "denoise_final": False}),
    (AnnealedLangevinScheduler, {"n_steps_each": 2, "step_size_rule": "sigma_ratio"}),
    (PredictorCorrectorScheduler, {"n_corrector_steps": 2}),
]
ALL = LANGEVIN_TYPES + [(DDIMSkipScheduler, {}), (DDIMSkipScheduler, {"timestep_spacing": "quadratic"})]
ids = [f"{cls.__name__}-{kwargs}" for cls, kwargs in ALL]


def full_loop(scheduler, model_output_fn, steps=4, seed=0, begin_index=None, timesteps=None, sample=None):
    generator = torch.Generator().manual_seed(seed)
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=timesteps)
    else:
        scheduler.set_timesteps(steps)
    if sample is None:
        sample = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(123))
    order = getattr(scheduler, "order", 1)
    schedule = scheduler.timesteps
    if begin_index is not None:
        schedule = schedule[begin_index:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin_index)
    for t in schedule:
        sample = scheduler.step(model_output_fn(sample, t), t, sample, generator=generator).prev_sample
    assert order >= 1
    return sample


@pytest.mark.parametrize("cls,kwargs", ALL, ids=ids)
@pytest.mark.parametrize("output", ["zero", "large", "random"])
def test_any_finite_model_output_gives_finite_steps(cls, kwargs, output):
    scheduler = cls(num_train_timesteps=100, **kwargs)

    def model(x, t):
        if output == "zero":
            return torch.zeros_like(x)
        if output == "large":
            return torch.full_like(x, 1e4)
        return torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t)))

    assert torch.isfinite(full_loop(scheduler, model)).all()


@pytest.mark.parametrize("cls,kwargs", LANGEVIN_TYPES, ids=[f"{c.__name__}-{k}" for c, k in LANGEVIN_TYPES])
def test_order_counts_the_calls_of_a_level_and_a_mid_schedule_start_opens_one(cls, kwargs):
    scheduler = cls(num_train_timesteps=100, **kwargs)
    scheduler.set_timesteps(5)
    order = scheduler.order
    assert order == (kwargs.get("n_steps_each") or kwargs.get("n_corrector_steps", 0) + 1)
    levels = scheduler.noise_levels.tolist()
    # timesteps[k * order] opens level k, the img2img convention timesteps[t_start * order:].
    for k, level in enumerate(levels):
        assert scheduler.timesteps[k * order: (k + 1) * order].tolist() == [level] * order
    t_start = 2
    scheduler.set_begin_index(t_start * order)
    assert scheduler.begin_index == t_start * order
    x = torch.zeros(1, 1, 4, 4)
    t = scheduler.timesteps[t_start * order]
    scheduler.step(torch.zeros_like(x), t, x, generator=torch.Generator().manual_seed(0))
    assert scheduler.step_index == t_start * order + 1
    if isinstance(scheduler, PredictorCorrectorScheduler):
        assert scheduler.is_corrector_step(t_start * order)  # a level opens with its corrector steps


@pytest.mark.parametrize("cls,kwargs", LANGEVIN_TYPES, ids=[f"{c.__name__}-{k}" for c, k in LANGEVIN_TYPES])
def test_a_begin_index_inside_a_level_is_refused(cls, kwargs):
    scheduler = cls(num_train_timesteps=100, **kwargs)
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.set_begin_index(0)
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="`begin_index` must open a noise level"):
        scheduler.set_begin_index(scheduler.order + 1 if scheduler.order > 1 else -1)


@pytest.mark.parametrize("cls,kwargs", LANGEVIN_TYPES, ids=[f"{c.__name__}-{k}" for c, k in LANGEVIN_TYPES])
def test_sliced_timesteps_without_a_begin_index_find_their_place(cls, kwargs):
    """A pipeline that only slices timesteps (no set_begin_index) starts where its first timestep is."""
    def model(x, t):
        return 0.1 * x

    a = full_loop(cls(num_train_timesteps=100, **kwargs), model, steps=5, begin_index=None)
    scheduler = cls(num_train_timesteps=100, **kwargs)
    scheduler.set_timesteps(5)
    start = 2 * scheduler.order
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(123))
    for t in scheduler.timesteps[start:]:
        x = scheduler.step(model(x, t), t, x, generator=generator).prev_sample
    assert scheduler.step_index == len(scheduler.timesteps)
    assert torch.isfinite(x).all() and not torch.equal(a, x)


@pytest.mark.parametrize("cls,kwargs", LANGEVIN_TYPES, ids=[f"{c.__name__}-{k}" for c, k in LANGEVIN_TYPES])
def test_custom_timesteps_become_the_noise_levels(cls, kwargs):
    scheduler = cls(num_train_timesteps=100, **kwargs)
    scheduler.set_timesteps(timesteps=[90, 50, 20, 3])
    assert scheduler.noise_levels.tolist() == [90, 50, 20, 3]
    assert scheduler.num_inference_steps == 4
    assert torch.isfinite(full_loop(cls(num_train_timesteps=100, **kwargs), lambda x, t: 0.1 * x, timesteps=[90, 50, 20, 3])).all()


def test_pc_custom_timesteps_predict_between_the_given_levels():
    scheduler = PredictorCorrectorScheduler(num_train_timesteps=100, n_corrector_steps=0)
    scheduler.set_timesteps(timesteps=[90, 50, 20])
    reference = DDPMScheduler(num_train_timesteps=100)
    reference.set_timesteps(timesteps=[90, 50, 20])
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = scheduler.step(eps, 90, x, generator=torch.Generator().manual_seed(2)).prev_sample
    theirs = reference.step(eps, 90, x, generator=torch.Generator().manual_seed(2)).prev_sample
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("cls,kwargs", LANGEVIN_TYPES, ids=[f"{c.__name__}-{k}" for c, k in LANGEVIN_TYPES])
@pytest.mark.parametrize(
    "timesteps,message",
    [([50, 50, 20], "strictly decreasing"), ([20, 50], "strictly decreasing"), ([100, 50], r"\[0, 99\]"),
     ([50, -1], r"\[0, 99\]"), ([], "at least one")],
)
def test_bad_custom_timesteps_are_refused(cls, kwargs, timesteps, message):
    with pytest.raises(ValueError, match=f"`timesteps`.*{message}|{message}"):
        cls(num_train_timesteps=100, **kwargs).set_timesteps(timesteps=timesteps)


def test_custom_timesteps_and_a_step_count_are_exclusive():
    with pytest.raises(ValueError, match="either `num_inference_steps` or `timesteps`"):
        AnnealedLangevinScheduler(num_train_timesteps=100).set_timesteps(4, timesteps=[50, 10])


@pytest.mark.parametrize("cls,kwargs", ALL, ids=ids)
def test_add_noise_is_the_forward_process(cls, kwargs):
    scheduler = cls(num_train_timesteps=100, **kwargs)
    ddpm = DDPMScheduler(num_train_timesteps=100)
    x0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 40, 99])
    torch.testing.assert_close(scheduler.add_noise(x0, noise, t), ddpm.add_noise(x0, noise, t))


@pytest.mark.parametrize("cls,kwargs", ALL, ids=ids)
def test_config_round_trip_and_swaps_with_stock_schedulers(cls, kwargs, tmp_path):
    scheduler = cls(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", **kwargs)
    scheduler.save_pretrained(tmp_path)
    again = cls.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(again.config) == public(scheduler.config)
    for stock in (DDPMScheduler, DDIMScheduler):
        swapped = stock.from_config(scheduler.config)
        torch.testing.assert_close(swapped.alphas_cumprod, scheduler.alphas_cumprod)
        back = cls.from_config(swapped.config, **kwargs)  # a stock config carries none of our own keys
        torch.testing.assert_close(back.alphas_cumprod, scheduler.alphas_cumprod)
        assert public(back.config) == public(scheduler.config)


@pytest.mark.parametrize("cls,kwargs", ALL, ids=ids)
def test_full_loop_is_deterministic_for_a_seed(cls, kwargs):
    def model(x, t):
        return 0.2 * x

    a = full_loop(cls(num_train_timesteps=100, **kwargs), model, seed=3)
    b = full_loop(cls(num_train_timesteps=100, **kwargs), model, seed=3)
    c = full_loop(cls(num_train_timesteps=100, **kwargs), model, seed=4)
    assert torch.equal(a, b)
    if not (cls is DDIMSkipScheduler):  # DDIM at eta 0 draws no noise
        assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", [AnnealedLangevinScheduler, PredictorCorrectorScheduler, DDIMSkipScheduler])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_every_timestep_spacing_gives_decreasing_levels_in_range(cls, spacing):
    scheduler = cls(num_train_timesteps=100, timestep_spacing=spacing)
    scheduler.set_timesteps(7)
    levels = getattr(scheduler, "noise_levels", scheduler.timesteps).tolist()
    assert len(levels) == 7 and all(0 <= t < 100 for t in levels)
    assert all(a > b for a, b in zip(levels, levels[1:]))
    reference = DDPMScheduler(num_train_timesteps=100, timestep_spacing=spacing)
    reference.set_timesteps(7)
    if cls is not DDIMSkipScheduler:
        assert levels == reference.timesteps.tolist()
    assert torch.isfinite(full_loop(scheduler, lambda x, t: 0.1 * x, steps=7)).all()


def test_ddim_skip_names_the_wrong_timestep_rather_than_set_timesteps():
    scheduler = DDIMSkipScheduler(num_train_timesteps=100, timestep_spacing="quadratic")
    scheduler.set_timesteps(4)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"`timestep`=37 is not one of this scheduler's 4 timesteps") as info:
        scheduler.step(x, 37, x)
    assert "call set_timesteps" not in str(info.value)


@pytest.mark.parametrize("cls", [AnnealedLangevinScheduler, PredictorCorrectorScheduler])
def test_a_wrong_timestep_names_the_levels(cls):
    scheduler = cls(num_train_timesteps=100)
    scheduler.set_timesteps(3)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"`timestep`=37 is not one of this scheduler's timesteps"):
        scheduler.step(x, 37, x)
