"""Continuous gate learning (figure 08): gates of a relu network at successive stages of its training, frozen into
`flnpf` networks trained from scratch.

For each seed a `relu` network is trained for `epochs` epochs (the fully trained reference); a copy of it is taken
after every stage e (in epochs, 0 = at initialisation) through `fit`'s `on_epoch` callback. Each stage's gates are
copied into a fresh `flnpf` network; all stages of one seed share the same value-network initialisation, so that only
the gates differ between stages. A `frnpf-ii` network of the same seed (random, never trained gates) is trained as the
second reference.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import pandas as pd

from .experiments import ModelFactory, final_accuracy
from .models import GatedNet
from .train import fit, seed_everything

FLNPF_SEED_OFFSET = 10_000  # value-network seed of the flnpf networks: seed + offset, as in experiments.train_variants


def check_stages(stages: Sequence[int], epochs: int) -> list[int]:
    """The stages sorted, after checking they are distinct integers in [0, epochs]; raises ValueError otherwise."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not stages:
        raise ValueError("stages must list at least one epoch of the relu run")
    bad = [s for s in stages if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= epochs]
    if bad:
        raise ValueError(f"stages must be integer epochs in [0, {epochs}] (the relu run's length), got {bad}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"stages must be distinct, got {list(stages)}")
    return sorted(stages)


def relu_snapshots(
    make_model: ModelFactory, data: Mapping, stages: Sequence[int], epochs: int, seed: int, **fit_kwargs
) -> tuple[dict[int, GatedNet], pd.DataFrame]:
    """({stage e: the relu network after e epochs}, per-epoch history of the full `epochs`-epoch relu run).

    The snapshots are copies of one run (`make_model("relu", seed)` trained by `fit`), taken after each stage epoch.
    """
    stages = check_stages(stages, epochs)
    seed_everything(seed)
    model = make_model("relu", seed)
    if model.variant != "relu":
        raise ValueError(f"make_model('relu', seed) returned a {model.variant!r} network")
    snapshots: dict[int, GatedNet] = {}

    def keep(epoch: int, current: GatedNet) -> None:
        if epoch in stages:
            snapshots[epoch] = copy.deepcopy(current).eval()

    history = fit(model, data, epochs=epochs, seed=seed, on_epoch=keep, **fit_kwargs)
    return snapshots, history


def stage_gates_experiment(
    make_model: ModelFactory,
    data: Mapping,
    stages: Sequence[int],
    epochs: int,
    seeds: Sequence[int],
    **fit_kwargs,
) -> pd.DataFrame:
    """Train, per seed: relu (`epochs` epochs), frnpf-ii, and one flnpf per stage with that stage's relu gates.

    One row per (variant, stage, seed, epoch) with `fit`'s columns plus "variant", "stage" (the relu epoch the gates
    come from for flnpf, `epochs` for the relu reference, missing for frnpf-ii) and "seed".
    """
    stages = check_stages(stages, epochs)
    frames = []
    for seed in seeds:
        snapshots, relu_history = relu_snapshots(make_model, data, stages, epochs, seed, **fit_kwargs)
        frames.append(relu_history.assign(variant="relu", stage=epochs, seed=seed))
        seed_everything(seed)
        frnpf = make_model("frnpf-ii", seed)
        frames.append(fit(frnpf, data, epochs=epochs, seed=seed, **fit_kwargs).assign(variant="frnpf-ii", seed=seed))
        for stage, relu in snapshots.items():
            model = make_model("flnpf", seed + FLNPF_SEED_OFFSET)
            model.copy_gates_from(relu)
            seed_everything(seed)
            df = fit(model, data, epochs=epochs, seed=seed, **fit_kwargs)
            frames.append(df.assign(variant="flnpf", stage=stage, seed=seed))
    history = pd.concat(frames, ignore_index=True)
    history["stage"] = history["stage"].astype("Int64")
    return history


def stage_accuracy(history: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, stage, seed): `experiments.final_accuracy` (best-epoch and validation-selected test accuracy)."""
    frames = [
        final_accuracy(run).assign(stage=stage) for stage, run in history.groupby("stage", dropna=False, sort=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    out["stage"] = out["stage"].astype("Int64")
    return out[["variant", "stage", *[c for c in out.columns if c not in ("variant", "stage")]]]
