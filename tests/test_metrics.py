"""Tests for pnp_diffusers.metrics: Frechet distance maths, degradation sensitivity on real digits,
label accuracy, classifier score, symmetry error, real-data floor, bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

from pnp_diffusers.classifiers import classifier_logits, small_classifier_config
from pnp_diffusers.metrics import (
    classifier_frechet_distance,
    classifier_probabilities,
    classifier_score,
    extract_features,
    frechet_distance,
    frechet_distance_from_statistics,
    kernel_distance,
    label_accuracy,
    label_balanced_floor,
    real_data_floor,
    reference_features_and_floor,
    symmetry_error,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"
JUDGE = REPO_ROOT / "pipelines" / "mnist-classifier-judge"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    config = small_classifier_config("resnet", num_channels=1, num_labels=10, image_size=28, hidden_sizes=(8, 16))
    return AutoModelForImageClassification.from_config(config).eval()


@pytest.fixture(scope="module")
def mnist():
    if not MNIST.exists():
        pytest.skip(f"MNIST not found at {MNIST}")
    from pnp_diffusers.data import load_image_dataset

    train = load_image_dataset(str(MNIST), "train", max_samples=1500, show_progress=False)
    test = load_image_dataset(str(MNIST), "test", max_samples=600, show_progress=False)
    return train, test


@pytest.fixture(scope="module")
def judge(mnist):
    """The shipped judge classifier; where it is not trained yet, a tiny one trained here for 150 steps."""
    if (JUDGE / "config.json").exists():
        return AutoModelForImageClassification.from_pretrained(JUDGE).eval()
    from pnp_diffusers.data import to_model_range

    train, _ = mnist
    model = tiny_classifier(seed=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        index = torch.randint(0, len(train), (64,), generator=generator)
        loss = F.cross_entropy(classifier_logits(model, to_model_range(train.images[index])), train.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) float images."""
    radius = int(3 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


# ------------------------------------------------------------------------------------------------
# Frechet distance maths
# ------------------------------------------------------------------------------------------------
def test_identical_feature_sets_have_zero_distance():
    features = torch.randn(300, 32, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(features.numpy(), features.numpy()) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_is_unbiased_at_small_n_and_grows_with_a_shift():
    generator = torch.Generator().manual_seed(0)
    # Two samples of one distribution: the U-statistic averages to 0 even at n = 20, where the
    # Frechet distance of the same sets is far from 0 (its bias).
    same = [kernel_distance(torch.randn(20, 8, generator=generator), torch.randn(500, 8, generator=generator))
            for _ in range(200)]
    assert abs(sum(same) / len(same)) < 0.02
    a, b = torch.randn(20, 8, generator=generator), torch.randn(500, 8, generator=generator)
    assert frechet_distance(a, b) > 1.0
    shifted = [kernel_distance(torch.randn(20, 8, generator=generator) + shift, b) for shift in (0.5, 1.0, 2.0)]
    assert 0 < shifted[0] < shifted[1] < shifted[2]
    # By hand on 2 x 2 rows of D = 1: k(x, y) = (x y + 1)^3.
    k = lambda x, y: (x * y + 1) ** 3  # noqa: E731
    x, y = [0.0, 1.0], [2.0, -1.0]
    expected = k(x[0], x[1]) + k(y[0], y[1]) - 2 * sum(k(u, v) for u in x for v in y) / 4
    got = kernel_distance(torch.tensor(x)[:, None], torch.tensor(y)[:, None])
    assert got == pytest.approx(expected)
    with pytest.raises(ValueError, match="same D"):
        kernel_distance(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(torch.randn(1, 3), torch.randn(4, 3))


def test_distance_matches_closed_form_for_diagonal_gaussians():
    # d^2 = ||mu_a - mu_b||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 for diagonal covariances
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    expected = (mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum()
    got = frechet_distance_from_statistics(mean_a, torch.diag(var_a), mean_b, torch.diag(var_b))
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_distance_matches_the_general_formula_for_non_commuting_covariances():
    # tr((C_a C_b)^1/2) = sum of square roots of the (real, non-negative) eigenvalues of C_a C_b
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    b = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    cov_a, cov_b = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64), b @ b.T
    mean_a, mean_b = torch.randn(5, generator=generator, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    trace_sqrt = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    expected = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    assert frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(float(expected), rel=1e-8)


def test_distance_is_symmetric_and_a_shift_adds_its_squared_norm():
    generator = torch.Generator().manual_seed(2)
    a = torch.randn(400, 8, generator=generator, dtype=torch.float64)
    b = 1.5 * torch.randn(400, 8, generator=generator, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)
    shift = torch.full((8,), 0.5, dtype=torch.float64)
    # a constant shift leaves covariances unchanged and adds ||shift||^2 = 8 * 0.25
    assert frechet_distance(a, a + shift) == pytest.approx(2.0, rel=1e-8)


# ------------------------------------------------------------------------------------------------
# On real digits
# ------------------------------------------------------------------------------------------------
@needs_mnist
def test_distance_grows_with_blur_and_noise_of_real_digits(mnist, judge):
    from pnp_diffusers.data import to_model_range

    train, test = mnist
    reference = extract_features(judge, test.images)
    clean = to_model_range(train.images[:500])
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(clean.shape, generator=generator)

    def distance(images):
        return frechet_distance(extract_features(judge, images), reference)

    base = distance(clean)
    blurred = [distance(gaussian_blur(clean, sigma)) for sigma in (0.7, 1.2, 2.0)]
    noisy = [distance((clean + level * noise).clamp(-1, 1)) for level in (0.2, 0.5, 1.0)]
    assert base < blurred[0] < blurred[1] < blurred[2], (base, blurred)
    assert base < noisy[0] < noisy[1] < noisy[2], (base, noisy)
    assert blurred[2] > 3 * base and noisy[2] > 3 * base


@needs_mnist
def test_floor_shrinks_with_n_and_matches_classifier_frechet_distance(mnist, judge):
    train, test = mnist
    reference = extract_features(judge, test.images)
    small = real_data_floor(judge, train.images, None, 100, reference_features=reference, show_progress=False)
    large = real_data_floor(judge, train.images, None, 1500, reference_features=reference, show_progress=False)
    assert large < small  # the estimator's upward bias falls with n
    # without a generator the floor uses the first n images: the same as the direct computation
    direct = classifier_frechet_distance(judge, train.images[:100], test.images, show_progress=False)
    assert small == pytest.approx(direct, rel=1e-6)
    generator = torch.Generator().manual_seed(0)
    drawn = real_data_floor(judge, train.images, test.images, 100, generator=generator, show_progress=False)
    assert drawn > 0 and drawn != pytest.approx(small)


def test_reference_features_and_floor_draws_the_floor_from_a_given_train_pool(mnist, judge):
    """A benchmark that has the train split loaded passes it in: the floor is drawn from those images (seeded),
    against the whole test split's features, and the split is not loaded a second time."""
    train, _ = mnist
    reference, floor = reference_features_and_floor(judge, str(MNIST), 28, 100, seed=3, train_pool=train)
    assert reference.shape[0] == 10000  # the whole test split
    expected = real_data_floor(judge, train.images, None, 100, generator=torch.Generator().manual_seed(3),
                               reference_features=reference, show_progress=False)
    assert floor == pytest.approx(expected, rel=1e-6)


@needs_mnist
def test_label_balanced_floor_draws_exactly_the_samples_labels(mnist, judge):
    train, test = mnist
    reference = extract_features(judge, test.images)
    labels = torch.arange(200) % 10
    floor = label_balanced_floor(judge, train.images, train.labels, labels, reference, seed=0)
    # the same draw by hand: 20 images of each digit, chosen per class by the same generator
    generator = torch.Generator().manual_seed(0)
    index = []
    for digit in range(10):
        members = torch.nonzero(train.labels == digit).flatten()
        index.append(members[torch.randperm(len(members), generator=generator)[:20]])
    chosen = torch.cat(index)
    assert torch.equal(torch.bincount(train.labels[chosen], minlength=10), torch.full((10,), 20))
    assert floor == pytest.approx(frechet_distance(extract_features(judge, train.images[chosen]), reference), rel=1e-6)
    # one class only: far from the whole test split
    assert label_balanced_floor(judge, train.images, train.labels, torch.full((50,), 3), reference) > 5 * floor
    with pytest.raises(ValueError, match="`labels` asks for"):
        label_balanced_floor(judge, train.images, train.labels, torch.full((5000,), 3), reference)
    with pytest.raises(ValueError, match="`real_labels`"):
        label_balanced_floor(judge, train.images, train.labels[:10], labels, reference)


@needs_mnist
def test_label_accuracy_and_classifier_score_on_real_digits(mnist, judge):
    _, test = mnist
    accuracy = label_accuracy(judge, test.images, test.labels)
    assert accuracy >= 0.8
    wrong = label_accuracy(judge, test.images, (test.labels + 1) % 10)
    assert wrong < 0.1
    # accuracy equals the fraction of argmax hits computed by hand, also for float [-1, 1] images
    from pnp_diffusers.data import to_model_range

    with torch.no_grad():
        by_hand = (classifier_logits(judge, to_model_range(test.images)).argmax(-1) == test.labels).double().mean()
    assert accuracy == pytest.approx(float(by_hand))
    assert label_accuracy(judge, to_model_range(test.images), test.labels.tolist()) == pytest.approx(accuracy)
    score = classifier_score(judge, test.images)
    assert 3.0 < score <= 10.0  # fairly confident and balanced; at most the number of classes
    one_class = test.images[test.labels == 1]
    assert classifier_score(judge, one_class) < min(2.0, score / 2)  # one class only: the marginal is peaked


def test_classifier_score_equals_its_definition_and_is_one_for_constant_predictions():
    model = tiny_classifier()
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    p = classifier_probabilities(model, images)
    assert torch.allclose(p.sum(-1), torch.ones(64, dtype=torch.float64))
    kl = (p * (p.log() - p.mean(0, keepdim=True).log())).sum(-1).mean()
    assert classifier_score(model, images) == pytest.approx(float(kl.exp()), rel=1e-9)
    halves = [float((q * (q.log() - q.mean(0, keepdim=True).log())).sum(-1).mean().exp()) for q in p.chunk(2)]
    assert classifier_score(model, images, num_splits=2) == pytest.approx(sum(halves) / 2, rel=1e-9)
    with torch.no_grad():  # a head that ignores its input predicts the same p(y|x) for every image
        model.classifier[-1].weight.zero_()
    assert classifier_score(model, images) == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# Symmetry
# ------------------------------------------------------------------------------------------------
def test_symmetry_error_on_hand_made_images():
    top_white = torch.full((1, 1, 8, 8), -1.0)
    top_white[..., :4, :] = 1.0  # white top half: mirror image of itself left-right, not upside down
    assert symmetry_error(top_white, "vertical").item() == pytest.approx(0.0)
    assert symmetry_error(top_white, "horizontal").item() == pytest.approx(4.0)  # every pixel differs by 2
    symmetric = torch.rand(3, 1, 8, 8) * 2 - 1
    symmetric = torch.cat([symmetric[..., :4, :], symmetric[..., :4, :].flip(-2)], dim=-2)
    torch.testing.assert_close(symmetry_error(symmetric, "horizontal"), torch.zeros(3))
    uint8 = ((top_white + 1) * 127.5).round().to(torch.uint8)
    assert symmetry_error(uint8, "horizontal").item() == pytest.approx(4.0)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(symmetry_error(x), (x - x.flip(-2)).square().mean(dim=(1, 2, 3)))


# ------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_value_errors():
    model = tiny_classifier()
    images = torch.rand(4, 1, 28, 28) * 2 - 1
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.randn(1, 3), torch.randn(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((4, 2), float("nan")), torch.randn(4, 2))
    with pytest.raises(ValueError, match="labels"):
        label_accuracy(model, images, [0, 1])
    with pytest.raises(ValueError, match="labels"):
        label_accuracy(model, images, [0, 1, 2, 10])
    with pytest.raises(ValueError, match="axis"):
        symmetry_error(images, "diagonal")
    with pytest.raises(ValueError, match="images"):
        symmetry_error(images[0])
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, images, batch_size=0)
    with pytest.raises(ValueError, match="`n`"):
        real_data_floor(model, images, images, 5)
    with pytest.raises(ValueError, match="num_splits"):
        classifier_score(model, images, num_splits=0)


# ------------------------------------------------------------------------------------------------
# benchmarks/eval_quality.py end to end on a tiny pipeline
# ------------------------------------------------------------------------------------------------
@needs_mnist
@pytest.mark.parametrize("conditional", [False, True])
def test_eval_quality_writes_metrics_with_the_floor_at_the_same_n(tmp_path, conditional, capsys):
    import importlib.util
    import json

    from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet
    from pnp_diffusers.data import load_image_dataset

    torch.manual_seed(0)
    unet = create_unet("mnist-small", num_classes=10 if conditional else None, block_out_channels=(8, 16, 16),
                       norm_num_groups=4, attention_head_dim=4)
    DiffusionSamplingPipeline(unet=unet, scheduler=create_noise_scheduler()).save_pretrained(tmp_path / "pipe")
    tiny_classifier(seed=2).save_pretrained(tmp_path / "judge")

    spec = importlib.util.spec_from_file_location("eval_quality", REPO_ROOT / "benchmarks" / "eval_quality.py")
    eval_quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_quality)
    argv = [str(tmp_path / "pipe"), "--sampler", "pc" if conditional else "ddim", "--num_inference_steps", "2",
            "--num_samples", "12", "--batch_size", "6", "--classifier", str(tmp_path / "judge"),
            "--max_reference_samples", "50", "--max_floor_samples", "40", "--output_json", str(tmp_path / "q.json"),
            "--no_progress"]
    if conditional:
        argv += ["--guidance_scale", "2.0"]
    results = eval_quality.main(argv)

    assert json.loads((tmp_path / "q.json").read_text()) == pytest.approx(results)
    assert "real-data floor at same n" in capsys.readouterr().out
    # the floor is the real-data distance at the same n against the same reference, recomputed here
    judge = AutoModelForImageClassification.from_pretrained(tmp_path / "judge")
    reference = load_image_dataset(str(MNIST), "test", max_samples=50, show_progress=False)
    train = load_image_dataset(str(MNIST), "train", max_samples=40, show_progress=False)
    floor = real_data_floor(judge, train.images, reference.images, 12, generator=torch.Generator().manual_seed(0),
                            show_progress=False)
    assert results["real_data_floor"] == pytest.approx(floor, rel=1e-6)
    assert results["ratio_to_floor"] == pytest.approx(results["frechet_distance"] / floor)
    assert results["frechet_distance"] > 0 and 1.0 <= results["classifier_score"] <= 10.0
    assert ("label_accuracy" in results) == conditional
    if conditional:
        assert results["scheduler_class"] == "PredictorCorrectorScheduler"
    with pytest.raises(ValueError, match="sampler"):
        eval_quality.parse_args([str(tmp_path / "pipe"), "--sampler", "euler"])


# ----------------------------------------------------------------------------- torchmetrics backend


def test_torchmetrics_frechet_distance_equals_the_eigendecomposition_formula():
    from pnp_diffusers.metrics import feature_statistics

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 16, generator=generator) @ torch.randn(16, 16, generator=generator) * 0.3 + 0.2
    b = torch.randn(900, 16, generator=generator)
    reference = frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b))
    assert frechet_distance(a, b, chunk_size=128) == pytest.approx(reference, rel=1e-3)


