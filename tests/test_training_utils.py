"""pnp_diffusers.training_utils: min-SNR weights, the minute-planned lr schedule, init from a pipeline folder."""

import math

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from pnp_diffusers.training_utils import (
    TrainingClock,
    build_lr_scheduler,
    load_unet_weights_from_pipeline,
    min_snr_loss_weights,
    minute_planned_scheduler,
)


def hand_snr(t: int) -> float:
    """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) for the linear schedule 1e-4..0.02 over T=1000."""
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    alpha_bar = math.prod(1 - b for b in betas[: t + 1])
    return alpha_bar / (1 - alpha_bar)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_equal_the_formulas(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    timesteps = torch.tensor([0, 10, 100, 500, 999])
    gamma = 5.0
    weights = min_snr_loss_weights(scheduler, timesteps, gamma)
    for t, w in zip(timesteps.tolist(), weights.tolist()):
        snr = hand_snr(t)
        expected = min(snr, gamma) / (snr if prediction_type == "epsilon" else snr + 1)
        assert w == pytest.approx(expected, rel=1e-3), t
    # Low-noise steps (SNR >> gamma) are down-weighted; high-noise ones keep weight 1 (epsilon).
    if prediction_type == "epsilon":
        assert weights[0] < 0.01 and weights[-1] == pytest.approx(1.0)


def test_min_snr_rejects_a_non_positive_gamma():
    with pytest.raises(ValueError, match="`snr_gamma`"):
        min_snr_loss_weights(DDPMScheduler(), torch.tensor([1]), 0.0)


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("shape,halfway", [("cosine", 0.5), ("linear", 0.5), ("constant", 1.0)])
def test_minute_planned_schedule_reaches_its_end_value_at_the_planned_end(shape, halfway):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    clock = TrainingClock()
    scheduler = minute_planned_scheduler(optimizer, clock, planned_minutes=30, shape=shape, warmup_steps=0, min_ratio=0.1)

    def lr_at(minutes):
        clock.minutes_before = minutes  # as if `minutes` had been trained before this launch
        clock.restart_launch()
        scheduler.step()
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0.0) == pytest.approx(1.0, abs=1e-4)
    assert lr_at(15.0) == pytest.approx(0.1 + 0.9 * halfway, abs=1e-4)
    end = 0.1 if shape != "constant" else 1.0
    assert lr_at(30.0) == pytest.approx(end, abs=1e-4)
    assert lr_at(45.0) == pytest.approx(end, abs=1e-4)  # past the plan it stays at the end value


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
def test_minute_planned_warmup_counts_steps():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = minute_planned_scheduler(optimizer, TrainingClock(), planned_minutes=1e6, warmup_steps=4)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(5):
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=1e-4) and lrs[-1] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "kind,minutes,launch_budget,at_launch_end",
    [
        ("cosine", None, 10.0, 0.02),  # a time-boxed launch: the cosine is planned to end where the launch ends
        ("cosine", 40.0, 10.0, 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi / 4))),  # the run's plan wins over the launch's
        ("constant", None, 10.0, 1.0),  # constant over steps: get_scheduler's, nothing planned
        ("cosine", None, None, None),  # no minutes at all: get_scheduler's cosine over steps
    ],
)
def test_build_lr_scheduler_plans_in_minutes_only_when_minutes_are_given(kind, minutes, launch_budget, at_launch_end):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    clock = TrainingClock()
    scheduler = build_lr_scheduler(optimizer, clock, kind, warmup_steps=0, num_training_steps=4, lr_schedule_minutes=minutes,
                                   max_train_minutes=launch_budget, minutes_at_launch=lambda: 0.0, min_ratio=0.02)
    if at_launch_end is None:  # steps decide: after 2 of 4 steps a step-cosine is at half its lr
        scheduler.step(), scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5, abs=1e-6)
        return
    clock.minutes_before = launch_budget
    clock.restart_launch()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(at_launch_end, abs=1e-4)


def test_training_clock_round_trips_its_minutes():
    clock = TrainingClock(minutes_before=12.5)
    restored = TrainingClock()
    restored.load_state_dict(clock.state_dict())
    assert restored.minutes == pytest.approx(12.5, abs=0.01)


def tiny_unet(num_class_embeds=None):
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=num_class_embeds)


def test_init_from_pipeline_loads_exactly_its_weights(tmp_path):
    torch.manual_seed(0)
    source = tiny_unet()
    source.save_pretrained(tmp_path / "pipe" / "unet")
    torch.manual_seed(1)
    target = tiny_unet()
    load_unet_weights_from_pipeline(target, str(tmp_path / "pipe"))
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name


