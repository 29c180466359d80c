"""Verdicts that can fail: claim parts decided by an effect larger than its uncertainty, checks kept apart.

A figure's claim is split into `Part`s, each decided statistically over seeds (`paired`, `trend`, `equivalent`) with
one of four words, and combined by `combine`. Identity and sanity checks (`Check`) are not part of the claim: they
test that the computation itself is right, and a failed one makes `conclude` raise `IdentityError` after the record
is written, so that the notebook, and the test run, fail.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dgnlib.stats import mean_spearman_null, spearman, t_interval

VERDICTS = ("held", "not held", "inconclusive", "invalid")
CHECK_KINDS = ("identity", "sanity")
SIDES = ("greater", "less")


class IdentityError(AssertionError):
    """An identity or sanity check of a figure failed: the computation, not the claim, is wrong."""


@dataclass(frozen=True)
class Part:
    """One statistically decided part of a claim: its verdict, the statistic, its interval and how many pairs."""

    name: str
    verdict: str
    statistic: str
    estimate: float
    interval: tuple[float, float] | None
    n: int
    level: float
    method: str
    detail: str = ""
    numbers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}: expected one of {', '.join(VERDICTS)}")

    def to_dict(self) -> dict:
        """The part as JSON-ready values (NaN and inf become None)."""
        return _plain(
            {
                "name": self.name,
                "verdict": self.verdict,
                "statistic": self.statistic,
                "estimate": self.estimate,
                "interval": None if self.interval is None else list(self.interval),
                "level": self.level,
                "n": self.n,
                "method": self.method,
                "detail": self.detail,
                **self.numbers,
            }
        )


class Check:
    """An identity (exact up to rounding) or sanity (the run is in its assumed regime) check, apart from the claim."""

    def __init__(self, name: str, passed: bool, detail: str = "", kind: str = "identity", **numbers: Any) -> None:
        if kind not in CHECK_KINDS:
            raise ValueError(f"unknown check kind {kind!r}: expected one of {', '.join(CHECK_KINDS)}")
        self.name, self.passed, self.detail, self.kind, self.numbers = name, bool(passed), detail, kind, numbers

    def to_dict(self) -> dict:
        """The check as JSON-ready values."""
        return _plain({"name": self.name, "kind": self.kind, "passed": self.passed, "detail": self.detail,
                       **self.numbers})

    def __repr__(self) -> str:
        return f"Check({self.name!r}, passed={self.passed}, kind={self.kind!r})"


def combine(parts: Sequence[Part]) -> str:
    """A claim is the conjunction of its parts. Any part invalid → invalid; otherwise any part not held → not held;
    otherwise any part inconclusive → inconclusive; otherwise held. A part is held only when its 95 % interval,
    computed over independent seeds (paired by seed where two settings are compared), lies wholly on the claimed
    side; not held when it lies wholly on the other side; inconclusive otherwise, and always with fewer than three
    seeds; invalid when any of its inputs is non-finite or comes from a run flagged invalid.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("combine needs at least one claim part")
    verdicts = {p.verdict for p in parts}
    for word in ("invalid", "not held", "inconclusive"):
        if word in verdicts:
            return word
    return "held"


RULE = inspect.cleandoc(combine.__doc__)  # the rule as the front page quotes it


# -- parts decided over seeds ----------------------------------------------------------------------------------


