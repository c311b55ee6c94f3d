"""train/train.py's command line (pnp_diffusers.training_args): bad input refused by name, the defaults, and the recipe
a run adopts from the weights it continues (a starting folder's noise schedule, a resumed checkpoint's record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffusers import DDPMScheduler

from pnp_diffusers.training_args import parse_args

REPO = Path(__file__).resolve().parents[1]
MNIST = str(REPO.parent / "shared" / "datasets" / "mnist")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--snr_gamma", "0"], "`--snr_gamma`"),
        (["--snr_gamma", "-5"], "`--snr_gamma`"),
        (["--snr_gamma", "5", "--no_snr_weighting"], "`--snr_gamma` 5.0 and `--no_snr_weighting`"),
        (["--lr_schedule_minutes", "0"], "`--lr_schedule_minutes`"),
        (["--lr_schedule_minutes", "10", "--lr_scheduler", "polynomial"], "`--lr_scheduler`"),
        (["--lr_min_ratio", "2"], "`--lr_min_ratio`"),
        (["--init_from_pipeline", "no/such/pipeline"], "`--init_from_pipeline`"),
    ],
)
def test_bad_recipe_arguments_fail_before_training(extra, message):
    with pytest.raises(ValueError, match=message):
        parse_args(["--dataset", MNIST] + extra)


def pipeline_folder_with_schedule(tmp_path, **scheduler_config):
    """A pipeline folder as far as parse_args reads one: a unet/config.json and the scheduler's config."""
    (tmp_path / "folder" / "unet").mkdir(parents=True)
    (tmp_path / "folder" / "unet" / "config.json").write_text("{}")
    DDPMScheduler(**scheduler_config).save_pretrained(tmp_path / "folder" / "scheduler")
    return str(tmp_path / "folder")


def test_init_from_pipeline_adopts_the_folders_noise_schedule(tmp_path):
    """Unset schedule arguments take the starting folder's values: its weights were trained for them."""
    folder = pipeline_folder_with_schedule(tmp_path, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2",
                                           num_train_timesteps=500)
    # (the tiny folder is no preset: --model names one, as it must for a folder of another network)
    args = parse_args(["--dataset", MNIST, "--model", "mnist-small", "--init_from_pipeline", folder])
    assert (args.prediction_type, args.beta_schedule, args.num_train_timesteps) == ("v_prediction", "squaredcos_cap_v2", 500)
    # the same values spelt out are no clash; without a folder the defaults hold
    args = parse_args(["--dataset", MNIST, "--model", "mnist-small", "--init_from_pipeline", folder,
                                    "--prediction_type", "v_prediction"])
    assert args.prediction_type == "v_prediction"
    args = parse_args(["--dataset", MNIST])
    assert (args.prediction_type, args.beta_schedule, args.num_train_timesteps) == ("v_prediction", None, 1000)


@pytest.mark.parametrize("extra,message", [
    (["--prediction_type", "v_prediction"], r"`--prediction_type` 'v_prediction' \(the folder's is 'epsilon'\)"),
    (["--beta_schedule", "squaredcos_cap_v2"], r"`--beta_schedule` 'squaredcos_cap_v2' \(the folder's is 'linear'\)"),
    (["--num_train_timesteps", "500"], r"`--num_train_timesteps` 500 \(the folder's is 1000\)"),
])
def test_init_from_pipeline_refuses_another_noise_schedule_before_training(tmp_path, extra, message):
    folder = pipeline_folder_with_schedule(tmp_path, prediction_type="epsilon", beta_schedule="linear")
    with pytest.raises(ValueError, match=r"`--init_from_pipeline`.*" + message):
        parse_args(["--dataset", MNIST, "--model", "mnist-small", "--init_from_pipeline", folder] + extra)


def test_default_model_is_mnist_noattn_and_a_starting_folder_keeps_its_preset(tmp_path):
    """Without --model: the sweep's winner for new runs, and the starting folder's own preset for continued ones
    (ddpm-mnist is mnist-noattn since session 26, ddpm-mnist-cfg since session 28, the CIFAR-10 ones cifar10-cpu); a folder
    of no preset is refused."""
    from pnp_diffusers import DiffusionSamplingPipeline
    from pnp_diffusers.models import create_noise_scheduler, create_unet

    assert parse_args(["--dataset", MNIST]).model == "mnist-noattn"
    for folder, preset in (("ddpm-mnist", "mnist-noattn"), ("ddpm-mnist-cfg", "mnist-noattn"), ("ddpm-cifar10-cfg", "cifar10-cpu")):
        args = parse_args(["--dataset", MNIST, "--init_from_pipeline", str(REPO / "pipelines" / folder)])
        assert args.model == preset
    args = parse_args(["--dataset", MNIST, "--model", "mnist-base", "--init_from_pipeline", str(REPO / "pipelines" / "ddpm-mnist")])
    assert args.model == "mnist-base"  # an explicit preset stays (and is checked against the folder before training)
    for preset in ("mnist-noattn", "mnist-base"):
        DiffusionSamplingPipeline(unet=create_unet(preset), scheduler=create_noise_scheduler()).save_pretrained(tmp_path / preset)
        assert parse_args(["--dataset", MNIST, "--init_from_pipeline", str(tmp_path / preset)]).model == preset
    folder = pipeline_folder_with_schedule(tmp_path, prediction_type="epsilon", beta_schedule="linear")
    with pytest.raises(ValueError, match=r"`--init_from_pipeline` .* is none of the presets .*--model_config"):
        parse_args(["--dataset", MNIST, "--init_from_pipeline", folder])


