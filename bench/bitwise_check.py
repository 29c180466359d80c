"""Train one stack of every variant with each training step and compare bit for bit: `python bench/bitwise_check.py`.

The same check as tests/test_dense.py, on any device (`--device cuda`): for Adam/CE, SGD/MSE and RMSprop/CE, six runs
(every variant, flnpf with a relu run's gates) trained by `train_ensemble` with step "reference" (autograd), "dense"
(hand-written) and "auto" (hand-written with gate tables); every metric of every epoch and the kept weights must be
equal. Prints one line per configuration and step, and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from dgnlib.engine.ensemble import train_ensemble
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, gate_weight_id
from dgnlib.names import VARIANTS

LR = {"adam": 1e-3, "sgd": 5e-2, "rmsprop": 1e-3}


def check(device: str, optimizer: str, loss: str, n_train: int, epochs: int) -> list[str]:
    """Differences between the reference step and the others (empty: bitwise identical)."""
    data = DataSpec("synthetic", n_train=n_train, n_test=200, shape=(784,), n_classes=10, val_fraction=0.1)
    model = ModelSpec("fc", d_in=784, width=128, depth=6, d_out=10)
    relu = RunSpec(model, data, 7, optimizer=optimizer, lr=LR[optimizer], batch_size=32, epochs=epochs, loss=loss)
    weights = {gate_weight_id(GateSource(relu, 0)): {k: v.numpy() for k, v in
                                                      model.build(relu.init_seed()).state_dict().items()}}
    specs = [relu.replace(model=model.replace(variant=v), seed=s, keep_weights=(epochs,),
                          gate_source=GateSource(relu, 0) if v == "flnpf" else None) for s, v in enumerate(VARIANTS)]
    runs = {step: train_ensemble(specs, weights, device=device, step=step) for step in ("reference", "dense", "auto")}
    diffs = []
    for step in ("dense", "auto"):
        for got, want in zip(runs[step], runs["reference"]):
            variant = got.spec["model"]["variant"]
            if json.dumps(got.rows) != json.dumps(want.rows):
                diffs.append(f"{step} {variant}: metrics differ")
            for name, w in want.weights[epochs].items():
                if not np.array_equal(got.weights[epochs][name], w):
                    gap = float(np.abs(got.weights[epochs][name] - w).max())
                    diffs.append(f"{step} {variant} {name}: max |difference| {gap:.3g}")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-train", type=int, default=2000, help="synthetic training examples")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    failed = False
    for optimizer, loss in (("adam", "ce"), ("sgd", "mse"), ("rmsprop", "ce")):
        diffs = check(args.device, optimizer, loss, args.n_train, args.epochs)
        print(f"{args.device} {optimizer}/{loss}: " + ("bitwise identical (dense, auto vs reference)" if not diffs
                                                        else f"{len(diffs)} differences: " + "; ".join(diffs[:6])))
        failed |= bool(diffs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
