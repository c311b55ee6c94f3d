"""Offline sample-quality metrics in the features of a classifier the project trains itself.

Inception weights cannot be downloaded here, so the Frechet distance (Heusel et al. 2017, FID) is
computed in the penultimate features of a small MNIST / CIFAR-10 classifier trained by
``train/train_classifier.py``. Its values are *not* comparable with Inception FID. The distance is
biased upward at small sample counts, so every reported distance comes with
:func:`real_data_floor`: the same distance between real images (a train slice) and the same
reference (the test split) at the same n. A sample set "within 3x of the floor" is then meaningful.

Image convention for every function here: a float tensor (B, C, H, W) in the model's range [-1, 1],
or a ``uint8`` tensor (B, C, H, W) in [0, 255] (such as ``load_image_dataset(...).images``), which is
mapped to [-1, 1]. Pipelines' ``output_type="pt"`` images in [0, 1] must be mapped with ``x * 2 - 1``.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .classifiers import classifier_features, classifier_logits, image_channels

SYMMETRY_AXES = ("horizontal", "vertical")


# ----------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------
def _as_model_range(images, name: str = "images") -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] (B, C, H, W) -> float32 [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"`{name}` must be a tensor (B, C, H, W), uint8 in [0, 255] or float in [-1, 1]; got {shape}.")
    if images.shape[0] == 0:
        raise ValueError(f"`{name}` is empty.")
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 127.5 - 1.0
    if not images.dtype.is_floating_point:
        raise ValueError(f"`{name}` must be uint8 or floating point, got {images.dtype}.")
    return images.to(torch.float32)


def _check_images(images, name: str = "images") -> None:
    """Validate without converting (conversion happens batch by batch, to bound memory)."""
    _as_model_range(images[:1] if isinstance(images, torch.Tensor) and images.ndim == 4 else images, name)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")


def _classifier_device(classifier) -> torch.device:
    param = next(classifier.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def _batched(fn, classifier, images: torch.Tensor, batch_size: int, show_progress: bool, desc: str) -> torch.Tensor:
    """Apply ``fn(classifier, batch)`` over ``images`` in eval mode; results concatenated on the CPU."""
    was_training = classifier.training
    classifier.eval()
    device = _classifier_device(classifier)
    outputs = []
    try:
        starts = range(0, images.shape[0], batch_size)
        for start in tqdm(starts, desc=desc, disable=not show_progress, leave=False):
            batch = _as_model_range(images[start : start + batch_size]).to(device)
            outputs.append(fn(classifier, batch).float().cpu())
    finally:
        classifier.train(was_training)
    return torch.cat(outputs)


def extract_features(classifier, images, batch_size: int = 256, show_progress: bool = False) -> torch.Tensor:
    """Penultimate classifier features of many images, in batches without gradients.

    Args:
        classifier: a transformers image classifier (see :func:`pnp_diffusers.classifiers.classifier_features`).
        images: (N, C, H, W), uint8 in [0, 255] or float in [-1, 1].
        batch_size: images per forward pass.

    Returns:
        float64 tensor (N, D) on the CPU.
    """
    _check_batch_size(batch_size)
    _check_images(images)
    return _batched(classifier_features, classifier, images, batch_size, show_progress, "features").double()


def classifier_probabilities(classifier, images, batch_size: int = 256, show_progress: bool = False) -> torch.Tensor:
    """Softmax class probabilities p(y | x), shape (N, num_labels), rows summing to 1."""
    _check_batch_size(batch_size)
    _check_images(images)
    logits = _batched(classifier_logits, classifier, images, batch_size, show_progress, "classifying")
    return logits.double().softmax(dim=-1)


# ----------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------
def feature_statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D), in float64, of features (N, D) with N >= 2."""
    features = torch.as_tensor(features).double()
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"`features` must have shape (N, D) with N >= 2, got {tuple(features.shape)}.")
    if not torch.isfinite(features).all():
        raise ValueError("`features` contains NaN or infinite values.")
    mean = features.mean(dim=0)
    centred = features - mean
    covariance = centred.T @ centred / (features.shape[0] - 1)
    return mean, covariance


