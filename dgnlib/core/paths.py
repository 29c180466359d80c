"""The path view of a DGN, by explicit enumeration (tiny, bias-free networks only; float64).

A path p = (p(0), p(1), …, p(d−1)) picks one input coordinate and one unit in each gated layer, so there are
P = d_in·w^(d−1) paths, enumerated in row-major order (p(0) slowest). The neural path feature is
φ_x(p) = x(p(0))·Π_l G_x(p(l), l) and the path value v(p) = Π_l Θ(l)[p(l−1), p(l)]; then ŷ(x) = ⟨φ_x, v⟩.
Orientation: Φ = `path_matrix` is (paths × inputs), its column s is φ_{x_s}, so that the neural path kernel is
H = ΦᵀΦ (n × n) and the outputs are Φᵀv; `path_features` gives the same numbers as rows, Φᵀ (n × P).
"""

from __future__ import annotations

import torch

from dgnlib.core.models import DGN

MAX_PATHS = 2_000_000


def _check_model(model: DGN) -> None:
    if not isinstance(model, DGN):
        raise ValueError("the path view needs a fully connected DGN")
    if any(layer.bias is not None for layer in model.value):
        raise ValueError("the path view needs a bias-free DGN: build it with bias=False")
    n_paths = model.d_in * model.width ** (model.depth - 1)
    if n_paths > MAX_PATHS:
        raise ValueError(f"{n_paths} paths is too many to enumerate (at most {MAX_PATHS}): use a tinier network")


def path_features(model: DGN, x: torch.Tensor) -> torch.Tensor:
    """Neural path features as rows, one per input: Φᵀ, shape (n, P), float64."""
    _check_model(model)
    x = model._check_input(x).to(torch.float64)
    phi = x
    for g in model.gates(x):
        # φ over paths up to layer l, times the gate of the unit the path picks in layer l
        phi = (phi[:, :, None] * g.to(torch.float64)[:, None, :]).reshape(x.shape[0], -1)
    return phi


def path_matrix(model: DGN, x: torch.Tensor) -> torch.Tensor:
    """Φ, shape (P, n), float64: column s is the path feature φ_{x_s}, so the NPK is ΦᵀΦ and the outputs Φᵀv."""
    return path_features(model, x).T


def path_values(model: DGN, output: int = 0) -> torch.Tensor:
    """Path values v, shape (P,), float64, for output unit `output`."""
    _check_model(model)
    thetas = [layer.weight.detach().to(torch.float64).T for layer in model.value]  # Θ(l): (in, out)
    v = thetas[0]  # rows: paths so far; columns: the unit the path ends in
    for theta in thetas[1:-1]:
        v = (v[:, :, None] * theta[None, :, :]).reshape(-1, theta.shape[1])
    return (v * thetas[-1][:, output][None, :]).reshape(-1)
