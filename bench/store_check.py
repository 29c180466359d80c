"""Retrain the first epochs of committed paper runs and compare them bit for bit: `python bench/store_check.py 07`.

The committed run store (runs/) holds figures 06-09's paper runs. A training step that changes no number must give,
for the same spec, the same metrics: this script builds a figure's specs as its notebook does (paper defaults) with
`--epochs` epochs instead of the protocol's, trains them in this process with `--step`, grouped exactly as the sweep
grouped the originals, and compares every metric of epochs 0..E with the committed run of the full spec (the first
epochs do not depend on how many follow). Figure 06: its main sweep's phase 1 (relu, frnpf-ii, frnpf-di, dnpfl,
linear; 25 runs, about 2 min of one core per epoch); figure 07: all 10 runs (about 10 s per epoch). Needs MNIST.
Observed on the 2-core development machine: figure 07's runs come out identical with every step; figure 06's differ
from the committed ones in the last bits at epoch 1 (train loss in the 9th digit) with the autograd step as much as
with the others (which agree with each other bit for bit), so those committed runs were made under conditions this
machine does not reproduce (no commit has changed dgnlib since they were committed), not by a step.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from dgnlib.engine import sweep as sweepmod
from dgnlib.engine.ensemble import train_ensemble
from dgnlib.engine.runs import RunStore
from dgnlib.experiments import comparison, npk_alignment


class _Inline:
    """An executor that trains every group in this process, with the step asked for."""

    def __init__(self, step: str) -> None:
        self.step = step

    def map(self, fn, tasks):
        return (train_ensemble(t.specs, t.gate_weights, device=t.device, step=self.step) for t in tasks)


def specs(figure: str, epochs: int) -> list:
    """The figure's phase-1 specs in its notebook's order (so that the sweep groups them as it did)."""
    if figure == "07":
        data = npk_alignment.mnist_pair(4, 7, 0, 0)
        return list(npk_alignment.alignment_specs(data, 784, npk_alignment.run_seeds(0, 5), depth=6, width=100,
                                                  optimizer="rmsprop", lr=1e-4, batch_size=64, epochs=epochs,
                                                  probe_per_class=100).values())
    mnist = comparison.image_data("mnist", 0, 0, 0.1, 0)
    model = comparison.fc_model(784, 128, 6, 10, init="glorot", beta=4.0)
    out = comparison.variant_specs(model, mnist, ["frnpf-ii", "frnpf-di", "flnpf", "dnpfl", "relu", "linear"],
                                   comparison.run_seeds(0, 5), optimizer="adam", lr=1e-4, batch_size=32,
                                   epochs=epochs, loss="ce")
    return [s for s in out.values() if s.gate_source is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=("06", "07"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--step", choices=("auto", "dense", "reference"), default="auto")
    parser.add_argument("--store", default="runs", help="the committed run store (read only)")
    args = parser.parse_args()
    committed = RunStore(args.store)
    short, full = specs(args.figure, args.epochs), specs(args.figure, 100)
    missing = [f.key() for f in full if f.key() not in committed]
    if missing:
        sys.exit(f"{len(missing)} of figure {args.figure}'s runs are not in {args.store}: nothing to compare")
    with tempfile.TemporaryDirectory() as scratch:
        t0 = time.perf_counter()
        got = sweepmod.run_sweep(short, RunStore(scratch), executor=_Inline(args.step), progress=False, device="cpu")
        wall = time.perf_counter() - t0
    same = 0
    for s, f in zip(short, full):
        want = committed.get(f.key()).rows[: args.epochs + 1]
        if json.dumps(got[s.key()].rows) == json.dumps(want):
            same += 1
        else:
            print(f"  differs: {s.model.variant} seed {s.seed}: {got[s.key()].rows[-1]} vs {want[-1]}")
    print(f"figure {args.figure}, step {args.step}: epochs 0-{args.epochs} of {same} of {len(short)} committed paper "
          f"runs reproduced bit for bit ({wall:.0f} s)")
    sys.exit(0 if same == len(short) else 1)


if __name__ == "__main__":
    main()
