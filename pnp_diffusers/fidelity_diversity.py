"""Fidelity and diversity of a sample set in a feature space: precision, recall, density and coverage.

The Frechet distance mixes two failures into one number: samples that look wrong, and samples that look right but
repeat a few modes. The k-nearest-neighbour metrics below separate them, in the same classifier features as the
project's FD:

- precision and recall (Kynkaenniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
  Models", eq. 1-3): the real (generated) manifold is the union of balls around each real (generated) feature with
  the radius of its k-th nearest neighbour; precision is the share of generated samples inside the real manifold,
  recall the share of real samples inside the generated one;
- density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", eq. 4-5):
  density counts how many real balls hold each generated sample (divided by k: about 1 for a model that matches the
  data, above 1 when samples crowd dense regions), and coverage is the share of real samples whose ball holds at least
  one generated sample. Coverage falls when samples repeat a few images: it is the "varied, not repeated" number.

Use the same number of real and generated features (the papers' setting; k=5 as Naeem et al. recommend).

Balls are closed (a distance equal to the radius counts), as in Kynkaenniemi et al.'s eq. 1; Naeem et al.'s reference
code tests with a strict ``<``, which differs only on exact ties (never, for continuous features).

Written here because torchmetrics (1.9, the project's metrics library) has no precision/recall for generative models,
and Naeem et al.'s reference package (`prdc` 0.2) would add scikit-learn, SciPy and joblib for one pairwise-distance
call; ``torch.cdist`` does the same in a few lines.
"""

from __future__ import annotations

import torch


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk_size: int = 2048) -> torch.Tensor:
    """(N,) distance from each row of ``features`` to its k-th nearest other row."""
    radii = []
    for begin in range(0, len(features), chunk_size):
        distances = torch.cdist(features[begin : begin + chunk_size], features)
        # the k+1 smallest include the point itself at distance 0
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def precision_recall_density_coverage(real_features, fake_features, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features``.

    Args:
        real_features: (N, D) features of real images (for instance a random slice of the test split).
        fake_features: (M, D) features of generated images, in the same space; M = N is the usual setting.
        k: the neighbour whose distance sets each ball's radius (k >= 1, fewer than either set's size).

    Returns:
        ``{"precision", "recall", "density", "coverage"}``: precision, recall and coverage in [0, 1]; density >= 0
        (1 on average for samples drawn like the real ones).
    """
    real = torch.as_tensor(real_features, dtype=torch.float64).flatten(1)
    fake = torch.as_tensor(fake_features, dtype=torch.float64).flatten(1)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"`real_features` and `fake_features` must share their feature size, got {real.shape[1]} and {fake.shape[1]}.")
    if not isinstance(k, int) or k < 1 or k >= min(len(real), len(fake)):
        raise ValueError(f"`k` must be an integer in [1, {min(len(real), len(fake)) - 1}] for these sets, got {k!r}.")
    real_radii = _kth_neighbour_radii(real, k)
    fake_radii = _kth_neighbour_radii(fake, k)
    distances = torch.cdist(real, fake)  # (N, M)
    inside_real_balls = distances <= real_radii[:, None]  # [i, j]: fake j lies in real i's ball
    return {
        "precision": inside_real_balls.any(dim=0).double().mean().item(),
        "recall": (distances <= fake_radii[None, :]).any(dim=1).double().mean().item(),
        "density": inside_real_balls.double().sum().item() / (k * len(fake)),
        "coverage": (distances.min(dim=1).values <= real_radii).double().mean().item(),
    }
