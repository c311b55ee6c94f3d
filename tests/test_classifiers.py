"""Tests for pnp_diffusers.classifiers and train/train_classifier.py (tiny models, CPU, seconds)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification

import pnp_diffusers.speed as pnp_speed
from pnp_diffusers.classifiers import (
    classifier_features,
    classifier_logits,
    preprocess_for_classifier,
    small_classifier_config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"
CIFAR10 = REPO_ROOT.parent / "shared" / "datasets" / "cifar10"
SHIPPED = {
    "guide": REPO_ROOT / "pipelines" / "mnist-classifier-guide",
    "judge": REPO_ROOT / "pipelines" / "mnist-classifier-judge",
    "cifar10-guide": REPO_ROOT / "pipelines" / "cifar10-classifier-guide",
    "cifar10-judge": REPO_ROOT / "pipelines" / "cifar10-classifier-judge",
}
# The least test accuracy each shipped classifier must show on 500 test images (its card has the full number).
SHIPPED_MIN_ACCURACY = {"guide": 0.98, "judge": 0.98, "cifar10-guide": 0.75, "cifar10-judge": 0.80}


def tiny_classifier(architecture="resnet", num_channels=1, image_size=28, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = small_classifier_config(
        architecture, num_channels=num_channels, num_labels=10, image_size=image_size, hidden_sizes=(8, 16), **kwargs
    )
    return AutoModelForImageClassification.from_config(config).eval()


def load_train_classifier_module():
    spec = importlib.util.spec_from_file_location("train_classifier", REPO_ROOT / "train" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------
def test_default_normalisation_maps_model_range_to_itself():
    # mean 0.5 / std 0.5: ((x + 1) / 2 - 0.5) / 0.5 == x
    model = tiny_classifier()
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(preprocess_for_classifier(x, model), x)


def test_custom_mean_and_std_follow_the_formula_and_survive_save_load(tmp_path):
    model = tiny_classifier(image_mean=0.1307, image_std=0.3081)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert loaded.config.image_mean == [0.1307] and loaded.config.image_std == [0.3081]
    assert loaded.config.image_size == 28
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    expected = ((x + 1) / 2 - 0.1307) / 0.3081
    torch.testing.assert_close(preprocess_for_classifier(x, loaded), expected)


def test_grey_to_rgb_repeats_and_rgb_to_grey_uses_luminance():
    rgb_model = tiny_classifier(num_channels=3)
    grey = torch.rand(2, 1, 28, 28) * 2 - 1
    out = preprocess_for_classifier(grey, rgb_model)
    assert out.shape == (2, 3, 28, 28)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])

    grey_model = tiny_classifier(num_channels=1)
    pure_red = torch.full((1, 3, 28, 28), -1.0)
    pure_red[:, 0] = 1.0  # red = 1 in [0, 1], green = blue = 0
    out = preprocess_for_classifier(pure_red, grey_model)
    assert out.shape == (1, 1, 28, 28)
    # luminance 0.299 in [0, 1], then (0.299 - 0.5) / 0.5
    torch.testing.assert_close(out, torch.full_like(out, (0.299 - 0.5) / 0.5))


def test_resize_to_the_classifier_image_size():
    model = tiny_classifier(image_size=16)
    constant = torch.full((2, 1, 28, 28), 0.25)
    out = preprocess_for_classifier(constant, model)
    assert out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.full_like(out, 0.25))  # a constant image stays constant
    # upsampling works too and logits come out for any input size
    assert classifier_logits(model, torch.rand(2, 1, 8, 8) * 2 - 1).shape == (2, 10)


def test_preprocessing_is_differentiable_gradcheck():
    model = tiny_classifier(image_size=12, num_channels=3).double()
    x = (torch.rand(1, 1, 9, 9, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: preprocess_for_classifier(t, model), (x,))
    # and the full classifier passes gradients back to the image, not only to its weights
    x32 = (torch.rand(2, 1, 28, 28) * 2 - 1).requires_grad_(True)
    logits = classifier_logits(tiny_classifier(), x32)
    logits[:, 3].sum().backward()
    assert x32.grad is not None and x32.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# Logits and features
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["resnet", "convnext"])
def test_features_are_the_input_of_the_classification_head(architecture):
    model = tiny_classifier(architecture)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        features = classifier_features(model, x)
        logits = classifier_logits(model, x)
        assert features.shape == (4, 16)
        torch.testing.assert_close(model.classifier(features), logits)


def test_logits_match_a_direct_call_on_normalised_pixels():
    model = tiny_classifier(image_mean=0.2, image_std=0.4)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        direct = model(pixel_values=((x + 1) / 2 - 0.2) / 0.4).logits
        torch.testing.assert_close(classifier_logits(model, x), direct)


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_value_errors_naming_the_argument():
    model = tiny_classifier(num_channels=3)
    with pytest.raises(ValueError, match="classifier"):
        preprocess_for_classifier(torch.zeros(1, 2, 28, 28), model)  # 2 channels cannot be matched
    with pytest.raises(ValueError, match="`x`"):
        preprocess_for_classifier(torch.zeros(1, 28, 28), model)
    with pytest.raises(ValueError, match="classifier"):
        preprocess_for_classifier(torch.zeros(1, 1, 28, 28), object())
    with pytest.raises(ValueError, match="architecture"):
        small_classifier_config("vit")
    with pytest.raises(ValueError, match="num_channels"):
        small_classifier_config("resnet", num_channels=2)
    with pytest.raises(ValueError, match="image_mean"):
        tiny_classifier(num_channels=3, image_mean=[0.1, 0.2])


# ------------------------------------------------------------------------------------------------
# Training script
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_train_classifier_end_to_end_saves_a_loadable_hub_folder(tmp_path):
    train_classifier = load_train_classifier_module()
    output = tmp_path / "clf"
    results = train_classifier.main([
        "--dataset", str(MNIST), "--architecture", "convnext", "--hidden_sizes", "8", "16", "--depths", "1", "1",
        "--epochs", "1", "--batch_size", "32", "--max_train_samples", "256", "--max_eval_samples", "128",
        "--max_scale", "0.1", "--noise_std", "0.5", "--seed", "3", "--output_dir", str(output), "--no_progress",
    ])
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (output / name).exists(), name
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    assert model.config.num_labels == 10 and model.config.id2label[3] == "3"
    assert model.config.num_channels == 1 and model.config.image_size == 28

    # The reported accuracy is reproduced by the loaded model on the same eval slice.
    from pnp_diffusers.data import load_image_dataset, to_model_range

    eval_set = load_image_dataset(str(MNIST), "test", max_samples=128, show_progress=False)
    with torch.no_grad():
        predictions = classifier_logits(model, to_model_range(eval_set.images)).argmax(-1)
    accuracy = (predictions == eval_set.labels).double().mean().item()
    assert accuracy == pytest.approx(results["eval_accuracy"])
    card = (output / "README.md").read_text()
    assert f"{100 * accuracy:.2f}%" in card and "train/train_classifier.py" in card and "library_name: transformers" in card
    assert json.loads((output / "training_results.json").read_text())["eval_samples"] == 128


def test_noise_aware_classifier_trains_on_x_t_and_takes_the_timestep(tmp_path):
    """--noise_aware: one extra input channel carries t; accuracy is reported at t = T/4, T/2, 3T/4 too."""
    from pnp_diffusers.classifiers import is_noise_aware, with_timestep_plane

    train_classifier = load_train_classifier_module()
    output = tmp_path / "noisy"
    results = train_classifier.main([
        "--dataset", str(MNIST), "--hidden_sizes", "8", "16", "--epochs", "1", "--batch_size", "32",
        "--max_train_samples", "128", "--max_eval_samples", "64", "--noise_aware", "--output_dir", str(output),
        "--no_progress",
    ])
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    assert is_noise_aware(model) and model.config.num_channels == 2 and model.config.num_train_timesteps == 1000
    assert set(results["noisy_eval_accuracy"]) == {250, 500, 750}
    plane = with_timestep_plane(torch.zeros(2, 1, 4, 4), torch.tensor([0, 999]), 1000)
    assert plane.shape == (2, 2, 4, 4) and plane[0, 1].eq(-1).all() and plane[1, 1].eq(1).all()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(classifier_logits(model, x, 0), classifier_logits(model, x, 900))
        assert torch.equal(classifier_logits(model, x), classifier_logits(model, x, 0))  # None = clean images
    card = (output / "README.md").read_text()
    assert "noise-aware" in card and "at t = 500" in card and "library_name: transformers" in card
    with pytest.raises(ValueError, match="noise_schedule_from"):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", str(tmp_path), "--noise_schedule_from", "y"])


def test_train_classifier_rejects_bad_arguments(tmp_path):
    train_classifier = load_train_classifier_module()
    with pytest.raises(ValueError, match="architecture"):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", str(tmp_path), "--architecture", "vit"])
    with pytest.raises(ValueError, match="hub_model_id"):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", str(tmp_path), "--push_to_hub"])
    with pytest.raises(ValueError, match="epochs"):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", str(tmp_path), "--epochs", "0"])
    with pytest.raises(ValueError, match="noise_std"):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", str(tmp_path), "--noise_std", "-1"])


def test_train_classifier_rejects_a_dataset_without_labels(tmp_path):
    import datasets
    from PIL import Image

    images = [Image.new("L", (28, 28), color=i * 20) for i in range(4)]
    unlabelled = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())
    unlabelled.save_to_disk(str(tmp_path / "unlabelled"))
    train_classifier = load_train_classifier_module()
    with pytest.raises(ValueError, match="no label column"):
        train_classifier.main(["--dataset", str(tmp_path / "unlabelled"), "--output_dir", str(tmp_path / "o"),
                               "--no_progress"])


def test_shift_augmentation_moves_digits_without_changing_them():
    train_classifier = load_train_classifier_module()
    images = torch.full((8, 1, 28, 28), -1.0)
    images[:, :, 10:18, 10:18] = 1.0  # an 8x8 white square on black
    shifted = train_classifier.random_shift_and_scale(images, 2, 0.0, torch.Generator().manual_seed(0))
    # whole-pixel shifts: same pixel values, same amount of white, moved by at most 2 pixels
    assert torch.equal(shifted.unique(), torch.tensor([-1.0, 1.0]))
    assert torch.equal((shifted == 1).sum(dim=(1, 2, 3)), torch.full((8,), 64))
    rows = (shifted[:, 0] == 1).any(dim=2).float().argmax(dim=1)
    assert ((rows - 10).abs() <= 2).all()
    zoomed = train_classifier.random_shift_and_scale(images, 0, 0.1, torch.Generator().manual_seed(0))
    assert zoomed.min() >= -1 - 1e-6 and zoomed.max() <= 1 + 1e-6
    assert not torch.equal(zoomed, images)


def test_noise_and_flip_augmentations(tmp_path):
    train_classifier = load_train_classifier_module()
    images = torch.zeros(512, 1, 8, 8)
    noisy = train_classifier.add_random_noise(images, 0.5, torch.Generator().manual_seed(0))
    per_image_std = noisy.flatten(1).std(dim=1)
    # s ~ U(0, 0.5): the per-image noise std spans the range, mean near 0.25
    assert per_image_std.max() <= 0.5 * 1.3 and per_image_std.min() < 0.05
    assert abs(per_image_std.mean().item() - 0.25) < 0.03

    # flips on CIFAR-like colour images, through the training loop on a tiny slice
    output = tmp_path / "clf"
    results = train_classifier.main([
        "--dataset", str(CIFAR10), "--train_split", "train[:64]", "--eval_split", "train[64:96]",
        "--architecture", "resnet", "--hidden_sizes", "8", "16", "--depths", "1", "1", "--epochs", "1",
        "--batch_size", "32", "--random_flip", "--output_dir", str(output), "--no_progress",
    ])
    assert results["eval_split"] == "train[64:96]" and results["eval_samples"] == 32 and results["train_samples"] == 64


# ------------------------------------------------------------------------------------------------
# Shipped classifiers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", sorted(SHIPPED))
def test_shipped_classifier_loads_offline_and_classifies_real_images(role):
    folder = SHIPPED[role]
    if not (folder / "config.json").exists():
        pytest.skip(f"{folder} not trained yet (train/train_classifier.py)")
    dataset = CIFAR10 if role.startswith("cifar10") else MNIST
    if not dataset.exists():
        pytest.skip(f"dataset not found at {dataset}")
    from pnp_diffusers.data import load_image_dataset, to_model_range

    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    assert size_mb <= 20
    test_set = load_image_dataset(str(dataset), "test", max_samples=500, show_progress=False)
    with torch.no_grad():
        logits = classifier_logits(model, to_model_range(test_set.images))
    assert logits.shape == (500, 10) and torch.isfinite(logits).all()
    assert (logits.argmax(-1) == test_set.labels).double().mean() >= SHIPPED_MIN_ACCURACY[role]
    if role.startswith("cifar10"):
        assert model.config.id2label[0] == "airplane" and model.config.num_channels == 3


def test_killed_classifier_run_resumes_from_its_last_epoch_to_the_same_weights(tmp_path):
    """Stopped after epoch 1 (--max_train_minutes), resumed with 'latest': the same model as one run of 2 epochs."""
    from safetensors.torch import load_file

    train_classifier = load_train_classifier_module()
    common = ["--dataset", str(CIFAR10), "--train_split", "train[:64]", "--eval_split", "train[64:96]",
              "--architecture", "resnet", "--hidden_sizes", "8", "16", "--depths", "1", "1", "--epochs", "2",
              "--batch_size", "32", "--random_flip", "--max_shift", "2", "--no_progress"]
    whole = tmp_path / "whole"
    train_classifier.main(common + ["--output_dir", str(whole)])
    split = tmp_path / "split"
    stopped = train_classifier.main(common + ["--output_dir", str(split), "--max_train_minutes", "1e-6"])
    assert stopped["stopped_after_epoch"] == 1 and (split / "checkpoint-epoch-1" / "training_state.pt").is_file()
    assert not (split / "model.safetensors").exists()
    resumed = train_classifier.main(common + ["--output_dir", str(split), "--resume_from_checkpoint", "latest"])
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert not list(split.glob("checkpoint-epoch-*"))  # the finished folder holds the model only
    a, b = load_file(whole / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Resuming with other settings, or from a folder that is no checkpoint, is a clear error.
    train_classifier.main(common + ["--output_dir", str(tmp_path / "again"), "--max_train_minutes", "1e-6"])
    with pytest.raises(ValueError, match="--learning_rate"):
        train_classifier.main(common + ["--output_dir", str(tmp_path / "again"), "--resume_from_checkpoint", "latest",
                                        "--learning_rate", "1e-2"])
    with pytest.raises(ValueError, match="`--resume_from_checkpoint`"):
        train_classifier.parse_args(common + ["--output_dir", str(tmp_path), "--resume_from_checkpoint", str(tmp_path)])


def test_train_classifier_precision_auto_follows_native_bf16(monkeypatch):
    # Emulated bf16 (an AVX2-only CPU) is far slower than float32, so `auto` trains in bf16 only where it is native.
    train_classifier = load_train_classifier_module()
    monkeypatch.setattr(pnp_speed, "has_fast_bf16", lambda device: True)
    assert train_classifier.resolve_bf16("auto", "cpu") and not train_classifier.resolve_bf16("no", "cpu")
    monkeypatch.setattr(pnp_speed, "has_fast_bf16", lambda device: False)
    assert not train_classifier.resolve_bf16("auto", "cpu") and train_classifier.resolve_bf16("bf16", "cpu")
    with pytest.raises(SystemExit):
        train_classifier.parse_args(["--dataset", "x", "--output_dir", "y", "--mixed_precision", "fp8"])


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_train_classifier_bf16_autocast_trains_and_saves_float32_weights(tmp_path, caplog):
    import logging

    train_classifier = load_train_classifier_module()
    output = tmp_path / "clf"
    with caplog.at_level(logging.INFO):
        results = train_classifier.main([
            "--dataset", str(MNIST), "--architecture", "resnet", "--hidden_sizes", "8", "16", "--depths", "1", "1",
            "--epochs", "1", "--batch_size", "32", "--max_train_samples", "64", "--max_eval_samples", "32",
            "--seed", "3", "--output_dir", str(output), "--no_progress", "--mixed_precision", "bf16",
        ])
    assert "training forwards in bf16 autocast" in caplog.text
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and math.isfinite(results["history"][0]["train_loss"])
    model = AutoModelForImageClassification.from_pretrained(output)
    assert all(p.dtype == torch.float32 for p in model.parameters())
