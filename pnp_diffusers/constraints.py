"""Differentiable constraints for plug-and-play inference with a diffusion prior.

Graikos et al. (NeurIPS 2022) infer an image x under a frozen diffusion prior by minimising
``F(x) = sum_t ||eps - eps_theta(x_t, t)||^2 - log c(x, y)`` (their eq. 6). A *constraint* here is the
``-log c(x, y)`` term: a differentiable map from images ``x`` of shape (B, C, H, W) with values in
[-1, 1] to a per-sample loss of shape (B,) (lower is better). The pipelines evaluate constraints on
``clip(x, -1, 1)`` as the paper does; constraints themselves never clip.

Constraints add and scale like numbers, and any callable with the same signature can take part::

    c = ClassifierConstraint(classifier, 3) + 0.5 * SymmetryConstraint("horizontal", "similar")
    c = sum([a, b, my_function])            # a plain function x -> (B,) is wrapped automatically
    loss = c(x)                             # (B,)

Every constraint is a ``torch.nn.Module``, so ``constraint.to(device)`` moves a classifier inside it.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .classifiers import classifier_logits
from .utils import predict_original_sample, straight_through_clip

SYMMETRY_AXES = ("horizontal", "vertical")
SYMMETRY_MODES = ("similar", "dissimilar")


@contextlib.contextmanager
def frozen_module(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``module`` frozen: eval mode and ``requires_grad_(False)``, both restored on exit.

    Autograd records whether a parameter requires grad when the operation runs, so a graph built
    inside this context carries gradients to its inputs only, never to the parameters -- even when
    ``backward`` is called after the context has closed and the flags are restored.
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    modes = [(m, m.training) for m in module.modules()]
    module.requires_grad_(False)
    module.eval()
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _as_weight(value, name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a real number, got {type(value).__name__}.")
    return float(value)


class Constraint(torch.nn.Module):
    """Base class: ``forward(x)`` maps images (B, C, H, W) in [-1, 1] to a loss (B,), lower = better.

    Subclasses implement ``forward``. Constraints combine with ``+``, ``-`` and multiplication or
    division by a number, giving a :class:`CombinedConstraint`; plain callables are wrapped with
    :func:`as_constraint`, and ``0 + c`` is ``c`` so that Python's ``sum`` works.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other) -> "CombinedConstraint":
        if isinstance(other, numbers.Number) and other == 0:
            return CombinedConstraint([self], [1.0])
        return CombinedConstraint([self, as_constraint(other)], [1.0, 1.0])

    def __radd__(self, other) -> "CombinedConstraint":
        if isinstance(other, numbers.Number) and other == 0:  # sum([...]) starts from 0
            return CombinedConstraint([self], [1.0])
        return CombinedConstraint([as_constraint(other), self], [1.0, 1.0])

    def __sub__(self, other) -> "CombinedConstraint":
        return self + (-1.0) * as_constraint(other)

    def __rsub__(self, other) -> "CombinedConstraint":
        return as_constraint(other) + (-1.0) * self

    def __mul__(self, weight) -> "CombinedConstraint":
        return CombinedConstraint([self], [_as_weight(weight, "weight")])

    __rmul__ = __mul__

    def __truediv__(self, divisor) -> "CombinedConstraint":
        divisor = _as_weight(divisor, "divisor")
        if divisor == 0:
            raise ValueError("`divisor` must be non-zero.")
        return CombinedConstraint([self], [1.0 / divisor])

    def __neg__(self) -> "CombinedConstraint":
        return CombinedConstraint([self], [-1.0])


