"""The per-figure example scripts (examples/sample_grids.py, interpolation.py, pnp_mnist.py, pnp_cifar10.py,
img2img.py) on tiny pipelines, MNIST- and CIFAR-10-shaped."""

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet, small_classifier_config

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
CIFAR10 = REPO.parent / "shared" / "datasets" / "cifar10"
sys.path.insert(0, str(REPO / "examples"))

import img2img  # noqa: E402
import interpolation  # noqa: E402
import pnp_cifar10  # noqa: E402
import pnp_mnist  # noqa: E402
import sample_grids  # noqa: E402
from test_quickstart import TINY, tiny_pipelines  # noqa: E402,F401  (the module-scoped fixture)


def test_sample_grids_writes_every_grid_and_scores_the_conditional_ones(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    measured = sample_grids.main([
        "--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"), "--judge", str(root / "classifier"),
        "--output_dir", str(tmp_path), "--grid", "2", "--ddpm_steps", "3", "--ddim_steps", "3", "--pc_levels", "2",
        "--guidance_scales", "0,1,3", "--device", "cpu", "--noise_aware_classifier", str(root / "noise_aware_classifier"),
    ])
    assert measured["classifier_guided"]["grid"] == "classifier_guided_s10.png"
    assert Image.open(tmp_path / "classifier_guided_s10.png").size == (2 * 8 + 2, 10 * 8 + 9 * 2)
    assert 0.0 <= measured["classifier_guided"]["judge_label_accuracy"] <= 1.0
    for name in ("conditional_w3_labelled.png", "classifier_guided_s10_labelled.png"):
        assert Image.open(tmp_path / name).size[1] > 100  # ten labelled rows
    names = {row["grid"] for row in measured["unconditional"] + measured["conditional"]}
    assert names == {"unconditional_ddpm3.png", "unconditional_ddim3.png", "unconditional_pc2.png",
                     "conditional_w0.png", "conditional_w1.png", "conditional_w3.png"}
    for name in names:
        assert (tmp_path / name).is_file()
    assert Image.open(tmp_path / "unconditional_ddim3.png").size == (2 * 8 + 2, 2 * 8 + 2)
    assert Image.open(tmp_path / "conditional_w3.png").size == (2 * 8 + 2, 10 * 8 + 9 * 2)  # one row per class
    for row in measured["conditional"]:
        assert 0.0 <= row["judge_label_accuracy"] <= 1.0


