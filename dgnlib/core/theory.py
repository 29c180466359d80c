"""The paper's theory in closed form: the expected NTK with fixed gates, the ideal Gram matrix, Monte Carlo moments.

Setting: bias-free value network of depth d (d weight layers), gates fixed (they do not depend on
the value weights), value weights i.i.d. ±σ. Then over the weights E[K_0] = d·σ^{2(d−1)}·(Σ ⊙ Λ) exactly, with Λ the
unnormalised overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dgnlib.core.kernels import npk, value_ntk


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
    # {0, 1} drawn straight into float64 and mapped in place to ±σ: bit for bit the values of
    # (randint(0, 2) * 2 − 1) * σ (2σ·1 − σ = σ exactly), about 4× faster for wide layers
    return [
        torch.randint(0, 2, (*lead, a, b), generator=gen, dtype=torch.float64).mul_(2 * sigma).sub_(sigma)
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def ideal_gram(x: torch.Tensor, depth: int, mu: float) -> torch.Tensor:
    """E over Bernoulli(mu) gates and ±σ weights, σ² = 1/(μw), of K_0: d·(Σ ⊙ [μ^{d−1} 11ᵀ + (1 − μ^{d−1}) I])."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    n = x.shape[0]
    m = mu ** (depth - 1)
    lam = m * torch.ones(n, n, dtype=torch.float64) + (1 - m) * torch.eye(n, dtype=torch.float64)
    return depth * (x @ x.T) * lam