def _pairs(a: Any, b: Any, seeds: Sequence | None) -> tuple[np.ndarray, np.ndarray, list]:
    """Align a and b by seed: mappings by their keys (which must agree), sequences by position."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError("pass a and b both as mappings seed → value, or both as sequences")
        if set(a) != set(b):
            raise ValueError(f"a and b must have the same seeds; only in a: {sorted(set(a) - set(b))}, "
                             f"only in b: {sorted(set(b) - set(a))}")
        keys = list(a) if seeds is None else list(seeds)
        return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float), keys
    av, bv = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    keys = list(range(av.size)) if seeds is None else list(seeds)
    if not av.size == bv.size == len(keys):
        raise ValueError(f"a, b and seeds must be equally long, got {av.size}, {bv.size} and {len(keys)}")
    return av, bv, keys


def _flags(invalid: bool | Sequence[bool], n: int) -> np.ndarray:
    flags = np.asarray(invalid, dtype=bool).reshape(-1)
    if flags.size == 1:
        return np.repeat(flags, n)
    if flags.size != n:
        raise ValueError(f"invalid must be one flag or one per seed ({n}), got {flags.size}")
    return flags


def _check_common(side: str, min_seeds: int, level: float) -> None:
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}: expected one of {', '.join(SIDES)}")
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 2:
        raise ValueError(f"min_seeds must be an integer >= 2, got {min_seeds!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def _interval_verdict(lo: float, hi: float, side: str) -> str:
    """held if the interval excludes 0 on the claimed side, not held if on the other side, inconclusive otherwise."""
    above, below = lo > 0, hi < 0
    if side == "less":
        above, below = below, above
    return "held" if above else ("not held" if below else "inconclusive")


def _seed_part(
    name: str,
    values: np.ndarray,
    keys: list,
    bad: np.ndarray,
    *,
    statistic: str,
    decide: Callable[[float, float], str],
    min_seeds: int,
    level: float,
    method: str,
    n_boot: int,
    seed: int,
    detail: str,
    numbers: dict,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    null: tuple[float, float, float, float, float] | None = None,
) -> Part:
    """The common path of every part: invalid runs, non-finite values, too few seeds, then the interval's verdict.

    `bounds`: the range the statistic cannot leave (Spearman ρ: [−1, 1]); the interval is clipped to it.
    `null` (method "permutation"): the observed statistic, the upper and lower critical values of its null
    distribution, and the one-sided p-values (greater, less).
    """
    n = int(values.size)
    per_seed = {str(k): float(v) for k, v in zip(keys, values)}
    numbers = {"per_seed": per_seed, **numbers}
    nonfinite = [str(k) for k, v in zip(keys, values) if not math.isfinite(v)]
    if bad.any() or nonfinite:
        why = []
        if bad.any():
            why.append(f"runs flagged invalid for seeds {[str(k) for k, f in zip(keys, bad) if f]}")
        if nonfinite:
            why.append(f"non-finite values for seeds {nonfinite}")
        return Part(name, "invalid", statistic, float("nan"), None, n, level, method, "; ".join(why), numbers)
    if n < 2:
        est = float(values.mean()) if n else float("nan")
        return Part(name, "inconclusive", statistic, est, None, n, level, method,
                    f"{n} seed(s): at least {min_seeds} are needed to decide", numbers)
    if method == "t":
        est, lo, hi = t_interval(values, level)
    elif method == "permutation":
        est, upper, lower, p_greater, p_less = null
        lo, hi = est - upper, est - lower  # lo > 0 exactly when est exceeds the null's upper critical value
        numbers = {**numbers, "null_draws": n_boot, "p_value": p_greater if numbers.get("side") == "greater"
                   else p_less}
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        boots = values[rng.integers(0, n, (n_boot, n))].mean(axis=1)
        est, (lo, hi) = float(values.mean()), np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    else:
        raise ValueError(f"unknown method {method!r}: expected 't', 'bootstrap' or 'permutation'")
    lo, hi = max(float(lo), bounds[0]), min(float(hi), bounds[1])
    verdict = decide(lo, hi)
    detail = f"{detail}; estimate {est:+.3g}, {100 * level:.4g} % interval [{lo:+.3g}, {hi:+.3g}] over {n} seeds"
    if n < min_seeds:
        verdict, detail = "inconclusive", f"{n} seeds: at least {min_seeds} are needed to decide; {detail}"
    return Part(name, verdict, statistic, est, (float(lo), float(hi)), n, level, method, detail, numbers)


def paired(
    a: Sequence[float] | Mapping[Any, float],
    b: Sequence[float] | Mapping[Any, float],
    seeds: Sequence | None = None,
    *,
    name: str = "a − b",
    side: str = "greater",
    min_seeds: int = 3,
    level: float = 0.95,
    method: str = "t",
    invalid: bool | Sequence[bool] = False,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Part:
    """Claim "a > b" (side="greater") or "a < b" (side="less"), paired by seed: an interval of the mean of a − b.

    method "t": Student t interval of the paired differences; "bootstrap": percentile bootstrap of their mean
    (seeded by `seed`; it under-covers with few seeds). held if the interval excludes 0 on the claimed side, not
    held if it excludes 0 on the other side, inconclusive otherwise and always with fewer than `min_seeds` pairs;
    invalid if a value is non-finite or `invalid` flags a run (one flag, or one per seed).
    """
    _check_common(side, min_seeds, level)
    av, bv, keys = _pairs(a, b, seeds)
    diff = av - bv
    return _seed_part(
        name, diff, keys, _flags(invalid, diff.size), statistic="mean paired difference a − b",
        decide=lambda lo, hi: _interval_verdict(lo, hi, side), min_seeds=min_seeds, level=level, method=method,
        n_boot=n_boot, seed=seed, detail=f"claimed side: a − b {'>' if side == 'greater' else '<'} 0",
        numbers={"side": side},
    )


def trend(
    values: Sequence[Sequence[float]],
    levels: Sequence[float] | Sequence[Sequence[float]],
    seeds: Sequence | None = None,
    *,
    name: str = "trend",
    side: str = "greater",
    min_seeds: int = 3,
    level: float = 0.95,
    invalid: bool | Sequence[bool] = False,
    draws: int = 9999,
    seed: int = 0,
) -> Part:
    """Claim "values rise (side="greater") or fall ("less") with levels": per seed, Spearman ρ of values vs levels.

    values: one row per seed (seeds × levels); levels: one ordered factor shared by every seed, or one row per seed
    (e.g. each seed's condition numbers). The statistic is the mean over seeds of the per-seed ρ (a seed whose
    values or levels are all equal counts as ρ = 0). Its interval is a permutation interval: the statistic minus the
    (1 ± level)/2 quantiles of its null distribution (each seed's values permuted independently, `draws` Monte
    Carlo draws seeded by `seed`), so that it excludes 0 on the claimed side exactly when the one-sided
    permutation test rejects at (1 − level)/2. With no trend at all, the part is held at most (1 − level)/2 of the
    time, whatever the number of seeds and levels, and a zero-width interval cannot arise (a Student t interval
    over three seeds with ρ = 1 had width 0 and was held far more often than its nominal rate).
    """
    _check_common(side, min_seeds, level)
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] < 3:
        raise ValueError(f"values must be seeds × levels with at least 3 levels, got shape {v.shape}")
    lv = np.asarray(levels, dtype=float)
    lv = np.broadcast_to(lv, v.shape) if lv.ndim == 1 else lv
    if lv.shape != v.shape:
        raise ValueError(f"levels must have {v.shape[1]} entries or the shape of values {v.shape}, got {lv.shape}")
    keys = list(range(v.shape[0])) if seeds is None else list(seeds)
    if len(keys) != v.shape[0]:
        raise ValueError(f"got {len(keys)} seeds for {v.shape[0]} rows of values")
    critical = math.floor((1 - level) / 2 * (draws + 1))  # the rank of the null draw that bounds the interval
    if isinstance(draws, bool) or not isinstance(draws, int) or critical < 1:
        raise ValueError(f"draws must be an integer of at least {math.ceil(2 / (1 - level)) - 1} at level {level}, "
                         f"got {draws!r}")
    finite = np.isfinite(v).all(axis=1) & np.isfinite(lv).all(axis=1)
    rho = np.array([spearman(lv[i], v[i]) if finite[i] else float("nan") for i in range(v.shape[0])])
    rho = np.where(finite & np.isnan(rho), 0.0, rho)  # a constant row: no trend
    null = None
    if finite.all() and v.shape[0] >= 2:
        observed, null = mean_spearman_null(lv, v, draws, seed)
        null = np.sort(null)
        null = (observed, float(null[-critical]), float(null[critical - 1]),
                (1 + int(np.sum(null >= observed))) / (draws + 1), (1 + int(np.sum(null <= observed))) / (draws + 1))
    return _seed_part(
        name, rho, keys, _flags(invalid, rho.size), statistic="mean over seeds of Spearman ρ(levels, values)",
        decide=lambda lo, hi: _interval_verdict(lo, hi, side), min_seeds=min_seeds, level=level,
        method="permutation", n_boot=draws, seed=seed, null=null,
        detail=f"claimed side: ρ {'>' if side == 'greater' else '<'} 0", numbers={"side": side}, bounds=(-1.0, 1.0),
    )


def equivalent(
    a: Sequence[float] | Mapping[Any, float],
    b: Sequence[float] | Mapping[Any, float],
    seeds: Sequence | None = None,
    *,
    tolerance: float,
    name: str = "a ≈ b",
    side: str = "both",
    min_seeds: int = 3,
    level: float = 0.95,
    invalid: bool | Sequence[bool] = False,
) -> Part:
    """Claim "a is within `tolerance` of b", paired by seed (two one-sided tests, TOST, each at `level`).

    The interval is the two-sided (2·level − 1) t interval of the mean of a − b. side "both": held if it lies inside
    (−tolerance, tolerance), not held if it lies wholly outside; "greater" (a is not worse than b by more than the
    tolerance, a − b > −tolerance): held if its lower end exceeds −tolerance, not held if its upper end is below;
    "less" (a − b < tolerance) mirrors it. Inconclusive otherwise and with fewer than `min_seeds` pairs.
    """
    if side not in ("both", *SIDES):
        raise ValueError(f"unknown side {side!r}: expected both, greater or less")
    _check_common("greater", min_seeds, level)
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    av, bv, keys = _pairs(a, b, seeds)
    diff, tol = av - bv, float(tolerance)

    def decide(lo: float, hi: float) -> str:
        if side == "greater":
            return "held" if lo > -tol else ("not held" if hi < -tol else "inconclusive")
        if side == "less":
            return "held" if hi < tol else ("not held" if lo > tol else "inconclusive")
        return "held" if -tol < lo and hi < tol else ("not held" if lo > tol or hi < -tol else "inconclusive")

    return _seed_part(
        name, diff, keys, _flags(invalid, diff.size), statistic="mean paired difference a − b",
        decide=decide, min_seeds=min_seeds, level=round(2 * level - 1, 12), method="t", n_boot=0, seed=0,
        detail=f"tolerance {tol:g} ({side})", numbers={"tolerance": tol, "side": side},
    )


# -- non-finite values anywhere --------------------------------------------------------------------------------


def find_nonfinite(x: Any, path: str = "") -> list[str]:
    """Paths ("numbers.steps[3]", "history.train_loss") of NaN/inf values in nested mappings, sequences, arrays,
    tensors and pandas objects (numeric entries only; None and strings are skipped)."""
    if x is None or isinstance(x, (str, bytes, bool)):
        return []
    if isinstance(x, (int, float, np.number)):
        return [] if math.isfinite(float(x)) else [path or "value"]
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    if isinstance(x, pd.DataFrame):
        return [p for c in x.columns for p in find_nonfinite(x[c], f"{path}.{c}" if path else str(c))]
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == object):
            return []
        if x.dtype == object:
            return [p for i, v in enumerate(x.reshape(-1)) for p in find_nonfinite(v, f"{path}[{i}]")]
        bad = np.argwhere(~np.isfinite(x.astype(float)))
        return [f"{path}[{','.join(map(str, i))}]" for i in bad.tolist()]
    if isinstance(x, Mapping):
        return [p for k, v in x.items() for p in find_nonfinite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(x, Sequence):
        return [p for i, v in enumerate(x) for p in find_nonfinite(v, f"{path}[{i}]")]
    return []


def is_finite_tree(x: Any) -> bool:
    """True when no NaN or inf hides anywhere in x (see `find_nonfinite`)."""
    return not find_nonfinite(x)


def _plain(value: Any) -> Any:
    """Numpy / torch scalars and arrays, tuples and mappings as JSON values (NaN and inf become None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (Part, Check)):
        return value.to_dict()
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return str(value)
