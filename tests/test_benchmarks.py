"""benchmarks/sweep_pnp.py end to end on tiny pipelines: one row per setting, ratios that match their parts."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"
sys.path.insert(0, str(REPO / "benchmarks"))  # the scripts import their siblings, as when run from there

from test_quickstart import tiny_pipelines  # noqa: E402,F401  (the module-scoped fixture)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_sweep_pnp_writes_a_row_per_setting(tiny_pipelines, tmp_path, capsys):  # noqa: F811
    root = tiny_pipelines
    configs = [{"name": "two iterations", "num_iterations": 2, "final_denoise_t": 0},
               {"name": "with a final pass", "num_iterations": 2, "final_denoise_t": 10, "final_denoise_steps": 3}]
    results = load_script("sweep_pnp").main([
        "--prior", str(root / "uncond"), "--guide", str(root / "classifier"), "--judge", str(root / "classifier"),
        "--configs", json.dumps(configs), "--n_per_digit", "1", "--batch_size", "5", "--uncond_steps", "2",
        "--max_reference_samples", "40", "--device", "cpu", "--output_json", str(tmp_path / "sweep.json"),
    ])
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(results))
    assert [row["name"] for row in results["configs"]] == ["two iterations", "with a final pass"]
    for row in results["configs"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["frechet_ratio"] == pytest.approx(row["frechet_distance"] / results["unconditional"]["frechet_distance"])
        assert row["kernel_ratio"] == pytest.approx(row["kernel_distance"] / results["unconditional"]["kernel_distance"])
    # 2 x 2 for the iterations; the fast preset's final pass is guided: 3 steps x (forward + backward).
    assert [row["passes_per_sample"] for row in results["configs"]] == [4, 4 + 2 * 3]
    assert "| with a final pass |" in capsys.readouterr().out


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_eval_pnp_noise_and_dps_levers_end_to_end(tiny_pipelines, tmp_path):  # noqa: F811
    """eval_pnp's label task with the noise method's warm start and final render and DPS's clean-up:
    the pass counts follow the levers, and the JSON holds what was returned."""
    root = tiny_pipelines
    results = load_script("eval_pnp").main([
        "--methods", "noise,dps", "--tasks", "label", "--n_per_digit", "1", "--batch_size", "5",
        "--guide", str(root / "classifier"), "--judge", str(root / "classifier"), "--uncond_steps", "2",
        "--max_reference_samples", "40", "--device", "cpu", "--no_progress",
        "--noise_iterations", "2", "--noise_steps", "2", "--noise_warm_start", "3", "--noise_final_steps", "4",
        "--dps_steps", "4", "--dps_guidance_end", "0.5", "--dps_schedule", "linear",
        "--output_json", str(tmp_path / "eval_pnp.json"), "--prior", str(root / "uncond"),
    ])
    assert json.loads((tmp_path / "eval_pnp.json").read_text()) == json.loads(json.dumps(results))
    noise, dps = results["methods"]["noise"]["label"], results["methods"]["dps"]["label"]
    assert noise["n"] == dps["n"] == 10 and 0.0 <= noise["accuracy"] <= 1.0
    # noise: 3 candidates x 2 steps + 2 iterations x 2 steps + a 4-step render; 2 x 2 backwards
    assert noise["forward_passes_per_sample"] == 3 * 2 + 2 * 2 + 4 and noise["backward_passes_per_sample"] == 4
    assert dps["forward_passes_per_sample"] == 4 and dps["backward_passes_per_sample"] == 2  # 2 of 4 steps guided


def test_sweep_pnp_rejects_bad_configs():
    sweep = load_script("sweep_pnp")
    with pytest.raises(ValueError, match="--configs"):
        sweep.parse_args(["--configs", "not json"])
    with pytest.raises(ValueError, match="'name'"):
        sweep.parse_args(["--configs", '[{"num_iterations": 2}]'])


def tiny_unet_config(tmp_path) -> str:
    config = dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1,
                  down_block_types=["DownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "UpBlock2D"],
                  norm_num_groups=4)
    path = tmp_path / "tiny_unet.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_time_to_quality_runs_end_to_end_on_a_tiny_unet(tmp_path):
    """Three loops for a few seconds each: checkpoints at every half of the budget, scored, a ratio, a plot."""
    ttq = load_script("bench_time_to_quality")
    common = [
        "--model_config", tiny_unet_config(tmp_path), "--minutes", "0.04", "--checkpoints", "2", "--batch_size", "8",
        "--max_train_samples", "64", "--num_samples", "20", "--sample_steps", "2", "--sample_batch_size", "20",
        "--dataset", str(MNIST), "--judge", str(REPO / "pipelines" / "mnist-classifier-judge"),
        "--work_dir", str(tmp_path / "work"), "--output_json", str(tmp_path / "ttq.json"),
    ]
    results = ttq.main(common + ["--train_args", "--mixed_precision no --use_ema"])
    assert set(results["rows"]) == {"plain", "plain-ema", "train.py"}
    for points in results["rows"].values():
        assert len(points) == 2 and points[0]["minutes"] < points[1]["minutes"] and 0 < points[0]["step"] < points[1]["step"]
        # Each checkpoint comes at the first step past its share of the budget. How far past depends on the machine's
        # load (one slow step), so only the lower bound is asserted: no wall-time upper bound in a test.
        for k, point in enumerate(points, 1):
            assert point["minutes"] >= 0.04 * k / 2 - 1e-6
        for point in points:
            assert point["frechet_distance"] > 0
            assert point["ratio_to_floor"] == pytest.approx(point["frechet_distance"] / results["real_data_floor"])
    assert set(results["time_to_quality"]) == {"plain", "plain-ema"}
    assert "--use_ema" in results["train_commands"]["train.py"]
    assert (tmp_path / "ttq.png").stat().st_size > 1000

    # Loop by loop: --reuse keeps the trained rows and their scores; a sweep row trained apart joins the table.
    sweep = common + ["--loops", "train.py", "--tag", "lr1e-3", "--train_args", "--mixed_precision no --learning_rate 1e-3"]
    ttq.main(sweep + ["--no_score"])
    # Killed after its last launch's checkpoint, before the copy and the row: --reuse finishes it without training.
    row_dir = tmp_path / "work" / "lr1e-3"
    trained = json.loads((row_dir / "row.json").read_text())["points"]
    (row_dir / "row.json").unlink()
    (row_dir / "ckpt-2" / "point.json").unlink()
    ttq.main(sweep + ["--no_score", "--reuse"])
    assert json.loads((row_dir / "row.json").read_text())["points"] == trained
    again = ttq.main(common + ["--reuse", "--include_tags", "lr1e-3", "--train_args", "--mixed_precision no --use_ema",
                               "--sweep_score_every", "2"])
    assert set(again["rows"]) == {"plain", "plain-ema", "train.py", "lr1e-3"}
    # the sweep row is scored and shown at its last checkpoint only; its file keeps both checkpoints
    assert [p["step"] for p in again["rows"]["lr1e-3"]] == [trained[-1]["step"]]
    stored = json.loads((row_dir / "row.json").read_text())["points"]
    assert len(stored) == 2 and "frechet_distance" not in stored[0] and "frechet_distance" in stored[1]
    for name, points in results["rows"].items():
        assert [p["frechet_distance"] for p in again["rows"][name]] == [p["frechet_distance"] for p in points]
    assert set(again["time_to_quality"]) == {"plain", "plain-ema", "lr1e-3"}
    assert [line["row"] for line in again["sweep"]] == ["train.py", "lr1e-3"]
    base_fd = again["rows"]["train.py"][-1]["frechet_distance"]
    assert again["sweep"][0]["vs_baseline"] == pytest.approx(1.0)
    assert again["sweep"][1]["vs_baseline"] == pytest.approx(again["rows"]["lr1e-3"][-1]["frechet_distance"] / base_fd)
    assert (tmp_path / "ttq_summary.png").stat().st_size > 1000
    assert "--learning_rate 1e-3" in again["train_commands"]["lr1e-3"]


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_time_to_quality_scores_a_padded_row_against_the_28px_reference(tmp_path):
    """A row trained on MNIST padded to 32x32 is cropped back to its 28x28 centre, and scored against the same
    reference features as every other row; a row it cannot crop is refused by name."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from pnp_diffusers import DiffusionSamplingPipeline
    from pnp_diffusers.classifiers import load_classifier
    from pnp_diffusers.metrics import reference_features_and_floor

    ttq = load_script("bench_time_to_quality")
    args = ttq.parse_args(["--num_samples", "12", "--sample_steps", "2", "--sample_batch_size", "12"])
    judge = load_classifier(str(REPO / "pipelines" / "mnist-classifier-judge"), "--judge")
    reference, _ = reference_features_and_floor(judge, str(MNIST), 28, 12)
    config = json.loads(Path(tiny_unet_config(tmp_path)).read_text())
    torch.manual_seed(0)
    for side in (32, 24):
        DiffusionSamplingPipeline(unet=UNet2DModel(**dict(config, sample_size=side)),
                                  scheduler=DDPMScheduler()).save_pretrained(tmp_path / f"row{side}")
    assert ttq.score_checkpoint(str(tmp_path / "row32"), args, judge, reference, 28) > 0
    with pytest.raises(ValueError, match="24px samples cannot be scored against the 28px reference"):
        ttq.score_checkpoint(str(tmp_path / "row24"), args, judge, reference, 28)


