"""train/train.py: a few steps on slices of both datasets, EMA, checkpoint/resume, saving, scale-out, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file

import pnp_diffusers.speed as pnp_speed

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
MNIST, CIFAR = str(SHARED / "mnist"), str(SHARED / "cifar10")
sys.path.insert(0, str(REPO / "train"))

import train as train_script  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process run builds its own Accelerator, as a new process would."""
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def tiny_unet_config(tmp_path, channels=1, size=28):
    config = dict(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=[8, 16],
        layers_per_block=1, down_block_types=["DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D"], norm_num_groups=4,
    )
    path = tmp_path / f"unet_{channels}_{size}.json"
    path.write_text(json.dumps(config))
    return str(path)


def common_args(tmp_path, dataset=MNIST, channels=1, size=28, out="out"):
    return [
        "--dataset", dataset, "--split", "test", "--max_train_samples", "64", "--train_batch_size", "8",
        "--model_config", tiny_unet_config(tmp_path, channels, size), "--output_dir", str(tmp_path / out),
        "--lr_warmup_steps", "0", "--learning_rate", "1e-3",
    ]


@pytest.mark.parametrize("dataset,channels,size", [(MNIST, 1, 28), (CIFAR, 3, 32)])
@pytest.mark.parametrize("conditional", [False, True])
def test_few_steps_then_saved_pipeline_loads_in_plain_diffusers(tmp_path, dataset, channels, size, conditional):
    argv = common_args(tmp_path, dataset, channels, size) + ["--max_train_steps", "3", "--checkpointing_steps", "2"]
    if conditional:
        argv += ["--conditional", "--label_dropout", "0.2"]
    train_script.main(argv)
    out = tmp_path / "out"
    unet = UNet2DModel.from_pretrained(out / "unet")
    scheduler = DDPMScheduler.from_pretrained(out / "scheduler")
    assert unet.config.num_class_embeds == (11 if conditional else None)
    expected_schedule = "linear" if channels == 1 else "squaredcos_cap_v2"
    assert scheduler.config.beta_schedule == expected_schedule and scheduler.config.clip_sample is True
    assert sorted(n for n, _ in train_script.list_checkpoints(str(out))) == [2, 3]
    assert (out / "README.md").exists()
    if not conditional:  # a class-conditional UNet needs labels, which DDPMPipeline cannot pass
        pipe = DDPMPipeline.from_pretrained(str(out))
        image = pipe(batch_size=1, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images
        assert image.shape == (1, size, size, channels) and image.min() >= 0 and image.max() <= 1
    from pnp_diffusers import DiffusionSamplingPipeline

    ours = DiffusionSamplingPipeline.from_pretrained(str(out))
    labels = [0, 9] if conditional else None
    images = ours(batch_size=2, class_labels=labels, num_inference_steps=2, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, channels, size, size) and torch.isfinite(images).all()


def test_ema_weights_are_saved_and_differ_from_raw_weights(tmp_path):
    train_script.main(common_args(tmp_path) + ["--max_train_steps", "4", "--use_ema", "--ema_decay", "0.9"])
    saved = UNet2DModel.from_pretrained(tmp_path / "out" / "unet")
    raw = load_file(str(tmp_path / "out" / "checkpoint-4" / "model.safetensors"))
    ema_state = torch.load(tmp_path / "out" / "checkpoint-4" / "custom_checkpoint_1.pkl", weights_only=False)
    assert ema_state["optimization_step"] == 4
    name = "conv_in.weight"
    saved_weight = saved.state_dict()[name]
    assert not torch.allclose(saved_weight, raw[name])  # EMA lags the raw weights
    index = list(saved.state_dict()).index(name)
    assert torch.allclose(saved_weight, ema_state["shadow_params"][index].to(saved_weight.dtype))


def test_resume_restores_step_optimizer_and_ema(tmp_path):
    args = common_args(tmp_path) + ["--use_ema", "--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    train_script.main(args + ["--max_train_steps", "4"])
    full = tmp_path / "out" / "checkpoint-4"
    # A killed run: only checkpoint-2 survives, plus a half-written checkpoint that must be ignored.
    os.rename(full, tmp_path / "full-run-checkpoint-4")
    (tmp_path / "out" / "checkpoint-6.tmp").mkdir()
    assert train_script.list_checkpoints(str(tmp_path / "out"))[-1][0] == 2
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    train_script.main(args + ["--max_train_steps", "4", "--resume_from_checkpoint", "latest"])
    resumed = tmp_path / "out" / "checkpoint-4"
    assert json.loads((resumed / "training_state.json").read_text())["global_step"] == 4
    a = load_file(str(tmp_path / "full-run-checkpoint-4" / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    opt_a = torch.load(tmp_path / "full-run-checkpoint-4" / "optimizer.bin", weights_only=False)
    opt_b = torch.load(resumed / "optimizer.bin", weights_only=False)
    for key, state in opt_a["state"].items():
        torch.testing.assert_close(state["exp_avg"], opt_b["state"][key]["exp_avg"])
        assert float(state["step"]) == float(opt_b["state"][key]["step"]) == 4
    ema_a = torch.load(tmp_path / "full-run-checkpoint-4" / "custom_checkpoint_1.pkl", weights_only=False)
    ema_b = torch.load(resumed / "custom_checkpoint_1.pkl", weights_only=False)
    assert ema_a["optimization_step"] == ema_b["optimization_step"] == 4
    for x, y in zip(ema_a["shadow_params"], ema_b["shadow_params"]):
        torch.testing.assert_close(x, y)


def test_time_budget_checkpoints_saves_and_resumes(tmp_path):
    """--max_train_minutes: a spent budget ends the launch with a checkpoint and a loadable pipeline."""
    args = common_args(tmp_path) + ["--use_ema", "--checkpointing_steps", "100", "--max_train_steps", "5"]
    train_script.main(args + ["--max_train_minutes", "1e-9"])  # spent after the first step
    out = tmp_path / "out"
    assert [step for step, _ in train_script.list_checkpoints(str(out))] == [1]
    assert "for 1 steps" in (out / "README.md").read_text()
    DDPMPipeline.from_pretrained(out)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    train_script.main(args + ["--max_train_minutes", "60", "--resume_from_checkpoint", "latest"])
    assert train_script.list_checkpoints(str(out))[-1][0] == 5


def test_two_process_run_on_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train" / "train.py")]
    cmd += common_args(tmp_path) + ["--max_train_steps", "2", "--checkpointing_steps", "1", "--mixed_precision", "no"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (out / "checkpoint-2" / "random_states_1.pkl").exists()  # both processes saved their state
    assert "batch 8 x 2 processes" in result.stderr


def test_torch_compile_trains_and_its_checkpoints_resume_with_or_without_it(tmp_path, monkeypatch, caplog):
    """--torch_compile: accelerate compiles the UNet in prepare(); checkpoints and the saved UNet keep plain keys
    (no `_orig_mod.`), so a compiled run resumes without compile and the other way round, EMA and previews included.

    The backend here is aot_eager (seconds; inductor's C++ build of even this tiny UNet takes 15-130 s on a CPU):
    accelerate wraps the model in the same OptimizedModule whatever the backend. bench_training.py runs inductor.
    """
    import logging

    import torch._dynamo

    real_accelerator = train_script.Accelerator

    def accelerator(**kwargs):
        kwargs["dynamo_backend"] = {"inductor": "aot_eager"}.get(kwargs["dynamo_backend"], kwargs["dynamo_backend"])
        return real_accelerator(**kwargs)

    monkeypatch.setattr(train_script, "Accelerator", accelerator)
    torch._dynamo.utils.counters.clear()
    out = tmp_path / "out"
    args = common_args(tmp_path) + ["--checkpointing_steps", "2", "--checkpoints_total_limit", "5"]
    with caplog.at_level(logging.INFO):
        train_script.main(args + ["--max_train_steps", "2", "--torch_compile", "--save_images_steps", "2",
                                  "--num_preview_steps", "1"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the forward was compiled
    assert "torch.compile: compiled and checked" in caplog.text and "gradients match eager" in caplog.text
    assert (out / "samples" / "step-0000002.png").exists()
    keys = set(load_file(str(out / "checkpoint-2" / "model.safetensors")))
    assert keys and not any("_orig_mod" in key for key in keys)
    assert set(UNet2DModel.from_pretrained(out / "unet").state_dict()) == keys
    for extra, step in ((["--max_train_steps", "3"], 3), (["--max_train_steps", "4", "--torch_compile"], 4)):
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()
        train_script.main(args + extra + ["--resume_from_checkpoint", "latest"])  # compiled -> plain -> compiled
        assert train_script.list_checkpoints(str(out))[-1][0] == step
    assert set(load_file(str(out / "checkpoint-4" / "model.safetensors"))) == keys


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "no-such-preset"], "`--model`"),
        (["--model_config", "missing.json"], "`--model_config`"),
        (["--resume_from_checkpoint", "no/such/checkpoint"], "`--resume_from_checkpoint`"),
        (["--label_dropout", "1.5"], "`--label_dropout`"),
        (["--beta_schedule", "quadratic-ish"], "`--beta_schedule`"),
        (["--push_to_hub"], "`--hub_model_id`"),
        (["--max_train_minutes", "0"], "`--max_train_minutes`"),
    ],
)
def test_bad_arguments_fail_before_training(extra, message):
    argv = ["--dataset", MNIST] + extra
    with pytest.raises(ValueError, match=message):
        train_script.parse_args(argv)


def test_resolution_the_unet_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="`--resolution`"):
        train_script.main(["--dataset", MNIST, "--split", "test", "--max_train_samples", "8", "--model", "mnist-small",
                           "--resolution", "30", "--output_dir", str(tmp_path / "o")])


def test_conditional_on_unlabelled_dataset(tmp_path):
    import datasets
    from PIL import Image

    images = [Image.new("L", (8, 8), color=i * 20) for i in range(8)]
    datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()})).save_to_disk(
        str(tmp_path / "unlabelled"))
    with pytest.raises(ValueError, match="`--conditional` needs class labels"):
        train_script.main(["--dataset", str(tmp_path / "unlabelled"), "--conditional", "--model_config",
                           tiny_unet_config(tmp_path, 1, 8), "--output_dir", str(tmp_path / "o")])


