"""Figure 07's paper training (relu and frnpf-ii on MNIST 4 vs 7, d=6, w=100, RMSprop, 100 epochs, 5 seeds), timed.

    python bench/gpu_train.py --store /tmp/scratch-runs --device cuda [--epochs 100] [--compare runs]

The runs are the notebook's (the same `npk_alignment` calls with its paper defaults), trained by the sweep engine into
`--store`, a scratch run store (never the committed runs/: the runs are trained, not read). The cheapest training
figure of the paper profile: 10 runs of 188 steps an epoch, ν on the 200-image probe every epoch. `--probe-epochs`
trains that many epochs first and prints the projected time of the full training before it goes on. With `--compare`,
each run's last-epoch numbers are set beside those of the same run (same key) in that store, e.g. the committed CPU
runs: another device sums floats in another order, so they agree to a few tenths of a point, not bit for bit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dgnlib.engine.runs import RunStore
from dgnlib.engine.sweep import run_sweep
from dgnlib.experiments import npk_alignment


def specs(epochs: int) -> dict:
    """Figure 07's runs with the notebook's paper defaults (seed 0, 5 seeds, 4 vs 7, all training images)."""
    data = npk_alignment.mnist_pair(4, 7, 0, 0)
    return npk_alignment.alignment_specs(data, 784, npk_alignment.run_seeds(0, 5), depth=6, width=100,
                                         optimizer="rmsprop", lr=1e-4, batch_size=64, epochs=epochs,
                                         probe_per_class=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a scratch run store folder (created; never runs/)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=100, help="100: the paper profile")
    parser.add_argument("--probe-epochs", type=int, default=2, help="train this many epochs first to project")
    parser.add_argument("--compare", default="", help="a run store holding the same runs (e.g. runs/), read only")
    args = parser.parse_args()
    store_dir = Path(args.store).resolve()
    if (store_dir / ".." / "dgnlib").exists() and store_dir.name == "runs":
        parser.error(f"--store {store_dir} looks like a checkout's committed run store: give a scratch folder")
    store = RunStore(store_dir)
    if args.probe_epochs:
        t0 = time.perf_counter()
        run_sweep(list(specs(args.probe_epochs).values()), store, device=args.device, progress=False)
        probe_s = time.perf_counter() - t0
        print(f"figure 07, {args.probe_epochs} epochs on {args.device}: {probe_s:.1f} s; projected {args.epochs} "
              f"epochs {probe_s * args.epochs / args.probe_epochs / 60:.1f} min (start-up included)", flush=True)
    full = specs(args.epochs)
    t0 = time.perf_counter()
    results = run_sweep(list(full.values()), store, device=args.device, progress=False)
    wall = time.perf_counter() - t0
    print(f"figure 07 paper training ({len(full)} runs x {args.epochs} epochs) on {args.device}: {wall:.1f} s "
          f"({wall / 60:.1f} min) into {store_dir}", flush=True)
    other = RunStore(args.compare) if args.compare else None
    for (variant, seed), spec in full.items():
        last = results[spec.key()].rows[-1]
        line = (f"  {variant} seed {seed}: {results[spec.key()].status}, test_acc {last['test_acc']:.4f}, "
                f"nu {last.get('nu', float('nan')):.4g}, gates_changed {last['gates_changed']:.4f}")
        ref = other.get(spec.key()) if other is not None else None
        if ref is not None and ref.rows:
            line += (f"; {args.compare}: test_acc {ref.rows[-1]['test_acc']:.4f}, "
                     f"nu {ref.rows[-1].get('nu', float('nan')):.4g}")
        print(line)


if __name__ == "__main__":
    main()