def test_sample_grids_can_draw_only_the_classifier_guided_grid(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    measured = sample_grids.main([
        "--unconditional", str(root / "uncond"), "--conditional", "none", "--judge", str(root / "classifier"),
        "--output_dir", str(tmp_path), "--grid", "1", "--ddim_steps", "2", "--unconditional_samplers", "none",
        "--classifier_guidance_scale", "2", "--device", "cpu", "--noise_aware_classifier", str(root / "noise_aware_classifier"),
    ])
    assert measured["unconditional"] == []
    assert measured["classifier_guided"]["classifier_guidance_scale"] == 2.0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["classifier_guided_s2.png", "classifier_guided_s2_labelled.png"]


def test_sample_grids_bad_inputs(tiny_pipelines, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="`--guidance_scales`"):
        sample_grids.parse_args(["--guidance_scales", "1,x"])
    with pytest.raises(ValueError, match="`--conditional`"):
        sample_grids.main(["--unconditional", "none", "--conditional", str(tiny_pipelines / "uncond"),
                           "--judge", "none", "--output_dir", str(tmp_path), "--grid", "1", "--ddim_steps", "2"])
    with pytest.raises(ValueError, match="`--unconditional_samplers`"):
        sample_grids.parse_args(["--unconditional_samplers", "ddim,langevin"])
    with pytest.raises(ValueError, match="Nothing to draw"):
        sample_grids.main(["--unconditional", "none", "--conditional", "none", "--output_dir", str(tmp_path)])


@pytest.mark.skipif(not CIFAR10.exists(), reason=f"CIFAR-10 not found at {CIFAR10}")
def test_sample_grids_on_cifar10_skips_the_default_mnist_noise_aware_classifier(tiny_pipelines, tiny_cifar10, tmp_path,
                                                                               monkeypatch):  # noqa: F811
    # The default --noise_aware_classifier is MNIST's: on a colour pipeline its grid is skipped, not a crash.
    mnist_noise_aware = str(tiny_pipelines / "noise_aware_classifier")
    monkeypatch.setattr(sample_grids, "DEFAULT_NOISE_AWARE", mnist_noise_aware)
    common = ["--unconditional", str(tiny_cifar10 / "uncond"), "--conditional", "none", "--judge", "none",
              "--output_dir", str(tmp_path), "--grid", "1", "--ddpm_steps", "2", "--ddim_steps", "2", "--pc_levels", "1",
              "--device", "cpu"]
    measured = sample_grids.main(common)
    assert "classifier_guided" not in measured and (tmp_path / "unconditional_ddim2.png").is_file()
    monkeypatch.setattr(sample_grids, "DEFAULT_NOISE_AWARE", "elsewhere")
    with pytest.raises(ValueError, match="`--noise_aware_classifier`.*1-channel.*3-channel"):
        sample_grids.main(common + ["--noise_aware_classifier", mnist_noise_aware])


def test_interpolation_writes_strips_and_reconstructs_real_digits(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    measured = interpolation.main([
        "--pipeline", str(root / "uncond"), "--judge", str(root / "classifier"), "--dataset", str(MNIST),
        "--output_dir", str(tmp_path), "--rows", "2", "--frames", "3", "--steps", "3", "--device", "cpu",
    ])
    for name in ("slerp.png", "real_images.png"):
        assert Image.open(tmp_path / name).size == (3 * 8 + 2 * 2, 2 * 8 + 2)
    assert len(measured["slerp_labels"]) == 2 and len(measured["slerp_labels"][0].split()) == 3
    assert len(measured["reconstruction_mse"]) == 2 and all(e >= 0 for e in measured["reconstruction_mse"])
    with pytest.raises(ValueError, match="`--frames`"):
        interpolation.parse_args(["--frames", "1"])


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_pnp_mnist_writes_the_figure_and_measures_every_row(tiny_pipelines, tmp_path, capsys):  # noqa: F811
    root = tiny_pipelines
    result = pnp_mnist.main([
        "--prior", str(root / "uncond"), "--guide", str(root / "classifier"), "--judge", str(root / "classifier"),
        "--dataset", str(MNIST), "--n_per_row", "2", "--num_iterations", "2", "--device", "cpu",
        "--output", str(tmp_path / "pnp.png"),
    ])
    rows = [r["row"] for r in result["measured"]]
    assert rows == [f"digit {d}" for d in range(10)] + [
        "horizontal similarity", "horizontal dissimilarity", "a symmetric 3", "inpainted"]
    # 16 rows of 8px images: 10 digits, 2 symmetry, the symmetric 3, observed, inpainted, ground truth.
    from pnp_diffusers.figures import ROW_HEIGHT_INCHES

    assert Image.open(tmp_path / "pnp.png").size[1] == pytest.approx(16 * ROW_HEIGHT_INCHES * 110, abs=2)  # 16 rows
    for record in result["measured"]:
        # 2 iterations + the final pass: 100 guided steps (forward + backward) in "fast" (labels),
        # 10 unguided in "fast-pixel" (the other rows)
        final = 2 * 100 if record["row"].startswith("digit") else 10
        assert record["fwd+bwd / sample"] == 2 * 2 + final
        if "judge accuracy" in record:
            assert 0.0 <= record["judge accuracy"] <= 1.0
    inpainted = result["measured"][-1]
    assert inpainted["observed MSE"] >= 0 and inpainted["hidden MSE"] >= 0
    assert "| a symmetric 3" in capsys.readouterr().out


def test_img2img_draws_every_corruption_at_every_strength(tiny_pipelines, tmp_path):  # noqa: F811
    root = tiny_pipelines
    result = img2img.main([
        "--pipeline", str(root / "uncond"), "--judge", str(root / "classifier"), "--dataset", str(MNIST),
        "--digits", "0", "--strengths", "0,0.5", "--num_inference_steps", "4", "--no_fast",
        "--output", str(tmp_path / "img2img.png"), "--output_txt", str(tmp_path / "img2img.txt"),
    ])
    assert [row["corruption"] for row in result["rows"]] == list(img2img.CORRUPTIONS)
    for row in result["rows"]:
        assert len(row["judged"]) == 2 and all(0 <= d < 10 for d in row["judged"])
    width, height = Image.open(tmp_path / "img2img.png").size
    assert width > 200 and height > 200
    assert "strength 0.5:" in (tmp_path / "img2img.txt").read_text()
    with pytest.raises(ValueError, match="`--strengths`"):
        img2img.parse_args(["--strengths", "0.5,2"])


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def tiny_cifar10(tmp_path_factory):
    """A tiny 3x8x8 unconditional and CFG pipeline (cosine schedule, x0 clamping) and a tiny RGB classifier."""
    root = tmp_path_factory.mktemp("tiny_cifar10")
    torch.manual_seed(0)
    tiny = dict(TINY, attention_head_dim=8)  # cifar10-small's mid-block attention needs heads that fit 16 channels
    scheduler = create_noise_scheduler("squaredcos_cap_v2")
    DiffusionSamplingPipeline(unet=create_unet("cifar10-small", sample_size=8, **tiny), scheduler=scheduler).save_pretrained(root / "uncond")
    DiffusionSamplingPipeline(unet=create_unet("cifar10-small", sample_size=8, num_classes=10, **tiny),
                              scheduler=scheduler).save_pretrained(root / "cfg")
    config = small_classifier_config("resnet", num_channels=3, num_labels=10, image_size=8, hidden_sizes=(8, 16),
                                     depths=(1, 1), id2label=dict(enumerate(CIFAR10_NAMES)))
    AutoModelForImageClassification.from_config(config).save_pretrained(root / "classifier")
    return root


@pytest.mark.skipif(not CIFAR10.exists(), reason=f"CIFAR-10 not found at {CIFAR10}")
def test_pnp_cifar10_draws_every_class_and_the_inpainting(tiny_cifar10, tmp_path, capsys):
    root = tiny_cifar10
    result = pnp_cifar10.main([
        "--prior", str(root / "uncond"), "--guide", str(root / "classifier"), "--judge", str(root / "classifier"),
        "--dataset", str(CIFAR10), "--classes", "0,3,9", "--n_per_row", "2", "--num_iterations", "2", "--device", "cpu",
        "--output", str(tmp_path / "pnp.png"),
    ])
    assert [r["row"] for r in result["measured"]] == ["airplane", "cat", "truck", "inpainted"]
    from pnp_diffusers.figures import ROW_HEIGHT_INCHES

    # 3 class rows, observed, inpainted, ground truth
    assert Image.open(tmp_path / "pnp.png").size[1] == pytest.approx(6 * ROW_HEIGHT_INCHES * 110, abs=2)
    for record in result["measured"]:
        assert 0.0 <= record["judge accuracy"] <= 1.0 and record["fwd+bwd / sample"] > 0
    inpainted = result["measured"][-1]
    assert inpainted["hidden MSE"] >= 0 and inpainted["hidden PSNR (dB)"] > 0
    out = capsys.readouterr().out
    assert "| truck" in out and "hidden PSNR (dB)" in out
    with pytest.raises(ValueError, match="`--classes`"):
        pnp_cifar10.main(["--prior", str(root / "uncond"), "--guide", str(root / "classifier"), "--classes", "12",
                          "--dataset", str(CIFAR10), "--output", str(tmp_path / "x.png")])
    with pytest.raises(ValueError, match="`--box`"):
        pnp_cifar10.parse_args(["--box", "1.5"])


def test_pnp_cifar10_box_mask_hides_the_centre():
    mask = pnp_cifar10.centred_box_mask(8, 0.5)
    assert mask.shape == (1, 8, 8) and mask.sum() == 64 - 16 and mask[0, 2:6, 2:6].eq(0).all()


@pytest.mark.skipif(not CIFAR10.exists(), reason=f"CIFAR-10 not found at {CIFAR10}")
def test_cifar10_grids_and_interpolation_on_tiny_models(tiny_cifar10, tmp_path):
    root = tiny_cifar10
    measured = sample_grids.main([
        "--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"), "--judge", str(root / "classifier"),
        "--output_dir", str(tmp_path), "--grid", "2", "--ddpm_steps", "3", "--ddim_steps", "3", "--pc_levels", "2",
        "--guidance_scales", "0,3", "--noise_aware_classifier", "none", "--class_names", ",".join(CIFAR10_NAMES),
        "--device", "cpu",
    ])
    assert Image.open(tmp_path / "conditional_w3.png").mode == "RGB"
    assert Image.open(tmp_path / "conditional_w3.png").size == (2 * 8 + 2, 10 * 8 + 9 * 2)
    assert all(0.0 <= row["judge_label_accuracy"] <= 1.0 for row in measured["conditional"])
    assert (tmp_path / "conditional_w3_labelled.png").is_file()
    strips = interpolation.main([
        "--pipeline", str(root / "uncond"), "--judge", str(root / "classifier"), "--dataset", str(CIFAR10),
        "--output_dir", str(tmp_path / "interp"), "--rows", "2", "--frames", "3", "--steps", "3", "--device", "cpu",
    ])
    assert Image.open(tmp_path / "interp" / "real_images.png").mode == "RGB"
    assert all(label in CIFAR10_NAMES for label in strips["slerp_labels"][0].split())
