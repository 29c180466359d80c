"""R gated networks of one architecture held as stacked tensors, so that one batched kernel runs them all.

Layout (the fastest exact one found on CPU, and the natural one on CUDA):
- dense layers: weights [R, fan_in, fan_out], biases [R, 1, fan_out], activations [R, batch, features];
  `torch.baddbmm` computes every run's layer in one call, each run on its own minibatch;
- convolutions: weights [R·C_out, C_in, k, k], activations [batch, R·C, H, W]; a grouped convolution (groups = R)
  is exactly R independent convolutions. With an input shared by every run (evaluation), the first layer is one
  plain convolution / one GEMM over the concatenated weights.

Runs are ordered by how they gate, so that each kind of gating is one contiguous slice and nothing is computed for a
run that does not need it: soft (dnpfl: a trained feature network), hard (frnpf-ii, frnpf-di, flnpf: a frozen
feature network, run without autograd), self (relu: gates of its own pre-activations) and none (linear). The frozen
feature weights are buffers, never handed to the optimiser.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dgnlib.core.models import GatedNet

ROLES = ("soft", "hard", "self", "none")
_ROLE = {"dnpfl": "soft", "frnpf-ii": "hard", "frnpf-di": "hard", "flnpf": "hard", "relu": "self", "linear": "none"}


def _is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d)


def _stack(layers: Sequence[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stacked (weight, bias) of the same layer of several runs in this module's layout."""
    if _is_conv(layers[0]):
        w = torch.cat([m.weight.detach() for m in layers])
        b = None if layers[0].bias is None else torch.cat([m.bias.detach() for m in layers])
    else:
        w = torch.stack([m.weight.detach().T for m in layers])
        b = None if layers[0].bias is None else torch.stack([m.bias.detach()[None] for m in layers])
    return w.clone().contiguous(), None if b is None else b.clone().contiguous()