def test_defaults_are_the_campaign_recipe_and_ema_can_be_turned_off():
    """The defaults: peak lr 1e-3 (the lever sweep's), cosine decay to 2% with 100 warmup steps, EMA up to 0.9995,
    v-prediction with Min-SNR-5 (the third stage's); --no_ema drops the EMA, --no_snr_weighting the Min-SNR weights."""
    args = parse_args(["--dataset", MNIST])
    assert (args.learning_rate, args.lr_scheduler, args.lr_min_ratio, args.lr_warmup_steps) == (1e-3, "cosine", 0.02, 100)
    assert args.use_ema and args.ema_decay == 0.9995
    assert (args.prediction_type, args.snr_gamma) == ("v_prediction", 5.0)
    assert not parse_args(["--dataset", MNIST, "--no_ema"]).use_ema
    assert parse_args(["--dataset", MNIST, "--use_ema"]).use_ema
    assert parse_args(["--dataset", MNIST, "--no_snr_weighting"]).snr_gamma is None
    assert parse_args(["--dataset", MNIST, "--snr_gamma", "2"]).snr_gamma == 2.0


def write_checkpoint_state(output_dir, step, recipe=None):
    """A checkpoint folder as far as parse_args reads one: its training_state.json (with ``recipe`` when given)."""
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    state = {"global_step": step, "training_minutes": 1.0} | ({"recipe": recipe} if recipe is not None else {})
    (path / "training_state.json").write_text(json.dumps(state))


def test_a_resumed_run_keeps_its_checkpoints_recipe_whatever_the_defaults(tmp_path):
    """Checkpoints record the recipe (noise schedule, Min-SNR gamma): a resume adopts it and refuses a clash by name;
    a checkpoint from before the record gets the defaults of then (epsilon, plain MSE) unless flags say otherwise."""
    out = tmp_path / "out"
    write_checkpoint_state(out, 10, {"beta_schedule": "linear", "prediction_type": "epsilon", "num_train_timesteps": 1000,
                                     "snr_gamma": 0.0})
    resume = ["--dataset", MNIST, "--output_dir", str(out), "--resume_from_checkpoint", "latest"]
    args = parse_args(resume)
    assert (args.beta_schedule, args.prediction_type, args.num_train_timesteps, args.snr_gamma) == ("linear", "epsilon", 1000, None)
    with pytest.raises(ValueError, match=r"`--resume_from_checkpoint` .*`--prediction_type` 'v_prediction' \(the checkpoint's is 'epsilon'\)"):
        parse_args(resume + ["--prediction_type", "v_prediction"])
    with pytest.raises(ValueError, match=r"`--snr_gamma` 5.0 \(the checkpoint's is 0.0\)"):
        parse_args(resume + ["--snr_gamma", "5"])
    # the newest checkpoint decides, and --init_from_pipeline (ignored on resume) does not
    write_checkpoint_state(out, 20, {"beta_schedule": "linear", "prediction_type": "v_prediction", "num_train_timesteps": 1000,
                                     "snr_gamma": 5.0})
    args = parse_args(resume + ["--init_from_pipeline", str(REPO / "pipelines" / "ddpm-mnist")])
    assert (args.prediction_type, args.snr_gamma) == ("v_prediction", 5.0)
    legacy = tmp_path / "legacy"
    write_checkpoint_state(legacy, 500)
    legacy_resume = ["--dataset", MNIST, "--output_dir", str(legacy), "--resume_from_checkpoint", "latest"]
    args = parse_args(legacy_resume)
    assert (args.prediction_type, args.snr_gamma) == ("epsilon", None)
    args = parse_args(legacy_resume + ["--prediction_type", "v_prediction", "--snr_gamma", "5"])
    assert (args.prediction_type, args.snr_gamma) == ("v_prediction", 5.0)


def test_a_resume_keeps_the_checkpoints_network_and_refuses_another(tmp_path):
    """The recorded preset and conditioning are the resumed run's when no flag names them (the default preset changed
    in session 25); a conditional run resumes conditional without --conditional; a contradicting flag is refused."""
    out = tmp_path / "out"
    write_checkpoint_state(out, 10, {"model": "mnist-small", "model_config": None, "conditional": True, "beta_schedule": "linear",
                                     "prediction_type": "epsilon", "num_train_timesteps": 1000, "snr_gamma": 0.0})
    resume = ["--dataset", MNIST, "--output_dir", str(out), "--resume_from_checkpoint", "latest"]
    args = parse_args(resume)
    assert (args.model, args.conditional) == ("mnist-small", True)
    with pytest.raises(ValueError, match=r"`--model` 'mnist-noattn' \(the checkpoint's is 'mnist-small'\)"):
        parse_args(resume + ["--model", "mnist-noattn"])
    write_checkpoint_state(out, 20, {"model": "mnist-small", "model_config": None, "conditional": False, "beta_schedule": "linear",
                                     "prediction_type": "epsilon", "num_train_timesteps": 1000, "snr_gamma": 0.0})
    with pytest.raises(ValueError, match=r"`--conditional` True \(the checkpoint's is False\)"):
        parse_args(resume + ["--conditional"])
