"""How much the gates of a network depend on its input: always-on / always-off units and input-varying energy.

For each gated layer and each unit u (a channel at one position, for convolutions) let q_u(x) be the gating
pre-activation (the feature network's; for `relu` the network's own). Over the inputs x,
E_x[q_u²] = (E_x q_u)² + Var_x q_u: the first term is the part of the unit's energy that is the same for every input
(set by biases and by the mean of the input), the second the part that varies with the input. A layer whose share
Σ_u Var_x q_u / Σ_u E_x[q_u²] is near 0 has gates that are nearly the same for every input.

`dependence_table` stacks `gate_dependence` for several networks (e.g. the frozen feature networks of a sweep's
frnpf runs, built by `run_network` exactly as the sweep engine builds them) into one table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from dgnlib.core.models import GatedNet
from dgnlib.engine.runs import RunSpec


@torch.no_grad()
def gate_dependence(model: GatedNet, x: torch.Tensor, batch: int = 256) -> pd.DataFrame:
    """One row per gated layer: layer (1-based), units, always_on, always_off, on_fraction, input_share.

    always_on / always_off: fraction of units whose gate (1{q > 0}) is on / off for every input in x; on_fraction:
    fraction of (input, unit) gates that are on; input_share: Σ_u Var_x q_u / Σ_u E_x[q_u²] (population moments over
    x, float64; 0 when every q is 0). Computed in batches of `batch` inputs on the model's device.
    """
    if not isinstance(model, GatedNet):
        raise TypeError(f"model must be a DGN or ConvDGN, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise ValueError("x must be a tensor of at least one input (n, ...)")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    device = next(model.parameters()).device
    n, sums, squares, on, off = 0, None, None, None, None
    for i in range(0, x.shape[0], batch):
        pres = model._run(x[i : i + batch].to(device), keep="pre")[1]
        q = [p.reshape(p.shape[0], -1).to(torch.float64).cpu() for p in pres]
        if sums is None:
            sums = [torch.zeros(t.shape[1], dtype=torch.float64) for t in q]
            squares = [torch.zeros_like(s) for s in sums]
            on = [torch.ones(t.shape[1], dtype=torch.bool) for t in q]
            off = [torch.ones(t.shape[1], dtype=torch.bool) for t in q]
            count_on = [0.0 for _ in q]
        for l, t in enumerate(q):
            sums[l] += t.sum(0)
            squares[l] += (t**2).sum(0)
            gate = t > 0
            on[l] &= gate.all(0)
            off[l] &= (~gate).all(0)
            count_on[l] += float(gate.sum())
        n += q[0].shape[0]
    rows = []
    for l in range(len(sums)):
        mean, energy = sums[l] / n, squares[l] / n
        var = (energy - mean**2).clamp_min(0.0)
        total = float(energy.sum())
        rows.append(
            {
                "layer": l + 1,
                "units": int(sums[l].numel()),
                "always_on": float(on[l].double().mean()),
                "always_off": float(off[l].double().mean()),
                "on_fraction": count_on[l] / (n * sums[l].numel()),
                "input_share": float(var.sum()) / total if total > 0 else 0.0,
            }
        )
    return pd.DataFrame(rows)


def run_network(spec: RunSpec, state: Mapping[str, np.ndarray] | None = None) -> GatedNet:
    """The network of run `spec` at initialisation, as the sweep engine builds it; with `state` (a stored state dict
    of the value network, e.g. `RunStore.weights(key, epoch)`), those weights loaded instead.

    For a frozen-gate variant other than flnpf, the feature network at initialisation is the one used throughout
    training. flnpf's gates come from another run: pass that relu run's spec and its stored state instead.
    """
    if spec.gate_source is not None and state is None:
        raise ValueError("a flnpf run's gates come from its relu run: pass that run's spec and stored weights")
    model = spec.model.build(spec.init_seed())
    if state is not None:
        own = model.state_dict()
        missing = [k for k in state if k not in own]
        if missing:
            raise ValueError(f"state has weights this network does not: {missing[:3]}")
        model.load_state_dict({**own, **{k: torch.as_tensor(v) for k, v in state.items()}})
    return model.eval()


def dependence_table(networks: Mapping[str, GatedNet], x: torch.Tensor, batch: int = 256) -> pd.DataFrame:
    """`gate_dependence` of every network, one table: a "network" column (the mapping's keys) and its rows."""
    if not networks:
        raise ValueError("networks must name at least one network")
    frames = [gate_dependence(model, x, batch).assign(network=name) for name, model in networks.items()]
    out = pd.concat(frames, ignore_index=True)
    return out[["network", *[c for c in out.columns if c != "network"]]]