def test_dataset_without_image_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["a"] * 4}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="image column"):
        train_script.main(["--dataset", str(tmp_path / "text"), "--output_dir", str(tmp_path / "o")])


def test_existing_checkpoints_need_resume_or_overwrite(tmp_path):
    train_script.main(common_args(tmp_path) + ["--max_train_steps", "1", "--mixed_precision", "no"])
    AcceleratorState._reset_state(True)
    with pytest.raises(ValueError, match="`--output_dir`"):
        train_script.main(common_args(tmp_path) + ["--max_train_steps", "1"])


def test_push_to_hub_uploads_the_pipeline_without_checkpoints(tmp_path, monkeypatch):
    import pnp_diffusers.hub as hub

    calls = {}
    monkeypatch.setattr(hub, "create_repo", lambda repo_id, **kw: type("Repo", (), {"repo_id": repo_id})())
    monkeypatch.setattr(hub, "upload_folder", lambda **kw: calls.update(kw))
    train_script.main(common_args(tmp_path) + ["--max_train_steps", "1", "--push_to_hub", "--hub_model_id", "me/ddpm-test"])
    assert calls["repo_id"] == "me/ddpm-test" and calls["folder_path"] == str(tmp_path / "out")
    assert "checkpoint-*" in calls["ignore_patterns"]


