"""Figure 06's paper sweep as one ensemble against one run after another: `.venv/bin/python bench/bench_sweep.py`.

30 runs (6 variants × 5 seeds), FC d=6, w=128, batch 32, Adam, synthetic 784-dim inputs and 10 classes, a fixed
number of optimiser steps per run, trained twice in this process: as one `StackedDGN` with one fused optimiser
(`dgnlib.ensemble`), and one run after another as `train.fit` trains them. Beside them, single-precision GEMM
throughput (2048×2048 matmul) with the same threads. Useful FLOPs only: 6 × batch × Σ fan_in·fan_out per step per
run for the value network, plus the same for the feature network where it is trained (dnpfl). The last line is

    sweep: runs=30 threads=T ensemble_gflops=X sequential_gflops=Y peak_gflops=Z speedup=S

and before it a projection of `dgn reproduce --profile paper --only 06` (100 epochs of 54 000 images; per epoch the
10 000 test images, each run's 6 000 validation images and 1 000 gate-reference inputs, measured here).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from dgnlib.ensemble import make_optimizer, per_run_loss
from dgnlib.models import DGN, VARIANTS
from dgnlib.stacked import StackedDGN

D_IN, WIDTH, DEPTH, CLASSES, BATCH = 784, 128, 6, 10, 32
SIZES = [D_IN] + [WIDTH] * (DEPTH - 1) + [CLASSES]
MACS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # value network
FEATURE_MACS = sum(a * b for a, b in zip(SIZES[:-2], SIZES[1:-1]))  # the feature network's gated layers


def useful_flops(variants: list[str]) -> int:
    """Useful FLOPs of one optimiser step of these runs (feature network counted where trained: dnpfl)."""
    return sum(6 * BATCH * (MACS + (FEATURE_MACS if v == "dnpfl" else 0)) for v in variants)


def models(seeds: int) -> list[DGN]:
    """6 variants × `seeds` seeds; flnpf copies the gates of the relu network of its seed."""
    out = []
    for s in range(seeds):
        relu = DGN(D_IN, WIDTH, DEPTH, CLASSES, variant="relu", seed=s)
        for v in VARIANTS:
            out.append(DGN.from_relu(relu, seed=1000 + s) if v == "flnpf" else
                       DGN(D_IN, WIDTH, DEPTH, CLASSES, variant=v, seed=s))
    return out


def ensemble_rate(nets: list[DGN], x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int = 10) -> float:
    """Seconds per optimiser step of all runs at once (each on its own minibatch)."""
    net = StackedDGN(nets)
    opt = make_optimizer("adam", net.trainable(), 1e-4)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, x.shape[0], (warmup + steps, len(nets), BATCH), generator=gen)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = per_run_loss("ce", net(x[idx[i]]), y[idx[i]]).mean(1)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def sequential_rate(nets: list[DGN], x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int = 5) -> float:
    """Seconds per optimiser step of all runs, one run after another, as `train.fit` steps (torch.optim.Adam)."""
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    for model in nets:
        opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
        idx = torch.randint(0, x.shape[0], (warmup + steps, BATCH), generator=gen)
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[idx[i]]), y[idx[i]]).backward()
            opt.step()
        total += time.perf_counter() - start
    return total / steps


@torch.no_grad()
def eval_rate(nets: list[DGN], x: torch.Tensor, shared: bool, repeats: int = 5) -> float:
    """Seconds per 1024 evaluation inputs of all runs: one input chunk seen by every run (test set) when `shared`,
    else each run's own chunk (its validation split, its gate-pattern reference inputs)."""
    net = StackedDGN(nets).eval()
    xb = x[:1024] if shared else x[:1024].expand(len(nets), *x[:1024].shape).contiguous()
    net(xb, shared=shared)
    return min(_timed(lambda: net(xb, shared=shared)) for _ in range(repeats))


def peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Single-precision GEMM throughput (best of `repeats` n×n matmuls)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per run (ensemble)")
    parser.add_argument("--seq-steps", type=int, default=60, help="optimiser steps per run (one after another)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; load average {os.getloadavg()}")
    x, y = torch.rand(4096, D_IN), torch.randint(0, CLASSES, (4096,))
    nets = models(5)
    variants = [m.variant for m in nets]
    peak = peak_gflops()
    t_ens = ensemble_rate(nets, x, y, args.steps)
    t_seq = sequential_rate(nets, x, y, args.seq_steps)
    flops = useful_flops(variants)
    ens, seq = flops / t_ens / 1e9, flops / t_seq / 1e9
    print(f"ensemble: {1e3 * t_ens:.1f} ms per step of 30 runs; sequential: {1e3 * t_seq:.1f} ms")
    # The paper sweep runs as two ensembles: 25 runs without a gate source, then the 5 flnpf runs on their gates.
    phase1 = [m for m in nets if m.variant != "flnpf"]
    phase2 = [m for m in nets if m.variant == "flnpf"]
    t1, t2 = ensemble_rate(phase1, x, y, args.steps // 2), ensemble_rate(phase2, x, y, args.steps // 2)
    steps = 100 * math.ceil(54_000 / BATCH)  # 60 000 images, 10 % held out for validation
    # Per epoch (dgnlib.ensemble): the 10 000 test images shared by every run; each run's own 6 000 validation
    # images and 1 000 gate-pattern reference inputs; train metrics are the running means of the epoch (no pass).
    shared_s, own_s = eval_rate(nets, x, shared=True), eval_rate(nets, x, shared=False)
    eval_s = 100 * (10_000 / 1024 * shared_s + (6_000 + 1_000) / 1024 * own_s)
    train_s = steps * (t1 + t2)
    print(f"projection, dgn reproduce --profile paper --only 06 on {args.threads} threads: {steps} steps × "
          f"({1e3 * t1:.1f} ms for 25 runs + {1e3 * t2:.1f} ms for 5 flnpf) = {train_s / 60:.0f} min training + "
          f"~{eval_s / 60:.0f} min per-epoch evaluation = {(train_s + eval_s) / 60:.0f} min")
    print(f"sweep: runs=30 threads={args.threads} ensemble_gflops={ens:.1f} sequential_gflops={seq:.1f} "
          f"peak_gflops={peak:.1f} speedup={t_seq / t_ens:.2f}")


if __name__ == "__main__":
    main()
