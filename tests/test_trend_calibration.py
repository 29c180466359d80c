"""The trend part (`verdict.trend`) is calibrated: a null trend is held at most at its nominal rate, and a
zero-width interval cannot decide it."""

import math

import numpy as np
import pytest

from dgnlib import verdict


def test_a_null_trend_is_held_at_most_at_the_nominal_rate():
    # 2000 null draws at 3 seeds × 3 levels (the setting where the former Student t interval held 6.9 % of nulls);
    # the permutation interval is exact, so the rate must stay below 2.5 % plus three Monte Carlo standard errors
    rng = np.random.default_rng(20260611)
    n, nominal = 2000, 0.025
    for side in ("greater", "less"):
        held = sum(verdict.trend(rng.normal(size=(3, 3)), [1, 2, 3], side=side, draws=999).verdict == "held"
                   for _ in range(n))
        assert held / n <= nominal + 3 * math.sqrt(nominal * (1 - nominal) / n), (side, held / n)


def test_five_seeds_five_levels_stay_calibrated_and_keep_power():
    rng = np.random.default_rng(7)
    held = [verdict.trend(rng.normal(size=(5, 5)), [1, 2, 4, 8, 16], draws=999).verdict == "held" for _ in range(600)]
    assert np.mean(held) <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / 600)
    # a real trend (every seed monotone up to noise) is still held
    base = np.arange(5.0)
    strong = verdict.trend(base + rng.normal(scale=0.3, size=(5, 5)), [1, 2, 4, 8, 16])
    assert strong.verdict == "held" and strong.interval[0] > 0


def test_three_perfect_seeds_get_an_interval_of_positive_width():
    part = verdict.trend([[1, 2, 3]] * 3, [1, 2, 3])
    lo, hi = part.interval
    assert hi - lo > 0.5 and part.method == "permutation"
    # held only because the permutation test rejects: p = P(three independent perfect orders) ≈ 1/216 < 2.5 %
    assert part.verdict == "held" and part.numbers["p_value"] < 0.025
    # two perfect seeds and a near-perfect third are not enough at 3 levels (p ≈ 3.2 % > 2.5 %)
    assert verdict.trend([[1, 2, 3], [1, 2, 3], [1, 3, 2]], [1, 2, 3]).verdict == "inconclusive"
    # and an opposite trend is not held on the claimed side
    assert verdict.trend([[3, 2, 1]] * 3, [1, 2, 3]).verdict == "not held"


def test_constant_rows_count_as_no_trend_and_draws_are_checked():
    part = verdict.trend([[1, 1, 1]] * 4, [1, 2, 3])
    assert part.estimate == 0 and part.verdict == "inconclusive"
    with pytest.raises(ValueError, match="draws must be an integer of at least 39"):
        verdict.trend([[1, 2, 3]] * 3, [1, 2, 3], draws=10)