def test_init_from_pipeline_starts_from_its_exact_weights(tmp_path):
    """A run initialised from a saved pipeline starts from its weights (lr 0: they must come back unchanged)."""
    train_script.main(common_args(tmp_path, out="first") + ["--max_train_steps", "2", "--mixed_precision", "no"])
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    argv = common_args(tmp_path, out="second") + ["--max_train_steps", "1", "--learning_rate", "0", "--mixed_precision", "no",
                                                  "--init_from_pipeline", str(tmp_path / "first")]
    train_script.main(argv)
    a = UNet2DModel.from_pretrained(tmp_path / "first" / "unet").state_dict()
    b = UNet2DModel.from_pretrained(tmp_path / "second" / "unet").state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_init_from_pipeline_with_other_conditioning_fails_before_training(tmp_path):
    train_script.main(common_args(tmp_path, out="cond") + ["--max_train_steps", "1", "--mixed_precision", "no",
                                                            "--conditional"])
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    argv = common_args(tmp_path, out="uncond") + ["--max_train_steps", "1", "--init_from_pipeline", str(tmp_path / "cond")]
    with pytest.raises(ValueError, match=r"`--init_from_pipeline`.*conditioning.*train/extract_unconditional.py"):
        train_script.main(argv)
    assert not train_script.list_checkpoints(str(tmp_path / "uncond"))
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    # the other way round is a warm start: the conditional run begins as the unconditional model
    argv = common_args(tmp_path, out="from_uncond") + ["--max_train_steps", "1", "--learning_rate", "0", "--conditional",
                                                       "--mixed_precision", "no", "--init_from_pipeline", str(tmp_path / "uncond_src")]
    train_script.main(common_args(tmp_path, out="uncond_src") + ["--max_train_steps", "1", "--mixed_precision", "no"])
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    train_script.main(argv)
    a = UNet2DModel.from_pretrained(tmp_path / "uncond_src" / "unet").state_dict()
    b = UNet2DModel.from_pretrained(tmp_path / "from_uncond" / "unet").state_dict()
    assert set(b) - set(a) == {"class_embedding.weight"} and torch.count_nonzero(b["class_embedding.weight"]) == 0
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_minute_planned_run_ends_annealed_and_records_its_minutes(tmp_path):
    """--max_train_minutes with a cosine schedule: the decay is planned to end with the budget."""
    argv = common_args(tmp_path) + ["--max_train_steps", "100000", "--lr_scheduler", "cosine", "--max_train_minutes", "0.05",
                                    "--lr_min_ratio", "0.1", "--snr_gamma", "5", "--checkpointing_steps", "100000"]
    train_script.main(argv)
    step, path = train_script.list_checkpoints(str(tmp_path / "out"))[-1]
    state = json.loads((Path(path) / "training_state.json").read_text())
    assert state["training_minutes"] == pytest.approx(0.05, abs=0.02)
    scheduler_state = torch.load(Path(path) / "scheduler.bin", weights_only=False)
    # The last lr is the end value (min_ratio x lr) up to the last step's share of the budget.
    assert scheduler_state["_last_lr"][0] == pytest.approx(1e-4, rel=0.5)


