"""Figure 07: the label alignment ν of the neural path kernel during training, relu against frnpf-ii, over seeds.

Every run is a `runs.RunSpec` with a probe (`probe_per_class` examples of each class of the training pool, drawn once
from the data's subset seed, the same for every run), trained by the sweep engine: the engine logs after every epoch
ν_t of the NPK of the run's current gates on the probe and the fraction of gates changed since initialisation. The
claim parts are decided over seeds (`decide_alignment`); that frnpf-ii's gates, and so its ν, never move is an
identity of fixed gates, checked apart from the claim.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dgnlib import seeding
from dgnlib.engine.runs import OPTIMIZER_CONSTANTS, DataSpec, ModelSpec, RunResult, RunSpec, RunStore
from dgnlib.engine.sweep import Executor, run_sweep
from dgnlib.engine.threads import single_thread
from dgnlib.experiments.comparison import sweep_history, variant_specs
from dgnlib.experiments.premises import require_learnt
from dgnlib.verdict import Check, Part, paired

VARIANTS = ("relu", "frnpf-ii")  # adapting gates vs fixed random gates
NU_RTOL = 1.0e-9  # identity: relative change of frnpf-ii's ν allowed (its gates, and so its NPK, are fixed)


def run_seeds(master: int, n_seeds: int) -> list[int]:
    """The run seeds of figure 07: derive_seed(master, "07", k) for k < n_seeds."""
    return seeding.run_seeds(master, n_seeds, "07")


def mnist_pair(neg_class: int, pos_class: int, n_train: int, seed: int) -> DataSpec:
    """MNIST digits neg_class (−1) vs pos_class (+1), all test images of the two, nothing held out for validation;
    n_train = 0: every training image of the two digits, else a class-balanced subset seeded by `seed`."""
    if neg_class == pos_class:
        raise ValueError(f"neg_class and pos_class must differ, got {neg_class} twice")
    return DataSpec("mnist", n_train=n_train or None, val_fraction=0.0, subset_seed=seed,
                    binary_pair=(neg_class, pos_class))


def alignment_specs(
    data: DataSpec,
    d_in: int,
    seeds: Sequence[int],
    *,
    depth: int,
    width: int,
    optimizer: str,
    lr: float,
    batch_size: int,
    epochs: int,
    probe_per_class: int,
    init: str = "bernoulli",
    rmsprop_rho: float | None = None,
    opt_eps: float | None = None,
) -> dict[tuple[str, int], RunSpec]:
    """{(variant, seed): RunSpec} for relu and frnpf-ii: bias-free FC DGN (init "bernoulli": weights ±√(2/w)), one
    output, squared loss, ν logged on a probe of `probe_per_class` examples per class.

    rmsprop_rho (RMSprop's smoothing constant, PyTorch's alpha) and opt_eps (RMSprop's and Adam's epsilon) are used
    where `optimizer` has them, and ignored otherwise; None keeps PyTorch's default.
    """
    if probe_per_class < 1:
        raise ValueError(f"probe_per_class must be at least 1 (ν needs a probe), got {probe_per_class!r}")
    model = ModelSpec("fc", bias=False, init=init, d_in=d_in, width=width, depth=depth, d_out=1)
    constants = {name: value for name, value in (("opt_alpha", rmsprop_rho), ("opt_eps", opt_eps))
                 if name in OPTIMIZER_CONSTANTS[optimizer]}
    return variant_specs(model, data, VARIANTS, seeds, optimizer=optimizer, lr=lr, batch_size=batch_size,
                         epochs=epochs, loss="mse", probe_per_class=probe_per_class, **constants)


def history_of(specs: Mapping[tuple[str, int], RunSpec], results: Mapping[str, RunResult]) -> pd.DataFrame:
    """One row per (variant, seed, epoch): the engine's columns, status, and nu_ratio = ν_t/ν_0 of that run."""
    hist = sweep_history(specs, results, ["variant", "seed"])
    if "nu" not in hist:
        raise ValueError("the runs carry no ν: their specs need probe_per_class >= 1")
    nu0 = hist.groupby(["variant", "seed"], sort=False)["nu"].transform("first")
    return hist.assign(nu_ratio=hist["nu"] / nu0)


