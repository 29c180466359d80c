"""Comparing DGN variants: a sweep of (variant, seed) runs through the sweep engine, summarised two ways.

`flnpf` needs a trained `relu` network to copy its gates from: each flnpf run names the relu run of its seed (same
model, data and optimiser, `epochs` epochs) as its gate source; the engine trains that relu run first (or finds it
in the store) and keeps its final weights. Runs are `runs.RunSpec`s, so every run is stored under its hash and a
sweep that stopped resumes where it stopped.

Two figures share a run when they build the same spec: `run_seeds` gives every figure the same run seeds for the
same master seed, `image_data` names a data set (not its tensors) and `fc_model` the network, and the specs of
variants without soft gates carry the default β and ε (which they do not use), so that e.g. figure 06's and 08's
relu runs of the same protocol have the same key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from dgnlib import seeding, verdict
from dgnlib.core.models import DGN, GatedNet
from dgnlib.engine import tensors as datamod
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, RunStore
from dgnlib.engine.selection import split_half_selected
from dgnlib.engine.sweep import Executor, run_sweep
from dgnlib.experiments.premises import require_learnt
from dgnlib.names import VARIANTS

ModelFactory = Callable[[str, int], GatedNet]


def run_seeds(master: int, n: int) -> list[int]:
    """The seeds of n runs, derive_seed(master, "run", r) for r < n: the first k are the same for every n >= k."""
    return seeding.run_seeds(master, n, "run")


def image_data(name: str, n_train: int, n_test: int, val_fraction: float, seed: int) -> DataSpec:
    """A named data set's DataSpec; n_train / n_test 0 mean the whole split (then the subset seed is irrelevant: 0)."""
    whole = not n_train and not n_test
    return DataSpec(name, n_train=n_train or None, n_test=n_test or None, val_fraction=val_fraction,
                    subset_seed=0 if whole else seed)


def fc_model(d_in: int, width: int, depth: int, d_out: int, *, init: str = "glorot", beta: float = 4.0,
             eps: float = 0.1, bias: bool = True) -> ModelSpec:
    """The ModelSpec of a fully connected DGN (variant relu; `variant_specs` sets each run's variant)."""
    return ModelSpec("fc", "relu", beta=beta, eps=eps, bias=bias, init=init, d_in=d_in, width=width, depth=depth,
                     d_out=d_out)


_DEFAULT_BETA, _DEFAULT_EPS = ModelSpec("fc").beta, ModelSpec("fc").eps


