"""Sweeps over depth d and width w for figures 03–04: NTK spectra and Monte Carlo fluctuation (05: depth_training).

All sweeps use a fixed-gate, bias-free value network with Bernoulli(μ) gates and ±σ weights (SPEC.md section 2) and
return tidy pandas DataFrames (one row per matrix, entry group or run). Seeds for gates and weights are derived from
one master seed with `derive_seed`, so that every (width, depth, draw) gets its own independent stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import theory
from .seeding import derive_seed
from .stats import fit_power_law, interior_minimum, spearman  # noqa: F401  (re-exported for notebooks)

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
    x: torch.Tensor, gates: Sequence[torch.Tensor], sigma: float, draws: int, seed: int = 0, batch: int | None = None
) -> dict:
    """Var/E² of K_0 entries over `draws` ±sigma weight draws, gates fixed; E is the exact expected_ntk.

    Returns {"relvar_diag": mean over diagonal entries of Var/E² (theory.relative_variance), "relvar_off": pooled
    off-diagonal Σ Var / Σ E², "relvar_off_entrywise": mean over off-diagonal entries of Var/E², "offdiag_noise":
    mean over s ≠ s' of Var K(s,s') / (E K(s,s) · E K(s',s')) (off-diagonal fluctuation on the diagonal's scale),
    "mc_mean_error": ‖MC mean − E‖_F / ‖E‖_F}. The pooled off-diagonal ratio is reported because entrywise ratios
    blow up where the input correlation Σ(s, s') is near zero.
    """
    width, depth = gates[0].shape[1], len(gates) + 1
    if batch is None:  # keep one batch of weight draws under ~256 MB
        batch = max(1, min(64, int(2**28 // (8 * width * width * max(depth - 1, 1)))))
    mc_mean, var = theory.ntk_moments(x, gates, sigma, draws, seed=seed, batch=batch)
    exact = theory.expected_ntk(x, gates, sigma)
    off = ~torch.eye(exact.shape[0], dtype=torch.bool)
    diag = torch.diagonal(exact)
    return {
        "relvar_diag": theory.relative_variance(exact, var, diagonal=True),
        "relvar_off": float(var[off].sum() / (exact[off] ** 2).sum()),
        "relvar_off_entrywise": theory.relative_variance(exact, var, diagonal=False),
        "offdiag_noise": float((var / (diag[:, None] * diag[None, :]))[off].mean()),
        "mc_mean_error": float(torch.linalg.norm(mc_mean - exact) / torch.linalg.norm(exact)),
    }


def variance_sweep(
    x: torch.Tensor,
    depths: Sequence[int],
    widths: Sequence[int],
    mu: float = 0.5,
    draws: int = 200,
    gate_draws: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """Var/E² of K_0 entries over ±σ weights, σ² = 1/(μw), fixed Bernoulli(μ) gates: one row per (w, d, gate draw).

    For each width and gate draw the gates of the deepest network are drawn once and depth d uses its first d − 1
    gated layers (common random numbers across depth). Columns: width, depth, gate_draw, draws and the entries of
    `entry_relative_variance`.
    """
    depths, widths = _check_sizes("depths", depths, 2), _check_sizes("widths", widths, 1)
    if gate_draws < 1:
        raise ValueError(f"gate_draws must be >= 1, got {gate_draws!r}")
    n, rows = x.shape[0], []
    for width in widths:
        sigma = math.sqrt(1.0 / (mu * width))
        for g in range(gate_draws):
            all_gates = theory.bernoulli_gates(
                n, width, max(depths), mu, seed=derive_seed(seed, _STREAM_GATES, width, g)
            )
            for depth in depths:
                stats = entry_relative_variance(
                    x, all_gates[: depth - 1], sigma, draws, seed=derive_seed(seed, _STREAM_WEIGHTS, width, depth, g)
                )
                rows.append({"width": width, "depth": depth, "gate_draw": g, "draws": draws, **stats})
    return pd.DataFrame(rows)
