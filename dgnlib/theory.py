"""The paper's theory in closed form: the expected NTK with fixed gates, the ideal Gram matrix, Monte Carlo moments.

Setting (SPEC.md section 2): bias-free value network of depth d (d weight layers), gates fixed (they do not depend on
the value weights), value weights i.i.d. ±σ. Then over the weights E[K_0] = d·σ^{2(d−1)}·(Σ ⊙ Λ) exactly, with Λ the
unnormalised overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .kernels import npk, value_ntk


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def expected_ntk(x: torch.Tensor, gates: Sequence[torch.Tensor], sigma: float) -> torch.Tensor:
    """E[K_0] = d·σ^{2(d−1)}·Σ⊙Λ (unnormalised Λ), (n, n) float64, for depth d = len(gates) + 1."""
    depth = len(gates) + 1
    return depth * sigma ** (2 * (depth - 1)) * npk(x, gates, normalise=False)


def bernoulli_gates(n: int, width: int, depth: int, mu: float, seed: int) -> list[torch.Tensor]:
    """Gates i.i.d. Bernoulli(mu) per unit, per input and per layer: depth − 1 tensors (n, width) of 0.0/1.0."""
    if not 0 < mu <= 1:
        raise ValueError(f"mu (probability a gate is on) must lie in (0, 1], got {mu!r}")
    if depth < 2:
        raise ValueError(f"depth must be >= 2 (number of weight layers), got {depth!r}")
    gen = _generator(seed)
    return [(torch.rand(n, width, generator=gen, dtype=torch.float64) < mu).to(torch.float64) for _ in range(depth - 1)]


def bernoulli_weights(
    d_in: int, width: int, depth: int, sigma: float, draws: int | None = None, seed: int = 0
) -> list[torch.Tensor]:
    """Value weights Θ(l) i.i.d. ±sigma: shapes (d_in, w), (w, w)…, (w, 1), with a leading (draws,) axis if given."""
    gen = _generator(seed)
    sizes = [d_in] + [width] * (depth - 1) + [1]
    lead = () if draws is None else (draws,)
    return [
        (torch.randint(0, 2, (*lead, a, b), generator=gen) * 2 - 1).to(torch.float64) * sigma
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def ideal_gram(x: torch.Tensor, depth: int, mu: float) -> torch.Tensor:
    """E over Bernoulli(mu) gates and ±σ weights, σ² = 1/(μw), of K_0: d·(Σ ⊙ [μ^{d−1} 11ᵀ + (1 − μ^{d−1}) I])."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    n = x.shape[0]
    m = mu ** (depth - 1)
    lam = m * torch.ones(n, n, dtype=torch.float64) + (1 - m) * torch.eye(n, dtype=torch.float64)
    return depth * (x @ x.T) * lam


def sample_ntk(
    x: torch.Tensor, width: int, depth: int, mu: float, sigma: float, draws: int = 1, seed: int = 0
) -> torch.Tensor:
    """Finite-width K_0 with fresh Bernoulli(mu) gates and ±sigma weights per draw: (draws, n, n) float64."""
    n, d_in = x.shape[0], x.reshape(x.shape[0], -1).shape[1]
    out = []
    for k in range(draws):
        gates = bernoulli_gates(n, width, depth, mu, seed=seed * 1_000_003 + 2 * k)
        weights = bernoulli_weights(d_in, width, depth, sigma, seed=seed * 1_000_003 + 2 * k + 1)
        out.append(value_ntk(x, gates, weights))
    return torch.stack(out)


def ntk_moments(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    sigma: float,
    draws: int,
    seed: int = 0,
    batch: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo mean and (unbiased) variance of K_0 over `draws` ±sigma weight draws with the gates fixed."""
    if draws < 2:
        raise ValueError(f"draws must be >= 2 to estimate a variance, got {draws}")
    d_in, width, depth = x.reshape(x.shape[0], -1).shape[1], gates[0].shape[1], len(gates) + 1
    total = sq = 0.0
    shift = None
    done, chunk = 0, 0
    while done < draws:
        b = min(batch, draws - done)
        weights = bernoulli_weights(d_in, width, depth, sigma, draws=b, seed=seed * 1_000_003 + chunk)
        k = value_ntk(x, gates, weights)
        if shift is None:  # accumulate around a first sample to keep the variance numerically stable
            shift = k[0]
        total = total + (k - shift).sum(0)
        sq = sq + ((k - shift) ** 2).sum(0)
        done, chunk = done + b, chunk + 1
    mean_dev = total / draws
    var = (sq - draws * mean_dev**2) / (draws - 1)
    return shift + mean_dev, var.clamp_min(0.0)


def eig_ecdf(K: torch.Tensor, normalise: str | None = "trace") -> tuple[np.ndarray, np.ndarray]:
    """Sorted eigenvalues of a symmetric K and their e.c.d.f. values (i/n); normalise by "trace"/n, "max" or None."""
    K = torch.as_tensor(K, dtype=torch.float64)
    evals = torch.linalg.eigvalsh((K + K.T) / 2).numpy()
    if normalise == "trace":
        evals = evals / (evals.sum() / len(evals))
    elif normalise == "max":
        evals = evals / evals.max()
    elif normalise is not None:
        raise ValueError(f"unknown normalise {normalise!r}: expected 'trace', 'max' or None")
    evals = np.sort(evals)
    return evals, np.arange(1, len(evals) + 1) / len(evals)


def condition_number(K: torch.Tensor) -> float:
    """λ_max / λ_min of a symmetric positive semi-definite K (inf when singular)."""
    evals = torch.linalg.eigvalsh(torch.as_tensor(K, dtype=torch.float64))
    return float(evals[-1] / evals[0]) if evals[0] > 0 else float("inf")


def relative_variance(mean: torch.Tensor, var: torch.Tensor, diagonal: bool | None = None) -> float:
    """Average of Var[K(s,s')] / E[K(s,s')]² over entries (diagonal only, off-diagonal only, or all when None)."""
    n = mean.shape[0]
    mask = torch.ones(n, n, dtype=torch.bool)
    if diagonal is True:
        mask = torch.eye(n, dtype=torch.bool)
    elif diagonal is False:
        mask = ~torch.eye(n, dtype=torch.bool)
    m, v = mean[mask], var[mask]
    keep = m.abs() > 1e-12 * mean.abs().max()
    return float((v[keep] / m[keep] ** 2).mean())
