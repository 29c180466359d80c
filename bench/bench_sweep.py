"""Figure 06's paper sweep as one ensemble against one run after another: `.venv/bin/python bench/bench_sweep.py`.

30 runs (6 variants × 5 seeds), FC d=6, w=128, batch 32, Adam, synthetic 784-dim inputs and 10 classes, a fixed
number of optimiser steps per run, trained twice: as the sweep engine trains them (ensembles of at most
`sweep.MAX_GROUP_RUNS` runs, each a `StackedDGN` with one fused optimiser on one thread, `--threads` of them side by
side in worker processes, `dgnlib.engine.pool`), and one run after another in this process as `reference.fit`
trains them, on
`--threads` threads. Beside them, single-precision GEMM throughput (2048×2048 matmul) with the same threads. Useful
FLOPs only: 6 × batch × Σ fan_in·fan_out per step per run for the value network, plus the same for the feature
network where it is trained (dnpfl). The ensemble's time is the wall clock from a common start to the last worker's
end, spawning and warm-up excluded. The last line is

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

from dgnlib.core.models import DGN
from dgnlib.engine.ensemble import make_optimizer, per_run_loss
from dgnlib.engine.pool import LocalExecutor
from dgnlib.engine.stacked import StackedDGN
from dgnlib.engine.sweep import MAX_GROUP_RUNS
from dgnlib.names import VARIANTS

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


def _stack(seeds: int, members: list[int]) -> tuple[StackedDGN, torch.optim.Optimizer]:
    nets = models(seeds)
    net = StackedDGN([nets[i] for i in members])
    return net, make_optimizer("adam", net.trainable(), 1e-4)


def _group_steps(task: tuple[int, list[list[int]], int, int, float]) -> tuple[float, float]:
    """In a worker: build its groups, warm each up, wait for the common start, step each `steps` times in turn;
    returns (seconds of stepping summed over its groups, wall-clock end)."""
    seeds, groups, steps, warmup, start_at = task
    torch.set_num_threads(1)
    x, y = torch.rand(4096, D_IN), torch.randint(0, CLASSES, (4096,))
    stacks = [_stack(seeds, g) for g in groups]
    gen = torch.Generator().manual_seed(0)

    def step(net, opt, idx):
        loss = per_run_loss("ce", net(x[idx]), y[idx]).mean(1)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    for net, opt in stacks:
        for _ in range(warmup):
            step(net, opt, torch.randint(0, x.shape[0], (net.R, BATCH), generator=gen))
    if time.time() > start_at:
        raise RuntimeError("the workers were not ready before the common start: raise the start delay")
    time.sleep(start_at - time.time())
    busy = 0.0
    for net, opt in stacks:
        idx = torch.randint(0, x.shape[0], (steps, net.R, BATCH), generator=gen)
        t0 = time.perf_counter()
        for i in range(steps):
            step(net, opt, idx[i])
        busy += time.perf_counter() - t0
    return busy, time.time()


def ensemble_rate(seeds: int, workers: int, steps: int, warmup: int = 10) -> tuple[float, float]:
    """Seconds per optimiser step of all 6·seeds runs as the engine trains them (groups of at most MAX_GROUP_RUNS,
    one thread each, `workers` processes side by side, longest groups first); and per run-step in one worker."""
    n = len(VARIANTS) * seeds
    chunks = -(-n // MAX_GROUP_RUNS)
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    groups = sorted((list(range(a, b)) for a, b in zip(bounds, bounds[1:])), key=len, reverse=True)
    per_worker = [groups[w::workers] for w in range(workers)]
    start_at = time.time() + 30 + 2 * warmup  # spawning, imports and warm-up happen before it
    tasks = [(seeds, g, steps, warmup, start_at) for g in per_worker if g]
    out = list(LocalExecutor(workers).map(_group_steps, tasks))
    wall = max(end for _, end in out) - start_at
    return wall / steps, sum(busy for busy, _ in out) / steps / n


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


def batch32_gemm_gflops(runs: int = MAX_GROUP_RUNS, repeats: int = 20) -> float:
    """Throughput of the batched matrix products alone of one group's step (forward, input and weight gradients of
    every layer at batch 32, `runs` runs, value network only), on this process's threads: the ceiling of the
    ensemble's rate, whatever is done around them."""
    flops, best = 0, math.inf
    shapes = list(zip(SIZES[:-1], SIZES[1:]))
    xs = [torch.rand(runs, BATCH, a) for a, _ in shapes]
    ws = [torch.rand(runs, a, b) for a, b in shapes]
    gs = [torch.rand(runs, BATCH, b) for _, b in shapes]

    def step():
        for x, w, g in zip(xs, ws, gs):
            torch.bmm(x, w), torch.bmm(g, w.transpose(1, 2)), torch.bmm(x.transpose(1, 2), g)

    step()
    for _ in range(repeats):
        best = min(best, _timed(step))
    flops = 6 * BATCH * MACS * runs
    return flops / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="cores used: worker processes, and threads elsewhere")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per run (ensemble)")
    parser.add_argument("--seq-steps", type=int, default=60, help="optimiser steps per run (one after another)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; load average {os.getloadavg()}")
    x, y = torch.rand(4096, D_IN), torch.randint(0, CLASSES, (4096,))
    nets = models(5)
    variants = [m.variant for m in nets]
    peak = peak_gflops()
    t_ens, per_run = ensemble_rate(5, args.threads, args.steps)
    t_seq = sequential_rate(nets, x, y, args.seq_steps)
    torch.set_num_threads(1)
    core_peak, core_gemm = peak_gflops(), batch32_gemm_gflops()
    torch.set_num_threads(args.threads)
    print(f"one core: 2048x2048 GEMM {core_peak:.1f} GFLOP/s; the batch-32 products of one group's step alone "
          f"{core_gemm:.1f} GFLOP/s ({100 * core_gemm / core_peak:.0f} % of it): the ceiling of the ensemble on "
          f"{args.threads} cores is about {args.threads * core_gemm:.0f} GFLOP/s "
          f"({100 * args.threads * core_gemm / peak:.0f} % of peak_gflops)")
    flops = useful_flops(variants)
    ens, seq = flops / t_ens / 1e9, flops / t_seq / 1e9
    print(f"ensemble: {1e3 * t_ens:.1f} ms per step of 30 runs ({1e3 * per_run:.2f} ms per run-step in one worker); "
          f"sequential: {1e3 * t_seq:.1f} ms")
    # dgn reproduce --profile paper --only 06: phase 1 trains 45 runs (25 glorot runs without a gate source and the
    # 2 x 10 frnpf runs of the init ablation) in groups of at most 8 on the workers; phase 2 the 5 flnpf runs, one
    # group in one process. Per epoch: 10 000 test images shared by every run, each run's own 6 000 validation images
    # and 1 000 gate-pattern reference inputs (train metrics are running means: no pass), on one thread.
    steps = 100 * math.ceil(54_000 / BATCH)
    torch.set_num_threads(1)
    shared_s, own_s = eval_rate(nets, x, shared=True), eval_rate(nets, x, shared=False)
    eval_run_s = (10_000 / 1024 * shared_s + (6_000 + 1_000) / 1024 * own_s) / len(nets)  # per run and epoch
    phase1 = (45 * per_run * steps + 45 * 100 * eval_run_s) / args.threads
    phase2 = 5 * per_run * steps + 5 * 100 * eval_run_s
    print(f"projection, dgn reproduce --profile paper --only 06 with {args.threads} workers: {steps} steps; phase 1 "
          f"45 runs / {args.threads} workers = {phase1 / 60:.0f} min, phase 2 5 flnpf runs in one process = "
          f"{phase2 / 60:.0f} min; total {(phase1 + phase2) / 60:.0f} min (evaluation included)")
    print(f"sweep: runs=30 threads={args.threads} ensemble_gflops={ens:.1f} sequential_gflops={seq:.1f} "
          f"peak_gflops={peak:.1f} speedup={t_seq / t_ens:.2f}")


if __name__ == "__main__":
    main()