def ideal_eigenvalues(x: torch.Tensor, depth: int, mu: float) -> np.ndarray:
    """Eigenvalues of `ideal_gram` in closed form for unit-norm inputs: d·(μ^{d−1} λ_i(Σ) + 1 − μ^{d−1}), ascending.

    With ‖x_s‖ = 1 the ideal matrix is d·(μ^{d−1} Σ + (1 − μ^{d−1}) I), so its eigenvectors are those of Σ = XXᵀ.
    """
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    norms = x.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), rtol=0, atol=1e-12):
        raise ValueError("the closed-form eigenvalues need unit-norm inputs (every ‖x_s‖ = 1)")
    m = mu ** (depth - 1)
    return np.sort(depth * (m * torch.linalg.eigvalsh(x @ x.T).numpy() + 1 - m))


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
    return_diagonal: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Monte Carlo mean and (unbiased) variance of K_0 over `draws` ±sigma weight draws with the gates fixed.

    With return_diagonal, also the diagonal of every draw, (draws, n): what a bootstrap over the draws resamples.
    """
    if draws < 2:
        raise ValueError(f"draws must be >= 2 to estimate a variance, got {draws}")
    d_in, width, depth = x.reshape(x.shape[0], -1).shape[1], gates[0].shape[1], len(gates) + 1
    total = sq = 0.0
    shift = None
    done, chunk = 0, 0
    diagonals = []
    while done < draws:
        b = min(batch, draws - done)
        weights = bernoulli_weights(d_in, width, depth, sigma, draws=b, seed=seed * 1_000_003 + chunk)
        k = value_ntk(x, gates, weights)
        if return_diagonal:
            diagonals.append(torch.diagonal(k, dim1=-2, dim2=-1).clone())
        if shift is None:  # accumulate around a first sample to keep the variance numerically stable
            shift = k[0]
        total = total + (k - shift).sum(0)
        sq = sq + ((k - shift) ** 2).sum(0)
        done, chunk = done + b, chunk + 1
    mean_dev = total / draws
    var = (sq - draws * mean_dev**2) / (draws - 1)
    if return_diagonal:
        return shift + mean_dev, var.clamp_min(0.0), torch.cat(diagonals)
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


# -- gradient descent of the value network with fixed gates, and its K_0-linearised prediction -------------------


def value_forward(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    scales: Sequence[float] | None = None,
) -> torch.Tensor:
    """Output ŷ (n,) of the bias-free value network q(l) = m_l Θ(l)ᵀ z(l−1), z(l) = q(l) ⊙ G(l) (m_l = 1 if None)."""
    scales = [1.0] * len(weights) if scales is None else scales
    z = x.reshape(x.shape[0], -1).to(torch.float64)
    for m, theta, g in zip(scales[:-1], weights[:-1], gates):
        z = m * (z @ theta) * g
    return scales[-1] * (z @ weights[-1])[:, 0]


def gd_value_network(
    x: torch.Tensor,
    y: torch.Tensor,
    gates: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    *,
    lr: float,
    steps: int,
    scales: Sequence[float] | None = None,
    tol: float = 0.01,
    stop: bool = True,
    kernel_steps: Sequence[int] = (),
) -> dict:
    """Full-batch GD on ½‖ŷ − y‖² over the value weights Θ(l) (gates fixed), float64, with hand-written gradients.

    Returns {"loss": losses after t = 0, 1, … steps, "steps_to_tol": first t with loss ≤ tol·loss_0 (None if not
    reached; with stop=True the run ends there), "kernel_steps"/"lam_max": the steps at which λ_max(K_t) was
    computed (those of `kernel_steps` that were run, plus the last step) and its values, "nonfinite": whether a loss
    or kernel became NaN/inf (the run stops there)}.
    """
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.to(torch.float64).reshape(-1)
    gates = [g.to(torch.float64) for g in gates]
    scales = [1.0] * len(weights) if scales is None else [float(m) for m in scales]
    thetas = [w.detach().clone().to(torch.float64) for w in weights]
    wanted = {int(t) for t in kernel_steps}
    losses, k_steps, lam = [], [], []
    reached, nonfinite = None, False

    def track(t: int) -> None:
        if not k_steps or k_steps[-1] != t:
            k_steps.append(t)
            k = value_ntk(x, gates, thetas, scales)
            finite = bool(torch.isfinite(k).all())  # eigvalsh fails on NaN/inf: record NaN instead
            lam.append(float(torch.linalg.eigvalsh(k)[-1]) if finite else float("nan"))

    for t in range(steps + 1):
        zs = [x]
        for m, theta, g in zip(scales[:-1], thetas[:-1], gates):
            zs.append(m * (zs[-1] @ theta) * g)
        err = scales[-1] * (zs[-1] @ thetas[-1])[:, 0] - y
        losses.append(0.5 * float(err @ err))
        if t in wanted:
            track(t)
        if not np.isfinite(losses[-1]) or (lam and not np.isfinite(lam[-1])):
            nonfinite = True
            break
        if reached is None and losses[-1] <= tol * losses[0]:
            reached = t
            if stop:
                break
        if t == steps:
            break
        delta = err[:, None]  # ∂loss/∂q(d)
        for l in range(len(thetas) - 1, -1, -1):
            grad = scales[l] * (zs[l].T @ delta)
            if l > 0:
                delta = scales[l] * (delta @ thetas[l].T) * gates[l - 1]
            thetas[l] -= lr * grad
    track(len(losses) - 1)
    nonfinite = nonfinite or not np.isfinite(lam[-1])
    return {
        "loss": np.array(losses),
        "steps_to_tol": reached,
        "kernel_steps": k_steps,
        "lam_max": lam,
        "nonfinite": nonfinite,
    }


def linearised_loss(K0: torch.Tensor, e0: torch.Tensor, lr: float, steps: int) -> np.ndarray:
    """½‖e_t‖² for t = 0…steps of the K_0-linearised dynamics e_{t+1} = (I − αK_0) e_t, in closed form (eigenbasis)."""
    evals, evecs = torch.linalg.eigh(torch.as_tensor(K0, dtype=torch.float64))
    coef2 = ((evecs.T @ torch.as_tensor(e0, dtype=torch.float64).reshape(-1)) ** 2).numpy()
    rate2 = ((1.0 - lr * evals) ** 2).numpy()
    t = np.arange(steps + 1)[:, None]
    with np.errstate(over="ignore"):  # a step past 2/λ_max diverges: inf is the right answer
        return 0.5 * (coef2[None, :] * rate2[None, :] ** t).sum(axis=1)


def first_below(curve: np.ndarray, tol: float) -> int | None:
    """First index t with curve[t] ≤ tol·curve[0], or None."""
    hit = np.flatnonzero(np.asarray(curve) <= tol * curve[0])
    return int(hit[0]) if hit.size else None