def _symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) -> float:
    """Frechet distance between the Gaussians N(mean_a, cov_a) and N(mean_b, cov_b).

    d^2 = ||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^1/2 C_b C_a^1/2)^1/2)

    (Dowson & Landau 1982). ``tr((C_a C_b)^1/2)`` equals the trace of the symmetric square root of
    ``C_a^1/2 C_b C_a^1/2``, which has the same eigenvalues, so two symmetric eigendecompositions
    replace scipy's general ``sqrtm`` and never produce complex parts.

    Returns:
        A float >= 0 (tiny negative round-off is clamped to 0).
    """
    mean_a, cov_a, mean_b, cov_b = (torch.as_tensor(t).double() for t in (mean_a, cov_a, mean_b, cov_b))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mean_a.shape[0],) * 2:
        raise ValueError(
            f"statistics do not match: means {tuple(mean_a.shape)} / {tuple(mean_b.shape)}, "
            f"covariances {tuple(cov_a.shape)} / {tuple(cov_b.shape)}."
        )
    sqrt_a = _symmetric_sqrt(cov_a)
    middle = sqrt_a @ cov_b @ sqrt_a
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = eigenvalues.clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


class PrecomputedFeatures(torch.nn.Module):
    """An identity "feature extractor" for torchmetrics: its update() then takes features (N, D) directly."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class ClassifierFeatureExtractor(torch.nn.Module):
    """The project's classifier as torchmetrics' custom feature extractor (``FrechetInceptionDistance(feature=...)``).

    Takes images (B, C, H, W), uint8 in [0, 255] or float in [-1, 1], and returns the classifier's
    penultimate features (B, D) (:func:`extract_features`), so FID and KID stream over any number of
    image batches in the judge's features.
    """

    def __init__(self, classifier, batch_size: int = 256):
        super().__init__()
        self.classifier, self.batch_size = classifier, batch_size
        channels = image_channels(classifier)
        size = int(getattr(classifier.config, "image_size", 28))
        self.num_features = int(extract_features(classifier, torch.zeros(1, channels, size, size)).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return extract_features(self.classifier, images, self.batch_size).double()


def frechet_metric(feature_extractor: torch.nn.Module):
    """A torchmetrics ``FrechetInceptionDistance`` over ``feature_extractor``'s features (e.g. :class:`ClassifierFeatureExtractor`)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=feature_extractor, normalize=False)


def frechet_distance(feats_a, feats_b, chunk_size: int = 4096) -> float:
    """Frechet distance between two feature sets, each modelled as a Gaussian, by torchmetrics' FID.

    ``d^2 = ||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^1/2)`` (Dowson & Landau 1982), computed by
    ``torchmetrics.image.fid.FrechetInceptionDistance`` on the features as given (streamed sums in float64;
    ``feats_b`` is its "real" set). :func:`frechet_distance_from_statistics` is the same distance from
    means and covariances, by symmetric eigendecompositions; the two agree to round-off (tested).

    Args:
        feats_a: (N_a, D) features, N_a >= 2 (tensor or numpy array).
        feats_b: (N_b, D) features, N_b >= 2.

    Returns:
        A float >= 0; 0 (up to round-off) for identical sets. Biased upward for small N:
        compare against :func:`real_data_floor` at the same N.
    """
    feats_a, feats_b = torch.as_tensor(feats_a).double(), torch.as_tensor(feats_b).double()
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"`feats_a` and `feats_b` must be (N, D) with the same D, got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}."
        )
    for name, feats in (("feats_a", feats_a), ("feats_b", feats_b)):
        if feats.shape[0] < 2:
            raise ValueError(f"`{name}` must have shape (N, D) with N >= 2, got {tuple(feats.shape)}.")
        if not torch.isfinite(feats).all():
            raise ValueError(f"`{name}` contains NaN or infinite values.")
    metric = frechet_metric(PrecomputedFeatures(feats_a.shape[1])).double()
    for real, feats in ((True, feats_b), (False, feats_a)):
        for start in range(0, feats.shape[0], chunk_size):
            metric.update(feats[start:start + chunk_size], real=real)
    return max(float(metric.compute()), 0.0)