def for_variant(model: ModelSpec, variant: str, dnpfl_feature: str = "gated") -> ModelSpec:
    """`model` as `variant`; β, ε and the feature pass (`dnpfl_feature`: "gated" | "relu", see
    `models.FEATURE_ACTS`), used by dnpfl only, are set to their defaults for the others."""
    if variant == "dnpfl":
        return model.replace(variant=variant, feature_act=dnpfl_feature)
    return model.replace(variant=variant, beta=_DEFAULT_BETA, eps=_DEFAULT_EPS, feature_act="gated")


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
    model: ModelSpec, data: DataSpec, variants: Sequence[str], seeds: Sequence[int], *,
    keep_relu_weights: Sequence[int] = (), gate_select: str = "epoch", dnpfl_feature: str = "gated", **train: object
) -> dict[tuple[str, int], RunSpec]:
    """{(variant, seed): RunSpec}; flnpf's gate source is the relu run of its seed, after its last epoch
    (gate_select "epoch") or at its epoch of best test accuracy ("best", the reference's checkpoint).

    keep_relu_weights: epochs at which the relu runs keep their weights (for another figure that copies their gates
    at those epochs; not part of the runs' keys). dnpfl_feature: what dnpfl's feature network passes forward.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}: expected some of {', '.join(VARIANTS)}")
    out = {}
    for seed in seeds:
        relu = RunSpec(for_variant(model, "relu"), data, seed, **train)
        for variant in variants:
            source = GateSource(relu, relu.epochs, gate_select) if variant == "flnpf" else None
            out[variant, seed] = RunSpec(for_variant(model, variant, dnpfl_feature), data, seed, gate_source=source,
                                         **train)
        if "relu" in variants and keep_relu_weights:
            kept = tuple(sorted({int(e) for e in keep_relu_weights if 0 <= e <= relu.epochs}))
            out["relu", seed] = out["relu", seed].replace(keep_weights=kept)
    return out


def sweep_history(specs: Mapping[tuple, RunSpec], results: Mapping, names: Sequence[str]) -> pd.DataFrame:
    """One DataFrame of every run's rows, with the columns `names` taken from each spec's label tuple, `status`, and
    (only when some run is invalid) `reason`, why it is (see `invalid_runs`)."""
    frames = []
    for label, spec in specs.items():
        result = results[spec.key()]
        frame = result.history().assign(**dict(zip(names, label)), status=result.status)
        frames.append(frame if result.status == "ok" else frame.assign(reason=result.reason or "non-finite values"))
    return pd.concat(frames, ignore_index=True)


def invalid_runs(history: pd.DataFrame, names: Sequence[str] = ("variant", "seed")) -> dict[str, str]:
    """{"<first name's value> <name> <value> …": reason} (e.g. "flnpf stage 2 seed 7") for every run of `history`
    whose status is not ok (empty when all are)."""
    if "status" not in history or "reason" not in history:
        return {}
    bad = history[history["status"] != "ok"].drop_duplicates(list(names))
    return {" ".join([str(row[names[0]]), *(f"{n} {row[n]}" for n in names[1:] if not pd.isna(row[n]))]):
            str(row["reason"]) for _, row in bad.iterrows()}


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
    keep_relu_weights: Sequence[int] = (),
    opt_eps: float | None = None,
    gate_select: str = "epoch",
    dnpfl_feature: str = "gated",
) -> pd.DataFrame:
    """Train every variant for every seed (one sweep); one row per (variant, seed, epoch), `fit`'s columns.

    `flnpf` copies the gates of the `relu` run of the same seed (trained as a dependency if `relu` is not among the
    variants, and then not reported). store: where runs are kept and found (default: in memory).
    keep_relu_weights, gate_select, dnpfl_feature: see `variant_specs`; opt_eps: Adam's ε (None: torch's 1e-8).
    """
    specs = variant_specs(model_spec(make_model), data_spec(data, val_fraction), variants, seeds,
                          keep_relu_weights=keep_relu_weights, gate_select=gate_select, dnpfl_feature=dnpfl_feature,
                          optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs, loss=loss,
                          opt_eps=opt_eps)
    results = run_sweep(list(specs.values()), store if store is not None else MemoryStore(), executor=executor,
                        progress=progress, device=device)
    order = sorted(variants, key=lambda v: v != "relu")
    ordered = {(v, s): specs[v, s] for s in seeds for v in order}
    return sweep_history(ordered, results, ["variant", "seed"])


def final_accuracy(history: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, seed): best-epoch test accuracy, the test accuracy at the epoch of best validation accuracy, and
    the split-half selected test accuracy (`selection.split_half_selected`; NaN when the run logged no test halves).

    "invalid" is True for a run whose status (when the history has one) is not "ok": a run stopped for non-finite
    values, whose numbers must not decide anything; a run with no trained epoch is invalid, with NaN numbers.
    """
    rows = []
    for (variant, seed), whole in history.groupby(["variant", "seed"], sort=False):
        invalid = bool("status" in whole and (whole["status"] != "ok").any())
        run = whole[whole["epoch"] > 0]
        if run.empty:  # never trained (e.g. flnpf whose relu source diverged): no numbers, and invalid
            rows.append({"variant": variant, "seed": seed, "best_epoch_test_acc": float("nan"),
                         "val_selected_test_acc": float("nan"), "val_selected_epoch": 0,
                         "split_half_test_acc": float("nan"),
                         "final_train_acc": float("nan"), "final_gates_changed": float("nan"), "invalid": True})
            continue
        best_val = run.loc[run["val_acc"].idxmax()] if run["val_acc"].notna().any() else run.iloc[-1]
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                "best_epoch_test_acc": run["test_acc"].max(),
                "val_selected_test_acc": best_val["test_acc"],
                "val_selected_epoch": int(best_val["epoch"]),
                # the honest number without a validation split: epoch chosen on one test half, the other reported
                "split_half_test_acc": split_half_selected(run.to_dict("records")),
                "final_train_acc": run["train_acc"].iloc[-1],
                "final_gates_changed": run["gates_changed"].iloc[-1],
                "invalid": invalid,
            }
        )
    return pd.DataFrame(rows)


def summarise(history: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean and std over seeds of the columns of `final_accuracy`, in the order variants appear."""
    per_seed = final_accuracy(history)
    order = list(dict.fromkeys(per_seed["variant"]))
    stats = per_seed.drop(columns=["seed", "val_selected_epoch", "invalid"]).groupby("variant").agg(["mean", "std"])
    stats.columns = [f"{a}_{b}" for a, b in stats.columns]
    stats["seeds"] = per_seed.groupby("variant").size()
    return stats.loc[order].reset_index()


def beats(
    per_seed: pd.DataFrame,
    better: Sequence[str],
    worse: Sequence[str],
    *,
    metric: str = "val_selected_test_acc",
    key: str = "variant",
    level: float = 0.95,
    chance: float | None = None,
) -> list[verdict.Part]:
    """One `verdict.paired` part per pair (b, w) of `better` × `worse`: b's `metric` exceeds w's, paired by seed.

    per_seed: `final_accuracy`'s rows (columns key, seed, metric, invalid). A pair is invalid when a run of either
    is. "Every b beats every w" is held when every part is held (an intersection-union test: each pair at `level`,
    no multiplicity correction needed, since the claim needs all of them). chance (the accuracy of guessing, e.g.
    0.1 for ten classes): a pair whose networks did not learn (`premises.require_learnt` on `metric`) is
    inconclusive.
    """
    parts = []
    for b in better:
        for w in worse:
            a_runs, b_runs = (per_seed[per_seed[key] == v].set_index("seed") for v in (b, w))
            if a_runs.empty or b_runs.empty:
                raise ValueError(f"no runs of {b if a_runs.empty else w!r} in per_seed")
            seeds = [s for s in a_runs.index if s in b_runs.index]
            bad = [bool(a_runs.loc[s, "invalid"] or b_runs.loc[s, "invalid"]) for s in seeds]
            part = verdict.paired(a_runs.loc[seeds, metric].to_numpy(), b_runs.loc[seeds, metric].to_numpy(),
                                  seeds, name=f"{b} > {w}", level=level, invalid=bad)
            if chance is not None:
                part = require_learnt(part, {v: dict(zip(map(str, seeds), runs.loc[seeds, metric]))
                                             for v, runs in ((b, a_runs), (w, b_runs))}, chance)
            parts.append(part)
    return parts