class StackedDGN(nn.Module):
    """R `GatedNet`s of one architecture (any variants, β and ε) as one module of stacked tensors.

    `order[i]` is the index, in the list given, of the run at stack position i. Inputs to `forward` are per run:
    (R, batch, d) for dense nets, (R, batch, C, H, W) for convolutional ones (in stack order); `shared=True` takes
    one (batch, ...) input seen by every run. Outputs are (R, batch, d_out).
    """

    def __init__(self, models: Sequence[GatedNet]) -> None:
        super().__init__()
        if not models:
            raise ValueError("StackedDGN needs at least one model")
        first = models[0]
        shape = [(type(m), tuple(p.shape for p in m.value.parameters())) for m in models]
        if any(s != shape[0] for s in shape) or any(m.flatten_at != first.flatten_at for m in models):
            raise ValueError("every model of an ensemble must have the same architecture")
        self.order = sorted(range(len(models)), key=lambda i: ROLES.index(_ROLE[models[i].variant]))
        ms = [models[i] for i in self.order]
        self.variants = [m.variant for m in ms]
        roles = [_ROLE[v] for v in self.variants]
        self.counts = {r: roles.count(r) for r in ROLES}
        self.R = len(ms)
        self.flatten_at, self.pooling = first.flatten_at, first.pooling
        self.conv = [_is_conv(layer) for layer in first.value]
        self.depth = len(first.value)
        self.value_w, self.value_b = nn.ParameterList(), nn.ParameterList()
        for l in range(self.depth):
            w, b = _stack([m.value[l] for m in ms])
            self.value_w.append(nn.Parameter(w))
            self.value_b.append(nn.Parameter(b) if b is not None else nn.Parameter(torch.empty(0)))
        self.has_bias = first.value[0].bias is not None
        soft = [m for m in ms if _ROLE[m.variant] == "soft"]
        hard = [m for m in ms if _ROLE[m.variant] == "hard"]
        self.soft_w, self.soft_b = nn.ParameterList(), nn.ParameterList()
        for l in range(self.depth - 1 if soft else 0):
            w, b = _stack([m.feature[l] for m in soft])
            self.soft_w.append(nn.Parameter(w))
            self.soft_b.append(nn.Parameter(b) if b is not None else nn.Parameter(torch.empty(0)))
        for l in range(self.depth - 1 if hard else 0):
            w, b = _stack([m.feature[l] for m in hard])
            self.register_buffer(f"hard_w{l}", w)
            self.register_buffer(f"hard_b{l}", b if b is not None else torch.empty(0))
        shape = (-1, 1, 1)
        self.register_buffer("beta", torch.tensor([m.beta for m in soft], dtype=torch.float32).reshape(shape))
        self.register_buffer("scale", torch.tensor([1 + m.eps for m in soft], dtype=torch.float32).reshape(shape))
        # dnpfl runs whose feature network passes relu(q) (feature_act "relu") rather than q·gate
        relu_feature = [m.feature_act == "relu" for m in soft]
        self.register_buffer("relu_feature", torch.tensor(relu_feature, dtype=torch.bool).reshape(shape))
        self.feature_mode = "relu" if soft and all(relu_feature) else "mixed" if any(relu_feature) else "gated"

    # -- parameters ---------------------------------------------------------------------------------------------
    def trainable(self) -> list[nn.Parameter]:
        """What the optimiser gets: the value stacks and the soft (dnpfl) feature stacks."""
        params = list(self.value_w) + list(self.soft_w)
        if self.has_bias:
            params += list(self.value_b) + list(self.soft_b)
        return params

    def run_slice(self, name: str) -> tuple[int, int]:
        """(start, stop) stack positions of the runs of a role."""
        start = sum(self.counts[r] for r in ROLES[: ROLES.index(name)])
        return start, start + self.counts[name]

    def run_state(self, i: int) -> dict[str, torch.Tensor]:
        """The state dict (value.* and feature.*, nn.Linear/Conv2d layout) of the run at stack position i."""
        out = {}
        role = _ROLE[self.variants[i]]
        for l in range(self.depth):
            out[f"value.{l}.weight"], b = self._unstack(self.value_w[l], self.value_b[l], l, i, self.R)
            if b is not None:
                out[f"value.{l}.bias"] = b
        if role in ("soft", "hard"):
            start, stop = self.run_slice(role)
            for l in range(self.depth - 1):
                w, b = (self.soft_w[l], self.soft_b[l]) if role == "soft" else (
                    getattr(self, f"hard_w{l}"), getattr(self, f"hard_b{l}"))
                out[f"feature.{l}.weight"], b = self._unstack(w, b, l, i - start, stop - start)
                if b is not None:
                    out[f"feature.{l}.bias"] = b
        return out

    def _unstack(self, w: torch.Tensor, b: torch.Tensor, l: int, i: int, n: int):
        if self.conv[l]:
            c = w.shape[0] // n
            wi, bi = w[i * c : (i + 1) * c], (b[i * c : (i + 1) * c] if self.has_bias else None)
        else:
            wi, bi = w[i].T, (b[i, 0] if self.has_bias else None)
        return wi.detach().clone(), None if bi is None else bi.detach().clone()

    # -- layout helpers -----------------------------------------------------------------------------------------
    def _linear(self, l: int, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, n: int, shared: bool):
        """Layer l of n runs: z per run (or shared when `shared`), in the layout of that layer."""
        bias = b if self.has_bias else None
        if self.conv[l]:
            if shared:  # one input for all runs: a plain convolution over the concatenated filters
                return nn.functional.conv2d(z, w, bias, padding=w.shape[-1] // 2)
            return nn.functional.conv2d(z, w, bias, padding=w.shape[-1] // 2, groups=n)
        if shared:  # one GEMM over the concatenated weights, then back to run-major
            out = z @ w.permute(1, 0, 2).reshape(w.shape[1], -1)
            out = out.view(z.shape[0], n, -1).transpose(0, 1)
            return out + bias if bias is not None else out
        return torch.baddbmm(bias, z, w) if bias is not None else torch.bmm(z, w)

    def _reshape(self, z: torch.Tensor, n: int) -> torch.Tensor:
        """From the convolutional layout (batch, n·C, H, W) to run-major dense (n, batch, features)."""
        if self.pooling == "gap":
            z = z.mean(dim=(2, 3))
        return z.reshape(z.shape[0], n, -1).transpose(0, 1)

    def _slice(self, z: torch.Tensor, l: int, a: int, b: int) -> torch.Tensor:
        """Runs a..b of an activation in layer l's layout."""
        if self.conv[l]:
            c = z.shape[1] // self.R
            return z[:, a * c : b * c]
        return z[a:b]

    def _cat(self, parts: list[torch.Tensor], l: int) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1 if self.conv[l] else 0)

    def _scale(self, t: torch.Tensor, l: int) -> torch.Tensor:
        """A per-soft-run (k, 1, 1) tensor shaped to broadcast over layer l's layout."""
        if self.conv[l]:
            return t.reshape(1, -1, 1, 1, 1)
        return t

    # -- forward ------------------------------------------------------------------------------------------------
    def _feature(self, x: torch.Tensor, role: str, shared: bool) -> list[torch.Tensor]:
        """Gating pre-activations of the soft or hard feature stacks, one per gated layer."""
        a, b = self.run_slice(role)
        n = b - a
        z = x if shared else self._slice(x, 0, a, b)
        pres = []
        for l in range(self.depth - 1):
            if l == self.flatten_at:
                z = self._reshape(z, n)
            if role == "soft":
                q = self._linear(l, z, self.soft_w[l], self.soft_b[l], n, shared and l == 0)
                z = self._soft_next(q, l)
            else:
                q = self._linear(l, z, getattr(self, f"hard_w{l}"), getattr(self, f"hard_b{l}"), n, shared and l == 0)
                z = torch.relu(q)
            pres.append(q)
        return pres

    def _soft_next(self, q: torch.Tensor, l: int) -> torch.Tensor:
        """What the soft feature stacks pass to their next layer: q·gate, relu(q), or per run (`feature_act`)."""
        if self.feature_mode == "relu":
            return torch.relu(q)
        gated = q * self._soft_gate(q, l)
        if self.feature_mode == "gated":
            return gated
        mask = self.relu_feature  # a where() routes each run's gradient to its own branch only, exactly
        if self.conv[l]:
            qv = q.reshape(q.shape[0], mask.shape[0], -1, *q.shape[2:])
            out = torch.where(self._scale(mask, l), torch.relu(qv), gated.reshape(qv.shape))
            return out.reshape(q.shape)
        return torch.where(mask, torch.relu(q), gated)

    def _soft_gate(self, q: torch.Tensor, l: int) -> torch.Tensor:
        """(1 + ε)·sigmoid(β q), with each soft run's own β and ε."""
        if self.conv[l]:  # (batch, runs·C, H, W) viewed as (batch, runs, C, H, W) to broadcast per run
            qv = q.reshape(q.shape[0], self.beta.shape[0], -1, *q.shape[2:])
            g = self._scale(self.scale, l) * torch.sigmoid(self._scale(self.beta, l) * qv)
            return g.reshape(q.shape)
        return self.scale * torch.sigmoid(self.beta * q)

    def forward(self, x: torch.Tensor, shared: bool = False, keep_pre: bool = False):
        """Outputs (R, batch, d_out); with keep_pre also the gating pre-activations of every gated layer."""
        if not shared and self.conv[0]:  # (R, batch, C, H, W) -> (batch, R·C, H, W)
            x = x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])
        soft = self._feature(x, "soft", shared) if self.counts["soft"] else None
        hard = None
        if self.counts["hard"]:
            with torch.no_grad():  # hard gates carry no gradient
                hard = self._feature(x, "hard", shared)
        s0, s1 = self.run_slice("self")
        z, pres = x, []
        for l in range(self.depth - 1):
            if l == self.flatten_at:
                z = self._reshape(z, self.R)
            q = self._linear(l, z, self.value_w[l], self.value_b[l], self.R, shared and l == 0)
            gates, pre = [], []
            if soft is not None:
                gates.append(self._soft_gate(soft[l], l))
                pre.append(soft[l])
            if hard is not None:
                gates.append((hard[l] > 0).to(q.dtype))
                pre.append(hard[l])
            if s1 > s0:  # relu: q·1{q>0} is relu(q), in value and in gradient
                own = self._slice(q, l, s0, s1)
                gates.append((own > 0).to(q.dtype))
                pre.append(own)
            if self.counts["none"]:
                lin = self._slice(q, l, s1, self.R)
                gates.append(torch.ones_like(lin))
                pre.append(torch.ones_like(lin))
            z = q * self._cat(gates, l)
            if keep_pre:
                pres.append(self._cat([p.detach() for p in pre], l))
        if self.flatten_at == self.depth - 1:
            z = self._reshape(z, self.R)
        out = self._linear(self.depth - 1, z, self.value_w[-1], self.value_b[-1], self.R, False)
        return (out, pres) if keep_pre else out

    def patterns(self, x: torch.Tensor, shared: bool = False) -> list[torch.Tensor]:
        """On/off gate patterns per gated layer, each (R, batch, gates of that layer) bool."""
        with torch.no_grad():
            _, pres = self.forward(x, shared=shared, keep_pre=True)
        out = []
        for l, p in enumerate(pres):
            if self.conv[l]:
                p = p.reshape(p.shape[0], self.R, -1).transpose(0, 1)
            out.append(p > 0)
        return out


def per_run_loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example loss (R, n) for outputs (R, n, k) and labels (R, n); as `reference._loss` before its mean."""
    if name == "ce":
        return nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    if out.shape[-1] == 1:  # ±1 labels on one output
        return 0.5 * (out[..., 0] - y.to(out.dtype)) ** 2
    target = nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
    return 0.5 * ((out - target) ** 2).sum(-1)
