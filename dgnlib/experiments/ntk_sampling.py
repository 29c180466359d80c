"""Monte Carlo over value-weight draws with the gates held fixed (figure 02: E[K_0] = d·σ^{2(d−1)}·Σ⊙Λ).

`ntk_draws` re-draws the value weights of a real DGN and takes its torch.func NTK each time; `error_vs_draws` measures,
with the fast closed form, how the error of the Monte Carlo mean of K_0 shrinks with the number of draws N, beside the
error the per-entry variance predicts, sqrt(Σ Var[K_0]/N)/‖E[K_0]‖_F (the expected error of a mean of N i.i.d. draws).
`within_error_part` and `slope_part` decide figure 02's claim from those errors over independent repeats.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from dgnlib.core.kernels import ntk
from dgnlib.core.models import DGN, GatedNet, init_layer
from dgnlib.core.theory import bernoulli_gates, expected_ntk, ntk_moments
from dgnlib.experiments.depth import conjunction
from dgnlib.seeding import derive_seed
from dgnlib.stats import loglog_slope, t_interval
from dgnlib.verdict import Part, equivalent


def _check_draws(draws: int) -> None:
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")


def fixed_gates(x: torch.Tensor, depth: int, width: int, source: str, mu: float, seed: int) -> list[torch.Tensor]:
    """Gates held fixed for the inputs x (n, d_in): of a frozen random bias-free feature network (source "network"),
    or i.i.d. Bernoulli(mu) (source "bernoulli"); one (n, width) tensor per gated layer."""
    if source == "bernoulli":
        return bernoulli_gates(x.shape[0], width, depth, mu, seed=seed)
    if source != "network":
        raise ValueError(f"source must be 'network' or 'bernoulli', got {source!r}")
    return DGN(x.shape[1], width, depth, variant="frnpf-ii", bias=False, seed=seed).double().gates(x)


def exact_mean(x: torch.Tensor, gates: Sequence[torch.Tensor], sigma: float) -> torch.Tensor:
    """E[K_0] in closed form (`theory.expected_ntk`); a ValueError when every path is off for every input (a dead
    narrow random feature network: nothing to estimate)."""
    exact = expected_ntk(x, gates, sigma)
    if not exact.abs().max() > 0:
        depth, width = len(gates) + 1, gates[0].shape[1]
        raise ValueError(f"at d={depth}, w={width} every path is switched off for every input (a dead narrow random "
                         "feature network): use larger widths or gate_source='bernoulli'")
    return exact


def ntk_draws(
    model: GatedNet,
    x: torch.Tensor,
    draws: int,
    sigma: float | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """torch.func NTK w.r.t. the value weights for `draws` i.i.d. ±σ re-draws of them, gates kept: (draws, n, n).

    The feature network (hence the gates) is left as it is; biases, if any, are set to zero; `model` is not modified.
    sigma defaults to the model's own. `relu` is refused: its gates are functions of the value weights.
    """
    _check_draws(draws)
    if model.variant == "relu":
        raise ValueError("relu gates depend on the value weights: redrawing them would redraw the gates too")
    sigma = model.sigma if sigma is None else sigma
    if sigma is None or not sigma > 0:
        raise ValueError(f"sigma (the ±σ of the value weights) must be positive, got {sigma!r}")
    work = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(int(seed))
    out = torch.empty(draws, x.shape[0], x.shape[0], dtype=torch.float64)
    for k in range(draws):
        for layer in work.value:
            init_layer(layer, "bernoulli", sigma, generator)
        out[k] = ntk(work, x, params="value", chunk_size=chunk_size)
    return out


def relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    """‖estimate − exact‖_F / ‖exact‖_F."""
    return float(torch.linalg.norm(estimate - exact) / torch.linalg.norm(exact))


def predicted_error(var: torch.Tensor, exact: torch.Tensor, draws: int) -> float:
    """Expected relative error of a mean of `draws` i.i.d. samples with per-entry variance var: sqrt(ΣVar/N)/‖exact‖."""
    _check_draws(draws)
    return float(torch.sqrt(var.sum() / draws) / torch.linalg.norm(exact))


def running_error(samples: torch.Tensor, exact: torch.Tensor, draws: Sequence[int]) -> np.ndarray:
    """Relative error of the mean of the first N samples (samples: (N_max, n, n)) for each N in `draws`."""
    for n in draws:
        _check_draws(n)
        if n > samples.shape[0]:
            raise ValueError(f"asked for the mean of {n} samples but only {samples.shape[0]} were given")
    return np.array([relative_error(samples[:n].mean(0), exact) for n in draws])


def error_vs_draws(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    sigma: float,
    draws: Sequence[int],
    repeats: int = 1,
    seed: int = 0,
    batch: int = 1024,
) -> pd.DataFrame:
    """Closed-form Monte Carlo error of K̄_N against E[K_0], one row per (draws, repeat), independent runs each.

    Columns: draws, repeat, rel_error = ‖K̄_N − E[K_0]‖_F/‖E[K_0]‖_F, predicted = sqrt(Σ Var̂/N)/‖E[K_0]‖_F with Var̂
    that run's own per-entry variance estimate.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    for n in draws:
        _check_draws(n)
        if n < 2:
            raise ValueError(f"every number of draws must be >= 2 to estimate a variance, got {n}")
    exact = expected_ntk(x, gates, sigma)
    rows = []
    for n in draws:
        for r in range(repeats):
            run_seed = derive_seed(int(seed), "error_vs_draws", int(n), r)  # one independent stream per run
            mean, var = ntk_moments(x, gates, sigma, int(n), seed=run_seed, batch=batch)
            rows.append(
                {
                    "draws": int(n),
                    "repeat": r,
                    "rel_error": relative_error(mean, exact),
                    "predicted": predicted_error(var, exact, int(n)),
                }
            )
    return pd.DataFrame(rows)


