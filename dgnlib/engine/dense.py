"""A hand-written training step for fully connected `StackedDGN`s, bitwise identical to the autograd step.

The reference step (`ensemble._train` with `step="reference"`) runs the stack's forward under autograd and calls
`backward()`. For dense stacks this module computes the same thing by hand: the same kernels on tensors of the same
shapes, so every float is the same bit for bit (weights, optimiser state, metrics), and the committed run store stays
valid. What it saves is overhead, not arithmetic:
- each gate tensor is built once per layer and reused by the backward pass (the reference rebuilds it: comparisons,
  bool→float copies, `ones_like`, a `cat`, and dnpfl's soft gate computed in both networks);
- gradients are written into persistent buffers (`out=`), with no autograd graph or bookkeeping;
- the hard gates of frozen feature networks (frnpf-ii, frnpf-di, flnpf) can come from a `gate_table`, computed once
  per run for the whole training pool instead of a feature forward pass in every step.
Only the loss head (cross-entropy / squared loss of the (R, batch, d_out) outputs, a few hundred numbers) keeps
autograd, so that its gradient is the reference's by construction.

Bitwise identity rests on two facts, both tested (tests/test_dense.py): an element-wise op gives the same bits on the
same operands, and a batched product's row does not depend on the other rows of its batch (the gate table's premise).
Gradients that reach one tensor along several paths are summed in the order autograd sums them: dnpfl's feature
pre-activation gets its value-network gate term first, then the direct term of q·g, then its own gate term.
"""

from __future__ import annotations

import warnings

import torch

from dgnlib.engine.stacked import StackedDGN, per_run_loss

# The largest gate table built, in bytes (bool, one byte per gate): 8 hard runs × 60 000 images × 640 gates = 307 MB.
MAX_TABLE_BYTES = 1 << 30


def supports(net: StackedDGN) -> bool:
    """Whether the hand-written step covers this stack: dense layers only (conv nets keep the autograd step)."""
    return not any(net.conv) and net.flatten_at is None


@torch.no_grad()
def gate_table(net: StackedDGN, x_pool: torch.Tensor, batch_size: int) -> list[torch.Tensor] | None:
    """Hard gates of the frozen feature networks on the whole pool: per gated layer (hard runs, pool size, width) bool.

    Computed with the training step's own product shapes (chunks of `batch_size` inputs, every hard run on its own
    copy), so that each gate is the bit the step would compute. None when there is no hard run or it is too large.
    """
    a, b = net.run_slice("hard")
    n, k = x_pool.shape[0], b - a
    widths = [net.value_w[l].shape[2] for l in range(net.depth - 1)]
    if k == 0 or n * k * sum(widths) > MAX_TABLE_BYTES:
        return None
    table = [torch.empty(k, n, w, dtype=torch.bool, device=x_pool.device) for w in widths]
    for i in range(0, n, batch_size):
        z = x_pool[i : i + batch_size].expand(k, -1, -1).contiguous()
        for l in range(net.depth - 1):
            q = _product(z, getattr(net, f"hard_w{l}"), getattr(net, f"hard_b{l}"), net.has_bias)
            torch.gt(q, 0, out=table[l][:, i : i + batch_size])
            z = torch.relu(q)
    return table


def _product(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bias: bool) -> torch.Tensor:
    """One dense layer of a stack, exactly as `StackedDGN._linear` computes it on per-run inputs."""
    return torch.baddbmm(b, z, w) if bias else torch.bmm(z, w)


