"""The metrics between two stages' scores: agreement, accuracy change, MAE, cosine, relative L2."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.evidence.stages import compare_scores


def test_identical_scores() -> None:
    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    c = compare_scores(a, a.copy(), np.array([0, 2]), names=("x", "y"))
    assert (c.agreement, c.accuracy_change_pp, c.mae, c.l2_relative) == (1.0, 0.0, 0.0, 0.0)
    assert c.cosine == pytest.approx(1.0) and c.to_dict()["from"] == "x" and c.to_dict()["to"] == "y"


def test_known_differences() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0]])  # the first image flips class
    c = compare_scores(a, b, np.array([0, 1]), names=("a", "b"))
    assert c.agreement == 0.5
    assert c.accuracy_change_pp == pytest.approx(-50.0)
    assert c.mae == pytest.approx(0.5)  # two entries of 1 over four
    assert c.cosine == pytest.approx(0.5)  # orthogonal, then identical
    assert c.l2_relative == pytest.approx(np.sqrt(2) / np.sqrt(2))


def test_zero_rows_do_not_divide_by_zero() -> None:
    zeros = np.zeros((2, 3))
    c = compare_scores(zeros, zeros, np.array([0, 0]), names=("a", "b"))
    assert c.cosine == 1.0 and c.l2_relative == 0.0
    d = compare_scores(zeros, np.ones((2, 3)), np.array([0, 0]), names=("a", "b"))
    assert d.cosine == 0.0 and d.l2_relative == 1.0
