"""The paired bootstrap on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from clustercam.stats import paired_bootstrap


def test_a_constant_difference_has_a_zero_width_interval() -> None:
    a = np.linspace(0, 10, 40)
    interval = paired_bootstrap(a + 1.5, a)
    assert interval.estimate == pytest.approx(1.5)
    assert interval.low == pytest.approx(1.5) and interval.high == pytest.approx(1.5)
    assert interval.n == 40 and interval.excludes_zero


def test_the_width_matches_the_normal_theory() -> None:
    """Mean of n normal differences with sd s: a 95 % interval is ±1.96·s/√n wide."""
    rng = np.random.default_rng(1)
    n, s, delta = 400, 3.0, 0.7
    b = rng.normal(50, 20, n)  # large shared variance: pairing removes it
    a = b + delta + rng.normal(0, s, n)
    interval = paired_bootstrap(a, b)
    half_width = (interval.high - interval.low) / 2
    expected = 1.96 * np.std(a - b, ddof=1) / np.sqrt(n)
    assert half_width == pytest.approx(expected, rel=0.08)
    assert interval.low < interval.estimate < interval.high
    assert interval.estimate == pytest.approx(np.mean(a) - np.mean(b))
    # An unpaired interval would be ~20/3 times wider: pairing is what makes it narrow.
    assert half_width < 0.3 * 1.96 * np.sqrt(np.var(a) / n + np.var(b) / n)


def test_coverage_is_about_95_percent() -> None:
    """Over many data sets with a known mean difference the interval covers it ~95 % of the time."""
    rng = np.random.default_rng(7)
    delta, trials, covered = 2.0, 300, 0
    for trial in range(trials):
        b = rng.exponential(5.0, 80)
        a = b + delta + rng.standard_t(5, 80)  # skewed and heavy-tailed, true mean difference 2
        interval = paired_bootstrap(a, b, resamples=2000, seed=trial)
        covered += interval.low <= delta <= interval.high
    assert 0.91 <= covered / trials <= 0.98


def test_significance_follows_the_sign() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1, 200)
    better = paired_bootstrap(b - 0.5 + rng.normal(0, 0.2, 200), b)
    assert better.high < 0 and better.excludes_zero
    same = paired_bootstrap(b + rng.normal(0, 0.2, 200), b)
    assert same.low < 0 < same.high and not same.excludes_zero
    assert better.format(2).startswith("-0.")


def test_same_seed_same_interval_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert paired_bootstrap(a, b, seed=4) == paired_bootstrap(a, b, seed=4)
    with pytest.raises(ValueError, match="one value per item"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="No paired values"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(a, b, confidence=1.0)
