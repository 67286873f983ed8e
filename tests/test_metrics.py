"""metrics.accuracy_margin: the noise band the notebooks' claim asserts are measured against."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcourse import metrics


def test_margin_is_z_binomial_standard_errors():
    assert metrics.accuracy_margin(0.5, 2000) == pytest.approx(2 * math.sqrt(0.25 / 2000))
    assert metrics.accuracy_margin(0.5, 200, z=1) == pytest.approx(math.sqrt(0.25 / 200))
    assert metrics.accuracy_margin(0.5, 200) > metrics.accuracy_margin(0.5, 2000)  # fewer images, wider band


def test_margin_of_a_difference_adds_variances():
    a, b = metrics.accuracy_margin(0.4, 200), metrics.accuracy_margin(0.7, 1000)
    assert metrics.accuracy_margin([0.4, 0.7], [200, 1000]) == pytest.approx(math.hypot(a, b))
    assert metrics.accuracy_margin([0.4, 0.7], 200) == pytest.approx(2 * math.sqrt((0.24 + 0.21) / 200))


def test_margin_at_the_bounds_is_not_zero():
    assert 0 < metrics.accuracy_margin(1.0, 100) == pytest.approx(metrics.accuracy_margin(0.0, 100))


def test_margin_covers_about_95_percent_of_simulated_accuracies():
    rng = np.random.default_rng(0)
    p, n = 0.45, 500
    accs = rng.binomial(n, p, size=20_000) / n
    inside = np.mean(np.abs(accs - p) <= metrics.accuracy_margin(p, n))
    assert 0.93 < inside < 0.97


def test_mismatched_counts_are_refused():
    with pytest.raises(ValueError, match="one positive image count per accuracy"):
        metrics.accuracy_margin([0.4, 0.5], [100])
    with pytest.raises(ValueError, match="one positive image count"):
        metrics.accuracy_margin(0.4, 0)
