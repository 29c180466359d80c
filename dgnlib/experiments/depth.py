"""Sweeps over depth d and width w for figures 03–04: NTK spectra and Monte Carlo fluctuation (05: depth_training).

All sweeps use a fixed-gate, bias-free value network with Bernoulli(μ) gates and ±σ weights, σ² = 1/(μw), and
return tidy pandas DataFrames (one row per matrix, entry group or run). Seeds for gates and weights are derived from
one master seed with `derive_seed`, so that every (width, depth, draw) gets its own independent stream. The claim
parts of figures 03 and 04 are decided here over independent draws (`cond_interior_part`, `exponent_parts`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from dgnlib.core import theory
from dgnlib.seeding import derive_seed, numpy_rng
from dgnlib.verdict import Part
from dgnlib.verdict import paired as verdict_paired

_STREAM_GATES, _STREAM_WEIGHTS, _STREAM_SAMPLE = 1, 2, 3


def _check_sizes(name: str, values: Sequence[int], minimum: int) -> list[int]:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in values):
        raise ValueError(f"{name} must be a non-empty list of integers >= {minimum}, got {values!r}")
    return [int(v) for v in values]


def unit_sphere_data(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n inputs uniform on the unit sphere of R^dim, (n, dim) float64, and balanced ±1 labels (n,) independent of x."""
    if n < 2 or dim < 1:
        raise ValueError(f"need n >= 2 inputs of dimension >= 1, got n={n!r}, dim={dim!r}")
    gen = torch.Generator().manual_seed(derive_seed(seed, 0))
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    y = torch.where(torch.arange(n) < (n + 1) // 2, 1.0, -1.0).to(torch.float64)
    return x, y[torch.randperm(n, generator=gen)]


def offdiag_fraction(K: torch.Tensor) -> float:
    """‖K − diag(K)‖_F / ‖K‖_F of a square matrix: 0 for a diagonal matrix."""
    K = torch.as_tensor(K, dtype=torch.float64)
    off = K - torch.diag(torch.diagonal(K))
    return float(torch.linalg.norm(off) / torch.linalg.norm(K))


# -- figure 03: spectra -------------------------------------------------------------------------------------------


def spectrum_sweep(
    x: torch.Tensor, depths: Sequence[int], widths: Sequence[int], mu: float = 0.5, draws: int = 1, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trace-normalised spectra of the ideal E[K_0] and of sampled finite-width K_0 (σ² = 1/(μw)), per depth.

    Returns (eigs, summary). eigs: one row per eigenvalue with columns kernel ("ideal" | "sampled"), width (<NA> for
    ideal), depth, draw, index, eigenvalue (divided by trace/n), ecdf (i/n). summary: one row per matrix with
    kernel, width, depth, draw, cond (λ_max/λ_min), offdiag_fraction (of the matrix divided by trace/n).
    """
    depths, widths = _check_sizes("depths", depths, 2), _check_sizes("widths", widths, 1)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws!r}")
    eig_rows, summary_rows = [], []

    def record(kernel: str, width: int | None, depth: int, draw: int, K: torch.Tensor) -> None:
        evals, ecdf = theory.eig_ecdf(K, normalise="trace")
        key = {"kernel": kernel, "width": width, "depth": depth, "draw": draw}
        eig_rows.append(pd.DataFrame({**key, "index": np.arange(len(evals)), "eigenvalue": evals, "ecdf": ecdf}))
        Kn = K / (torch.trace(K) / K.shape[0])
        summary_rows.append({**key, "cond": theory.condition_number(K), "offdiag_fraction": offdiag_fraction(Kn)})

    for depth in depths:
        record("ideal", None, depth, 0, theory.ideal_gram(x, depth, mu))
    for width in widths:
        sigma = math.sqrt(1.0 / (mu * width))
        for depth in depths:
            Ks = theory.sample_ntk(
                x, width, depth, mu, sigma, draws, seed=derive_seed(seed, _STREAM_SAMPLE, width, depth)
            )
            for k, K in enumerate(Ks):
                record("sampled", width, depth, k, K)
    eigs = pd.concat(eig_rows, ignore_index=True)
    summary = pd.DataFrame(summary_rows)
    for frame in (eigs, summary):
        frame["width"] = frame["width"].astype("Int64")
    return eigs, summary


# -- figure 04: fluctuation of K_0 over the weights --------------------------------------------------------------


def entry_relative_variance(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    sigma: float,
    draws: int,
    seed: int = 0,
    batch: int | None = None,
    keep_diagonal: bool = False,
) -> dict:
    """Var/E² of K_0 entries over `draws` ±sigma weight draws, gates fixed; E is the exact expected_ntk.

    Returns {"relvar_diag": mean over diagonal entries of Var/E² (theory.relative_variance), "relvar_off": pooled
    off-diagonal Σ Var / Σ E², "relvar_off_entrywise": mean over off-diagonal entries of Var/E², "offdiag_noise":
    mean over s ≠ s' of Var K(s,s') / (E K(s,s) · E K(s',s')) (off-diagonal fluctuation on the diagonal's scale),
    "mc_mean_error": ‖MC mean − E‖_F / ‖E‖_F}. The pooled off-diagonal ratio is reported because entrywise ratios
    blow up where the input correlation Σ(s, s') is near zero. With keep_diagonal, also "diagonal_samples" (draws, n)
    and "diagonal_exact" (n,) as numpy arrays, for `relvar_from_samples` and the bootstrap of `exponent_parts`.
    """
    width, depth = gates[0].shape[1], len(gates) + 1
    if batch is None:  # keep one batch of weight draws under ~256 MB
        batch = max(1, min(64, int(2**28 // (8 * width * width * max(depth - 1, 1)))))
    mc_mean, var, *diag = theory.ntk_moments(x, gates, sigma, draws, seed=seed, batch=batch,
                                              return_diagonal=keep_diagonal)
    exact = theory.expected_ntk(x, gates, sigma)
    off = ~torch.eye(exact.shape[0], dtype=torch.bool)
    diag_exact = torch.diagonal(exact)
    out = {
        "relvar_diag": theory.relative_variance(exact, var, diagonal=True),
        "relvar_off": float(var[off].sum() / (exact[off] ** 2).sum()),
        "relvar_off_entrywise": theory.relative_variance(exact, var, diagonal=False),
        "offdiag_noise": float((var / (diag_exact[:, None] * diag_exact[None, :]))[off].mean()),
        "mc_mean_error": float(torch.linalg.norm(mc_mean - exact) / torch.linalg.norm(exact)),
    }
    if keep_diagonal:
        out["diagonal_samples"], out["diagonal_exact"] = diag[0].numpy(), diag_exact.numpy()
    return out


def variance_sweep(
    x: torch.Tensor,
    depths: Sequence[int],
    widths: Sequence[int],
    mu: float = 0.5,
    draws: int = 200,
    gate_draws: int = 1,
    seed: int = 0,
    keep_diagonals: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Var/E² of K_0 entries over ±σ weights, σ² = 1/(μw), fixed Bernoulli(μ) gates: one row per (w, d, gate draw).

    For each width and gate draw the gates of the deepest network are drawn once and depth d uses its first d − 1
    gated layers (common random numbers across depth). Columns: width, depth, gate_draw, draws and the entries of
    `entry_relative_variance`. With keep_diagonals, returns (table, diagonals): diagonals maps (width, depth,
    gate_draw) to (samples (draws, n), exact (n,)), the diagonal of K_0 in every weight draw and its exact mean.
    """
    depths, widths = _check_sizes("depths", depths, 2), _check_sizes("widths", widths, 1)
    if gate_draws < 1:
        raise ValueError(f"gate_draws must be >= 1, got {gate_draws!r}")
    n, rows, diagonals = x.shape[0], [], {}
    for width in widths:
        sigma = math.sqrt(1.0 / (mu * width))
        for g in range(gate_draws):
            all_gates = theory.bernoulli_gates(
                n, width, max(depths), mu, seed=derive_seed(seed, _STREAM_GATES, width, g)
            )
            for depth in depths:
                stats = entry_relative_variance(
                    x, all_gates[: depth - 1], sigma, draws, seed=derive_seed(seed, _STREAM_WEIGHTS, width, depth, g),
                    keep_diagonal=keep_diagonals,
                )
                if keep_diagonals:
                    diagonals[width, depth, g] = (stats.pop("diagonal_samples"), stats.pop("diagonal_exact"))
                rows.append({"width": width, "depth": depth, "gate_draw": g, "draws": draws, **stats})
    table = pd.DataFrame(rows)
    return (table, diagonals) if keep_diagonals else table


# -- claim parts decided over independent draws ------------------------------------------------------------------


def conjunction(results: dict, *, name: str, statistic: str, level: float, detail: str, numbers: dict,
                worst: Callable[[Part], float]) -> Part:
    """One part from several sub-parts that must all hold (each tested at a Bonferroni-adjusted level).

    invalid if any is invalid; not held if any is not held; held if all are held; inconclusive otherwise. The
    estimate and interval reported are those of the sub-part that binds (the largest `worst`).
    """
    verdicts = {p.verdict for p in results.values()}
    word = next((w for w in ("invalid", "not held", "inconclusive") if w in verdicts), "held")
    binding = max(results.values(), key=worst)
    numbers = {**numbers, "sub_parts": {str(k): p.to_dict() for k, p in results.items()}, "binding": binding.name}
    return Part(name, word, statistic, binding.estimate, binding.interval, binding.n, level, binding.method,
                f"{detail}; binding: {binding.name}: {binding.detail}", numbers)


def interior_minimum_part(
    values: pd.DataFrame, *, name: str, level: float = 0.95, min_draws: int = 3, what: str = "value",
    unit: str = "draws", invalid: np.ndarray | None = None,
) -> Part:
    """"values (draws × increasing depths, positive) are smallest at an intermediate depth", paired by draw.

    Shared by figures 03 (κ(K_0) over weight draws) and 05 (GD steps over seeds): `unit` names the rows in the text,
    `invalid` (rows × depths, bool) marks values that come from invalid runs.

    For each interior depth c, two paired t comparisons of log values (first depth − c, last depth − c) over the
    draws: c is a robust minimum when both intervals lie above 0. The k interior depths are tested at level
    1 − (1 − level)/k each (Bonferroni), so with no effect of depth the part is held at most (1 − level)/2 of the
    time. held: some interior depth is a robust minimum; not held: for every interior depth one end is smaller
    (its interval lies below 0); inconclusive otherwise and with fewer than min_draws draws; invalid: a value is
    non-finite or not positive.
    """
    depths = [int(d) for d in values.columns]
    if len(depths) < 3 or depths != sorted(set(depths)):
        raise ValueError(f"need at least 3 increasing depths for an interior minimum, got {depths}")
    raw = values.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(raw > 0, np.log(np.where(raw > 0, raw, 1.0)), np.nan)
    draws, interior = list(values.index), depths[1:-1]
    adj = 1 - (1 - level) / len(interior)
    results = {}
    for k, c in enumerate(interior, start=1):
        kw = dict(seeds=draws, min_seeds=min_draws, level=adj, **({} if invalid is None else {"invalid": invalid}))
        results[c] = (verdict_paired(logs[:, 0], logs[:, k], name=f"d={depths[0]} vs d={c}", **kw),
                      verdict_paired(logs[:, -1], logs[:, k], name=f"d={depths[-1]} vs d={c}", **kw))
    med = values.median(axis=0)
    held = [c for c, (a, b) in results.items() if a.verdict == b.verdict == "held"]
    flat = [p for pair in results.values() for p in pair]
    if any(p.verdict == "invalid" for p in flat):
        word = "invalid"
    elif held:
        word = "held"
    elif all("not held" in (a.verdict, b.verdict) for a, b in results.values()):
        word = "not held"
    else:
        word = "inconclusive"
    if held:  # report the robust minimum with the largest worse-end lower bound
        best = max(held, key=lambda c: min(p.interval[0] for p in results[c]))
    else:
        inner = med[interior].dropna()
        best = int(inner.idxmin()) if not inner.empty else interior[0]
    binding = min(results[best], key=lambda p: p.estimate if p.interval is None else p.interval[0])
    interval = "" if binding.interval is None else (
        f", {100 * adj:.2f} % interval [{binding.interval[0]:+.2f}, {binding.interval[1]:+.2f}]")
    detail = (f"median {what} {', '.join(f'd={d}: {med[d]:.3g}' for d in depths)}; d={best} vs the end nearer to it: "
              f"mean log({what} at the end / {what} at d={best}) {binding.estimate:+.2f}{interval} over "
              f"{len(draws)} {unit}")
    if len(draws) < min_draws:
        word, detail = ("invalid" if word == "invalid" else "inconclusive",
                        f"{len(draws)} {unit}: at least {min_draws} are needed to decide; {detail}")
    numbers = {"best_depth": best, "level_per_comparison": adj, "median": {str(d): float(med[d]) for d in depths},
               "comparisons": {str(c): {p.name: p.to_dict() for p in pair} for c, pair in results.items()}}
    return Part(name, word, f"mean over {unit} of log({what} at an end / {what} at d*), the smaller of the two ends",
                binding.estimate, binding.interval, len(draws), adj, "t", detail, numbers)


def cond_interior_part(summary: pd.DataFrame, width: int, *, level: float = 0.95, min_draws: int = 3) -> Part:
    """Figure 03, at one width: the sampled K_0's condition number is smallest at an intermediate depth, over draws.

    `summary` is the second table of `spectrum_sweep`; draws with the same index at different depths are
    independent (fresh gates and weights), and are paired by index only to line them up.
    """
    rows = summary[(summary["kernel"] == "sampled") & (summary["width"] == width)]
    if rows.empty:
        raise ValueError(f"no sampled kernels at width {width}")
    table = rows.pivot(index="draw", columns="depth", values="cond").sort_index(axis=1)
    return interior_minimum_part(table, name=f"w = {width}: κ(K_0) smallest at an intermediate depth", level=level,
                                 min_draws=min_draws, what="κ")


def relvar_from_samples(samples: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Mean over inputs of Var/E² of the diagonal of K_0: samples (..., draws, n) → (...,), E the exact diagonal."""
    exact = np.asarray(exact, dtype=float)
    keep = np.abs(exact) > 1e-12 * np.abs(exact).max()  # as theory.relative_variance: skip dead inputs
    var = np.var(np.asarray(samples, dtype=float)[..., keep], axis=-2, ddof=1)
    return (var / exact[keep] ** 2).mean(axis=-1)


def _fit_log(cells: list[tuple[int, int]], logs: np.ndarray) -> np.ndarray:
    """Least squares of logs (cells × B) on [1, log d, log w]: coefficients (3, B)."""
    design = np.column_stack([np.ones(len(cells)), np.log([d for _, d in cells]), np.log([w for w, _ in cells])])
    return np.linalg.lstsq(design, logs, rcond=None)[0]


def exponent_parts(
    diagonals: dict, *, n_boot: int = 1000, level: float = 0.95, min_draws: int = 30, seed: int = 0
) -> tuple[list[Part], dict]:
    """Figure 04's claim parts: ρ_diag ≈ C d^a w^b with a > 0 (grows with depth) and b < 0 (shrinks with width).

    `diagonals` comes from `variance_sweep(..., keep_diagonals=True)`. The exponents are fitted by least squares on
    log ρ_diag (averaged over gate draws) and their `level` intervals come from a percentile bootstrap that resamples
    the weight draws of every (width, depth, gate draw) independently. A part is held when its interval excludes 0
    on the claimed side, not held when it excludes 0 on the other side, inconclusive otherwise and with fewer than
    `min_draws` weight draws (the bootstrap needs enough draws to stand for their distribution), invalid when a
    sample is non-finite. Returns (parts, numbers): the estimates, intervals and per-width depth exponents.
    """
    if not diagonals:
        raise ValueError("diagonals is empty: run variance_sweep(..., keep_diagonals=True)")
    keys = sorted(diagonals)
    cells = sorted({(w, d) for w, d, _ in keys})
    widths, depths = sorted({w for w, _ in cells}), sorted({d for _, d in cells})
    if len(widths) < 2 or len(depths) < 2:
        raise ValueError(f"need at least 2 widths and 2 depths to fit both exponents, got {widths} and {depths}")
    draws = min(diagonals[k][0].shape[0] for k in keys)
    finite = all(np.isfinite(s).all() and np.isfinite(e).all() for s, e in diagonals.values())
    rng = numpy_rng(seed, "exponent-bootstrap")
    point = np.zeros(len(cells))
    boot = np.zeros((len(cells), n_boot))
    if finite:
        for i, (w, d) in enumerate(cells):
            gs = [k for k in keys if k[:2] == (w, d)]
            point[i] = np.mean([relvar_from_samples(*diagonals[k]) for k in gs])
            per_gate = []
            for k in gs:
                samples, exact = diagonals[k]
                idx = rng.integers(0, samples.shape[0], (n_boot, samples.shape[0]))
                per_gate.append(np.concatenate([relvar_from_samples(samples[idx[j:j + 100]], exact)
                                                for j in range(0, n_boot, 100)]))
            boot[i] = np.mean(per_gate, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = _fit_log(cells, np.log(point)[:, None])[:, 0] if finite else np.full(3, np.nan)
        bcoef = _fit_log(cells, np.log(boot)) if finite else np.full((3, n_boot), np.nan)
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    parts, numbers = [], {"prefactor": float(np.exp(coef[0])), "draws": draws, "n_boot": n_boot}
    for j, (key, side, claim) in enumerate([("depth", "greater", "grows with depth: exponent of d > 0"),
                                            ("width", "less", "shrinks with width: exponent of w < 0")], start=1):
        est = float(coef[j])
        good = np.isfinite(bcoef[j])
        lo, hi = (np.quantile(bcoef[j][good], [lo_q, hi_q]) if good.any() else (np.nan, np.nan))
        numbers[f"exponent_{key}"], numbers[f"interval_{key}"] = est, [float(lo), float(hi)]
        if not finite or not np.isfinite(est) or good.mean() < 0.99:
            word, why = "invalid", "non-finite Monte Carlo samples or fits"
        else:
            above, below = lo > 0, hi < 0
            if side == "less":
                above, below = below, above
            word = "held" if above else ("not held" if below else "inconclusive")
            why = (f"exponent {est:+.2f}, {100 * level:.4g} % bootstrap interval [{lo:+.2f}, {hi:+.2f}] over "
                   f"{n_boot} resamples of {draws} weight draws per cell")
            if draws < min_draws:
                word, why = "inconclusive", f"{draws} weight draws: at least {min_draws} are needed to decide; {why}"
        parts.append(Part(f"ρ_diag {claim}", word, f"fitted exponent of {key[0]} in ρ_diag ≈ C d^a w^b", est,
                          (float(lo), float(hi)), draws, level, "bootstrap", why,
                          {"cells": len(cells), "widths": widths, "depths": depths}))
    if finite and len(depths) >= 2:
        for w in widths:
            idx = [i for i, c in enumerate(cells) if c[0] == w]
            x = np.log([cells[i][1] for i in idx])
            slope = np.polyfit(x, np.log(boot[idx]), 1)[0]
            numbers[f"exponent_depth[w={w}]"] = float(np.polyfit(x, np.log(point[idx]), 1)[0])
            numbers[f"interval_depth[w={w}]"] = [float(v) for v in np.quantile(slope, [lo_q, hi_q])]
    return parts, numbers
