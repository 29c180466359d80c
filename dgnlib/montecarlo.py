"""Monte Carlo over value-weight draws with the gates held fixed (figure 02: E[K_0] = d·σ^{2(d−1)}·Σ⊙Λ).

`ntk_draws` re-draws the value weights of a real DGN and takes its torch.func NTK each time; `error_vs_draws` measures,
with the fast closed form, how the error of the Monte Carlo mean of K_0 shrinks with the number of draws N, beside the
error the per-entry variance predicts, sqrt(Σ Var[K_0]/N)/‖E[K_0]‖_F (the expected error of a mean of N i.i.d. draws).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .kernels import ntk
from .models import GatedNet, init_layer
from .seeding import derive_seed
from .stats import loglog_slope  # noqa: F401  (re-exported for notebook 02)
from .theory import expected_ntk, ntk_moments


def _check_draws(draws: int) -> None:
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")


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