@pytest.mark.skipif(not CIFAR10.exists(), reason=f"CIFAR-10 not found at {CIFAR10}")
def test_time_to_quality_plain_loader_reads_cifar10_in_colour():
    """CIFAR-10's image column is "img" and its images are RGB: the plain loop feeds (B, 3, 32, 32) in [-1, 1]."""
    ttq = load_script("bench_time_to_quality")
    args = ttq.parse_args(["--dataset", str(CIFAR10), "--max_train_samples", "8", "--batch_size", "4", "--model", "cifar10-cpu"])
    batch = next(iter(ttq.plain_loader(args, num_channels=3)))["input"]
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1 and batch.std() > 0.1


def test_time_to_quality_sweep_rows_are_scored_at_every_kth_checkpoint_and_the_last():
    ttq = load_script("bench_time_to_quality")
    points = [{"step": step} for step in range(1, 8)]
    assert [p["step"] for p in ttq.every_kth_point(points, 4)] == [4, 7]
    assert [p["step"] for p in ttq.every_kth_point(points, 1)] == list(range(1, 8))
    assert [p["step"] for p in ttq.every_kth_point(points, 10)] == [7]
    with pytest.raises(ValueError, match="--sweep_score_every"):
        ttq.parse_args(["--sweep_score_every", "0"])


