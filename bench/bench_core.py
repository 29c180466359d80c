"""Benchmarks of the core, run by hand: `.venv/bin/python bench/bench_core.py [--quick]`.

1. The gate-overlap route to the NPK against the torch.func NTK on the same inputs (n = 1000, depth 6, width 128).
2. One MNIST-sized epoch (60 000 × 784, batch 32, depth 6, width 128, Adam) of dnpfl, frnpf-ii and relu DGNs against
   a plain torch.nn ReLU MLP of the same shape, side by side in one run (synthetic inputs: only the arithmetic counts).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from dgnlib.core.kernels import npk, ntk
from dgnlib.core.models import DGN, plain_relu_mlp
from dgnlib.engine.reference import seed_everything


def timed(fn, repeats: int = 1) -> float:
    """Best wall time of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_kernels(n: int) -> None:
    x = torch.randn(n, 784)
    model = DGN(784, 128, 6, variant="frnpf-ii", seed=0)
    t_npk = timed(lambda: npk(x, model.gates(x)), repeats=3)
    t_ntk = timed(lambda: ntk(model, x, params="value", chunk_size=100))
    print(f"kernels  n={n}: npk {t_npk * 1e3:8.1f} ms   ntk(value) {t_ntk:8.2f} s   ratio {t_ntk / t_npk:8.0f}x")


def epoch(model: nn.Module, params, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    opt = torch.optim.Adam(params, lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch):
        idx = perm[i : i + batch]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()


def bench_epoch(n: int, rounds: int) -> None:
    """Round-robin over the models, best of `rounds`, so that a busy machine biases no model in particular."""
    x, y = torch.rand(n, 784), torch.randint(0, 10, (n,))
    models = {"plain torch.nn MLP": plain_relu_mlp(DGN(784, 128, 6, d_out=10, seed=0))}
    for variant in ("relu", "frnpf-ii", "dnpfl"):
        models[variant] = DGN(784, 128, 6, d_out=10, variant=variant, seed=0)
    times = dict.fromkeys(models, float("inf"))
    for _ in range(rounds):
        for name, model in models.items():
            params = [p for p in model.parameters() if p.requires_grad]
            times[name] = min(times[name], timed(lambda m=model, p=params: epoch(m, p, x, y, 32)))
    base = times["plain torch.nn MLP"]
    for name, t in times.items():
        print(f"epoch    n={n}: {name:20s} {t:7.2f} s   {t / base:5.2f}x the plain MLP (best of {rounds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (n = 200 for kernels, 6 000 for epochs)")
    args = parser.parse_args()
    seed_everything(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_kernels(200 if args.quick else 1000)
    bench_epoch(6000 if args.quick else 60000, rounds=3)


if __name__ == "__main__":
    main()
