"""Comparing DGN variants: train each variant over several seeds and summarise test accuracy two ways.

`flnpf` needs a trained `relu` network to copy its gates from: for each seed, the `relu` network of that seed is
trained first (or taken from the same call) and its gates are frozen into a fresh `flnpf` network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from .models import DGN, VARIANTS, GatedNet
from .train import fit, seed_everything

ModelFactory = Callable[[str, int], GatedNet]


def dgn_factory(**kwargs) -> ModelFactory:
    """A factory (variant, seed) → DGN(**kwargs, variant=variant, seed=seed)."""
    return lambda variant, seed: DGN(**kwargs, variant=variant, seed=seed)


def train_variants(
    make_model: ModelFactory,
    data: Mapping,
    variants: Sequence[str],
    seeds: Sequence[int],
    **fit_kwargs,
) -> pd.DataFrame:
    """Train every variant for every seed with `fit`; one row per (variant, seed, epoch).

    `flnpf` copies the gates of the `relu` network trained with the same seed (trained here if `relu` is not
    among the variants, and then not reported).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}: expected some of {', '.join(VARIANTS)}")
    order = sorted(variants, key=lambda v: v != "relu")  # relu first, so flnpf can copy it
    frames = []
    for seed in seeds:
        trained_relu = None
        for variant in order:
            if variant == "flnpf":
                if trained_relu is None:
                    seed_everything(seed)
                    trained_relu = make_model("relu", seed)
                    fit(trained_relu, data, seed=seed, **fit_kwargs)
                model = make_model("flnpf", seed + 10_000)
                model.copy_gates_from(trained_relu)
            else:
                model = make_model(variant, seed)
            seed_everything(seed)
            df = fit(model, data, seed=seed, **fit_kwargs)
            if variant == "relu":
                trained_relu = model
            frames.append(df.assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True)


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