def kernel_distance(feats_a, feats_b, max_reference: int | None = None) -> float:
    """Kernel distance (KID, Binkowski et al. 2018): the unbiased squared MMD with a cubic polynomial kernel.

    ``k(a, b) = (a . b / D + 1)^3`` and

        MMD^2_u = mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean_{i, j} k(a_i, b_j)

    (their eq. 3, the U-statistic). Unlike the Frechet distance it has no bias at small N: its
    expectation is the population distance (0 for two samples of one distribution) whatever N is,
    so small sample sets can be ranked without a floor. It can be slightly negative.

    Written here rather than taken from torchmetrics' ``KernelInceptionDistance``, which averages the
    estimator over random equal-size subsets of both sets: this one is the U-statistic over every sample
    of two sets of different sizes (1000 samples against 10,000 test digits). On equal sets with one
    subset of all samples the two agree (tested).

    Args:
        feats_a: (N_a, D) features, N_a >= 2.
        feats_b: (N_b, D) features, N_b >= 2.
        max_reference: if set, use only the first that many rows of ``feats_b`` (the kernel matrix
            of ``feats_b`` is N_b x N_b).

    Returns:
        A float (the squared MMD estimate; multiply by 1000 for the usual scale of KID).
    """
    feats_a, feats_b = torch.as_tensor(feats_a).double(), torch.as_tensor(feats_b).double()
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"`feats_a` and `feats_b` must be (N, D) with the same D, got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}."
        )
    if max_reference is not None:
        feats_b = feats_b[:max_reference]
    if feats_a.shape[0] < 2 or feats_b.shape[0] < 2:
        raise ValueError(f"kernel distance needs at least 2 rows in each set, got {feats_a.shape[0]} and {feats_b.shape[0]}.")
    dim = feats_a.shape[1]

    def kernel(x, y):
        return (x @ y.T / dim + 1).pow(3)

    def mean_off_diagonal(matrix):
        n = matrix.shape[0]
        return (matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))

    within_a = mean_off_diagonal(kernel(feats_a, feats_a))
    within_b = mean_off_diagonal(kernel(feats_b, feats_b))
    across = kernel(feats_a, feats_b).mean()
    return float(within_a + within_b - 2 * across)


def classifier_frechet_distance(
    classifier, images_a, images_b, batch_size: int = 256, show_progress: bool = True
) -> float:
    """Frechet distance between two image sets in the classifier's penultimate features.

    Args:
        classifier: a transformers image classifier (the project's judge classifier by convention).
        images_a, images_b: (N, C, H, W), uint8 in [0, 255] or float in [-1, 1]; N >= 2 each.
        batch_size: images per forward pass.

    Returns:
        A float >= 0 (not comparable with Inception FID; report it with :func:`real_data_floor`).
    """
    feats_a = extract_features(classifier, images_a, batch_size, show_progress)
    feats_b = extract_features(classifier, images_b, batch_size, show_progress)
    return frechet_distance(feats_a, feats_b)


def real_data_floor(
    classifier,
    real_images,
    reference_images,
    n: int,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    reference_features: torch.Tensor | None = None,
    show_progress: bool = True,
) -> float:
    """The Frechet distance that real data reaches at sample count ``n``: the metric's floor.

    Draws ``n`` images from ``real_images`` (for example the train split) without replacement and
    measures their distance to ``reference_images`` (for example the test split, the same reference
    the generated samples are measured against). Generated samples cannot be expected to beat it,
    because the estimator's bias at ``n`` is part of it.

    Args:
        classifier: the feature network, as for :func:`classifier_frechet_distance`.
        real_images: (M, C, H, W) real images with M >= n, disjoint from the reference.
        reference_images: (R, C, H, W) reference images; ignored when ``reference_features`` is given.
        n: number of real images to draw, the same n as the generated samples.
        generator: chooses the slice; None takes the first n.
        reference_features: optional precomputed ``extract_features(classifier, reference_images)``.

    Returns:
        A float >= 0.
    """
    _check_images(real_images, "real_images")
    if not isinstance(n, int) or n < 2 or n > real_images.shape[0]:
        raise ValueError(f"`n` must be an int in [2, {real_images.shape[0]}] (the number of real images), got {n!r}.")
    if generator is None:
        index = torch.arange(n)
    else:
        index = torch.randperm(real_images.shape[0], generator=generator)[:n]
    real_features = extract_features(classifier, real_images[index], batch_size, show_progress)
    if reference_features is None:
        reference_features = extract_features(classifier, reference_images, batch_size, show_progress)
    return frechet_distance(real_features, reference_features)