def test_time_to_quality_interpolates_a_row_at_equal_steps():
    ttq = load_script("bench_time_to_quality")
    points = [{"step": 100, "frechet_distance": 8.0}, {"step": 400, "frechet_distance": 2.0}]
    assert ttq.fd_at_step(points, 200) == pytest.approx(4.0)  # halfway in log-steps, halfway in log-FD
    assert ttq.fd_at_step(points, 100) == pytest.approx(8.0) and ttq.fd_at_step(points, 400) == pytest.approx(2.0)
    assert ttq.fd_at_step(points, 50) is None and ttq.fd_at_step(points, 401) is None
    table = {"base": points, "lever": [{"step": 50, "frechet_distance": 9.0}, {"step": 200, "frechet_distance": 3.0, "minutes": 20}]}
    table["base"] = [dict(p, minutes=10 * i) for i, p in enumerate(points, 1)]
    lever, = ttq.sweep_summary(table, ["lever"], "base")
    assert lever["vs_baseline"] == pytest.approx(3.0 / 2.0) and lever["vs_baseline_at_equal_steps"] == pytest.approx(3.0 / 4.0)


def test_time_to_quality_takes_a_single_flag_row_written_with_equals():
    """lever_sweep.sh's compile row: a lone flag as the value of --train_args needs the '=' form."""
    ttq = load_script("bench_time_to_quality")
    assert ttq.parse_args(["--train_args=--torch_compile", "--tag", "compile"]).train_args == "--torch_compile"
    assert "--train_args=" in (REPO / "benchmarks" / "results" / "campaign" / "lever_sweep.sh").read_text()


def test_time_to_quality_interpolates_the_plain_curve():
    ttq = load_script("bench_time_to_quality")
    curve = [(5.0, 10.0), (10.0, 6.0), (15.0, 4.0), (20.0, 3.0)]
    assert ttq.minutes_to_reach(curve, 5.0) == pytest.approx(12.5)
    assert ttq.minutes_to_reach(curve, 2.0) is None
    assert ttq.time_to_quality(curve, 5.0, budget=5.0, plain_budget=20.0) == "2.50"
    assert ttq.time_to_quality(curve, 2.0, budget=5.0, plain_budget=20.0) == "> 4.00"


def test_time_to_quality_rejects_bad_arguments():
    ttq = load_script("bench_time_to_quality")
    with pytest.raises(ValueError, match="`--minutes`"):
        ttq.parse_args(["--minutes", "0"])
    with pytest.raises(ValueError, match="`--loops`"):
        ttq.parse_args(["--loops", "plain,keras"])


