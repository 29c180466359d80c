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