# ----------------------------------------------------------------------------------------------
# Labels and confidence
# ----------------------------------------------------------------------------------------------
def label_accuracy(classifier, images, labels, batch_size: int = 256, show_progress: bool = False) -> float:
    """Fraction of images the classifier assigns to the intended label.

    Args:
        images: (N, C, H, W), uint8 in [0, 255] or float in [-1, 1].
        labels: (N,) integer class indices (tensor or sequence), each in [0, num_labels).

    Returns:
        Accuracy in [0, 1].
    """
    labels = torch.as_tensor(labels).long().flatten()
    if not isinstance(images, torch.Tensor) or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per image, got {labels.shape[0]} labels for "
            f"{images.shape[0] if isinstance(images, torch.Tensor) else '?'} images."
        )
    num_labels = int(classifier.config.num_labels)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"`labels` must be in [0, {num_labels}) (the classifier's labels).")
    probabilities = classifier_probabilities(classifier, images, batch_size, show_progress)
    return float((probabilities.argmax(dim=-1) == labels).double().mean())


def classifier_score(
    classifier, images, batch_size: int = 256, num_splits: int = 1, show_progress: bool = False
) -> float:
    """Inception-Score-like figure in the classifier's label space (Salimans et al. 2016).

    ``exp(E_x KL(p(y|x) || p(y)))``: high when each image is classified confidently (low entropy of
    p(y|x)) and the classes are balanced (high entropy of p(y)). Averaged over ``num_splits`` disjoint
    splits as in the original recipe.

    Args:
        images: (N, C, H, W), uint8 in [0, 255] or float in [-1, 1]; N >= num_splits.

    Returns:
        A float in [1, num_labels] (10 for a perfect, balanced MNIST sample set).
    """
    if not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(f"`num_splits` must be a positive integer, got {num_splits!r}.")
    probabilities = classifier_probabilities(classifier, images, batch_size, show_progress)
    if probabilities.shape[0] < num_splits:
        raise ValueError(f"`num_splits`={num_splits} is larger than the number of images {probabilities.shape[0]}.")
    scores = []
    for split in probabilities.chunk(num_splits):
        marginal = split.mean(dim=0, keepdim=True)
        log_ratio = split.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log()
        kl = (split * log_ratio).sum(dim=-1).mean()
        scores.append(math.exp(float(kl)))
    return sum(scores) / len(scores)


# ----------------------------------------------------------------------------------------------
# Inverse problems
# ----------------------------------------------------------------------------------------------
def hidden_pixel_error(completion: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor,
                       denoising: bool = False) -> tuple[float, float]:
    """(MSE, PSNR in dB) of a completion over the pixels it had to invent, in [0, 1] pixel units.

    Args:
        completion, truth: (B, C, H, W) in [-1, 1]; the completion is clamped to that range first.
        mask: broadcastable to the images, 1 where a pixel was observed and 0 where it was hidden.
        denoising: score every pixel (a denoising task hides none, but every pixel is noisy).

    Returns:
        ``(mse, psnr)`` with ``psnr = 10 log10(1 / mse)`` (1 is the squared range of [0, 1] pixels);
        a perfect completion gives ``(0.0, 120.0)`` (MSE floored at 1e-12).
    """
    hidden = torch.ones_like(mask) if denoising else 1 - mask
    hidden = torch.broadcast_to(hidden, truth.shape)
    squared = ((completion.clamp(-1, 1) - truth) / 2).pow(2) * hidden
    mse = float(squared.sum() / hidden.sum().clamp_min(1))
    return mse, 10 * math.log10(1.0 / max(mse, 1e-12))


