"""Training of one run: a minibatch loop that logs one row per epoch (`fit`).

The full-batch GD of the value network with fixed gates is `dgnlib.core.theory.gd_value_network` (the only one).

`fit` is the plain single-run reference; `dgnlib.engine.ensemble` trains many runs at once and must agree with it. Its
random streams come from the run's seed through `derive_seed(seed, "val_split")` and `derive_seed(seed, "minibatch")`;
it never touches the global RNG. `seed_everything` is for notebooks only (global seeds, deterministic kernels, threads).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from dgnlib.core.kernels import alignment, npk
from dgnlib.core.models import GatedNet
from dgnlib.engine.tensors import train_val_indices
from dgnlib.names import LOSSES, OPTIMIZERS
from dgnlib.seeding import derive_seed

EVAL_BATCH = 256  # big enough to amortise the Python loop, small enough for conv activations to stay in cache


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, numpy and torch (the one place seeds are set), ask for deterministic kernels, pin CPU threads.

    The thread count is part of "same seed, same numbers" (it changes the order of float reductions), and small
    minibatch work runs fastest on one thread: `threads` defaults to DGN_THREADS, else 1.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    threads = int(os.environ.get("DGN_THREADS", "1")) if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _optimizer(name: str, params: Sequence[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


def _loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "ce":
        return nn.functional.cross_entropy(out, y)
    if out.shape[1] == 1:  # ±1 labels on one output
        return 0.5 * ((out[:, 0] - y.to(out.dtype)) ** 2).mean()
    target = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return 0.5 * ((out - target) ** 2).sum(1).mean()


def _correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.shape[1] == 1:  # sign of the single output against ±1 labels
        return (torch.where(out[:, 0] > 0, 1.0, -1.0) == y.to(out.dtype)).sum()
    return (out.argmax(1) == y).sum()


@torch.no_grad()
def evaluate(
    model: GatedNet, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", batch: int = EVAL_BATCH
) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on (x, y), in evaluation batches."""
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for i in range(0, x.shape[0], batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        out = model(xb)
        total_loss += _loss(loss, out, yb).item() * xb.shape[0]
        correct += int(_correct(out, yb))
    return total_loss / x.shape[0], correct / x.shape[0]


@torch.no_grad()
def _pattern(model: GatedNet, x: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    """On/off state of every gate for every input: (n, total gates) bool, computed in evaluation batches."""
    device = next(model.parameters()).device
    chunks = []
    for i in range(0, x.shape[0], batch):
        pattern = model.gate_pattern(x[i : i + batch].to(device))
        chunks.append(torch.cat([p.reshape(p.shape[0], -1) for p in pattern], dim=1).cpu())
    return torch.cat(chunks)


@torch.no_grad()
def probe_alignment(model: GatedNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """ν of the model's current neural path kernel on a probe set (x, ±1 labels y)."""
    device = next(model.parameters()).device
    gates = [g.cpu() for g in model.gates(x.to(device))]
    return alignment(npk(x, gates), y)


def _split(data: Mapping, val_fraction: float, seed: int) -> dict:
    """train / val / test tensors; val cut from train (split seeded by derive_seed(seed, "val_split")) if not given."""
    if "train" not in data:
        raise ValueError("data must be a mapping with a 'train' entry (x, y) and optional 'val' and 'test' entries")
    out = {k: (torch.as_tensor(v[0]), torch.as_tensor(v[1])) for k, v in data.items()}
    if "val" not in out and val_fraction > 0:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
        x, y = out["train"]
        tr, va = train_val_indices(x.shape[0], val_fraction, derive_seed(seed, "val_split"))
        out["val"], out["train"] = (x[va], y[va]), (x[tr], y[tr])
    return out


def fit(
    model: GatedNet,
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    optimizer: str = "adam",
    lr: float = 1e-4,
    batch_size: int = 32,
    epochs: int = 1,
    loss: str = "ce",
    seed: int = 0,
    val_fraction: float = 0.1,
    probe: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    device: str = "auto",
    on_epoch: Callable[[int, GatedNet], None] | None = None,
) -> pd.DataFrame:
    """Train the model's trainable parameters; one row per epoch (epoch 0 = at initialisation).

    data: {"train": (x, y), "test": (x, y)?, "val": (x, y)?}; labels are class indices for loss="ce" and ±1 (one
    output) or class indices (one-hot targets) for loss="mse". Columns: epoch, train_loss, train_acc (epoch 0: on the
    whole training split at initialisation; later epochs: the mean over that epoch's minibatches, as they were
    trained on, which is what the reference implementation reports and costs no extra pass), val_acc,
    test_acc, gates_changed (fraction of gates, on a fixed reference batch of training inputs, whose on/off state
    differs from initialisation), and nu (label alignment of the NPK on `probe`) when a probe is given.
    `on_epoch(epoch, model)` is called after each row is logged (epoch 0 included), e.g. to snapshot the model.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    params = model.trainable_parameters()
    if not params:
        raise ValueError("the model has no trainable parameters")
    dev = resolve_device(device)
    model.to(dev)
    splits = _split(data, val_fraction, seed)
    x_train, y_train = splits["train"]
    reference = x_train[: min(1000, x_train.shape[0])]
    initial = _pattern(model, reference)
    opt = _optimizer(optimizer, params, lr)
    gen = torch.Generator().manual_seed(derive_seed(seed, "minibatch"))

    def row(epoch: int, running: tuple[float, float] | None = None) -> dict:
        model.eval()
        r = {"epoch": epoch}
        r["train_loss"], r["train_acc"] = evaluate(model, x_train, y_train, loss) if running is None else running
        for name in ("val", "test"):
            r[f"{name}_acc"] = evaluate(model, *splits[name], loss)[1] if name in splits else float("nan")
        r["gates_changed"] = float((_pattern(model, reference) != initial).float().mean())
        if probe is not None:
            r["nu"] = probe_alignment(model, *probe)
        return r

    rows = [row(0)]
    if on_epoch is not None:
        on_epoch(0, model)
    show = progress and sys.stderr.isatty()
    for epoch in tqdm(range(1, epochs + 1), desc=f"{model.variant}", disable=not show, leave=False):
        model.train()
        perm = torch.randperm(x_train.shape[0], generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.float64, device=dev)
        for i in range(0, x_train.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            batch_loss = _loss(loss, out, yb)
            batch_loss.backward()
            opt.step()
            loss_sum += batch_loss.detach().double() * xb.shape[0]
            correct += _correct(out.detach(), yb).double()
        n = x_train.shape[0]
        rows.append(row(epoch, (float(loss_sum) / n, float(correct) / n)))
        if on_epoch is not None:
            on_epoch(epoch, model)
    return pd.DataFrame(rows)