def test_inverse_problem_observations_and_metrics_on_known_cases():
    import torch

    inverse = load_script("eval_inverse")
    truth = torch.linspace(-1, 1, 2 * 8 * 8).view(2, 1, 8, 8)
    observed, mask, sigma = inverse.observe("box", truth, torch.Generator().manual_seed(0))
    assert sigma is None and mask[0, 0, 2:6, 2:6].eq(0).all() and mask.sum() == 2 * (64 - 16)
    assert torch.equal(observed, truth * mask)
    _, top, _ = inverse.observe("top-half", truth, torch.Generator())
    assert top[..., :4, :].eq(1).all() and top[..., 4:, :].eq(0).all()
    _, half, _ = inverse.observe("random-50", torch.zeros(50, 1, 8, 8), torch.Generator().manual_seed(0))
    assert abs(float(half.mean()) - 0.5) < 0.03
    noisy, everything, sigma = inverse.observe("denoise-0.5", truth, torch.Generator().manual_seed(0))
    assert sigma == 0.5 and everything.eq(1).all() and abs(float((noisy - truth).std()) - 0.5) < 0.06
    # A completion off by 0.2 (model space) on the hidden pixels only: MSE (0.1)^2 in [0, 1] units, PSNR 20 dB.
    assert inverse.hidden_pixel_error(truth.clone(), truth, mask, denoising=False) == (0.0, 120.0)
    off = torch.where(mask.bool(), truth, truth - 0.2)  # the box holds values in (-0.6, 0.6): no clamping
    mse, psnr = inverse.hidden_pixel_error(off, truth, mask, denoising=False)
    assert mse == pytest.approx(0.01) and psnr == pytest.approx(20.0)


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_eval_inverse_runs_every_method_and_reuses_its_rows(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    common = ["--prior", str(root / "uncond"), "--judge", str(root / "classifier"), "--num_digits", "3",
              "--batch_size", "2", "--dps_steps", "3", "--replacement_steps", "4", "--figure_digits", "2",
              "--output_json", str(tmp_path / "inverse.json"), "--figure", str(tmp_path / "inverse.png")]
    results = load_script("eval_inverse").main(common + ["--tasks", "box,denoise-0.5"])["results"]
    assert set(results) == {f"{t}/{m}" for t in ("box", "denoise-0.5") for m in ("replacement", "prior", "noise", "dps")}
    for row in results.values():
        assert row["n"] == 3 and 0 <= row["judge_accuracy"] <= 1 and row["hidden_mse"] >= 0
    assert results["box/replacement"]["unet_forward_per_digit"] == 4 and results["box/replacement"]["unet_backward_per_digit"] == 0
    assert results["denoise-0.5/replacement"]["unet_forward_per_digit"] < 4  # starts at the observation's noise level
    assert results["box/dps"]["unet_forward_per_digit"] == results["box/dps"]["unet_backward_per_digit"] == 3
    assert (tmp_path / "inverse.png").stat().st_size > 1000
    again = load_script("eval_inverse").main(common + ["--tasks", "box", "--methods", "prior", "--reuse"])["results"]
    assert again["box/prior"] == results["box/prior"] and set(again) == set(results)


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_sweep_samplers_counts_calls_compares_with_ddim50_and_resumes(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    configs = [{"sampler": "langevin", "levels": 3, "n_steps_each": 2, "snr": 0.1},
               {"sampler": "pc", "levels": 2, "n_corrector_steps": 1}]
    common = ["--pipeline", str(root / "uncond"), "--judge", str(root / "classifier"), "--num_samples", "8",
              "--batch_size", "4", "--output_json", str(tmp_path / "sweep.json")]
    sweep = load_script("sweep_samplers")
    rows = sweep.main(common + ["--configs", json.dumps(configs)])["rows"]
    calls = {row["name"]: row["model_calls"] for row in rows}
    assert calls == {"ddim 50": 50, "langevin 3 (n_steps_each=2, snr=0.1)": 3 * 2 + 1, "pc 2 (n_corrector_steps=1)": 2 * 2}
    assert all(row["frechet_distance"] > 0 for row in rows)
    assert "| langevin 3 (n_steps_each=2, snr=0.1) | 7 |" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    more = configs + [{"sampler": "ddim", "levels": 5}]
    again = sweep.main(common + ["--configs", json.dumps(more), "--reuse"])["rows"]
    assert [row["name"] for row in again] == [row["name"] for row in rows] + ["ddim 5"]
    assert again[:3] == rows
    with pytest.raises(ValueError, match="--configs"):
        sweep.parse_args(["--configs", '[{"sampler": "heun", "levels": 5}]'])


def test_sweep_samplers_rows_do_not_inherit_the_previous_rows_fields(tiny_pipelines):  # noqa: F811
    """A PC row after a Langevin row at snr 0.5 keeps PC's own default snr (0.16), and Langevin's n_steps_each does
    not leak into the next Langevin row: every row is built from the shipped scheduler's config."""
    import argparse

    from pnp_diffusers import DiffusionSamplingPipeline

    sweep = load_script("sweep_samplers")
    pipe = DiffusionSamplingPipeline.from_pretrained(tiny_pipelines / "uncond")
    pipe.set_progress_bar_config(disable=True)
    shipped = pipe.scheduler.config
    args = argparse.Namespace(seed=0, num_samples=2, batch_size=2)
    sweep.sample(pipe, {"sampler": "langevin", "levels": 2, "n_steps_each": 3, "snr": 0.5}, args, shipped)
    sweep.sample(pipe, {"sampler": "pc", "levels": 2}, args, shipped)
    assert pipe.scheduler.config.snr == 0.16
    _, calls, _ = sweep.sample(pipe, {"sampler": "langevin", "levels": 2}, args, shipped)
    assert pipe.scheduler.config.n_steps_each == 2 and calls == 2 * 2 + 1


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_bench_sampling_prints_every_row_utilisation_and_the_fd_judgment(tiny_pipelines, capsys):  # noqa: F811
    bench = load_script("bench_sampling")
    bench.main(["--pipeline", str(tiny_pipelines / "uncond"), "--ddpm_steps", "2", "--ddim_steps", "2", "--repeats", "1",
                "--batch_size", "2", "--fast_batch_sizes", "2,4", "--fd_samples", "8", "--fd_steps", "2",
                "--channels_last",
                "--judge", str(tiny_pipelines / "classifier"), "--dataset", str(MNIST)])
    out = capsys.readouterr().out
    from pnp_diffusers.speed import has_fast_bf16

    fast = "bf16" if has_fast_bf16() else "float32"
    for row in ("DDPMScheduler (2 steps) vs DDPMPipeline", "DDIMScheduler (2 steps) vs DDIMPipeline",
                "DDPMScheduler + trace (float32) vs DDPMPipeline", "DDIMScheduler + trace (float32) vs DDIMPipeline",
                "its trace, paid once per input shape",
                f"fast path ({fast} + channels_last + trace) vs default float32, batch 2", "vs default float32, batch 4",
                "GFLOP per image", "of the fp32 peak", "fast path  FD", "float32    FD"):
        assert row in out, row
    with pytest.raises(SystemExit):
        bench.parse_args(["--fast_batch_sizes", "8,x"])


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_bench_training_prints_the_three_sides_the_compile_time_and_utilisation(capsys):
    # aot_eager instead of inductor: the same compiled-module path in seconds, without a C++ build.
    from accelerate.state import AcceleratorState, GradientState, PartialState

    bench = load_script("bench_training")
    try:
        bench.main(["--dataset", str(MNIST), "--batch_size", "4", "--steps", "1", "--blocks", "1", "--num_samples", "32",
                    "--compile_backend", "aot_eager"])
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()
    out = capsys.readouterr().out
    for row in ("plain diffusers (", "train.py defaults (", "train.py + torch.compile (defaults + aot_eager",
                "ratio train.py / plain diffusers:", "ratio train.py + torch.compile / plain diffusers:",
                "compile time (aot_eager):", "compiled gradients against eager (aot_eager): 0 of"):
        assert row in out, row
    assert ": usable" in out  # aot_eager's backward is eager's
    assert out.count("% of the bf16 peak") == 2 and out.count("% of the fp32 peak") == 1


def test_unet_flops_count_forward_and_backward_and_the_peak_is_measured():
    import torch

    from pnp_diffusers import create_unet
    from pnp_diffusers.speed import matmul_peak_flops, unet_flops

    unet = create_unet("mnist-small", sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    forward = unet_flops(unet, batch_size=2)
    assert forward > 0 and unet_flops(unet, batch_size=4) == 2 * forward  # linear in the batch
    assert 2 * forward <= unet_flops(unet, batch_size=2, backward=True) <= 4 * forward  # backward ~ 2x forward
    assert matmul_peak_flops(torch.float32, size=128, repeats=2) > 0


def test_plot_campaign_draws_the_committed_curve(tmp_path):
    import plot_campaign

    out = plot_campaign.main(["--output", str(tmp_path / "curve.png")])
    assert out.is_file() and out.stat().st_size > 1000
    # every listed point has both seeds' JSONs, and the DDIM 50 row is read from each
    assert all(plot_campaign.frechet(stem, seed) > 0 for stem, *_ in plot_campaign.POINTS for seed in (0, 1))
    stems = [f"{plot_campaign.NOATTN_STEM}-{step}_bf16" for step, _ in plot_campaign.NOATTN_POINTS]
    assert stems and all(plot_campaign.frechet(stem, seed) > 0 for stem in stems + [plot_campaign.SHIPPED_BF16_STEM] for seed in (0, 1))


def test_plot_pnp_tradeoff_reads_the_committed_screens(tmp_path, capsys):
    import plot_pnp_tradeoff

    tuning = REPO / "benchmarks" / "results" / "tuning"
    jsons = sorted(str(p) for p in tuning.glob("noise_n160_*.json")) + [str(tuning / "dps_n160_scale1.json")]
    out = plot_pnp_tradeoff.main([*jsons, "--output", str(tmp_path / "tradeoff.png")])
    assert out.is_file() and out.stat().st_size > 1000
    table = capsys.readouterr().out
    assert table.count("| noise |") == len(jsons) - 1
    # DPS at zeta 1 on the 17,141-step prior met both targets at n=160 (100%, 0.47x); the noise preset did not
    assert "| dps_n160_scale1 | dps | ddpm-mnist | 160 | 100.0% | 0.47 | 400 | yes |" in table
    assert "| noise_n160_preset | noise | ddpm-mnist | 160 | 74.4% | 2.09 | 405 | no |" in table


def test_plot_pnp_tradeoff_names_the_files_without_label_results(tmp_path):
    import plot_pnp_tradeoff

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"methods": {"noise": {"symmetry": {}}}}))
    with pytest.raises(SystemExit, match="empty.json"):
        plot_pnp_tradeoff.main([str(empty), "--output", str(tmp_path / "x.png")])


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_eval_samplers_scores_ddim_and_cfg_rows_with_a_timestep_spacing_override(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    evaluate = load_script("eval_samplers")
    common = ["--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"), "--judge", str(root / "classifier"),
              "--num_samples", "10", "--batch_size", "10", "--rows", "DDIM 10,cfg", "--guidance_scales", "0,2",
              "--cfg_steps", "3", "--device", "cpu"]
    leading = evaluate.main(common + ["--output_json", str(tmp_path / "leading.json")])
    trailing = evaluate.main(common + ["--timestep_spacing", "trailing", "--output_json", str(tmp_path / "trailing.json")])
    for results in (leading, trailing):
        ddim, *cfg = results["rows"]
        assert ddim["sampler"] == "DDIM 10" and ddim["ratio_to_floor"] == pytest.approx(ddim["frechet_distance"] / results["real_data_floor"])
        assert [row["model_calls_per_image"] for row in cfg] == [3, 6]  # w=0 needs one branch, w=2 two
        assert all(0 <= row["label_accuracy"] <= 1 and row["label_balanced_floor"] > 0 for row in cfg)
        for row in results["rows"] + [results["real_data_diversity"]]:
            assert all(0 <= row[key] <= 1 for key in ("precision", "recall", "coverage")) and row["density"] >= 0
    # same noise, other timesteps: the override reaches the samplers
    assert trailing["rows"][0]["frechet_distance"] != leading["rows"][0]["frechet_distance"]
    assert json.loads((tmp_path / "trailing.json").read_text())["rows"] == trailing["rows"]
    assert evaluate.with_spacing({"timestep_spacing": "leading", "beta_start": 1e-4}, None)["timestep_spacing"] == "leading"
    assert evaluate.with_spacing({"timestep_spacing": "leading", "beta_start": 1e-4}, "trailing") == {
        "timestep_spacing": "trailing", "beta_start": 1e-4}


def test_check_compiled_gradients_finds_the_exact_backends_exact():
    """The reproducer runs on a shipped pipeline; dynamo's eager and aot_eager backends give eager's gradients
    (inductor takes minutes to build here and is what benchmarks/results/check_compiled_gradients_amx.txt records)."""
    script = load_script("check_compiled_gradients")
    results = script.main(["--pipeline", str(REPO / "pipelines" / "ddpm-mnist"), "--backends", "eager,aot_eager",
                           "--batch_size", "2"])
    for check in results.values():
        assert check["missing"] == 0 and check["relative_error"] < 1e-5 and check["parameters"] > 100