def test_checkpoints_record_the_recipe_a_resume_reads(tmp_path):
    """A real run's checkpoint holds its resolved recipe; resumed without the flags, the run goes on with it."""
    train_script.main(common_args(tmp_path) + ["--max_train_steps", "1", "--mixed_precision", "no", "--prediction_type", "epsilon",
                                               "--snr_gamma", "3"])
    state = json.loads((tmp_path / "out" / "checkpoint-1" / "training_state.json").read_text())
    config = tiny_unet_config(tmp_path)
    assert state["recipe"] == {"model": None, "model_config": config, "conditional": False, "beta_schedule": "linear",
                               "prediction_type": "epsilon", "num_train_timesteps": 1000, "snr_gamma": 3.0}
    args = train_script.parse_args(common_args(tmp_path) + ["--resume_from_checkpoint", "latest"])
    assert (args.beta_schedule, args.prediction_type, args.snr_gamma) == ("linear", "epsilon", 3.0)


@pytest.mark.parametrize("preset,millions,shape", [("mnist-small", 1.1, (1, 28, 28)), ("cifar10-cpu", 1.1, (3, 32, 32)),
                                                   ("cifar10-small", 6.1, (3, 32, 32))])
def test_presets_have_their_documented_size_and_shape(preset, millions, shape):
    import torch

    from pnp_diffusers import create_unet

    unet = create_unet(preset).eval()
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)
    with torch.no_grad():
        out = unet(torch.randn(2, *shape), torch.tensor([10, 900])).sample
    assert out.shape == (2, *shape) and torch.isfinite(out).all()


