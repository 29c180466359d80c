"""Figure 06's paper sweep as the engine trains it, against one run after another: `python bench/bench_sweep.py`.

30 runs (6 variants × 5 seeds), FC d=6, w=128, batch 32, Adam, synthetic 784-dim inputs and 10 classes. Three
measurements, made by the same `--threads` worker processes (one torch thread each, one per core), each released by
a barrier so that they start together, and interleaved: every round measures all three, `--rounds` rounds.
- peak: single-thread SGEMM (2048×2048, best of 3) in every worker at once, summed: what the cores deliver now. A
  multi-thread SGEMM is not used: its OpenMP threads spin-wait on each other whenever one is descheduled, so on a
  shared machine it reads anywhere from a third to all of this.
- ensemble: the engine's groups (at most `sweep.MAX_GROUP_RUNS` runs, `StackedDGN`, its training step: the
  hand-written dense step with gate tables and the direct fused Adam, `--step` to choose), longest first over the
  workers; wall clock from the barrier to the last worker's end.
- sequential: the same 30 runs one after another as `reference.fit` steps them (one model, `torch.optim.Adam`), shared
  out over the workers: one thread per core, the fair baseline for small networks.
Useful FLOPs only: 6 × batch × Σ fan_in·fan_out per step per run for the value network, plus the same for the feature
network where it is trained (dnpfl). The load average is printed with every measurement: on a shared machine the
numbers are what the cores gave while others worked, and the three rounds show how much that moved them.
The last line (medians over the rounds) is

    sweep: runs=30 threads=T ensemble_gflops=X sequential_gflops=Y peak_gflops=Z speedup=S

and before it a projection of `dgn reproduce --profile paper --only 06` for that figure's protocol (below).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch

from dgnlib.core.models import DGN
from dgnlib.engine import dense
from dgnlib.engine.ensemble import make_optimizer
from dgnlib.engine.stacked import StackedDGN, per_run_loss
from dgnlib.engine.sweep import MAX_GROUP_RUNS
from dgnlib.engine.threads import single_thread
from dgnlib.names import VARIANTS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_workers import Workers  # noqa: E402  (a sibling module, importable by the spawned workers)

D_IN, WIDTH, DEPTH, CLASSES, BATCH, SEEDS = 784, 128, 6, 10, 32, 5
SIZES = [D_IN] + [WIDTH] * (DEPTH - 1) + [CLASSES]
MACS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # value network
FEATURE_MACS = sum(a * b for a, b in zip(SIZES[:-2], SIZES[1:-1]))  # the feature network's gated layers
POOL = 4096  # synthetic training pool (gate tables are built on it, as on the real training set)
# Figure 06's protocol (notebook defaults = paper profile): all 60 000 training images (none held out), the 10 000
# test images evaluated every epoch (both halves in one pass) and the 1 000 gate-reference images. Three sweeps, one
# after another as the notebook runs them: Adam 1e-4 for 100 epochs and SGD 1e-2 for 300 epochs, each 5 variants x 5
# seeds in phase 1 and the 5 flnpf runs (which wait for their relu runs) in phase 2; then the init ablation of
# frnpf-ii and frnpf-di (he, default: 20 Adam runs, phase 1 only). SGD steps are costed at the measured Adam step: an
# upper bound, since plain SGD moves fewer bytes per parameter than Adam.
FIG06 = {"train": 60_000, "val": 0, "test": 10_000, "reference": 1_000,
         "sweeps": (("adam", 100, 25, 5), ("sgd", 300, 25, 5), ("adam ablation", 100, 20, 0))}


def useful_flops(variants: list[str]) -> int:
    """Useful FLOPs of one optimiser step of these runs (feature network counted where trained: dnpfl)."""
    return sum(6 * BATCH * (MACS + (FEATURE_MACS if v == "dnpfl" else 0)) for v in variants)


def models(seeds: int = SEEDS) -> list[DGN]:
    """6 variants × `seeds` seeds; flnpf copies the gates of the relu network of its seed."""
    out = []
    for s in range(seeds):
        relu = DGN(D_IN, WIDTH, DEPTH, CLASSES, variant="relu", seed=s)
        for v in VARIANTS:
            out.append(DGN.from_relu(relu, seed=1000 + s) if v == "flnpf" else
                       DGN(D_IN, WIDTH, DEPTH, CLASSES, variant=v, seed=s))
    return out


def groups(n: int = len(VARIANTS) * SEEDS) -> list[list[int]]:
    """The engine's grouping of n runs (`sweep.group_specs`: fewest chunks of at most MAX_GROUP_RUNS), longest first."""
    chunks = -(-n // MAX_GROUP_RUNS)
    bounds = [round(i * n / chunks) for i in range(chunks + 1)]
    return sorted((list(range(a, b)) for a, b in zip(bounds, bounds[1:])), key=len, reverse=True)


def _data(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(POOL, D_IN, generator=gen), torch.randint(0, CLASSES, (POOL,), generator=gen)
    return x.to(device), y.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ensemble_task(members: list[list[int]], steps: int, step: str, device: str, warmup: int = 10):
    """Worker side: build these groups and their step (as `ensemble._train` does), warm up; the returned callable
    runs `steps` steps of every group in turn."""
    x, y = _data(device)
    nets = models()
    gen = torch.Generator().manual_seed(1)
    stacks = []
    for g in members:
        net = StackedDGN([nets[i] for i in g]).to(device)
        opt = make_optimizer("adam", net.trainable(), 1e-4)
        if step == "reference":
            stacks.append((net, opt, None, opt.step))
        else:
            table = dense.gate_table(net, x, BATCH) if step == "auto" else None
            stacks.append((net, opt, dense.DenseStep(net, "ce", table), dense.OptimizerStep(opt)))

    def one(net, opt, fast, opt_step, idx):
        if fast is not None:
            fast.step(x.index_select(0, idx.flatten()).view(*idx.shape, -1), y[idx], idx)
        else:
            loss = per_run_loss("ce", net(x[idx]), y[idx]).mean(1)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
        opt_step()

    def draw(n, r):
        return torch.randint(0, POOL, (n, r, BATCH), generator=gen).to(device)

    for s in stacks:
        for idx in draw(warmup, s[0].R):
            one(*s, idx)
    _sync(device)
    plans = [(s, draw(steps, s[0].R)) for s in stacks]

    def run() -> None:
        for s, idxs in plans:
            for idx in idxs:
                one(*s, idx)
        _sync(device)
    return run


def sequential_task(runs: list[int], steps: int, device: str, warmup: int = 5):
    """Worker side: these runs one after another as `reference.fit` steps them (one model, torch.optim.Adam)."""
    x, y = _data(device)
    nets = [m.to(device) for i, m in enumerate(models()) if i in runs]
    gen = torch.Generator().manual_seed(2)
    plans = [(m, torch.optim.Adam(m.trainable_parameters(), lr=1e-4),
              torch.randint(0, POOL, (warmup + steps, BATCH), generator=gen).to(device)) for m in nets]

    def one(model, opt, idx):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()

    for model, opt, idxs in plans:
        for idx in idxs[:warmup]:
            one(model, opt, idx)
    _sync(device)

    def run() -> None:
        for model, opt, idxs in plans:
            for idx in idxs[warmup:]:
                one(model, opt, idx)
        _sync(device)
    return run


def peak_task(device: str, n: int = 2048, repeats: int = 3):
    """Worker side: SGEMM n×n, best of `repeats`; the callable returns GFLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)

    def run() -> float:
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9
    return run


@torch.no_grad()
def eval_seconds(device: str) -> float:
    """Seconds of evaluation per run and epoch of figure 06 (one thread): the test set shared by every run, each run's
    own validation split and gate-reference inputs, in chunks of 1024 as `ensemble._Eval` does."""
    nets = models()
    net = StackedDGN(nets[:MAX_GROUP_RUNS]).eval().to(device)
    x, _ = _data(device)
    xb = x[:1024]
    own = xb.expand(net.R, *xb.shape).contiguous()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return min(times)

    shared_s, own_s = best(lambda: net(xb, shared=True)), best(lambda: net(own))
    per_chunk = FIG06["test"] / 1024 * shared_s + (FIG06["val"] + FIG06["reference"]) / 1024 * own_s
    return per_chunk / net.R


def projection(run_step_s: float, eval_s: float, workers: int) -> str:
    """Figure 06's paper training time from a measured run-step (in one worker) and evaluation time per run-epoch:
    per sweep, phase 1's groups greedily on the workers, longest first (as `sweep.run_sweep`), then phase 2 in one
    process; the sweeps one after another."""
    steps_per_epoch = math.ceil(FIG06["train"] / BATCH)
    parts, total = [], 0.0
    for name, epochs, n1, n2 in FIG06["sweeps"]:
        per_run = epochs * (run_step_s * steps_per_epoch + eval_s)
        loads = [0.0] * workers
        for g in groups(n1):
            loads[loads.index(min(loads))] += len(g) * per_run
        hours = (max(loads) + n2 * per_run) / 3600
        parts.append(f"{name} {n1} + {n2} runs x {epochs} epochs {hours:.2f} h")
        total += hours
    return (f"projection, dgn reproduce --profile paper --only 06 ({steps_per_epoch} steps per epoch, evaluation "
            f"included) with {workers} workers: {'; '.join(parts)}; total {total:.2f} h at the median rate of the "
            "rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="worker processes, one core and one thread each")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three measurements")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per group per round (ensemble)")
    parser.add_argument("--seq-steps", type=int, default=40, help="optimiser steps per run per round (sequential)")
    parser.add_argument("--step", choices=("auto", "dense", "reference"), default="auto",
                        help="the ensemble's training step: auto (the engine's: hand-written, gate tables), dense "
                             "(hand-written, no tables) or reference (autograd)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (then use --threads 1)")
    parser.add_argument("--levers", action="store_true",
                        help="also time the ensemble with the other two steps in every round (interleaved), and print "
                             "each one's speed relative to the reference (autograd) step")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.steps < 1 or args.seq_steps < 1:
        parser.error("--threads, --rounds, --steps and --seq-steps must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    variants = [m.variant for m in models()]
    flops = useful_flops(variants)
    n = len(variants)
    share = [[g for i, g in enumerate(groups()) if i % args.threads == w] for w in range(args.threads)]
    runs = [[i for i in range(n) if i % args.threads == w] for w in range(args.threads)]
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} workers of one thread, step {args.step}, "
          f"{args.rounds} rounds; cpus {os.cpu_count()}; load average at start {_load()}", flush=True)
    rows: dict[str, list[float]] = {"peak": [], "ensemble": [], "sequential": []}
    per_run_step = []
    levers: dict[str, list[float]] = {}  # step -> seconds per step of all runs, per round
    with Workers(args.threads) as pool:
        for r in range(1, args.rounds + 1):
            load = _load()
            peaks = pool.run([(peak_task, (args.device,))] * args.threads)
            rows["peak"].append(sum(res for res, _, _ in peaks))
            ens = pool.run([(ensemble_task, (g, args.steps, args.step, args.device)) for g in share])
            t_ens = max(wall for _, wall, _ in ens) / args.steps  # seconds per step of all n runs
            rows["ensemble"].append(flops / t_ens / 1e9)
            per_run_step.append(max(wall / args.steps / sum(map(len, s)) for (_, wall, _), s in zip(ens, share)))
            for other in (s for s in ("reference", "dense", "auto") if args.levers and s != args.step):
                res = pool.run([(ensemble_task, (g, args.steps, other, args.device)) for g in share])
                levers.setdefault(other, []).append(max(wall for _, wall, _ in res) / args.steps)
            levers.setdefault(args.step, []).append(t_ens)
            seq = pool.run([(sequential_task, (rs, args.seq_steps, args.device)) for rs in runs])
            t_seq = max(wall for _, wall, _ in seq) / args.seq_steps
            rows["sequential"].append(flops / t_seq / 1e9)
            print(f"round {r}: load average {load} -> {_load()}; peak {rows['peak'][-1]:.1f} GFLOP/s "
                  f"({' + '.join(f'{p:.1f}' for p, _, _ in peaks)}), ensemble {rows['ensemble'][-1]:.1f} "
                  f"({1e3 * t_ens:.1f} ms per step of {n} runs), sequential {rows['sequential'][-1]:.1f} "
                  f"({1e3 * t_seq:.1f} ms); CPU/wall of the workers {_busy(peaks + ens + seq)}", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    for k, v in rows.items():
        print(f"{k}: min {min(v):.1f} median {med[k]:.1f} max {max(v):.1f} GFLOP/s; rounds within "
              f"{100 * (max(v) - min(v)) / med[k]:.0f} % of the median")
    if args.levers:
        ref = levers["reference"]
        print("levers (ensemble speed against the autograd step, per round): " + "; ".join(
            f"{k} " + " ".join(f"{a / b:.2f}x" for a, b in zip(ref, v)) for k, v in levers.items() if k != "reference"))
    print(f"ensemble at {100 * med['ensemble'] / med['peak']:.1f} % of peak (medians); load average now {_load()}")
    with single_thread():
        eval_s = eval_seconds(args.device)
    print(projection(statistics.median(per_run_step), eval_s, args.threads))
    print(f"sweep: runs={n} threads={args.threads} ensemble_gflops={med['ensemble']:.1f} "
          f"sequential_gflops={med['sequential']:.1f} peak_gflops={med['peak']:.1f} "
          f"speedup={med['ensemble'] / med['sequential']:.2f}")


def _busy(results: list[tuple[object, float, float]]) -> str:
    """Share of the wall clock the workers' threads were on a core: below 100 % they were descheduled."""
    return f"{100 * sum(c for _, _, c in results) / sum(w for _, w, _ in results):.0f} %"


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
