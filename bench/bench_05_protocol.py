"""Figure 05's protocol, measured: `.venv/bin/python bench/bench_05_protocol.py [--seeds 3] [--max-steps 10000]`.

The data of notebook 05 (n = 60 unit-norm inputs in R¹⁰, balanced ±1 labels, Bernoulli(½) fixed gates, depths
{2, 3, 4, 6, 8, 12, 16, 20}, widths {25, 100, 500}, step 0.5/λ_max(K_0)) under each protocol of
`depth_training.PROTOCOLS`.
Per width and protocol it prints: the λ_max(K_t)/λ_max(K_0) drift (median and largest over runs of the largest value
along training, and of the final value), how far real GD's steps to 1 % of the initial loss are from the
K_0-linearised prediction (median and largest |log₂(real/linear)|), and how many runs are unstable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dgnlib.experiments import depth, depth_training
from dgnlib.seeding import derive_seed

DEPTHS, WIDTHS = [2, 3, 4, 6, 8, 12, 16, 20], [25, 100, 500]


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per width: drift, real-vs-linearised steps, unstable count."""
    ratio = np.abs(np.log2(runs["steps"] / runs["steps_linear"]))
    r = runs.assign(log2_gap=ratio, shrink=runs["lam_drift_final"])
    return r.groupby("width").agg(
        runs=("seed", "count"),
        drift_max_median=("lam_drift_max", "median"),
        drift_max_max=("lam_drift_max", "max"),
        drift_final_min=("shrink", "min"),
        drift_final_median=("shrink", "median"),
        log2_real_over_linear_median=("log2_gap", "median"),
        log2_real_over_linear_max=("log2_gap", "max"),
        unstable=("unstable", "sum"),
        loss_went_up=("loss_increases", lambda s: int((s > 0).sum())),
        censored=("reached", lambda s: int((~s.astype(bool)).sum())),
        init_rms=("init_rms", "median"),
    )


def main() -> None:
    """Run every protocol on the notebook's data and print the per-width summaries and the steps-vs-depth medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="network draws per (width, depth)")
    parser.add_argument("--max-steps", type=int, default=10000)
    protocols = depth_training.PROTOCOLS
    parser.add_argument("--protocols", nargs="+", default=list(protocols), choices=protocols)
    parser.add_argument("--decide", action="store_true", help="also print figure 05's per-width claim parts")
    parser.add_argument("--save", help="folder to write each protocol's runs table to (<protocol>.csv)")
    args = parser.parse_args()
    x, y = depth.unit_sphere_data(60, 10, seed=0)
    seeds = [derive_seed(0, 5, k) for k in range(args.seeds)]  # the notebook's seeds for master seed 0
    pd.set_option("display.width", 200)
    for protocol in args.protocols:
        start = time.perf_counter()
        runs, _ = depth_training.training_sweep(
            x, y, DEPTHS, WIDTHS, seeds, protocol=protocol, max_steps=args.max_steps
        )
        took = time.perf_counter() - start
        print(f"\n=== {protocol} ({took:.0f} s, {len(runs)} runs, {args.seeds} seeds) ===")
        print(summary(runs).round(3).to_string())
        steps = runs.groupby(["width", "depth"])[["steps", "steps_linear"]].median().unstack("width")
        print("median steps to 1 % (real | linearised), rows: depth")
        print(steps.to_string())
        if args.decide:
            for part in depth_training.decide_training(runs, args.max_steps):
                print(f"{part.verdict:>12}  {part.name}: {part.detail}")
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            runs.to_csv(Path(args.save) / f"{protocol}.csv", index=False)


if __name__ == "__main__":
    main()
