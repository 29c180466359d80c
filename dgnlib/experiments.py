"""Comparing DGN variants: a sweep of (variant, seed) runs through the sweep engine, summarised two ways.

`flnpf` needs a trained `relu` network to copy its gates from: each flnpf run names the relu run of its seed (same
model, data and optimiser, `epochs` epochs) as its gate source; the engine trains that relu run first (or finds it
in the store) and keeps its final weights. Runs are `runs.RunSpec`s, so every run is stored under its hash and a
sweep that stopped resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from . import data as datamod
from .models import DGN, VARIANTS, GatedNet
from .runs import DataSpec, GateSource, MemoryStore, ModelSpec, RunSpec, RunStore
from .sweep import Executor, run_sweep

ModelFactory = Callable[[str, int], GatedNet]


def dgn_factory(**kwargs) -> ModelFactory:
    """A factory (variant, seed) → DGN(**kwargs, variant=variant, seed=seed)."""
    return lambda variant, seed: DGN(**kwargs, variant=variant, seed=seed)


def model_spec(make_model: ModelFactory | ModelSpec) -> ModelSpec:
    """The ModelSpec of a factory's networks (read from the relu network it builds), or the spec itself."""
    if isinstance(make_model, ModelSpec):
        return make_model
    return ModelSpec.from_model(make_model("relu", 0))


def data_spec(data: Mapping | DataSpec, val_fraction: float | None = None) -> DataSpec:
    """A DataSpec as given (val_fraction replaced if given), or an inline one for tensors in memory."""
    if isinstance(data, DataSpec):
        return data if val_fraction is None else dataclasses.replace(data, val_fraction=val_fraction)
    return datamod.inline(data, 0.1 if val_fraction is None else val_fraction)


def variant_specs(
    model: ModelSpec, data: DataSpec, variants: Sequence[str], seeds: Sequence[int], **train: object
) -> dict[tuple[str, int], RunSpec]:
    """{(variant, seed): RunSpec}; flnpf's gate source is the relu run of its seed, after its last epoch."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}: expected some of {', '.join(VARIANTS)}")
    out = {}
    for seed in seeds:
        relu = RunSpec(model.replace(variant="relu"), data, seed, **train)
        for variant in variants:
            source = GateSource(relu, relu.epochs) if variant == "flnpf" else None
            out[variant, seed] = RunSpec(model.replace(variant=variant), data, seed, gate_source=source, **train)
    return out


def sweep_history(specs: Mapping[tuple, RunSpec], results: Mapping, names: Sequence[str]) -> pd.DataFrame:
    """One DataFrame of every run's rows, with the columns `names` taken from each spec's label tuple."""
    frames = []
    for label, spec in specs.items():
        result = results[spec.key()]
        frames.append(result.history().assign(**dict(zip(names, label)), status=result.status))
    return pd.concat(frames, ignore_index=True)


def train_variants(
    make_model: ModelFactory | ModelSpec,
    data: Mapping | DataSpec,
    variants: Sequence[str],
    seeds: Sequence[int],
    *,
    optimizer: str = "adam",
    lr: float = 1e-4,
    batch_size: int = 32,
    epochs: int = 1,
    loss: str = "ce",
    val_fraction: float | None = None,
    device: str = "auto",
    progress: bool = True,
    store: RunStore | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Train every variant for every seed (one sweep); one row per (variant, seed, epoch), `fit`'s columns.

    `flnpf` copies the gates of the fully trained `relu` run of the same seed (trained as a dependency if `relu` is
    not among the variants, and then not reported). store: where runs are kept and found (default: in memory).
    """
    specs = variant_specs(model_spec(make_model), data_spec(data, val_fraction), variants, seeds,
                          optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs, loss=loss)
    results = run_sweep(list(specs.values()), store if store is not None else MemoryStore(), executor=executor,
                        progress=progress, device=device)
    order = sorted(variants, key=lambda v: v != "relu")
    ordered = {(v, s): specs[v, s] for s in seeds for v in order}
    return sweep_history(ordered, results, ["variant", "seed"])


def final_accuracy(history: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, seed): best-epoch test accuracy, and the test accuracy at the epoch of best validation accuracy."""
    rows = []
    for (variant, seed), run in history[history["epoch"] > 0].groupby(["variant", "seed"], sort=False):
        best_val = run.loc[run["val_acc"].idxmax()] if run["val_acc"].notna().any() else run.iloc[-1]
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                "best_epoch_test_acc": run["test_acc"].max(),
                "val_selected_test_acc": best_val["test_acc"],
                "val_selected_epoch": int(best_val["epoch"]),
                "final_train_acc": run["train_acc"].iloc[-1],
                "final_gates_changed": run["gates_changed"].iloc[-1],
            }
        )
    return pd.DataFrame(rows)


def summarise(history: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean and std over seeds of the columns of `final_accuracy`, in the order variants appear."""
    per_seed = final_accuracy(history)
    order = list(dict.fromkeys(per_seed["variant"]))
    stats = per_seed.drop(columns=["seed", "val_selected_epoch"]).groupby("variant").agg(["mean", "std"])
    stats.columns = [f"{a}_{b}" for a, b in stats.columns]
    stats["seeds"] = per_seed.groupby("variant").size()
    return stats.loc[order].reset_index()
