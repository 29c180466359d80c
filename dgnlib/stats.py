"""Statistics shared by the figures: rank correlation, power-law fits, log-log slopes, interior minima."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (average ranks for ties; NaN if one is constant)."""
    ra = pd.Series(np.asarray(a, dtype=float)).rank().to_numpy()
    rb = pd.Series(np.asarray(b, dtype=float)).rank().to_numpy()
    if len(ra) != len(rb) or len(ra) < 2:
        raise ValueError(f"need two sequences of the same length >= 2, got {len(ra)} and {len(rb)}")
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def interior_minimum(depths: Sequence[int], values: Sequence[float]) -> tuple[int, bool]:
    """(depth of the smallest value, whether it is interior: larger values at both the first and the last depth)."""
    v = np.asarray(values, dtype=float)
    if len(v) != len(depths) or len(v) == 0:
        raise ValueError(f"depths and values must be non-empty and equally long, got {len(depths)} and {len(v)}")
    i = int(np.argmin(v))
    return int(depths[i]), bool(v[0] > v[i] and v[-1] > v[i])


def fit_power_law(df: pd.DataFrame, y: str, xs: Sequence[str], linear: Sequence[str] = ()) -> dict:
    """Least-squares fit of log y = log C + Σ a_k log x_k + Σ b_j z_j; returns exponents a, rates b, C, r2, points.

    Columns in `xs` enter as power laws (y ∝ x^a, key "exponent_<x>"), columns in `linear` as exponentials
    (y ∝ e^{b z}, key "rate_<z>"); also "prefactor" C, "r2" (of log y) and the number of "points".
    """
    xs, linear = list(xs), list(linear)
    cols = [y, *xs, *linear]
    data = df[cols].astype(float)
    if data.isna().any().any() or not np.isfinite(data.to_numpy()).all() or (data[[y, *xs]] <= 0).any().any():
        raise ValueError(f"power-law fit needs finite values, positive in columns {[y, *xs]}")
    if len(data) < len(xs) + len(linear) + 1:
        raise ValueError(
            f"need at least {len(xs) + len(linear) + 1} points for {len(xs) + len(linear)} terms, got {len(data)}"
        )
    design = np.column_stack(
        [np.ones(len(data)), *(np.log(data[x].to_numpy()) for x in xs), *(data[z].to_numpy() for z in linear)]
    )
    target = np.log(data[y].to_numpy())
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    resid = target - design @ coef
    total = ((target - target.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else 1.0
    out = {f"exponent_{x}": float(a) for x, a in zip(xs, coef[1 : 1 + len(xs)])}
    out.update({f"rate_{z}": float(b) for z, b in zip(linear, coef[1 + len(xs) :])})
    return {**out, "prefactor": float(math.exp(coef[0])), "r2": float(r2), "points": len(data)}


def loglog_slope(n: Sequence[float], err: Sequence[float]) -> float:
    """Least-squares slope b of log(err) = a + b·log(n) (−1/2 for a Monte Carlo error)."""
    n, err = np.asarray(n, dtype=float), np.asarray(err, dtype=float)
    if n.shape != err.shape or n.size < 2 or (n <= 0).any() or (err <= 0).any():
        raise ValueError("need at least two positive (n, err) pairs of equal length")
    return float(np.polyfit(np.log(n), np.log(err), 1)[0])


# -- intervals: Student t, bootstrap, Spearman ---------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0 and 0 <= x <= 1):
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return float(x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with df degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection on `t_cdf`, to ~1e-12)."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p!r}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def _finite_1d(values: Sequence[float], name: str, minimum: int) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} needs finite values, got {v.tolist()}")
    return v


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): two-sided Student t interval for the mean of ≥ 2 finite values (paired: differences)."""
    v = _finite_1d(values, "t_interval", 2)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    mean, half = float(v.mean()), t_quantile((1 + level) / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0, stat=np.mean
) -> tuple[float, float, float]:
    """(stat, lower, upper): percentile bootstrap interval of stat(values), resampling with a seeded generator.

    It under-covers for a handful of values (its width ignores that the spread itself is estimated): with fewer
    than ~10 values prefer `t_interval`.
    """
    v = _finite_1d(values, "bootstrap_interval", 2)
    rng = np.random.default_rng(seed)
    boots = np.array([stat(v[rng.integers(0, v.size, v.size)]) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(stat(v)), float(lo), float(hi)


def spearman_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(ρ, lower, upper): Spearman's ρ with a percentile bootstrap interval over resampled pairs (NaN draws dropped)."""
    a, b = _finite_1d(a, "spearman_interval", 3), _finite_1d(b, "spearman_interval", 3)
    if a.size != b.size:
        raise ValueError(f"need equally long sequences, got {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, a.size, a.size)
        boots.append(spearman(a[i], b[i]))
    boots = np.array(boots)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots.size else (float("nan"),) * 2
    return spearman(a, b), float(lo), float(hi)


def mean_spearman_null(
    levels: np.ndarray, values: np.ndarray, draws: int = 9999, seed: int = 0
) -> tuple[float, np.ndarray]:
    """(observed, null): the mean over rows of Spearman ρ(levels[i], values[i]), and `draws` draws of the same
    statistic with each row's values independently permuted (the permutation null of "no trend in any row").

    A row whose levels or values are all equal counts as ρ = 0. Both are computed the same way and rounded to 12
    decimals, so that the observed statistic ties exactly with the null draws that reproduce its ranks.
    """
    lv, v = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    if lv.shape != v.shape or v.ndim != 2:
        raise ValueError(f"levels and values must be two arrays of the same shape rows × levels, got {lv.shape} "
                         f"and {v.shape}")
    rng = np.random.default_rng(seed)
    observed, null = 0.0, np.zeros(int(draws))
    for a, b in zip(lv, v):
        ra = pd.Series(a).rank().to_numpy() - (len(a) + 1) / 2  # centred average ranks
        rb = pd.Series(b).rank().to_numpy() - (len(b) + 1) / 2
        scale = math.sqrt(float(ra @ ra) * float(rb @ rb))
        if scale == 0:
            continue  # a constant row: ρ = 0 in the data and in every permutation
        observed += round(float(ra @ rb) / scale, 12)
        null += np.round(rng.permuted(np.tile(rb, (null.size, 1)), axis=1) @ ra / scale, 12)
    return observed / len(v), null / len(v)
