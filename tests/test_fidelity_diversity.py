"""Precision, recall, density and coverage on sets small enough to count by hand."""

import pytest
import torch

from pnp_diffusers import precision_recall_density_coverage

REAL = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k=1: every real ball has radius 1


def test_two_outliers_lower_precision_only():
    fake = torch.tensor([[0.5], [10.0], [10.2], [2.9]])
    got = precision_recall_density_coverage(REAL, fake, k=1)
    # 0.5 and 2.9 lie in real balls, 10 and 10.2 do not; the fake balls (radius 2.4 for 0.5 and 2.9) reach every real
    # point; pairs within real radii: 0.5 with 0 and 1, 2.9 with 2 and 3: 4 / (k * 4); every real point has a fake within 1
    assert got == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_a_collapsed_set_loses_recall_and_coverage_and_crowds_density():
    fake = torch.zeros(4, 1)  # four copies of one real image
    got = precision_recall_density_coverage(REAL, fake, k=1)
    # fake balls have radius 0: only real 0 is inside; each copy sits in real 0's and real 1's balls: 8 / 4;
    # reals 0 and 1 have a copy within radius 1, reals 2 and 3 do not
    assert got == pytest.approx({"precision": 1.0, "recall": 0.25, "density": 2.0, "coverage": 0.5})


def test_the_real_set_against_itself_scores_one_everywhere_but_density():
    features = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    got = precision_recall_density_coverage(features, features.clone(), k=5)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    assert got["density"] == pytest.approx(1.2)  # each point lies in its own ball and its 5 neighbours': (k + 1) / k


@pytest.mark.parametrize("k", [0, 4, 2.5])
def test_bad_k_and_mismatched_features_are_named(k):
    with pytest.raises(ValueError, match="`k`"):
        precision_recall_density_coverage(REAL, REAL, k=k)
    with pytest.raises(ValueError, match="feature size"):
        precision_recall_density_coverage(REAL, torch.zeros(4, 2), k=1)