class CallableConstraint(Constraint):
    """Wraps any callable ``fn(x) -> (B,)`` as a :class:`Constraint` (a module ``fn`` is registered)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        if not callable(fn):
            raise ValueError(f"`constraint` must be callable (x -> loss of shape (B,)), got {type(fn).__name__}.")
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)


class CombinedConstraint(Constraint):
    """A weighted sum ``sum_k weights[k] * terms[k](x)`` of constraints, per sample.

    Built by the arithmetic of :class:`Constraint`; nested sums are flattened so ``a + b + c`` is
    one sum of three terms.
    """

    def __init__(self, terms: Sequence, weights: Sequence[float] | None = None):
        super().__init__()
        terms = [as_constraint(t) for t in terms]
        weights = [1.0] * len(terms) if weights is None else [_as_weight(w, "weights") for w in weights]
        if len(terms) == 0 or len(terms) != len(weights):
            raise ValueError(
                f"`terms` and `weights` must be non-empty and of equal length, got {len(terms)} and {len(weights)}."
            )
        flat_terms, flat_weights = [], []
        for term, weight in zip(terms, weights):
            if isinstance(term, CombinedConstraint):
                flat_terms.extend(term.terms)
                flat_weights.extend(weight * w for w in term.weights)
            else:
                flat_terms.append(term)
                flat_weights.append(weight)
        self.terms = torch.nn.ModuleList(flat_terms)
        self.weights = tuple(flat_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for term, weight in zip(self.terms, self.weights):
            total = total + weight * evaluate_constraint(term, x)
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


def as_constraint(constraint) -> Constraint:
    """Return ``constraint`` as a :class:`Constraint`: constraints pass through, callables are wrapped.

    Raises:
        ValueError: naming ``constraint`` when it is not callable.
    """
    if isinstance(constraint, Constraint):
        return constraint
    return CallableConstraint(constraint)


def evaluate_constraint(constraint, x: torch.Tensor) -> torch.Tensor:
    """Evaluate a constraint (or any callable) on images and check that it returned a (B,) loss.

    Args:
        constraint: a :class:`Constraint` or a callable ``x -> (B,)``.
        x: images (B, C, H, W), values in [-1, 1].

    Returns:
        The per-sample loss, a floating tensor of shape (B,).

    Raises:
        ValueError: naming ``constraint`` when the result is not a floating tensor of shape (B,).
    """
    if not callable(constraint):
        raise ValueError(f"`constraint` must be callable (x -> loss of shape (B,)), got {type(constraint).__name__}.")
    loss = constraint(x)
    batch = x.shape[0]
    if not isinstance(loss, torch.Tensor) or not loss.is_floating_point() or tuple(loss.shape) != (batch,):
        got = f"a tensor of shape {tuple(loss.shape)} ({loss.dtype})" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"`constraint` must return a floating per-sample loss of shape ({batch},) for images of shape "
            f"{tuple(x.shape)}, got {got}."
        )
    return loss


class ClassifierConstraint(Constraint):
    """``-log p(y | x)`` under a transformers image classifier: pushes images towards a label.

    This is the learned constraint of Graikos et al. (Sec. 3.1, "a symmetric 3") with a multi-class
    classifier: ``loss = cross_entropy(logits(x), y)`` per sample. Images are mapped to the
    classifier's input differentiably by :func:`pnp_diffusers.classifiers.preprocess_for_classifier`
    (channels, resize, normalisation from the classifier's config). The classifier is run in eval
    mode with frozen parameters, so guidance never changes it and no parameter gradients are kept.

    Args:
        classifier: any ``AutoModelForImageClassification`` model (``config.num_labels`` classes).
        target_labels: the wanted label(s): an int index, a label name from ``config.label2id``
            (e.g. ``"3"``), or a list / 1-D tensor of them, either of length 1 (broadcast) or of the
            batch size at call time (one label per sample).

    Call:
        x: (B, C, H, W) in [-1, 1] -> loss (B,), ``-log p(target | x)`` in nats (>= 0).

    Raises:
        ValueError: naming ``classifier`` when it is not an image classifier (or its channels cannot
            be matched, at call time), or ``target_labels`` for a label outside the classifier's labels.
    """

    def __init__(self, classifier, target_labels):
        super().__init__()
        if not isinstance(classifier, torch.nn.Module) or not hasattr(classifier, "config"):
            raise ValueError(
                "`classifier` must be a transformers image-classification model (AutoModelForImageClassification), "
                f"got {type(classifier).__name__}."
            )
        num_labels = getattr(classifier.config, "num_labels", None)
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError("`classifier` must have `config.num_labels` (an image-classification head).")
        self.classifier = classifier
        self.num_labels = num_labels
        self.register_buffer("target_labels", self._label_tensor(target_labels), persistent=False)

    def _label_index(self, label) -> int:
        config = self.classifier.config
        if isinstance(label, str):
            label2id = {str(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
            if label not in label2id:
                raise ValueError(
                    f"`target_labels` contains the name {label!r}, which is not one of the classifier's labels "
                    f"{sorted(label2id)}."
                )
            return label2id[label]
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise ValueError(f"`target_labels` must hold ints or label names, got {label!r}.")
        if not 0 <= int(label) < self.num_labels:
            raise ValueError(
                f"`target_labels` contains {int(label)}, outside the classifier's labels 0..{self.num_labels - 1}."
            )
        return int(label)

    def _label_tensor(self, target_labels) -> torch.Tensor:
        if isinstance(target_labels, torch.Tensor):
            if target_labels.is_floating_point() or target_labels.ndim > 1:
                raise ValueError(
                    f"`target_labels` must be an integer scalar or 1-D tensor, got shape {tuple(target_labels.shape)} "
                    f"({target_labels.dtype})."
                )
            labels = target_labels.reshape(-1).tolist()
        elif isinstance(target_labels, (list, tuple)):
            labels = list(target_labels)
        else:
            labels = [target_labels]
        if len(labels) == 0:
            raise ValueError("`target_labels` must not be empty.")
        return torch.tensor([self._label_index(label) for label in labels], dtype=torch.long)

    def labels_for_batch(self, batch_size: int) -> torch.Tensor:
        """The (B,) long tensor of target labels for a batch of ``batch_size`` images."""
        labels = self.target_labels
        if labels.numel() == 1:
            return labels.expand(batch_size)
        if labels.numel() != batch_size:
            raise ValueError(
                f"`target_labels` has {labels.numel()} labels but the batch has {batch_size} images; "
                "give one label or one per image."
            )
        return labels

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits (B, num_labels) on images (B, C, H, W) in [-1, 1], differentiable in x only."""
        with frozen_module(self.classifier):
            return classifier_logits(self.classifier, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x).float()
        labels = self.labels_for_batch(x.shape[0]).to(logits.device)
        return F.cross_entropy(logits, labels, reduction="none")

    def extra_repr(self) -> str:
        return f"target_labels={self.target_labels.tolist()}"


class SymmetryConstraint(Constraint):
    """Mirror (dis)similarity of an image, the hand-crafted MNIST constraints of Graikos et al.

    ``axis="horizontal"`` mirrors across the horizontal axis -- the upside-down flip, ``torch.flip``
    over the rows (dims=[-2]), as ``vflip`` in the authors' code; ``axis="vertical"`` mirrors across
    the vertical axis, the left-right flip (dims=[-1]).

    ``mode="similar"``: ``loss = mean((x - flip(x))^2)`` over (C, H, W) per sample, 0 for an exactly
    symmetric image ("horizontal similarity"). ``mode="dissimilar"``: ``loss = -mean((x - flip(x))^2)``,
    lower for images unlike their mirror ("horizontal dissimilarity").

    Call:
        x: (B, C, H, W) in [-1, 1] -> loss (B,), in [0, 4] for "similar", [-4, 0] for "dissimilar".
    """

    def __init__(self, axis: str = "horizontal", mode: str = "similar"):
        super().__init__()
        if axis not in SYMMETRY_AXES:
            raise ValueError(
                f"`axis` must be one of {SYMMETRY_AXES} ('horizontal' = upside-down flip), got {axis!r}."
            )
        if mode not in SYMMETRY_MODES:
            raise ValueError(f"`mode` must be one of {SYMMETRY_MODES}, got {mode!r}.")
        self.axis = axis
        self.mode = mode

    def mirror(self, x: torch.Tensor) -> torch.Tensor:
        """The mirror image of ``x`` (B, C, H, W) across ``self.axis``."""
        return torch.flip(x, dims=[-2] if self.axis == "horizontal" else [-1])

    def asymmetry(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared difference between ``x`` and its mirror, shape (B,), >= 0."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"`x` must be a tensor of shape (B, C, H, W), got {getattr(x, 'shape', type(x))}.")
        return (x - self.mirror(x)).pow(2).flatten(1).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        error = self.asymmetry(x)
        return error if self.mode == "similar" else -error

    def extra_repr(self) -> str:
        return f"axis={self.axis!r}, mode={self.mode!r}"


class MaskedObservation(Constraint):
    """Agreement with a partially observed image: inpainting (mask) and denoising (``noise_std``).

    The loss is the squared error on observed pixels, normalised per sample by the number of
    observed pixels (the mask's weight), so its scale does not depend on how much is masked and it
    sits on the same per-pixel scale as the prior's denoising loss::

        loss_b = sum(mask * (x_b - observed_b)^2) / sum(mask)             (noise_std None)
        loss_b = sum(mask * (x_b - observed_b)^2) / sum(mask) / (2 sigma^2)  (noise_std = sigma)

    With ``noise_std`` the loss is the Gaussian negative log-likelihood ``-log N(observed; x, sigma^2)``
    per observed pixel (constants dropped): the observation model of denoising.

    Args:
        observed: the observed image(s), (C, H, W) or (B, C, H, W) in [-1, 1]; a batch of 1 is
            broadcast over the samples, otherwise its batch must equal the batch at call time.
        mask: 1 where a pixel is observed, 0 where it is missing (soft values in [0, 1] weight pixels);
            any shape broadcastable to ``observed`` ((H, W), (1, H, W), (C, H, W), (B, C, H, W));
            default all observed (pure denoising). Every sample must observe at least one pixel.
        noise_std: the observation noise standard deviation (> 0), or None for a plain masked MSE.

    Call:
        x: (B, C, H, W) in [-1, 1] -> loss (B,), >= 0.
    """

    def __init__(self, observed: torch.Tensor, mask: torch.Tensor | None = None, noise_std: float | None = None):
        super().__init__()
        if not isinstance(observed, torch.Tensor) or observed.ndim not in (3, 4):
            shape = tuple(observed.shape) if isinstance(observed, torch.Tensor) else type(observed).__name__
            raise ValueError(f"`observed` must be a tensor of shape (C, H, W) or (B, C, H, W), got {shape}.")
        observed = observed.float()
        if observed.ndim == 3:
            observed = observed.unsqueeze(0)
        if not torch.isfinite(observed).all():
            raise ValueError("`observed` must be finite (use `mask` to mark missing pixels, not NaN).")
        if mask is None:
            mask = torch.ones_like(observed)
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"`mask` must be a tensor broadcastable to {tuple(observed.shape)}, got {type(mask).__name__}.")
        mask = mask.to(device=observed.device, dtype=torch.float32)
        if mask.ndim < 2 or mask.ndim > 4:
            raise ValueError(f"`mask` must have 2 to 4 dimensions ((H, W) .. (B, C, H, W)), got shape {tuple(mask.shape)}.")
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        try:
            shape = torch.broadcast_shapes(observed.shape, mask.shape)
        except RuntimeError:
            shape = None
        if shape is None or tuple(shape[1:]) != tuple(observed.shape[1:]):
            raise ValueError(
                f"`mask` of shape {tuple(mask.shape)} cannot be broadcast to `observed` of shape {tuple(observed.shape)}."
            )
        # One (observed, mask) pair per sample, or a single pair broadcast over the batch at call time.
        observed = observed.expand(shape).clone()
        mask = mask.expand(shape).clone()
        if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise ValueError("`mask` values must lie in [0, 1] (1 = observed, 0 = missing).")
        if (mask.flatten(1).sum(dim=1) <= 0).any():
            raise ValueError("`mask` must observe at least one pixel of every image.")
        if noise_std is not None:
            noise_std = _as_weight(noise_std, "noise_std")
            if not noise_std > 0:
                raise ValueError(f"`noise_std` must be positive, got {noise_std}.")
        self.register_buffer("observed", observed, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.noise_std = noise_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.observed.shape[1:]):
            raise ValueError(
                f"`observed` has image shape {tuple(self.observed.shape[1:])} but the images have shape "
                f"{tuple(getattr(x, 'shape', ()))}."
            )
        if self.observed.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"`observed` holds {self.observed.shape[0]} images but the batch has {x.shape[0]}; "
                "give one observation or one per image."
            )
        observed = self.observed.to(x)
        mask = self.mask.to(x)
        squared = (mask * (x - observed).pow(2)).flatten(1).sum(dim=1)
        loss = squared / mask.flatten(1).sum(dim=1)
        if self.noise_std is not None:
            loss = loss / (2.0 * self.noise_std**2)
        return loss

    def extra_repr(self) -> str:
        return f"observed={tuple(self.observed.shape)}, noise_std={self.noise_std}"