class DenseStep:
    """The forward and backward pass of one training step of a dense stack; gradients left in each `p.grad`.

    `step(xb, yb, idx)` takes each run's minibatch (R, batch, d_in) and labels (R, batch) in stack order, and the
    pool indices idx (R, batch) they were gathered with (used only with a gate table); it returns the per-run mean
    losses (R,) and outputs (R, batch, d_out), detached, as the reference step computes them.
    """

    def __init__(self, net: StackedDGN, loss: str, table: list[torch.Tensor] | None = None) -> None:
        if not supports(net):
            raise ValueError("DenseStep needs a stack of dense layers (convolutional nets use the autograd step)")
        self.net, self.loss, self.table = net, loss, table
        self.soft = net.run_slice("soft")
        self.hard = net.run_slice("hard")
        self.self_ = net.run_slice("self")
        for p in net.trainable():  # persistent gradient buffers, written in place by every step
            p.grad = torch.zeros_like(p)

    # -- forward --------------------------------------------------------------------------------------------------
    def _soft_forward(self, xb: torch.Tensor) -> list[tuple]:
        """dnpfl feature networks: per gated layer (input, q, sigmoid(βq), (1+ε)·sigmoid(βq))."""
        net, (a, b) = self.net, self.soft
        z, saved = xb[a:b], []
        for l in range(net.depth - 1):
            q = _product(z, net.soft_w[l], net.soft_b[l], net.has_bias)
            sig = torch.sigmoid(net.beta * q)
            g = net.scale * sig
            saved.append((z, q, sig, g))
            if l < net.depth - 2:  # the last layer's output feeds nothing
                z = self._next(q, g)
        return saved

    def _next(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """A soft feature layer's output, as `StackedDGN._soft_next` computes it (q·g, relu(q), or per run)."""
        mode = self.net.feature_mode
        if mode == "relu":
            return torch.relu(q)
        return q * g if mode == "gated" else torch.where(self.net.relu_feature, torch.relu(q), q * g)

    def _hard_gates(self, xb: torch.Tensor, idx: torch.Tensor | None, check: bool) -> list[torch.Tensor]:
        """Frozen feature networks' gates per gated layer, as float (hard runs, batch, width).

        With `check`, a step that reads the table also computes the gates and compares: a table that differs in one
        bit (another BLAS whose rows depend on their batch) is dropped with a warning, and this step uses the gates
        computed. The engine checks the first step of every epoch.
        """
        net, (a, b) = self.net, self.hard
        looked_up = None
        if self.table is not None and idx is not None:
            rows = torch.arange(b - a, device=idx.device)[:, None]
            looked_up = [t[rows, idx[a:b]].to(xb.dtype) for t in self.table]
            if not check:
                return looked_up
        gates, z = [], xb[a:b]
        for l in range(net.depth - 1):
            q = _product(z, getattr(net, f"hard_w{l}"), getattr(net, f"hard_b{l}"), net.has_bias)
            gates.append((q > 0).to(q.dtype))
            z = torch.relu(q)
        if looked_up is not None and not all(torch.equal(t, g) for t, g in zip(looked_up, gates)):
            warnings.warn("the gate table differs from the gates computed in a training step on this device; "
                          "training goes on without it (same numbers, slower)", RuntimeWarning, stacklevel=3)
            self.table = None
        return gates

    @torch.no_grad()
    def step(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor | None = None, check: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward of one step; the gradients land in the parameters' `.grad` buffers (`check`:
        compare the gate table with the gates computed, see `_hard_gates`)."""
        net = self.net
        (s0, s1), (h0, h1), (r0, r1) = self.soft, self.hard, self.self_
        soft = self._soft_forward(xb) if s1 > s0 else None
        hard = self._hard_gates(xb, idx, check) if h1 > h0 else None
        z, saved = xb, []
        for l in range(net.depth - 1):
            q = _product(z, net.value_w[l], net.value_b[l], net.has_bias)
            gate = torch.empty_like(q)
            if soft is not None:
                gate[s0:s1] = soft[l][3]
            if hard is not None:
                gate[h0:h1] = hard[l]
            if r1 > r0:
                gate[r0:r1] = q[r0:r1] > 0
            if r1 < net.R:
                gate[r1:] = 1.0
            saved.append((z, q, gate))
            z = q * gate
        out = _product(z, net.value_w[-1], net.value_b[-1], net.has_bias)
        with torch.enable_grad():  # the loss head alone under autograd: its gradient is the reference's
            head = out.detach().requires_grad_()
            loss = per_run_loss(self.loss, head, yb).mean(1)
            (grad,) = torch.autograd.grad(loss.sum(), head)
        value_terms = self._value_backward(grad, z, saved)
        if soft is not None:
            self._soft_backward(soft, value_terms)
        return loss.detach(), out

    # -- backward -------------------------------------------------------------------------------------------------
    def _weight_grads(self, w: torch.nn.Parameter, b: torch.nn.Parameter, z: torch.Tensor, g: torch.Tensor) -> None:
        torch.bmm(z.transpose(1, 2), g, out=w.grad)
        if self.net.has_bias:
            torch.sum(g, dim=1, keepdim=True, out=b.grad)

    def _value_backward(self, grad: torch.Tensor, z_last: torch.Tensor, saved: list[tuple]) -> list[torch.Tensor]:
        """Value-network gradients; returns, per gated layer, the gradient reaching dnpfl's q through the value gate."""
        net, (s0, s1) = self.net, self.soft
        self._weight_grads(net.value_w[-1], net.value_b[-1], z_last, grad)
        terms: list[torch.Tensor] = [None] * (net.depth - 1)  # type: ignore[list-item]
        for l in range(net.depth - 2, -1, -1):
            z, q, gate = saved[l]
            gz = torch.bmm(grad, net.value_w[l + 1].transpose(1, 2))
            if s1 > s0:
                terms[l] = gz[s0:s1] * q[s0:s1]
            grad = gz * gate
            self._weight_grads(net.value_w[l], net.value_b[l], z, grad)
        return terms

    def _gate_grad(self, g: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """Gradient through (1+ε)·sigmoid(βq) to q, as autograd chains it: ×(1+ε), sigmoid's backward, ×β."""
        return torch.ops.aten.sigmoid_backward(g * self.net.scale, sig) * self.net.beta

    def _soft_backward(self, soft: list[tuple], terms: list[torch.Tensor]) -> None:
        """dnpfl feature gradients: each q sums its value-gate, direct and own-gate terms in autograd's order."""
        net = self.net
        gzf = None
        for l in range(net.depth - 2, -1, -1):
            z, q, sig, g = soft[l]
            grad = self._gate_grad(terms[l], sig)
            if gzf is not None:
                grad = self._feature_term(grad, gzf, q, sig, g)
            self._weight_grads(net.soft_w[l], net.soft_b[l], z, grad)
            if l > 0:
                gzf = torch.bmm(grad, net.soft_w[l].transpose(1, 2))


    def _feature_term(self, grad: torch.Tensor, gzf: torch.Tensor, q: torch.Tensor, sig: torch.Tensor,
                      g: torch.Tensor) -> torch.Tensor:
        """Add the gradient that reaches q from the feature network's next layer: through q·g (its direct and
        own-gate terms, in autograd's order) or through relu(q); a mixed stack takes each run's own (the other
        branch's zeros added by autograd change no bit)."""
        mode = self.net.feature_mode
        if mode != "gated":
            through_relu = grad + torch.ops.aten.threshold_backward(gzf, q, 0)
            if mode == "relu":
                return through_relu
        gated = grad + gzf * g
        gated = gated + self._gate_grad(gzf * q, sig)
        return gated if mode == "gated" else torch.where(self.net.relu_feature, through_relu, gated)


class OptimizerStep:
    """`opt.step()`, or for a fused Adam the one kernel call that `opt.step()` ends in, made directly.

    `torch.optim.Adam(fused=True).step()` spends more time in Python (grouping tensors by device, checking state)
    than in its kernel at this size; after its first step (which creates the state) the same call
    `torch._fused_adam_` on the same tensors, with the step counts incremented first as torch does, gives the same bits.
    Any other optimiser or setting goes through `opt.step()`.
    """

    def __init__(self, opt: torch.optim.Optimizer) -> None:
        self.opt, self.lists = opt, None
        group = opt.param_groups[0] if len(opt.param_groups) == 1 else {}
        self.direct = (isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
                       and group.get("fused") and not group.get("amsgrad") and not group.get("maximize")
                       and not group.get("decoupled_weight_decay") and not group.get("capturable")
                       and not isinstance(group.get("lr"), torch.Tensor))

    def __call__(self) -> None:
        """One optimiser step with the gradients in each parameter's `.grad`."""
        if not self.direct or self.lists is None:
            self.opt.step()
            if self.direct:
                params = self.opt.param_groups[0]["params"]
                state = [self.opt.state[p] for p in params]
                self.lists = (params, [p.grad for p in params], [s["exp_avg"] for s in state],
                              [s["exp_avg_sq"] for s in state], [s["step"] for s in state])
            return
        group = self.opt.param_groups[0]
        params, grads, avgs, sqs, steps = self.lists
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, avgs, sqs, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                           beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                           grad_scale=None, found_inf=None)
