"""pnp_diffusers.data: loading both datasets from their local folders and other layouts."""

from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pnp_diffusers.data import crop_padding, load_image_dataset, to_model_range, to_uint8

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MNIST, CIFAR = str(SHARED / "mnist"), str(SHARED / "cifar10")


def test_mnist_shapes_range_labels_and_no_flip():
    ds = load_image_dataset(MNIST, "test", max_samples=64, show_progress=False)
    assert ds.images.shape == (64, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    # The first test digits of MNIST, in the original order.
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert ds.random_flip is False
    item = ds[0]
    assert item["pixel_values"].shape == (1, 28, 28)
    assert item["pixel_values"].min() == -1.0 and item["pixel_values"].max() == 1.0
    assert int(item["class_labels"]) == 7
    # Flip is off: the same item twice is the same image.
    assert all(torch.equal(ds[3]["pixel_values"], ds[3]["pixel_values"]) for _ in range(5))


def test_mnist_padded_to_32_keeps_digit_centred_on_background():
    native = load_image_dataset(MNIST, "test", max_samples=8, show_progress=False)
    padded = load_image_dataset(MNIST, "test", max_samples=8, resolution=32, show_progress=False)
    assert padded.images.shape == (8, 1, 32, 32)
    assert torch.equal(padded.images[:, :, 2:30, 2:30], native.images)
    assert padded.images[:, :, :2].max() == 0 and padded.images[:, :, :, -2:].max() == 0


def test_crop_padding_undoes_the_padding_at_odd_and_even_margins():
    native = load_image_dataset(MNIST, "test", max_samples=4, show_progress=False)
    for side in (32, 33):
        padded = load_image_dataset(MNIST, "test", max_samples=4, resolution=side, show_progress=False)
        assert torch.equal(crop_padding(padded.images, 28), native.images)
    with pytest.raises(ValueError, match="`resolution`=40"):
        crop_padding(native.images, 40)


def test_cifar10_colour_flip_on_and_class_names():
    ds = load_image_dataset(CIFAR, "test", max_samples=32, show_progress=False)
    assert ds.images.shape == (32, 3, 32, 32)
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    assert ds.random_flip is True
    torch.manual_seed(0)
    views = {tuple(ds[0]["pixel_values"][0, 0, :4].tolist()) for _ in range(20)}
    assert len(views) == 2  # original and mirrored


def test_resize_to_smaller_resolution():
    ds = load_image_dataset(CIFAR, "test", max_samples=4, resolution=16, show_progress=False)
    assert ds.images.shape == (4, 3, 16, 16)


def test_uint8_round_trip():
    x = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_model_range(x)), x)


def _tiny_image_dataset(with_labels=True):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L") for _ in range(6)]
    data = {"picture": images}
    features = {"picture": datasets.Image()}
    if with_labels:
        data["digit"] = [0, 1, 2, 0, 1, 2]
        features["digit"] = datasets.ClassLabel(names=["a", "b", "c"])
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def test_save_to_disk_folder_and_single_image_feature(tmp_path):
    _tiny_image_dataset().save_to_disk(str(tmp_path / "saved"))
    ds = load_image_dataset(str(tmp_path / "saved"), "train", show_progress=False)
    assert ds.images.shape == (6, 1, 8, 8)
    assert ds.class_names == ["a", "b", "c"] and ds.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_imagefolder_tree(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "tree" / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "tree" / "train" / cls / f"{i}.png")
    ds = load_image_dataset(str(tmp_path / "tree"), "train", show_progress=False)
    assert ds.images.shape == (6, 3, 8, 8)
    assert sorted(ds.class_names) == ["cat", "dog"] and ds.labels.tolist().count(0) == 3


def test_unlabelled_dataset_has_no_labels(tmp_path):
    _tiny_image_dataset(with_labels=False).save_to_disk(str(tmp_path / "unlabelled"))
    ds = load_image_dataset(str(tmp_path / "unlabelled"), show_progress=False)
    assert ds.labels is None and ds.num_classes is None and "class_labels" not in ds[0]


def test_no_image_column_is_a_clear_error(tmp_path):
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="image column"):
        load_image_dataset(str(tmp_path / "text"), show_progress=False)
    with pytest.raises(ValueError, match="`image_column`"):
        load_image_dataset(MNIST, "test", image_column="pixels", max_samples=2, show_progress=False)


def test_missing_local_path_is_a_clear_error():
    with pytest.raises(ValueError, match="`dataset`.*does not exist"):
        load_image_dataset("./no/such/folder", show_progress=False)
