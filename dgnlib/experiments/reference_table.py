"""Figure 06's whole FC-MNIST table on the reference's metric, beside the follow-up paper's published one.

The reference reports, per run, the best test accuracy over epochs, then the mean and standard deviation over its
5 runs. Its standard deviation is taken here as the population one (ddof 0, numpy's default, which its notebooks
use); `TABLE_DDOF` says so in one place. The honest number beside it is the split-half selected accuracy
(`dgnlib.engine.selection.split_half_selected`). Accuracies are fractions in [0, 1]; the published table is in %.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from dgnlib import verdict
from dgnlib.engine import tensors
from dgnlib.engine.runs import DataSpec
from dgnlib.engine.selection import FOLLOW_UP_FC_MNIST
from dgnlib.experiments.comparison import beats, final_accuracy

TABLE_DDOF = 0  # the reference's std over runs: population std (numpy's default)
METRICS = {"reference_table": "best_epoch_test_acc", "split_half_table": "split_half_test_acc"}


def _clean(x: float) -> float | None:
    """A JSON-safe number: None for NaN."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def tables(histories: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{"reference_table", "reference_table_std", "split_half_table", "split_half_table_std"} -> optimiser ->
    variant -> mean (or std, ddof `TABLE_DDOF`) over seeds of each run's number; invalid runs are left out, and a
    variant with no valid run is None."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, metric in METRICS.items():
        out[name], out[f"{name}_std"] = {}, {}
        for opt, history in histories.items():
            per_seed = final_accuracy(history)
            valid = per_seed[~per_seed["invalid"].astype(bool)]
            order = list(dict.fromkeys(per_seed["variant"]))
            grouped = valid.groupby("variant")[metric]
            mean, std = grouped.mean(), grouped.std(ddof=TABLE_DDOF)
            out[name][opt] = {v: _clean(mean.get(v, float("nan"))) for v in order}
            out[f"{name}_std"][opt] = {v: _clean(std.get(v, float("nan"))) for v in order}
    return out


def beside_follow_up(numbers: Mapping[str, Mapping[str, Mapping[str, float | None]]]) -> pd.DataFrame:
    """One row per (optimiser, variant): this companion's reference-metric mean ± std (%), the follow-up paper's
    published mean ± std (%, `FOLLOW_UP_FC_MNIST`; blank where it has no cell, e.g. linear), and the difference in
    points (this companion minus the follow-up's)."""
    rows = []
    for opt, cells in numbers["reference_table"].items():
        for variant, mean in cells.items():
            std = numbers["reference_table_std"][opt].get(variant)
            mine = 100 * mean if mean is not None else float("nan")
            theirs = FOLLOW_UP_FC_MNIST.get(opt, {}).get(variant)
            rows.append({"optimiser": opt, "variant": variant,
                         "this companion (%)": mine, "± (this)": 100 * std if std is not None else float("nan"),
                         "follow-up paper (%)": theirs[0] if theirs else float("nan"),
                         "± (follow-up)": theirs[1] if theirs else float("nan"),
                         "difference (points)": mine - theirs[0] if theirs else float("nan")})
    return pd.DataFrame(rows).set_index(["optimiser", "variant"])


def train_images(data: DataSpec) -> int:
    """How many training images a run of `data` trains on (after the validation split, if any)."""
    n = int(tensors.materialise(data)["train"][0].shape[0])
    return int(tensors.train_val_indices(n, data.val_fraction, 0)[0].numel())


def parts_per_optimiser(per_seed: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
                        *, metric: str, chance: float) -> tuple[list[verdict.Part], dict[str, str]]:
    """The claim's parts for every optimiser, named "<optimiser>: b > w", and each optimiser's own verdict.

    pairs: (better, worse) groups for `comparison.beats`. The figure's verdict is `verdict.combine` over all the
    parts, so it is held only when the claim is held under every optimiser, and invalid when any optimiser's runs
    are (the rule, applied to the union of the parts); the per-optimiser verdicts are recorded beside it."""
    parts, per_opt = [], {}
    for opt, rows in per_seed.items():
        mine = [dataclasses.replace(p, name=f"{opt}: {p.name}")
                for better, worse in pairs if better and worse
                for p in beats(rows, better, worse, metric=metric, chance=chance)]
        per_opt[opt] = verdict.combine(mine)
        parts += mine
    return parts, per_opt
