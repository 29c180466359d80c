"""Kernels of a DGN as plain functions of inputs and gates: overlap Λ, neural path kernel Σ⊙Λ, empirical NTK.

Shapes: inputs x are (n, d_in) (images are flattened); gates are lists with one (n, width) tensor per gated layer.
Everything returned is a float64 (n, n) tensor (or (n_a, n_b) for cross kernels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import functional_call, jacrev, vmap

from dgnlib.core.models import GatedNet

NTK_PARAMS = ("value", "feature", "all")


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).to(torch.float64)


def _check_gates(gates: Sequence[torch.Tensor], n: int | None = None) -> None:
    if len(gates) == 0:
        raise ValueError("gates must be a non-empty list with one (n, width) tensor per gated layer")
    for l, g in enumerate(gates):
        if n is not None and g.shape[0] != n:
            raise ValueError(f"gates[{l}] has {g.shape[0]} rows but there are {n} inputs")


def overlap(
    gates_a: Sequence[torch.Tensor], gates_b: Sequence[torch.Tensor] | None = None, normalise: bool = True
) -> torch.Tensor:
    """Λ(s, s') = Π_l Σ_i G_s(i,l) G_s'(i,l), each layer's factor divided by its width when `normalise`."""
    _check_gates(gates_a)
    gates_b = gates_a if gates_b is None else gates_b
    if len(gates_b) != len(gates_a):
        raise ValueError(f"gates_a has {len(gates_a)} layers but gates_b has {len(gates_b)}")
    lam = None
    for ga, gb in zip(gates_a, gates_b):
        ga, gb = _flat(ga), _flat(gb)
        factor = ga @ gb.T
        if normalise:
            factor = factor / ga.shape[1]
        lam = factor if lam is None else lam * factor
    return lam


def npk(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    x_b: torch.Tensor | None = None,
    gates_b: Sequence[torch.Tensor] | None = None,
    normalise: bool = True,
) -> torch.Tensor:
    """Neural path kernel H = Σ ⊙ Λ, Σ = x x_bᵀ the input Gram matrix (Λ normalised per layer by default)."""
    x_b = x if x_b is None else x_b
    gates_b = gates if gates_b is None else gates_b
    _check_gates(gates, x.shape[0])
    _check_gates(gates_b, x_b.shape[0])
    return (_flat(x) @ _flat(x_b).T) * overlap(gates, gates_b, normalise)


def _param_names(model: GatedNet, params: str) -> list[str]:
    if params not in NTK_PARAMS:
        raise ValueError(f"unknown params {params!r}: expected one of {', '.join(NTK_PARAMS)}")
    prefixes = {"value": ("value.",), "feature": ("feature.",), "all": ("value.", "feature.")}[params]
    names = [name for name, _ in model.named_parameters() if name.startswith(prefixes)]
    if not names:
        raise ValueError(f"model of variant {model.variant!r} has no {params} parameters (relu and linear have none)")
    return names


def jacobian(
    model: GatedNet, x: torch.Tensor, params: str = "value", output: int | str = 0, chunk_size: int | None = None
) -> torch.Tensor:
    """Per-example gradients of the output w.r.t. the chosen parameters, Ψᵀ of shape (n, P) (output="sum": Σ_k)."""
    names = _param_names(model, params)
    all_params = dict(model.named_parameters())
    chosen = {k: all_params[k].detach() for k in names}
    fixed = {k: v.detach() for k, v in all_params.items() if k not in chosen}
    if output != "sum" and not (isinstance(output, int) and 0 <= output < model.value[-1].out_features):
        raise ValueError(
            f"output must be 'sum' or an output index in [0, {model.value[-1].out_features}), got {output!r}"
        )

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **p}, (xi[None],))[0]
        return out.sum() if output == "sum" else out[output]

    jac = vmap(jacrev(f), in_dims=(None, 0), chunk_size=chunk_size)(chosen, x)
    return torch.cat([jac[k].reshape(x.shape[0], -1) for k in names], dim=1)


def ntk(
    model: GatedNet,
    x: torch.Tensor,
    params: str = "value",
    chunk_size: int | None = None,
    output: int | str = 0,
) -> torch.Tensor:
    """Empirical NTK K = Ψᵀ Ψ, (n, n) float64, w.r.t. "value", "feature" or "all" parameters (torch.func).

    For several outputs pick one with `output=k`, or `output="sum"` for the NTK of their sum.
    """
    jac = jacobian(model, x, params, output, chunk_size).to(torch.float64)
    return jac @ jac.T


def value_ntk(
    x: torch.Tensor,
    gates: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    scales: Sequence[float] | None = None,
) -> torch.Tensor:
    """Closed-form NTK of the value network, bias-free, with fixed gates: K = Σ_l m_l² (Z_{l−1}Z_{l−1}ᵀ) ⊙ (Δ_l Δ_lᵀ).

    weights are Θ(l) of shapes (d_in, w), (w, w), …, (w, 1), optionally with a leading batch dimension B of
    independent draws (then gates may also carry it and the result is (B, n, n)). Z_l are the layer outputs,
    Δ_l the gradients of ŷ w.r.t. the pre-activations q(l). `scales` are per-layer multipliers m_l of the NTK
    parametrisation (layer l computes q(l) = m_l Θ(l)ᵀ z(l−1), the trained parameter is Θ(l)); None means all 1
    (the standard parametrisation).
    """
    if len(weights) != len(gates) + 1:
        raise ValueError(f"need depth = len(gates) + 1 weight matrices, got {len(weights)} for {len(gates)} gates")
    if scales is None:
        scales = [1.0] * len(weights)
    if len(scales) != len(weights):
        raise ValueError(f"need one scale per weight matrix, got {len(scales)} for {len(weights)}")
    weights = [float(m) * w.to(torch.float64) for m, w in zip(scales, weights)]
    z = _flat(x)
    batched = weights[0].dim() == 3
    if batched:
        z = z.expand(weights[0].shape[0], *z.shape)
    zs = [z]
    for theta, g in zip(weights[:-1], gates):
        z = (z @ theta) * g.to(torch.float64)
        zs.append(z)
    delta = torch.ones(*z.shape[:-1], 1, dtype=torch.float64)  # dŷ/dq(d) = 1
    kernel = 0.0
    for l in range(len(weights) - 1, -1, -1):
        kernel = kernel + float(scales[l]) ** 2 * (zs[l] @ zs[l].mT) * (delta @ delta.mT)
        if l > 0:
            delta = (delta @ weights[l].mT) * gates[l - 1].to(torch.float64)
    return kernel


def alignment(H: torch.Tensor, y: torch.Tensor, rtol: float = 1e-10) -> float:
    """Label alignment ν = yᵀ (H / tr H)⁻¹ y (smaller: labels better aligned with the kernel's top eigenvectors)."""
    H = torch.as_tensor(H, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if H.dim() != 2 or H.shape[0] != H.shape[1] or H.shape[0] != y.shape[0]:
        raise ValueError(f"H must be (n, n) and y (n,), got {tuple(H.shape)} and {tuple(y.shape)}")
    Hn = H / torch.trace(H)
    Hn = (Hn + Hn.T) / 2
    evals, evecs = torch.linalg.eigh(Hn)
    if evals[0] <= rtol * evals[-1]:
        rank = int((evals > rtol * evals[-1]).sum())
        raise ValueError(
            f"H is singular (numerical rank {rank} < n = {H.shape[0]}, smallest/largest eigenvalue "
            f"{evals[0].item():.3g}/{evals[-1].item():.3g}): use distinct inputs or fewer examples"
        )
    proj = evecs.T @ y
    return float((proj**2 / evals).sum())