# -- figure 02's claim parts, over independent repeats -------------------------------------------------------------

_CONFIG = ["depth", "width"]


def _configs(curves: pd.DataFrame) -> list[tuple]:
    missing = {"draws", "repeat", "rel_error", "predicted", *_CONFIG} - set(curves.columns)
    if missing:
        raise ValueError(f"curves lack the columns {sorted(missing)} (see error_vs_draws)")
    return list(curves.groupby(_CONFIG, sort=False).groups)


def within_error_part(
    curves: pd.DataFrame, *, factor: float, level: float = 0.95, min_repeats: int = 3, min_draws: int = 1000
) -> Part:
    """"At the largest N, K̄_N is within `factor` × its own predicted Monte Carlo error of the formula", per (d, w).

    curves: rows of `error_vs_draws` with depth and width columns (independent runs per (N, repeat)). Per
    configuration, q = rel_error / predicted of each repeat at the largest N; the claim q < factor is tested as
    `verdict.equivalent(q, 0, tolerance=factor, side="less")` (a one-sided t bound over repeats) at the level
    1 − (1 − level)/k for k configurations (Bonferroni), and must hold for all. A wrong formula leaves an error
    that stops shrinking while the prediction keeps falling like 1/√N, so q grows like √N. Inconclusive with fewer
    than `min_repeats` repeats, or when the largest N is below `min_draws` (too few draws to see a small error).
    """
    configs = _configs(curves)
    n_max = int(curves["draws"].max())
    adj = 1 - (1 - level) / len(configs)
    results = {}
    for cfg in configs:
        g = curves[(curves["depth"] == cfg[0]) & (curves["width"] == cfg[1]) & (curves["draws"] == n_max)]
        g = g.sort_values("repeat")
        q = (g["rel_error"] / g["predicted"]).to_numpy(dtype=float)
        results[cfg] = equivalent(q, np.zeros_like(q), list(g["repeat"]), tolerance=factor, side="less",
                                  name=f"d={cfg[0]}, w={cfg[1]}", min_seeds=min_repeats, level=adj)
    part = conjunction(
        results, name=f"error at N = {n_max} within {factor:g} × the predicted Monte Carlo error",
        statistic="mean over repeats of (relative error / predicted error) at the largest N",
        level=adj, detail=f"{len(configs)} configurations, each at one-sided level {adj:.4f}",
        numbers={"factor": factor, "draws_max": n_max},
        worst=lambda p: float("inf") if p.interval is None else p.interval[1],
    )
    if n_max < min_draws and part.verdict != "invalid":
        part = Part(part.name, "inconclusive", part.statistic, part.estimate, part.interval, part.n, part.level,
                    part.method, f"largest N = {n_max} < {min_draws}: too few draws to see a small error of the "
                    f"formula; {part.detail}", part.numbers)
    return part


