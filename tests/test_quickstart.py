"""examples/quickstart.py end to end on tiny pipelines, and the shipped pipelines loading offline."""

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet, small_classifier_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

import quickstart  # noqa: E402

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, layers_per_block=1)


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    scheduler = create_noise_scheduler("linear")
    DiffusionSamplingPipeline(unet=create_unet("mnist-small", sample_size=8, **TINY), scheduler=scheduler).save_pretrained(root / "uncond")
    DiffusionSamplingPipeline(unet=create_unet("mnist-small", sample_size=8, num_classes=10, **TINY),
                              scheduler=scheduler).save_pretrained(root / "cfg")
    config = small_classifier_config("resnet", num_channels=1, num_labels=10, image_size=8, hidden_sizes=(8, 16), depths=(1, 1))
    AutoModelForImageClassification.from_config(config).save_pretrained(root / "classifier")
    noisy = small_classifier_config("resnet", num_channels=1, num_labels=10, image_size=8, hidden_sizes=(8, 16),
                                    depths=(1, 1), noise_aware=True)
    AutoModelForImageClassification.from_config(noisy).save_pretrained(root / "noise_aware_classifier")
    return root


def test_quickstart_writes_every_picture(tiny_pipelines, tmp_path):
    root = tiny_pipelines
    written = quickstart.main([
        "--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"), "--classifier", str(root / "classifier"),
        "--output_dir", str(tmp_path / "out"), "--grid", "2", "--cfg_per_row", "2", "--ddpm_steps", "3", "--ddim_steps", "3", "--pc_steps", "2",
        "--interpolation_frames", "3", "--pnp_per_row", "1", "--pnp_iterations", "2", "--device", "cpu",
    ])
    expected = {"ddpm_unconditional.png", "ddim50_unconditional.png", "pc_unconditional.png", "cfg_ddim50.png",
                "cfg_pc.png", "interpolation.png", "plug_and_play.png"}
    assert set(written) == expected
    for path in written.values():
        assert Path(path).is_file()
    # 2x2 unconditional grid of 8px images with 2px padding; CFG grid has one row per digit.
    assert Image.open(written["ddpm_unconditional.png"]).size == (18, 18)
    assert Image.open(written["cfg_ddim50.png"]).size[1] == 10 * 8 + 9 * 2
    assert Image.open(written["interpolation.png"]).size[1] == 8
    # The same seed gives the same pictures.
    again = quickstart.main([
        "--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"), "--classifier", str(root / "classifier"),
        "--output_dir", str(tmp_path / "again"), "--grid", "2", "--cfg_per_row", "2", "--ddpm_steps", "3", "--ddim_steps", "3", "--pc_steps", "2",
        "--interpolation_frames", "3", "--pnp_per_row", "1", "--pnp_iterations", "2", "--device", "cpu",
    ])
    for name in ("ddpm_unconditional.png", "cfg_pc.png", "plug_and_play.png"):
        assert Image.open(written[name]).tobytes() == Image.open(again[name]).tobytes()


def test_bad_grid_sizes_name_the_argument(capsys):
    for flag in ("--grid", "--cfg_per_row", "--pnp_per_row"):
        with pytest.raises(SystemExit):
            quickstart.parse_args([flag, "0"])
        assert f"`{flag}` must be a positive integer" in capsys.readouterr().err


def test_missing_classifier_is_a_clear_error(tiny_pipelines, tmp_path):
    with pytest.raises(ValueError, match="`--classifier`"):
        quickstart.main(["--unconditional", str(tiny_pipelines / "uncond"), "--conditional", str(tiny_pipelines / "cfg"),
                         "--classifier", str(tmp_path), "--output_dir", str(tmp_path / "o")])


SHIPPED = [name for name in ("ddpm-mnist", "ddpm-mnist-cfg", "ddpm-cifar10", "ddpm-cifar10-cfg")
           if (REPO / "pipelines" / name / "model_index.json").exists()]


@pytest.mark.skipif(not SHIPPED, reason="no shipped pipeline in pipelines/ yet")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_pipelines_load_offline_and_sample(name):
    pipe = DiffusionSamplingPipeline.from_pretrained(REPO / "pipelines" / name)
    size_mb = sum(f.stat().st_size for f in (REPO / "pipelines" / name).rglob("*") if f.is_file()) / 2**20
    assert size_mb <= 20
    labels = [3, 7] if pipe.unet.config.num_class_embeds else None
    images = pipe(batch_size=2, num_inference_steps=2, class_labels=labels, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    shape = (3, 32, 32) if "cifar10" in name else (1, 28, 28)
    assert images.shape == (2, *shape) and torch.isfinite(images).all()