# ----------------------------------------------------------------------------------------------
# Symmetry
# ----------------------------------------------------------------------------------------------
def flip_for_symmetry(images: torch.Tensor, axis: str) -> torch.Tensor:
    """Mirror images across an axis.

    ``"horizontal"``: mirror across the horizontal axis, i.e. the upside-down flip (rows reversed),
    as in Graikos et al.'s MNIST code; ``"vertical"``: mirror across the vertical axis (left-right).
    """
    if axis not in SYMMETRY_AXES:
        raise ValueError(f"`axis` must be one of {SYMMETRY_AXES}, got {axis!r}.")
    return images.flip(-2) if axis == "horizontal" else images.flip(-1)


def symmetry_error(images, axis: str = "horizontal") -> torch.Tensor:
    """Per-image mean squared difference between an image and its mirror image.

    Args:
        images: (B, C, H, W), uint8 in [0, 255] or float in [-1, 1].
        axis: "horizontal" (upside-down flip, as in Graikos et al.) or "vertical" (left-right flip).

    Returns:
        Tensor (B,) of values in [0, 4] (model range): 0 for a perfectly symmetric image.
    """
    images = _as_model_range(images)
    return (images - flip_for_symmetry(images, axis)).square().flatten(1).mean(dim=1)


def reference_features_and_floor(classifier, dataset: str, resolution: int, n: int, seed: int = 0,
                                 batch_size: int = 500, train_pool=None) -> tuple[torch.Tensor, float]:
    """What every sample-quality benchmark starts with: the reference features and the floor at ``n``.

    Args:
        classifier: the judge.
        dataset: a local folder or Hub id with "train" and "test" splits (MNIST, CIFAR-10).
        resolution: the pipeline's image size (MNIST 28 -> 32 is padded), so both sides see the same preprocessing.
        n: the number of samples the benchmark will score.
        seed: picks the ``n`` train images of the floor.
        train_pool: the train split as :func:`~pnp_diffusers.data.load_image_dataset` gives it, when the caller
            has it loaded already (it is not loaded twice); None loads it.

    Returns:
        (features of the whole test split (R, D), :func:`real_data_floor` of ``n`` train images against them).
    """
    from .data import load_image_dataset

    reference = load_image_dataset(dataset, "test", resolution=resolution, show_progress=False)
    pool = train_pool if train_pool is not None else load_image_dataset(dataset, "train", resolution=resolution,
                                                                         show_progress=False)
    features = extract_features(classifier, reference.images, batch_size)
    floor = real_data_floor(classifier, pool.images, None, n, batch_size, show_progress=False,
                            generator=torch.Generator().manual_seed(seed), reference_features=features)
    return features, floor



def label_balanced_floor(classifier, real_images, real_labels, labels, reference_features: torch.Tensor,
                         seed: int = 0, batch_size: int = 500) -> float:
    """The floor for class-conditional samples: real images with exactly the samples' labels.

    A guided sample set with labels ``0..9`` in turn is label-balanced and a random real slice is not quite, so
    its distance can sit below :func:`real_data_floor`. This floor draws, for each class ``c``, as many images of
    class ``c`` from ``real_images`` as ``labels`` holds (without replacement) and measures them against
    ``reference_features``.

    Args:
        real_images: (M, C, H, W) real images (for example the train split), disjoint from the reference.
        real_labels: (M,) their class indices.
        labels: (n,) class indices of the generated samples.
        reference_features: (R, D) features of the reference split (from :func:`reference_features_and_floor`).
        seed: picks the images within each class.

    Returns:
        A float >= 0.
    """
    _check_images(real_images, "real_images")
    real_labels = torch.as_tensor(real_labels, dtype=torch.long).flatten()
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if len(real_labels) != len(real_images):
        raise ValueError(f"`real_labels` has {len(real_labels)} entries for {len(real_images)} `real_images`.")
    generator = torch.Generator().manual_seed(seed)
    index = []
    for label, count in zip(*torch.unique(labels, return_counts=True)):
        members = torch.nonzero(real_labels == label).flatten()
        if len(members) < count:
            raise ValueError(f"`labels` asks for {int(count)} images of class {int(label)}; `real_images` has {len(members)}.")
        index.append(members[torch.randperm(len(members), generator=generator)[:count]])
    features = extract_features(classifier, real_images[torch.cat(index)], batch_size)
    return frechet_distance(features, reference_features)
