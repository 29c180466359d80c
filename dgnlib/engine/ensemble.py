"""Train many compatible runs at once: one `StackedDGN`, one optimiser over the stacked tensors, per-run the rest.

Compatible runs (`RunSpec.group_key`: same architecture, data, optimiser, learning rate, batch size, epochs, loss)
may differ in seed, variant, β, ε and gate source. Each run keeps what makes it the run `train.fit` would train:
- its own initialisation (`spec.model.build(spec.init_seed())`, the models' own code) and, for flnpf, the feature
  weights of the relu run it copies;
- its own train/validation split (`derive_seed(seed, "val_split")`) and minibatch order (`derive_seed(seed,
  "minibatch")`): every run steps on its own minibatch, all in one batched kernel;
- its own optimiser state: Adam, SGD and RMSprop act elementwise, so one optimiser over the stacked tensors is
  exactly one optimiser per run (all runs take the same number of steps);
- its own loss: the summed loss's gradient in run r is run r's gradient, as no operation mixes runs;
- its own metrics, logged as `fit` logs them (epoch 0 = initialisation).
A run whose loss or metrics become non-finite is marked invalid at the end of that epoch: its weights and optimiser
state are zeroed and its gradients masked from then on, so that it stays put while the others go on (its non-finite
values never reach another run, since no operation mixes runs).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dgnlib.engine import tensors as datamod
from dgnlib.engine.runs import RunResult, RunSpec, gate_weight_id
from dgnlib.engine.stacked import StackedDGN, per_run_loss
from dgnlib.engine.threads import single_thread
from dgnlib.seeding import derive_seed

REFERENCE = 1000  # gates_changed is measured on the first 1000 training inputs of each run, as in train.fit
EVAL_CHUNK = 1024
STEPS = ("auto", "dense", "reference")
NAN_ALLOWED = ("val_acc", "test_acc", "test_acc_a", "test_acc_b")  # NaN when there is no such split: not a failure


def make_optimizer(name: str, params: Sequence[nn.Parameter], lr: float, **constants: float) -> torch.optim.Optimizer:
    """Adam / SGD / RMSprop over `params` (`constants`: e.g. alpha, eps), fused where this torch has a fused kernel
    for the device, else foreach."""
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}[name]
    try:
        return cls(params, lr=lr, fused=True, **constants)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this optimiser or device
        return cls(params, lr=lr, foreach=True, **constants)


def per_run_correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness (R, n) bool; the sign of a single output against ±1 labels."""
    if out.shape[-1] == 1:
        return torch.where(out[..., 0] > 0, 1.0, -1.0) == y.to(out.dtype)
    return out.argmax(-1) == y


def _pack(pattern: torch.Tensor) -> torch.Tensor:
    """Bool (..., g) packed 8 per byte (uint8), to keep initial gate patterns small."""
    pad = (-pattern.shape[-1]) % 8
    p = nn.functional.pad(pattern.to(torch.uint8), (0, pad)).view(*pattern.shape[:-1], -1, 8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=p.device)
    return (p * weights).sum(-1, dtype=torch.uint8)


_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


def build_models(specs: Sequence[RunSpec], gate_weights: Mapping[str, Mapping[str, np.ndarray]]) -> list:
    """Each spec's model built by the models' own code from its init seed; flnpf gets its relu run's weights."""
    models = []
    for spec in specs:
        model = spec.model.build(spec.init_seed())
        if spec.gate_source is not None:
            wid = gate_weight_id(spec.gate_source)
            if wid not in gate_weights:
                raise ValueError(f"flnpf run needs the weights of its relu run ({wid}); they were not given")
            relu = spec.gate_source.spec.model.build(0)
            relu.load_state_dict({k: torch.as_tensor(v) for k, v in gate_weights[wid].items()})
            model.copy_gates_from(relu)
        models.append(model)
    return models