@pytest.mark.parametrize("native_bf16, expected", [(True, "bf16"), (False, "no")])
def test_auto_precision_is_bf16_only_where_it_runs_natively(monkeypatch, native_bf16, expected):
    # An AVX2-only CPU emulates bf16 (a training step ~10x slower), so `auto` trains in float32 there.
    monkeypatch.setattr(pnp_speed, "has_fast_bf16", lambda device: native_bf16)
    assert train_script.parse_args(["--dataset", "x"]).mixed_precision == "auto"
    assert train_script.resolve_mixed_precision("auto") == expected
    assert train_script.resolve_mixed_precision("bf16") == "bf16" and train_script.resolve_mixed_precision("no") == "no"


def test_float32_training_keeps_nchw(tmp_path, caplog):
    # channels_last does not pay on the CPU: a float32 step was 5% slower with it on an AVX2 CPU.
    import logging

    with caplog.at_level(logging.INFO):
        train_script.main(common_args(tmp_path) + ["--max_train_steps", "1", "--mixed_precision", "no"])
    assert "precision no, NCHW" in caplog.text


def test_memory_format_auto_is_channels_last_only_for_gpu_autocast():
    # On an AMX Xeon, bf16 autocast trained mnist-small 1.24x faster in NCHW than channels_last; NHWC is for GPUs.
    from pnp_diffusers.training_utils import use_channels_last

    assert not use_channels_last("auto", "bf16", "cpu") and not use_channels_last("auto", "no", "cpu")
    assert use_channels_last("auto", "bf16", "cuda") and use_channels_last("auto", "fp16", "cuda")
    assert not use_channels_last("auto", "no", "cuda")
    assert use_channels_last("channels_last", "no", "cpu") and not use_channels_last("nchw", "bf16", "cuda")
    with pytest.raises(ValueError, match="memory_format"):
        use_channels_last("nhwc", "bf16", "cpu")
    assert train_script.parse_args(["--dataset", "x", "--no_channels_last"]).memory_format == "nchw"
    assert train_script.parse_args(["--dataset", "x"]).memory_format == "auto"


def test_channels_last_training_runs_when_asked(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        train_script.main(common_args(tmp_path) + ["--max_train_steps", "1", "--mixed_precision", "no",
                                                   "--memory_format", "channels_last"])
    assert "precision no, channels_last" in caplog.text


def test_class_embedding_gets_its_own_learning_rate():
    # A conditional run started from an unconditional pipeline has a zero class embedding that learns slowly at the
    # base lr; --class_embedding_lr_scale puts it in its own AdamW group, and the lr schedule keeps the ratio.
    from diffusers.optimization import get_scheduler

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=11)
    assert len(train_script.parameter_groups(unet, 1e-3, 1.0)) == 1
    groups = train_script.parameter_groups(unet, 1e-3, 30.0)
    assert [len(g["params"]) for g in groups] == [len(list(unet.parameters())) - 1, 1]
    assert groups[1]["params"][0] is unet.class_embedding.weight
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=2, num_training_steps=10)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    rest_lr, embedding_lr = (g["lr"] for g in optimizer.param_groups)
    assert embedding_lr == pytest.approx(30 * rest_lr) and 0 < rest_lr < 1e-3
    with pytest.raises(ValueError, match="`--class_embedding_lr_scale`"):
        train_script.validate_args(train_script.parse_args(["--dataset", "x", "--class_embedding_lr_scale", "0"]))
