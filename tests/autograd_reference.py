"""An autograd oracle for the tests: full-batch GD of the value network with fixed gates, written with
`torch.autograd` instead of the hand-written gradients of `dgnlib.core.theory.gd_value_network` (the library's only
full-batch GD loop), so that the two can be compared."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dgnlib.core.kernels import value_ntk


def gd_fixed_gates(
    x: torch.Tensor,
    y: torch.Tensor,
    gates: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    steps: int,
    step_scale: float = 0.5,
    tol: float = 0.01,
    stop: bool = True,
) -> dict:
    """Full-batch gradient descent on ½‖ŷ − y‖² over the value weights, gates fixed, step α = step_scale/λ_max(K_0).

    Returns {"loss": array of losses (index t = after t steps), "steps_to_tol": first t with loss ≤ tol·loss_0
    (None if not reached; with stop=True the run ends there), "cond": λ_max/λ_min of K_0, "lr": α}. Float64 throughout.
    """
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.to(torch.float64).reshape(-1)
    gates = [g.to(torch.float64) for g in gates]
    k0 = value_ntk(x, gates, weights)
    evals = torch.linalg.eigvalsh(k0)
    lr = step_scale / float(evals[-1])
    thetas = [w.detach().clone().to(torch.float64).requires_grad_(True) for w in weights]
    losses = []
    reached = None
    for t in range(steps + 1):
        z = x
        for theta, g in zip(thetas[:-1], gates):
            z = (z @ theta) * g
        err = (z @ thetas[-1])[:, 0] - y
        loss = 0.5 * (err**2).sum()
        losses.append(float(loss.detach()))
        if reached is None and losses[-1] <= tol * losses[0]:
            reached = t
            if stop:
                break
        if t == steps:
            break
        grads = torch.autograd.grad(loss, thetas)
        with torch.no_grad():
            for theta, grad in zip(thetas, grads):
                theta -= lr * grad
    cond = float(evals[-1] / evals[0]) if evals[0] > 0 else float("inf")
    return {"loss": np.array(losses), "steps_to_tol": reached, "cond": cond, "lr": lr}