def test_unconditional_pipeline_starts_a_conditional_run_as_itself(tmp_path):
    """Unconditional -> conditional: all weights copied, the class embedding zero, so every label (and the
    null class) gives the unconditional model's output at the start."""
    torch.manual_seed(0)
    source = tiny_unet()
    source.save_pretrained(tmp_path / "pipe" / "unet")
    torch.manual_seed(1)
    target = tiny_unet(num_class_embeds=11)
    assert load_unet_weights_from_pipeline(target, str(tmp_path / "pipe")) is True
    assert torch.count_nonzero(target.class_embedding.weight) == 0
    for name, weight in source.state_dict().items():
        assert torch.equal(weight, target.state_dict()[name]), name
    x, t = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)), torch.tensor([10, 500, 990])
    with torch.no_grad():
        expected = source(x, t).sample
        for label in (0, 7, 10):
            assert torch.allclose(target(x, t, class_labels=torch.full((3,), label)).sample, expected, atol=1e-6)
    assert load_unet_weights_from_pipeline(tiny_unet(), str(tmp_path / "pipe")) is False


def test_init_from_pipeline_rejects_another_network(tmp_path):
    tiny_unet(num_class_embeds=11).save_pretrained(tmp_path / "pipe" / "unet")
    with pytest.raises(ValueError, match=r"`--init_from_pipeline`.*class conditioning differs"):
        load_unet_weights_from_pipeline(tiny_unet(), str(tmp_path / "pipe"))  # conditional -> unconditional
    with pytest.raises(ValueError, match=r"`--init_from_pipeline`.*class conditioning differs"):
        load_unet_weights_from_pipeline(tiny_unet(num_class_embeds=5), str(tmp_path / "pipe"))
    with pytest.raises(ValueError, match=r"`--init_from_pipeline`.*no unet/config.json"):
        load_unet_weights_from_pipeline(tiny_unet(), str(tmp_path / "nowhere"))


def test_noise_schedule_of_a_folder_without_a_scheduler_is_what_was_asked(tmp_path):
    from pnp_diffusers.training_utils import noise_schedule_of_pipeline

    requested = {"beta_schedule": None, "prediction_type": "epsilon", "num_train_timesteps": None}
    assert noise_schedule_of_pipeline(str(tmp_path), requested) == requested


class _TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) + self.b(x)


class _DropsAGradient(torch.nn.Module):
    """Stands for a compiled module whose backward loses some parameters' gradients (what inductor did on this
    project's CPU to UNet2DModel): same forward values, but ``b`` gets no gradient."""

    def __init__(self, module):
        super().__init__()
        self._orig_mod = module

    def forward(self, x):
        return self._orig_mod.a(x) + self._orig_mod.b(x).detach()


def _loss(model):
    return model(torch.ones(2, 4)).pow(2).sum()


def test_compiled_gradient_check_passes_a_correct_compile_and_catches_a_lost_gradient(caplog):
    import logging

    from pnp_diffusers.training_utils import checked_compiled_module, compiled_gradient_check

    module = _TwoLayers()
    compiled = torch.compile(module, backend="aot_eager")
    check = compiled_gradient_check(compiled, _loss)
    assert check["missing"] == 0 and check["relative_error"] < 1e-6 and check["parameters"] == 4
    assert all(p.grad is None for p in module.parameters())
    assert checked_compiled_module(compiled, _loss) is compiled

    broken = _DropsAGradient(module)
    check = compiled_gradient_check(broken, _loss)
    assert check["missing"] == 2 and check["relative_error"] > 0.05  # b.weight and b.bias
    log = logging.getLogger("compile-check-test")
    with caplog.at_level(logging.WARNING, logger="compile-check-test"):
        assert checked_compiled_module(broken, _loss, log) is module  # falls back to the eager module
    assert "trains WITHOUT compile" in caplog.text and "2 of 4 parameters get no gradient" in caplog.text


def test_compiled_gradient_check_falls_back_when_the_compiled_backward_raises():
    from pnp_diffusers.training_utils import checked_compiled_module, compiled_gradient_check

    module = _TwoLayers()

    class NoBackward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self._orig_mod = module

        def forward(self, x):
            return module(x).detach()  # backward() raises: the loss has no grad_fn

    check = compiled_gradient_check(NoBackward(), _loss)
    assert check["error"] is not None and check["missing"] == 4
    assert checked_compiled_module(NoBackward(), _loss) is module
