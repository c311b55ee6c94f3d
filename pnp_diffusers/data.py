"""Image datasets for diffusion training, without torchvision.

One call, :func:`load_image_dataset`, takes a Hub id (``ylecun/mnist``, ``uoft-cs/cifar10``) or a
local folder (a parquet folder in the Hub's layout, an ``imagefolder`` tree, or a folder written by
``Dataset.save_to_disk``), finds the image and label columns, and decodes the split once into a
``uint8`` tensor. Decoding is then never the bottleneck of training on a small CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

IMAGE_COLUMN_NAMES = ("image", "img", "images", "pixel_values")
RESIZE_MODES = ("auto", "pad", "resize")


class ImageTensorDataset(torch.utils.data.Dataset):
    """A decoded image dataset held in memory.

    Attributes:
        images: ``uint8`` tensor (N, C, H, W), C = 1 for grey images and 3 for colour.
        labels: ``long`` tensor (N,) of class indices, or None for an unlabelled dataset.
        num_classes: number of classes, or None.
        class_names: list of ``num_classes`` names, or None.
        random_flip: whether ``__getitem__`` flips images left-right with probability 1/2.

    ``ds[i]`` returns ``{"pixel_values": float32 (C, H, W) in [-1, 1], "class_labels": long scalar}``
    (no ``class_labels`` key for an unlabelled dataset).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: list[str] | None = None,
        random_flip: bool = False,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"`images` must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}.")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"`labels` has {len(labels)} entries for {len(images)} images.")
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.num_classes = len(class_names) if class_names is not None else None
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = to_model_range(self.images[index])
        if self.random_flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        item = {"pixel_values": image}
        if self.labels is not None:
            item["class_labels"] = self.labels[index]
        return item


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1], any shape."""
    return images.to(torch.float32).div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255], any shape (values outside are clamped)."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


@dataclass
class _Columns:
    image: str
    label: str | None


def load_image_dataset(
    name_or_path: str,
    split: str = "train",
    *,
    resolution: int | None = None,
    resize_mode: str = "auto",
    random_flip: bool | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
    cache_dir: str | None = None,
    show_progress: bool = True,
) -> ImageTensorDataset:
    """Load an image classification dataset as in-memory tensors.

    Args:
        name_or_path: a Hub dataset id (``"ylecun/mnist"``, ``"uoft-cs/cifar10"``) or a local folder:
            a parquet/imagefolder tree readable by ``datasets.load_dataset`` or a ``save_to_disk`` folder.
        split: the split to read (``"train"``, ``"test"``, or slicing syntax such as ``"train[:1000]"``).
        resolution: output side in pixels; None keeps the native size (28 for MNIST, 32 for CIFAR-10).
        resize_mode: ``"pad"`` centres the image on a background canvas (MNIST 28 -> 32 as in the
            plug-and-play paper), ``"resize"`` resamples it bilinearly, ``"auto"`` pads grey images
            that are smaller than ``resolution`` and resizes everything else.
        random_flip: random horizontal flip in ``__getitem__``. None means on for colour images
            (CIFAR-10) and off for grey ones (a flipped digit is not a digit).
        image_column, label_column: override the column detection. By default the image column is
            ``image``/``img`` or the one ``Image`` feature, and the label column the one ``ClassLabel``.
        max_samples: keep only the first ``max_samples`` rows (for tests and quick runs).

    Returns:
        An :class:`ImageTensorDataset`; ``images`` uint8 (N, C, H, W), grey -> C=1, colour -> C=3.
    """
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}, got {resize_mode!r}.")
    if resolution is not None and int(resolution) <= 0:
        raise ValueError(f"`resolution` must be a positive integer, got {resolution!r}.")
    if max_samples is not None and int(max_samples) <= 0:
        raise ValueError(f"`max_samples` must be a positive integer, got {max_samples!r}.")

    hf_dataset = _load_hf_split(name_or_path, split, cache_dir)
    columns = _find_columns(hf_dataset, image_column, label_column, name_or_path)
    if max_samples is not None:
        hf_dataset = hf_dataset.select(range(min(int(max_samples), len(hf_dataset))))

    images = _decode_images(hf_dataset, columns.image, show_progress)
    if resolution is not None and int(resolution) != images.shape[-1]:
        images = _fit_resolution(images, int(resolution), resize_mode)

    labels, class_names = None, None
    if columns.label is not None:
        labels, class_names = _read_labels(hf_dataset, columns.label)
    if random_flip is None:
        random_flip = images.shape[1] == 3
    return ImageTensorDataset(images, labels, class_names, random_flip=bool(random_flip))


def _load_hf_split(name_or_path: str, split: str, cache_dir: str | None):
    import datasets

    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"`dataset` must be a Hub id or a local folder, got {name_or_path!r}.")
    is_local = os.path.exists(name_or_path)
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if not is_local and looks_like_path:
        raise ValueError(f"`dataset` {name_or_path!r} looks like a local path but does not exist.")
    try:
        if is_local and os.path.isdir(name_or_path) and _is_saved_to_disk(name_or_path):
            loaded = datasets.load_from_disk(name_or_path)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(f"`split` {split!r} not found in {name_or_path!r}; available: {sorted(loaded)}.")
                loaded = loaded[split]
            return loaded
        return datasets.load_dataset(name_or_path, split=split, cache_dir=cache_dir)
    except ValueError as error:
        if "split" in str(error).lower() and "`split`" not in str(error):
            raise ValueError(f"`split` {split!r} could not be read from {name_or_path!r}: {error}") from error
        raise


def _is_saved_to_disk(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json"))


def find_image_column(hf_dataset, name: str = "the dataset") -> str:
    """The image column of a ``datasets.Dataset`` (MNIST's "image", CIFAR-10's "img"), found as
    :func:`load_image_dataset` finds it; a ``ValueError`` naming the columns when there is none."""
    return _find_columns(hf_dataset, None, None, name).image


def _find_columns(hf_dataset, image_column: str | None, label_column: str | None, name: str) -> _Columns:
    import datasets

    features = hf_dataset.features
    available = list(features)
    if image_column is not None:
        if image_column not in features:
            raise ValueError(f"`image_column` {image_column!r} is not a column of {name!r}; columns: {available}.")
    else:
        image_features = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        named = [c for c in IMAGE_COLUMN_NAMES if c in features]
        if named:
            image_column = named[0]
        elif len(image_features) == 1:
            image_column = image_features[0]
        else:
            raise ValueError(
                f"Could not find the image column of {name!r}: expected a column named one of "
                f"{IMAGE_COLUMN_NAMES} or exactly one `Image` feature; columns: {available}. "
                "Pass `image_column` (`--image_column` in train/train.py)."
            )
    if label_column is not None:
        if label_column not in features:
            raise ValueError(f"`label_column` {label_column!r} is not a column of {name!r}; columns: {available}.")
    else:
        class_labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
        if len(class_labels) == 1:
            label_column = class_labels[0]
        elif "label" in class_labels:
            label_column = "label"
    return _Columns(image=image_column, label=label_column)


def _decode_images(hf_dataset, column: str, show_progress: bool, chunk: int = 2048) -> torch.Tensor:
    """Decode every image once into uint8 (N, C, H, W); grey -> 1 channel, anything else -> RGB."""
    from PIL import Image

    n = len(hf_dataset)
    if n == 0:
        raise ValueError("The dataset split is empty.")
    first = hf_dataset[0][column]
    if not isinstance(first, Image.Image):
        raise ValueError(f"Column {column!r} does not hold images (got {type(first).__name__}); pass `image_column`.")
    grey = first.mode in ("L", "1", "I", "I;16", "F")
    mode = "L" if grey else "RGB"
    size = first.size
    out = None
    for start in tqdm(range(0, n, chunk), desc="decoding images", disable=not show_progress, leave=False):
        batch = hf_dataset[start : start + chunk][column]
        arrays = [_to_array(im, mode, size) for im in batch]
        array = np.stack(arrays)
        if out is None:
            out = torch.empty((n, array.shape[1], array.shape[2], array.shape[3]), dtype=torch.uint8)
        out[start : start + len(array)] = torch.from_numpy(array)
    return out.permute(0, 3, 1, 2).contiguous()


def _to_array(image, mode: str, size: tuple[int, int]) -> np.ndarray:
    """PIL image -> uint8 (H, W, C) in the dataset's mode and size (the first image's)."""
    from PIL import Image

    if image.mode != mode:
        image = image.convert(mode)
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _fit_resolution(images: torch.Tensor, resolution: int, resize_mode: str) -> torch.Tensor:
    height, width = images.shape[-2:]
    grey = images.shape[1] == 1
    pad = resize_mode == "pad" or (resize_mode == "auto" and grey and resolution > max(height, width))
    if pad:
        if resolution < max(height, width):
            raise ValueError(f"`resolution`={resolution} is smaller than the images ({height}x{width}); cannot pad.")
        top, left = (resolution - height) // 2, (resolution - width) // 2
        # Pad with the darkest value: MNIST's background is 0 (-1 in model space).
        return F.pad(images, (left, resolution - width - left, top, resolution - height - top), value=0)
    resized = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def crop_padding(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Undo the padding :func:`load_image_dataset` gives grey images smaller than its ``resolution``.

    A model trained on MNIST padded to 32x32 draws its digit in the central 28x28 and background around it; cropping
    that centre lets its samples meet the same 28x28 reference features (and floor) as a model trained at 28x28.

    Args:
        images: (N, C, H, H) images, any value range, with H >= ``resolution``.
        resolution: the side before padding (28 for MNIST).

    Returns:
        (N, C, resolution, resolution): the centre, taken at the offsets the padding used.
    """
    height, width = images.shape[-2:]
    if resolution > min(height, width):
        raise ValueError(f"`resolution`={resolution} is larger than the images ({height}x{width}); nothing to crop.")
    top, left = (height - resolution) // 2, (width - resolution) // 2
    return images[..., top:top + resolution, left:left + resolution]


def _read_labels(hf_dataset, column: str) -> tuple[torch.Tensor, list[str]]:
    import datasets

    feature = hf_dataset.features[column]
    values = torch.as_tensor(np.asarray(hf_dataset[column]), dtype=torch.long)
    if isinstance(feature, datasets.ClassLabel):
        return values, list(feature.names)
    if values.ndim != 1 or (values < 0).any():
        raise ValueError(f"`label_column` {column!r} must hold non-negative integer class indices.")
    num_classes = int(values.max()) + 1
    return values, [str(i) for i in range(num_classes)]