def slope_part(
    curves: pd.DataFrame,
    *,
    slope_range: Sequence[float] = (-0.7, -0.3),
    level: float = 0.95,
    min_repeats: int = 3,
    min_points: int = 3,
) -> Part:
    """"The error falls like 1/√N": per (d, w), the log-log slope of each repeat's error curve, t interval over repeats.

    Each repeat's curve holds independent runs at every N. Per configuration (Bonferroni over k of them): held
    when the interval contains −1/2 and lies inside `slope_range` (precise enough to tell 1/√N from other rates);
    not held when it excludes −1/2 and lies wholly outside `slope_range` (a wrong formula flattens the curve
    towards 0); inconclusive otherwise, with fewer than `min_repeats` repeats or `min_points` values of N; invalid
    when an error is non-finite or not positive.
    """
    lo_r, hi_r = float(slope_range[0]), float(slope_range[1])
    if not lo_r < -0.5 < hi_r:
        raise ValueError(f"slope_range must contain -1/2, got {list(slope_range)}")
    configs = _configs(curves)
    adj = 1 - (1 - level) / len(configs)
    results = {}
    for cfg in configs:
        g = curves[(curves["depth"] == cfg[0]) & (curves["width"] == cfg[1])]
        n_points = g["draws"].nunique()
        slopes, bad = [], False
        for _, run in g.groupby("repeat"):
            err = run["rel_error"].to_numpy(dtype=float)
            if not (np.isfinite(err).all() and (err > 0).all()):
                bad = True
                continue
            if n_points >= 2:
                slopes.append(loglog_slope(run["draws"], err))
        slopes = np.array(slopes)
        name = f"d={cfg[0]}, w={cfg[1]}"
        if bad:
            results[cfg] = Part(name, "invalid", "mean log-log slope", float("nan"), None, len(slopes), adj, "t",
                                "a non-finite or zero error")
            continue
        if slopes.size < 2 or slopes.size < min_repeats or n_points < min_points:
            est = float(slopes.mean()) if slopes.size else float("nan")
            results[cfg] = Part(name, "inconclusive", "mean log-log slope", est, None, int(slopes.size), adj, "t",
                                f"{slopes.size} repeats and {n_points} values of N: at least {min_repeats} and "
                                f"{min_points} are needed to decide", {"slopes": slopes.tolist()})
            continue
        est, lo, hi = t_interval(slopes, adj)
        contains = lo <= -0.5 <= hi
        word = ("held" if contains and lo_r < lo and hi < hi_r
                else "not held" if not contains and (hi < lo_r or lo > hi_r) else "inconclusive")
        results[cfg] = Part(name, word, "mean log-log slope", est, (lo, hi), int(slopes.size), adj, "t",
                            f"slope {est:+.3f}, interval [{lo:+.3f}, {hi:+.3f}] over {slopes.size} repeats",
                            {"slopes": slopes.tolist()})
    return conjunction(
        results, name="error falls like 1/√N (log-log slope −1/2)", statistic="mean over repeats of the slope of "
        "log(relative error) against log N", level=adj, detail=f"{len(configs)} configurations at level {adj:.4f}, "
        f"range [{lo_r:g}, {hi_r:g}]", numbers={"slope_range": [lo_r, hi_r]},
        worst=lambda p: float("inf") if p.interval is None else abs(p.estimate + 0.5) + (p.interval[1] - p.interval[0]),
    )