def train_alignment(
    specs: Mapping[tuple[str, int], RunSpec],
    store: RunStore,
    *,
    progress: bool = True,
    device: str = "auto",
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Train (or find in `store`) every run of `specs` with the sweep engine; `history_of` their results."""
    with single_thread():  # networks of width ~100 on CPU: one thread is faster, far faster on a busy machine
        results = run_sweep(list(specs.values()), store, executor=executor, progress=progress, device=device)
    return history_of(specs, results)


def per_seed(history: pd.DataFrame) -> pd.DataFrame:
    """One row per seed: each variant's ν_0, ν_T, log(ν_T/ν_0), gates changed and test accuracy at its last logged
    epoch, its last epoch, and `invalid` (a run of that seed has status invalid)."""
    rows = []
    for seed, runs in history.groupby("seed", sort=False):
        row: dict = {"seed": seed, "invalid": bool((runs["status"] != "ok").any())}
        for variant in VARIANTS:
            run = runs[runs["variant"] == variant].sort_values("epoch")
            if run.empty:
                raise ValueError(f"seed {seed} has no {variant} run")
            first, last = run.iloc[0], run.iloc[-1]
            tag = variant.replace("-", "_")
            row |= {f"{tag}_nu_0": first["nu"], f"{tag}_nu_T": last["nu"],
                    f"{tag}_log_ratio": math.log(last["nu"] / first["nu"]) if last["nu"] > 0 < first["nu"]
                    else float("nan"),
                    f"{tag}_gates_changed_T": last["gates_changed"], f"{tag}_test_acc_T": last["test_acc"],
                    f"{tag}_last_epoch": int(last["epoch"])}
        rows.append(row)
    return pd.DataFrame(rows)


def fixed_gate_checks(history: pd.DataFrame, nu_rtol: float = NU_RTOL) -> list[Check]:
    """Identities of frnpf-ii (a frozen feature network): no gate ever changes, and ν_t = ν_0 within nu_rtol."""
    fixed = history[history["variant"] == "frnpf-ii"]
    if fixed.empty:
        raise ValueError("no frnpf-ii runs in the history")
    changed = fixed["gates_changed"].to_numpy(float)
    drift = np.abs(fixed["nu_ratio"].to_numpy(float) - 1)
    worst = float(np.max(np.where(np.isfinite(drift), drift, np.inf)))
    seeds, epochs = fixed["seed"].nunique(), int(fixed["epoch"].max())
    return [
        Check("frnpf-ii: no gate changes during training", bool((changed == 0).all()),
              f"largest fraction of gates changed {np.nanmax(changed) if np.isfinite(changed).any() else 'NaN'} "
              f"over {seeds} seeds, epochs 0–{epochs}", kind="identity", max_gates_changed=float(np.max(changed))),
        Check("frnpf-ii: ν constant during training", worst <= nu_rtol,
              f"max |ν_t/ν_0 − 1| = {worst:.1e} (tolerance {nu_rtol:g}) over {seeds} seeds, epochs 0–{epochs}",
              kind="identity", max_relative_drift=worst, tolerance=nu_rtol),
    ]


def decide_alignment(
    history: pd.DataFrame, *, level: float = 0.95, min_seeds: int = 3, nu_rtol: float = NU_RTOL, chance: float = 0.5
) -> tuple[list[Part], list[Check], pd.DataFrame]:
    """Figure 07's claim parts over seeds, its identity checks, and the per-seed table (`per_seed`).

    Parts (t intervals over seeds, `verdict.paired`; a seed with an invalid run makes a part invalid):
    - relu's NPK aligns: mean over seeds of log(ν_T/ν_0) < 0 (ν_T against ν_0 of the same run);
    - relu's gates adapt beyond frnpf-ii's: gates changed at the end, relu − frnpf-ii > 0, paired by seed; it
      presumes that relu learnt (`premises.require_learnt`: final test accuracy of every relu run at least halfway
      from `chance` to 100 %), else it is inconclusive (gates that hardly moved in an untrained network are no
      evidence either way).
    Checks: `fixed_gate_checks` (frnpf-ii's gates and ν do not move: identities, not evidence).
    """
    table = per_seed(history)
    seeds, bad = table["seed"].tolist(), table["invalid"].to_numpy(bool)
    kw = dict(seeds=seeds, min_seeds=min_seeds, level=level, invalid=bad)
    nu = paired(np.log(table["relu_nu_T"].to_numpy(float)), np.log(table["relu_nu_0"].to_numpy(float)),
                name="relu: the NPK aligns with the labels (ν_T < ν_0)", side="less", **kw)
    nu = dataclasses.replace(nu, statistic="mean over seeds of log(ν_T/ν_0), relu")
    gates = paired(table["relu_gates_changed_T"].to_numpy(float), table["frnpf_ii_gates_changed_T"].to_numpy(float),
                   name="relu's gates change more than frnpf-ii's", side="greater", **kw)
    gates = dataclasses.replace(gates, statistic="mean over seeds of gates changed at the end, relu − frnpf-ii")
    gates = require_learnt(gates, {"relu": dict(zip(map(str, seeds), table["relu_test_acc_T"]))}, chance)
    return [nu, gates], fixed_gate_checks(history, nu_rtol), table