@needs_mnist
def test_torchmetrics_fid_over_the_judge_reproduces_the_mnist_number():
    """FrechetInceptionDistance with the judge as its custom feature extractor, streamed over image batches,
    gives the number the feature-level formula gives on the same real digits."""
    from pnp_diffusers.data import load_image_dataset
    from pnp_diffusers.metrics import ClassifierFeatureExtractor, feature_statistics, frechet_metric

    judge = AutoModelForImageClassification.from_pretrained(JUDGE).eval()
    train = load_image_dataset(str(MNIST), "train", max_samples=400, show_progress=False).images
    test = load_image_dataset(str(MNIST), "test", max_samples=600, show_progress=False).images
    metric = frechet_metric(ClassifierFeatureExtractor(judge)).double()
    for start in range(0, 600, 250):
        metric.update(test[start:start + 250], real=True)
    for start in range(0, 400, 250):
        metric.update(train[start:start + 250], real=False)
    streamed = float(metric.compute())
    reference = frechet_distance_from_statistics(*feature_statistics(extract_features(judge, train)),
                                                 *feature_statistics(extract_features(judge, test)))
    assert streamed == pytest.approx(reference, rel=1e-3)


def test_kernel_distance_equals_torchmetrics_kid_on_equal_sets():
    """The hand-written KID stays (it takes sets of different sizes, torchmetrics' subsets cannot); on equal sets
    with one subset of every sample the two are the same U-statistic."""
    from torchmetrics.image.kid import KernelInceptionDistance

    from pnp_diffusers.metrics import PrecomputedFeatures

    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 8, generator=generator) + 0.3, torch.randn(64, 8, generator=generator)
    kid = KernelInceptionDistance(feature=PrecomputedFeatures(8), subsets=1, subset_size=64)
    kid.update(b.double(), real=True)
    kid.update(a.double(), real=False)
    mean, _ = kid.compute()
    assert kernel_distance(a, b) == pytest.approx(float(mean), rel=1e-4)


def test_inception_features_give_a_clear_error_without_weights(tmp_path):
    """Standard Inception FID needs torch-fidelity and weights no machine here can fetch: a clear error, early."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_quality", REPO_ROOT / "benchmarks" / "eval_quality.py")
    eval_quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_quality)
    with pytest.raises(ValueError, match="inception_weights"):
        eval_quality.inception_fid_metric(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="--features inception"):  # no torch-fidelity, or no weights to download
        eval_quality.inception_fid_metric(None)
