"""Constraints for plug-and-play inference: values and gradients on hand-made images, algebra, bad inputs."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

from pnp_diffusers.classifiers import preprocess_for_classifier, small_classifier_config
from pnp_diffusers.constraints import (
    ClassifierConstraint,
    CombinedConstraint,
    Constraint,
    MaskedObservation,
    SymmetryConstraint,
    as_constraint,
    evaluate_constraint,
    frozen_module,
)


def top_row_image(size=4):
    """(1, 1, size, size): -1 everywhere, +1 on the top row. Left-right symmetric, not upside-down symmetric."""
    x = -torch.ones(1, 1, size, size)
    x[..., 0, :] = 1.0
    return x


def left_column_image(size=4):
    """(1, 1, size, size): -1 everywhere, +1 on the left column. Upside-down symmetric, not left-right."""
    return top_row_image(size).transpose(-1, -2).contiguous()


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    config = small_classifier_config("resnet", num_channels=1, image_size=8, hidden_sizes=(8, 16))
    return AutoModelForImageClassification.from_config(config)


# ----------------------------------------------------------------------------- symmetry


def test_symmetric_images_score_zero_on_their_own_axis():
    rows, cols = top_row_image(), left_column_image()
    # "horizontal" = upside-down flip: the left-column image is unchanged by it.
    assert SymmetryConstraint("horizontal", "similar")(cols).item() == 0.0
    assert SymmetryConstraint("vertical", "similar")(rows).item() == 0.0
    # On the other axis: 2 mirrored rows (cols) of 4 pixels differ by 2 -> 8 * 4 / 16 = 2.
    assert SymmetryConstraint("horizontal", "similar")(rows).item() == pytest.approx(2.0)
    assert SymmetryConstraint("vertical", "similar")(cols).item() == pytest.approx(2.0)
    assert SymmetryConstraint("horizontal", "dissimilar")(rows).item() == pytest.approx(-2.0)
    assert SymmetryConstraint("horizontal", "dissimilar")(cols).item() == 0.0


def test_horizontal_axis_is_the_upside_down_flip():
    x = torch.randn(3, 2, 5, 6)
    c = SymmetryConstraint("horizontal", "similar")
    assert torch.equal(c.mirror(x), x.flip(-2))
    assert torch.allclose(c(x), ((x - x.flip(-2)) ** 2).mean(dim=(1, 2, 3)))
    assert torch.equal(SymmetryConstraint("vertical").mirror(x), x.flip(-1))


def test_symmetry_gradient_matches_closed_form():
    # d/dx mean((x - Px)^2) = 4 (x - Px) / n for the involution P (a flip).
    x = torch.randn(2, 1, 6, 6, requires_grad=True)
    for axis, dim in (("horizontal", -2), ("vertical", -1)):
        similar = SymmetryConstraint(axis, "similar")
        (grad,) = torch.autograd.grad(similar(x).sum(), x)
        expected = 4.0 * (x - x.flip(dim)) / x[0].numel()
        assert torch.allclose(grad, expected, atol=1e-6)
        (grad_dis,) = torch.autograd.grad(SymmetryConstraint(axis, "dissimilar")(x).sum(), x)
        assert torch.allclose(grad_dis, -expected, atol=1e-6)


def test_symmetry_rejects_bad_arguments():
    with pytest.raises(ValueError, match="axis"):
        SymmetryConstraint("diagonal")
    with pytest.raises(ValueError, match="mode"):
        SymmetryConstraint("vertical", "same")


# ----------------------------------------------------------------------------- algebra


def test_constraints_add_scale_and_sum():
    x = torch.randn(4, 1, 6, 6)
    a = SymmetryConstraint("horizontal", "similar")
    b = SymmetryConstraint("vertical", "dissimilar")

    def brightness(images):
        return images.flatten(1).mean(dim=1)

    assert torch.allclose((a + 0.5 * b)(x), a(x) + 0.5 * b(x))
    assert torch.allclose((2 * a)(x), 2 * a(x))
    assert torch.allclose((a * 3)(x), 3 * a(x))
    assert torch.allclose((a / 4)(x), a(x) / 4)
    assert torch.allclose((a - b)(x), a(x) - b(x))
    assert torch.allclose((-a)(x), -a(x))
    assert torch.allclose((brightness + a)(x), brightness(x) + a(x))
    total = sum([a, b, brightness])
    assert isinstance(total, CombinedConstraint)
    assert torch.allclose(total(x), a(x) + b(x) + brightness(x))
    # Nested sums flatten: a + b + c is one sum of three terms with their weights.
    nested = 0.5 * (a + 2 * b) + brightness
    assert len(nested.terms) == 3 and nested.weights == (0.5, 1.0, 1.0)
    assert torch.allclose(nested(x), 0.5 * a(x) + b(x) + brightness(x))
    # Gradients of a sum are the sums of gradients.
    xg = x.clone().requires_grad_(True)
    (g_sum,) = torch.autograd.grad((a + 0.5 * b)(xg).sum(), xg)
    (g_a,) = torch.autograd.grad(a(xg).sum(), xg)
    (g_b,) = torch.autograd.grad(b(xg).sum(), xg)
    assert torch.allclose(g_sum, g_a + 0.5 * g_b, atol=1e-6)


def test_as_constraint_and_evaluate_check_shapes():
    x = torch.randn(3, 1, 4, 4)
    wrapped = as_constraint(lambda images: images.flatten(1).pow(2).sum(1))
    assert isinstance(wrapped, Constraint)
    assert torch.allclose(evaluate_constraint(wrapped, x), x.flatten(1).pow(2).sum(1))
    with pytest.raises(ValueError, match="constraint"):
        evaluate_constraint(lambda images: images.sum(), x)  # a scalar, not (B,)
    with pytest.raises(ValueError, match="constraint"):
        evaluate_constraint(lambda images: images.flatten(1), x)  # (B, D)
    with pytest.raises(ValueError, match="constraint"):
        evaluate_constraint(lambda images: torch.zeros(3, dtype=torch.long), x)  # not floating
    with pytest.raises(ValueError, match="constraint"):
        as_constraint("not callable")
    with pytest.raises(ValueError, match="constraint"):  # a bad term inside a sum is named too
        (SymmetryConstraint() + (lambda images: images.sum()))(x)
    with pytest.raises(ValueError, match="weight"):
        SymmetryConstraint() * "two"


# ----------------------------------------------------------------------------- masked observation


def test_masked_observation_value_and_gradient():
    observed = torch.zeros(1, 4, 4)
    mask = torch.zeros(4, 4)
    mask[2:] = 1.0  # the bottom half is observed
    constraint = MaskedObservation(observed, mask)
    x = torch.zeros(2, 1, 4, 4)
    x[0, :, 2:] = 0.5  # observed pixels off by 0.5 -> MSE 0.25 over the 8 observed pixels
    x[1, :, :2] = 1.0  # only unobserved pixels changed -> 0
    assert torch.allclose(constraint(x), torch.tensor([0.25, 0.0]))
    # noise_std: Gaussian negative log-likelihood per observed pixel, MSE / (2 sigma^2).
    noisy = MaskedObservation(observed, mask, noise_std=0.5)
    assert torch.allclose(noisy(x), torch.tensor([0.25 / 0.5, 0.0]))

    xg = torch.randn(2, 1, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(constraint(xg).sum(), xg)
    expected = 2.0 * mask * (xg - observed) / mask.sum()
    assert torch.allclose(grad, expected, atol=1e-6)
    assert (grad[..., :2, :] == 0).all()  # no pull on missing pixels


def test_masked_observation_per_sample_and_defaults():
    observed = torch.randn(2, 1, 3, 3).clamp(-1, 1)
    constraint = MaskedObservation(observed)  # default mask: everything observed (denoising)
    assert torch.allclose(constraint(observed), torch.zeros(2))
    x = observed.clone()
    x[1] += 0.1
    assert torch.allclose(constraint(x), torch.tensor([0.0, 0.01]), atol=1e-6)


def test_masked_observation_validates_shapes():
    with pytest.raises(ValueError, match="observed"):
        MaskedObservation(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="mask"):
        MaskedObservation(torch.zeros(1, 4, 4), torch.ones(3, 3))
    with pytest.raises(ValueError, match="mask"):
        MaskedObservation(torch.zeros(1, 4, 4), torch.zeros(4, 4))  # nothing observed
    with pytest.raises(ValueError, match="mask"):
        MaskedObservation(torch.zeros(1, 4, 4), 2 * torch.ones(4, 4))
    with pytest.raises(ValueError, match="noise_std"):
        MaskedObservation(torch.zeros(1, 4, 4), noise_std=0.0)
    constraint = MaskedObservation(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="observed"):
        constraint(torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="observed"):
        constraint(torch.zeros(3, 1, 4, 4))  # 2 observations for 3 images


# ----------------------------------------------------------------------------- classifier


def test_classifier_constraint_is_cross_entropy_of_the_classifier(tiny_classifier):
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    constraint = ClassifierConstraint(tiny_classifier, [1, 3, 7])
    tiny_classifier.eval()
    with torch.no_grad():
        logits = tiny_classifier(pixel_values=preprocess_for_classifier(x, tiny_classifier)).logits
    expected = F.cross_entropy(logits, torch.tensor([1, 3, 7]), reduction="none")
    assert torch.allclose(constraint(x), expected, atol=1e-6)
    # -log p summed over all labels' constraints: softmax probabilities sum to one.
    probs = torch.stack([torch.exp(-ClassifierConstraint(tiny_classifier, k)(x)) for k in range(10)], dim=1)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-5)


def test_classifier_constraint_label_names_and_broadcast(tiny_classifier):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    by_name = ClassifierConstraint(tiny_classifier, "3")  # label2id of the config: "3" -> 3
    by_index = ClassifierConstraint(tiny_classifier, torch.tensor(3))
    assert torch.allclose(by_name(x), by_index(x))
    assert by_name.labels_for_batch(2).tolist() == [3, 3]
    with pytest.raises(ValueError, match="target_labels"):
        ClassifierConstraint(tiny_classifier, [1, 2, 3])(x)  # 3 labels for 2 images


def test_classifier_constraint_rejects_bad_inputs(tiny_classifier):
    with pytest.raises(ValueError, match="target_labels"):
        ClassifierConstraint(tiny_classifier, 10)
    with pytest.raises(ValueError, match="target_labels"):
        ClassifierConstraint(tiny_classifier, -1)
    with pytest.raises(ValueError, match="target_labels"):
        ClassifierConstraint(tiny_classifier, "ten")
    with pytest.raises(ValueError, match="target_labels"):
        ClassifierConstraint(tiny_classifier, 2.5)
    with pytest.raises(ValueError, match="classifier"):
        ClassifierConstraint(torch.nn.Linear(2, 2), 0)
    constraint = ClassifierConstraint(tiny_classifier, 0)
    with pytest.raises(ValueError, match="classifier"):
        constraint(torch.zeros(1, 2, 8, 8))  # 2 channels cannot become the classifier's 1
    # RGB images are matched to the grey classifier by luminance.
    assert constraint(torch.zeros(2, 3, 8, 8)).shape == (2,)


def test_classifier_constraint_leaves_the_classifier_untouched(tiny_classifier):
    tiny_classifier.train()
    before = {k: v.clone() for k, v in tiny_classifier.state_dict().items()}
    x = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
    loss = ClassifierConstraint(tiny_classifier, 5)(x)
    loss.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_classifier.parameters())
    assert all(p.requires_grad for p in tiny_classifier.parameters())  # flags restored
    assert tiny_classifier.training  # mode restored, but the loss was computed in eval mode
    for key, value in tiny_classifier.state_dict().items():  # BatchNorm running stats unchanged
        assert torch.equal(value, before[key]), key
    tiny_classifier.eval()


def test_classifier_constraint_is_lowered_by_optimising_the_image(tiny_classifier):
    torch.manual_seed(1)
    constraint = ClassifierConstraint(tiny_classifier, 3)
    x = (torch.rand(4, 1, 8, 8) * 2 - 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.2)
    history = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = constraint(x.clamp(-1, 1))
        loss.sum().backward()
        optimizer.step()
        history.append(loss.detach())
    history = torch.stack(history)
    # An untrained classifier is nearly flat (-log p ~ log 10), so the drop is modest but steady.
    assert (history[-1] < history[0] - 0.1).all(), history
    assert (history[1:].mean(1) <= history[:-1].mean(1) + 1e-4).all(), history.mean(1)


def test_frozen_module_restores_flags_and_mode():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    module[0].bias.requires_grad_(False)
    module.train()
    with frozen_module(module):
        assert not any(p.requires_grad for p in module.parameters())
        assert not module.training and not module[1].training
    assert module[0].weight.requires_grad and not module[0].bias.requires_grad
    assert module.training and module[1].training