def constraint_on_denoised(
    constraint, x_t: torch.Tensor, epsilon: torch.Tensor, alpha_prod_t: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The constraint on Tweedie's clean-image estimate, as DPS measures it (Chung et al. 2023, Algorithm 1).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (Ho et al. 2020, eq. 15) is clipped to
    [-1, 1] straight-through: the constraint sees clipped values, while the gradient passes as if
    unclipped (early in sampling most of x0_hat lies outside [-1, 1]).

    Args:
        constraint: a :class:`Constraint` or a callable ``x -> (B,)``.
        x_t: (B, C, H, W) noisy sample (requires grad for guidance).
        epsilon: (B, C, H, W) the model's noise prediction at x_t.
        alpha_prod_t: abar_t, a scalar or (B,).

    Returns:
        (loss (B,), x0_hat (B, C, H, W), unclipped).
    """
    x0_hat = predict_original_sample(x_t, epsilon, alpha_prod_t)
    return evaluate_constraint(constraint, straight_through_clip(x0_hat)), x0_hat


def masked_gradient(loss: torch.Tensor, x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``grad_x`` of the summed losses of the ``active`` samples (B,) bool; NaN/inf entries zeroed.

    Per-sample losses are summed, so each sample's gradient is its own (nothing mixes samples);
    inactive samples get a zero gradient.
    """
    (grad,) = torch.autograd.grad(torch.where(active, loss, torch.zeros_like(loss)).sum(), x)
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
