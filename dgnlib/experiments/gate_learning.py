"""Continuous gate learning (figure 08): gates of a relu network at successive stages of its training, frozen into
`flnpf` networks trained from scratch.

For each seed a `relu` run is trained for `epochs` epochs (the fully trained reference), keeping its weights after
every stage e (in epochs, 0 = at initialisation). Each stage's gates are copied into a fresh `flnpf` run; all stages
of one seed share the same value-network initialisation (`RunSpec.init_seed`), so that only the gates differ between
stages. A `frnpf-ii` run of the same seed (random, never trained gates) is the second reference. All of it is one
sweep (`sweep.run_sweep`): the flnpf runs of every stage and seed train as one ensemble after the relu runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import pandas as pd

from dgnlib.core.models import GatedNet
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.reference import fit
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, RunStore
from dgnlib.engine.sweep import Executor, run_sweep
from dgnlib.experiments.comparison import (
    ModelFactory,
    data_spec,
    final_accuracy,
    for_variant,
    model_spec,
    sweep_history,
)
from dgnlib.seeding import derive_seed


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

    One plain `fit` run of `make_model("relu", derive_seed(seed, "init"))` (the relu run of `stage_gates_experiment`,
    trained alone), copied after each stage epoch.
    """
    stages = check_stages(stages, epochs)
    model = make_model("relu", derive_seed(seed, "init"))
    if model.variant != "relu":
        raise ValueError(f"make_model('relu', seed) returned a {model.variant!r} network")
    snapshots: dict[int, GatedNet] = {}

    def keep(epoch: int, current: GatedNet) -> None:
        if epoch in stages:
            snapshots[epoch] = copy.deepcopy(current).eval()

    history = fit(model, data, epochs=epochs, seed=seed, on_epoch=keep, **fit_kwargs)
    return snapshots, history


def stage_specs(
    model: ModelSpec, data: DataSpec, stages: Sequence[int], epochs: int, seeds: Sequence[int], **train: object
) -> dict[tuple, RunSpec]:
    """{(variant, stage, seed): RunSpec}: relu (stage = epochs, weights kept at every stage), frnpf-ii (stage None),
    and one flnpf per stage on the relu run's gates after that stage."""
    stages = check_stages(stages, epochs)
    out = {}
    for seed in seeds:
        relu = RunSpec(for_variant(model, "relu"), data, seed, epochs=epochs, keep_weights=tuple(stages), **train)
        out["relu", epochs, seed] = relu
        out["frnpf-ii", None, seed] = RunSpec(for_variant(model, "frnpf-ii"), data, seed, epochs=epochs, **train)
        for stage in stages:
            out["flnpf", stage, seed] = RunSpec(for_variant(model, "flnpf"), data, seed, epochs=epochs,
                                                gate_source=GateSource(relu, stage), **train)
    return out


def stage_gates_experiment(
    make_model: ModelFactory | ModelSpec,
    data: Mapping | DataSpec,
    stages: Sequence[int],
    epochs: int,
    seeds: Sequence[int],
    *,
    optimizer: str = "adam",
    lr: float = 1e-4,
    batch_size: int = 32,
    loss: str = "ce",
    val_fraction: float | None = None,
    device: str = "auto",
    progress: bool = True,
    store: RunStore | None = None,
    executor: Executor | None = None,
    opt_eps: float | None = None,
) -> pd.DataFrame:
    """Train, per seed: relu (`epochs` epochs), frnpf-ii, and one flnpf per stage with that stage's relu gates
    (opt_eps: Adam's ε, None: torch's default).

    One row per (variant, stage, seed, epoch) with `fit`'s columns plus "variant", "stage" (the relu epoch the gates
    come from for flnpf, `epochs` for the relu reference, missing for frnpf-ii) and "seed".
    """
    specs = stage_specs(model_spec(make_model), data_spec(data, val_fraction), stages, epochs, seeds,
                        optimizer=optimizer, lr=lr, batch_size=batch_size, loss=loss, opt_eps=opt_eps)
    results = run_sweep(list(specs.values()), store if store is not None else MemoryStore(), executor=executor,
                        progress=progress, device=device)
    history = sweep_history(specs, results, ["variant", "stage", "seed"])
    history["stage"] = history["stage"].astype("Int64")
    return history


def default_stages(epochs: int) -> list[int]:
    """0, the powers of two below `epochs`, and `epochs`: the stages figure 08 copies by default."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    return sorted({0, epochs, *(2**k for k in range(epochs.bit_length()) if 2**k < epochs)})


def stage_matrix(per_run: pd.DataFrame, metric: str = "split_half_test_acc") -> tuple[pd.DataFrame, pd.Series]:
    """(seeds × stages table of the flnpf runs' `metric`, per seed: True when any run of that seed is invalid).

    per_run: `stage_accuracy`'s rows. Rows are seeds in order of appearance, columns the stages in increasing order.
    """
    flnpf = per_run[per_run["variant"] == "flnpf"]
    if flnpf.empty:
        raise ValueError("per_run has no flnpf runs")
    table = flnpf.pivot(index="seed", columns="stage", values=metric)
    table = table.loc[list(dict.fromkeys(flnpf["seed"])), sorted(table.columns)]
    bad = per_run.groupby("seed", sort=False)["invalid"].any().reindex(table.index).fillna(True).astype(bool)
    return table, bad


def stage_accuracy(history: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, stage, seed): `comparison.final_accuracy` (best-epoch, validation- and split-half selected)."""
    frames = [
        final_accuracy(run).assign(stage=stage) for stage, run in history.groupby("stage", dropna=False, sort=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    out["stage"] = out["stage"].astype("Int64")
    return out[["variant", "stage", *[c for c in out.columns if c not in ("variant", "stage")]]]