class _Eval:
    """Per-epoch metrics of every run of a stack, as `train.fit` logs them."""

    def __init__(self, net: StackedDGN, specs: list[RunSpec], splits: dict, train_idx, val_idx, probe) -> None:
        self.net, self.specs, self.splits, self.probe = net, specs, splits, probe
        self.train_idx, self.val_idx = train_idx, val_idx
        x_pool = splits["train"][0]
        ref = train_idx[:, : min(REFERENCE, train_idx.shape[1])]
        self.reference = x_pool[ref]  # (R, n_ref, ...): each run's own first training inputs
        self.initial = [_pack(p) for p in self._patterns()]

    def _patterns(self) -> list[torch.Tensor]:
        chunks = [self.net.patterns(self.reference[:, i : i + EVAL_CHUNK])
                  for i in range(0, self.reference.shape[1], EVAL_CHUNK)]
        return [torch.cat([c[l] for c in chunks], dim=1) for l in range(len(chunks[0]))]

    @torch.no_grad()
    def _scores(self, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses and correctness (R, n) of every run on a shared set."""
        losses, correct = [], []
        for i in range(0, x.shape[0], EVAL_CHUNK):
            xb, yb = x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]
            out = self.net(xb, shared=True)
            yr = yb.expand(self.net.R, *yb.shape)
            losses.append(per_run_loss(loss, out, yr).double())
            correct.append(per_run_correct(out, yr))
        return torch.cat(losses, 1), torch.cat(correct, 1).double()

    @torch.no_grad()
    def _own(self, idx: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example losses and correctness (R, n) of every run on its own examples x_pool[idx[r]]."""
        x_pool, y_pool = self.splits["train"]
        losses, correct = [], []
        for i in range(0, idx.shape[1], EVAL_CHUNK):
            part = idx[:, i : i + EVAL_CHUNK]
            out, yr = self.net(x_pool[part]), y_pool[part]
            losses.append(per_run_loss(loss, out, yr).double())
            correct.append(per_run_correct(out, yr))
        return torch.cat(losses, 1), torch.cat(correct, 1).double()

    def rows(self, epoch: int, active: list[bool], running: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[list[dict], list[list[float]]]:
        """One metrics row per run (inactive runs: empty), and per-layer fractions of gates changed.

        Train loss and accuracy: at epoch 0 on each run's whole training split; after an epoch, `running` (the means
        over that epoch's minibatches, as `train.fit` logs them), which saves a pass over the training set.
        """
        self.net.eval()
        loss = self.specs[0].loss
        nan = torch.full((self.net.R,), float("nan"), dtype=torch.float64)
        if running is None:
            losses, correct = self._own(self.train_idx, loss)
            train_loss, train_acc = losses.mean(1).cpu(), correct.mean(1).cpu()
        else:
            train_loss, train_acc = (t.double().cpu() for t in running)
        if "val" in self.splits:
            val_acc = self._scores(*self.splits["val"], loss)[1].mean(1)
        elif self.val_idx.shape[1]:
            val_acc = self._own(self.val_idx, loss)[1].mean(1)
        else:
            val_acc = nan
        halves = (nan, nan)
        if "test" in self.splits:
            test_correct = self._scores(*self.splits["test"], loss)[1]
            test_acc = test_correct.mean(1)
            if test_correct.shape[1] >= 2:  # fixed halves: even and odd positions (selection on one, report other)
                halves = (test_correct[:, 0::2].mean(1), test_correct[:, 1::2].mean(1))
        else:
            test_acc = nan
        changed = []
        for init, now in zip(self.initial, self._patterns()):
            diff = _POPCOUNT.to(init.device)[(init ^ _pack(now)).long()].sum(dim=(1, 2))
            changed.append((diff, now.shape[1] * now.shape[2]))
        rows, layers = [], []
        for r in range(self.net.R):
            if not active[r]:
                rows.append({})
                layers.append([])
                continue
            per_layer = [float(d[r]) / n for d, n in changed]
            total = sum(float(d[r]) for d, _ in changed) / sum(n for _, n in changed)
            row = {"epoch": epoch, "train_loss": float(train_loss[r]), "train_acc": float(train_acc[r]),
                   "val_acc": float(val_acc[r]), "test_acc": float(test_acc[r]), "gates_changed": total,
                   "test_acc_a": float(halves[0][r]), "test_acc_b": float(halves[1][r])}
            if self.probe is not None:
                row["nu"] = self._nu(r)
            rows.append(row)
            layers.append(per_layer)
        return rows, layers

    def _nu(self, r: int) -> float:
        """ν of run r's NPK on the probe, computed on its own model exactly as `train.probe_alignment` does."""
        from dgnlib.engine.reference import probe_alignment

        model = self.specs[r].model.build(0)
        model.load_state_dict(self.net.run_state(r))
        return probe_alignment(model, *self.probe)


def _kill(net: StackedDGN, opt: torch.optim.Optimizer, r: int) -> None:
    """Zero run r's weights and optimiser state, so that with masked gradients it stays put."""
    for p, view in _views(net, r):
        with torch.no_grad():
            view(p).zero_()
        for state in opt.state.get(p, {}).values():
            if isinstance(state, torch.Tensor) and state.shape == p.shape:
                view(state).zero_()


def _views(net: StackedDGN, r: int) -> list[tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]:
    """(parameter, function giving run r's slice of a tensor shaped like it) for every trainable stack."""
    def rows(i: int, n: int, conv: bool):
        def view(t: torch.Tensor) -> torch.Tensor:
            if conv:
                c = t.shape[0] // n
                return t[i * c : (i + 1) * c]
            return t[i]
        return view

    out = []
    pairs = [(net.value_w, net.value_b, r, net.R)]
    s0, s1 = net.run_slice("soft")
    if s0 <= r < s1:
        pairs.append((net.soft_w, net.soft_b, r - s0, s1 - s0))
    for ws, bs, i, n in pairs:
        for l, w in enumerate(ws):
            out.append((w, rows(i, n, net.conv[l])))
            if net.has_bias:
                out.append((bs[l], rows(i, n, net.conv[l])))
    return out


def train_ensemble(
    specs: Sequence[RunSpec],
    gate_weights: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    *,
    device: str = "auto",
    on_epoch: Callable[[int, int], None] | None = None,
    step: str = "auto",
) -> list[RunResult]:
    """Train compatible runs as one ensemble; one `RunResult` per spec, in the order given.

    gate_weights: for flnpf runs, '<relu key>@<epoch>' (`runs.gate_weight_id`) → that relu run's value-network state
    dict. on_epoch(epoch, runs still active) is called after each epoch's metrics (progress bars).
    On the CPU the group trains on one torch thread, whatever this process's setting: the thread count changes the
    order of float reductions, and one thread per group, groups side by side (`dgnlib.engine.pool`), is also the
    fastest.
    step: "auto" trains dense stacks with the hand-written step and gate tables (`dgnlib.engine.dense`), the rest with
    autograd; "dense" the same without gate tables; "reference" everything with autograd. All three give the same
    bits (tests/test_dense.py on the CPU; bench/bitwise_check.py on another device), so the choice changes the speed
    and never a stored number.
    """
    from dgnlib.engine.reference import resolve_device

    specs = list(specs)
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}: expected one of {', '.join(STEPS)}")
    if not specs or len({s.group_key() for s in specs}) != 1:
        raise ValueError("train_ensemble needs one or more compatible specs (the same RunSpec.group_key())")
    dev = resolve_device(device)
    with single_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return _train(specs, gate_weights, dev, on_epoch, step)


def _train(specs: list[RunSpec], gate_weights: Mapping[str, Mapping[str, np.ndarray]] | None, dev: torch.device,
           on_epoch: Callable[[int, int], None] | None, step: str) -> list[RunResult]:
    from dgnlib.engine import dense  # lazily: the hand-written step is needed only when training

    first = specs[0]
    start = time.perf_counter()
    splits = {k: (x.to(dev), y.to(dev)) for k, (x, y) in datamod.materialise(first.data).items()}
    net = StackedDGN(build_models(specs, gate_weights or {})).to(dev)
    ordered = [specs[i] for i in net.order]
    x_pool, y_pool = splits["train"]
    n = x_pool.shape[0]
    if "val" in splits or first.data.val_fraction == 0:
        tr = [torch.arange(n)] * net.R
        va = [torch.arange(0)] * net.R
    else:
        tr, va = zip(*(datamod.train_val_indices(n, first.data.val_fraction, derive_seed(s.seed, "val_split"))
                       for s in ordered))
    train_idx, val_idx = torch.stack(tr).to(dev), torch.stack(va).to(dev)
    probe = None
    if first.probe_per_class:
        xp, yp = datamod.balanced_subset(x_pool.cpu().numpy(), y_pool.cpu().numpy(), first.probe_per_class,
                                         derive_seed(first.data.subset_seed, "probe"))
        probe = (torch.as_tensor(xp), torch.as_tensor(yp))
    evaluator = _Eval(net, ordered, splits, train_idx, val_idx, probe)
    constants = {k: v for k, v in (("alpha", first.opt_alpha), ("eps", first.opt_eps)) if v is not None}
    opt = make_optimizer(first.optimizer, net.trainable(), first.lr, **constants)  # None: torch's default
    fast = None
    if step != "reference" and dense.supports(net) and x_pool.dim() == 2:
        table = dense.gate_table(net, x_pool, first.batch_size) if step == "auto" else None
        fast = dense.DenseStep(net, first.loss, table)
    opt_step = dense.OptimizerStep(opt) if fast is not None else opt.step
    gens = [torch.Generator().manual_seed(derive_seed(s.seed, "minibatch")) for s in ordered]
    active = [True] * net.R
    rows: list[list[dict]] = [[] for _ in ordered]
    layers: list[list[float]] = [[] for _ in ordered]
    weights: list[dict] = [{} for _ in ordered]
    reasons = [""] * net.R
    best: list[tuple[float, int, dict | None]] = [(-math.inf, 0, None)] * net.R  # (test acc, epoch, weights)
    eval_s = 0.0

    def value_state(r: int) -> dict:
        return {k: v.cpu().numpy() for k, v in net.run_state(r).items() if k.startswith("value.")}

    def log(epoch: int, running: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        nonlocal eval_s
        t0 = time.perf_counter()
        new, per_layer = evaluator.rows(epoch, active, running)
        eval_s += time.perf_counter() - t0
        for r, row in enumerate(new):
            if not active[r]:
                continue
            rows[r].append(row)
            layers[r] = per_layer[r]
            if not all(math.isfinite(v) for k, v in row.items() if k not in NAN_ALLOWED or v == v):
                active[r], reasons[r] = False, f"non-finite metric at epoch {epoch}"
                _kill(net, opt, r)
                continue
            if epoch in ordered[r].keep_weights:
                weights[r][epoch] = value_state(r)
            if ordered[r].keep_best and epoch >= 1 and row["test_acc"] > best[r][0]:  # strict: the first maximum
                best[r] = (row["test_acc"], epoch, value_state(r))
        if on_epoch is not None:
            on_epoch(epoch, sum(active))

    log(0)
    for epoch in range(1, first.epochs + 1):
        if not any(active):
            break
        net.train()
        order = torch.stack([idx[torch.randperm(idx.shape[0], generator=g).to(dev)]
                             for idx, g in zip(train_idx, gens)])
        nonfinite = torch.zeros(net.R, dtype=torch.bool, device=dev)
        loss_sum = torch.zeros(net.R, dtype=torch.float64, device=dev)
        correct = torch.zeros(net.R, dtype=torch.float64, device=dev)
        dead = [p for r in range(net.R) if not active[r] for p in _views(net, r)]
        for i in range(0, order.shape[1], first.batch_size):
            idx = order[:, i : i + first.batch_size]
            if fast is not None:
                yb = y_pool[idx]
                loss, out = fast.step(x_pool.index_select(0, idx.flatten()).view(*idx.shape, -1), yb, idx, i == 0)
            else:
                out, yb = net(x_pool[idx]), y_pool[idx]
                loss = per_run_loss(first.loss, out, yb).mean(1)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
            nonfinite |= ~torch.isfinite(loss.detach())  # checked once per epoch: no per-step synchronisation
            loss_sum += loss.detach().double() * idx.shape[1]
            correct += per_run_correct(out.detach(), yb).sum(1).double()
            for p, view in dead:
                view(p.grad).zero_()
            opt_step()
        for r in torch.nonzero(nonfinite).flatten().tolist():
            if active[r]:
                active[r], reasons[r] = False, f"non-finite training loss in epoch {epoch}"
                _kill(net, opt, r)
        log(epoch, (loss_sum / order.shape[1], correct / order.shape[1]))
    wall = time.perf_counter() - start
    results = [None] * net.R
    for pos, i in enumerate(net.order):
        spec = specs[i]
        if best[pos][2] is not None and active[pos]:  # the best-test-accuracy checkpoint (selection.best_test_epoch)
            weights[pos][best[pos][1]] = best[pos][2]
        results[i] = RunResult(
            spec.key(), spec.describe(), "ok" if active[pos] else "invalid", rows[pos],
            gate_stats={"gates_changed_layers": layers[pos]},
            timings={"group_wall_s": wall, "group_eval_s": eval_s, "group_runs": net.R,
                     "threads": torch.get_num_threads(), "device": dev.type}, reason=reasons[pos],
            weights=weights[pos])
    return results
