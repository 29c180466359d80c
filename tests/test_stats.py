"""Statistics: Student t quantiles against printed tables, intervals against hand-computed values, Spearman."""

import math

import numpy as np
import pytest

from dgnlib import stats


@pytest.mark.parametrize(
    "p, df, expected",
    # two-sided 95 % and 99 % critical values and one one-sided 95 % value, from any printed t table
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.975, 29, 2.045),
     (0.995, 4, 4.604), (0.95, 10, 1.812), (0.025, 4, -2.776)],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=1e-3)


def test_t_cdf_closed_forms():
    assert stats.t_cdf(0.0, 3) == pytest.approx(0.5)
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/π
    assert stats.t_cdf(-2.0, 2) == pytest.approx(0.5 * (1 - 2 / math.sqrt(6)))  # df=2: ½(1 + t/√(t²+2))
    assert stats.betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248)  # 1 − Σ_{j<2} C(4,j) .4^j .6^(4−j)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)


def test_t_interval_by_hand():
    # mean 2, sd 1 (values 1, 2, 3), n = 3: half-width t_{.975,2}·1/√3 = 4.3027/1.7321 = 2.4841
    mean, lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and lo == pytest.approx(2 - 2.4841, abs=1e-4) and hi == pytest.approx(2 + 2.4841, abs=1e-4)
    with pytest.raises(ValueError, match="finite"):
        stats.t_interval([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        stats.t_interval([1.0])


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(0).normal(1.0, 1.0, 200)
    a, b = stats.bootstrap_interval(values, seed=3), stats.bootstrap_interval(values, seed=3)
    assert a == b and a[1] < values.mean() < a[2]
    t_mean, t_lo, t_hi = stats.t_interval(values)
    assert a[1] == pytest.approx(t_lo, abs=0.03) and a[2] == pytest.approx(t_hi, abs=0.03)  # n = 200: they agree


def test_spearman_interval():
    x = np.arange(30.0)
    rho, lo, hi = stats.spearman_interval(x, x**3 + np.random.default_rng(1).normal(0, 1, 30))
    assert rho == pytest.approx(1.0, abs=1e-3) and hi <= 1.0 and lo > 0.9
    rho, lo, hi = stats.spearman_interval(x, np.random.default_rng(2).normal(size=30))
    assert lo < rho < hi and lo < 0 < hi
