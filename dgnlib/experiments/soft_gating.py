"""Figure 09: soft gating. A sweep of dnpfl over the gate softness β beside hard-gated relu, and its claim parts.

Every setting (dnpfl at each β, and relu) is trained for every seed as one sweep of the engine (`sweep.run_sweep`),
so the runs are stored and resume; the settings share their seeds, hence their data split, minibatch order, value
network initialisation and (for dnpfl) feature network initialisation: only β differs between the dnpfl runs of a seed.

Gates changed. The engine counts, on each run's first 1000 training inputs, the (input, layer, unit) triples whose
gating pre-activation q changed sign between initialisation and the end of an epoch: q of the feature network for
dnpfl (q > 0 ⇔ G = (1+ε)·sigmoid(βq) > (1+ε)/2, the gate is more on than off), relu's own q for relu.
`initial_layer1_patterns` checks what makes layer 1 comparable across β: its initial gates are the same for every β
of a seed.

The "interior β" part (`interior_part`) asks for one interior β that beats *both* ends of the sweep, each paired by
seed; it is held when, for some interior β, both paired intervals (at the Bonferroni level 1 − (1 − level)/k for k
interior βs) exclude 0 on the positive side. `null_rate` estimates by simulation how often a rule holds when β does
not matter at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dgnlib import verdict
from dgnlib.engine.runs import DataSpec, ModelSpec, RunResult, RunSpec, RunStore
from dgnlib.engine.sweep import Executor, run_sweep
from dgnlib.experiments.comparison import final_accuracy, sweep_history
from dgnlib.experiments.comparison import run_seeds as _run_seeds
from dgnlib.seeding import derive_seed

RELU = "relu (hard)"


def run_seeds(master: int, n: int) -> list[int]:
    """The seeds of n independent runs, derived from the master seed (one stream per run index)."""
    return _run_seeds(master, n)


def setting_name(beta: float) -> str:
    """The name of the dnpfl setting with softness beta, as in tables and the CSV."""
    return f"dnpfl β={beta:g}"


def soft_gating_specs(
    model: ModelSpec, data: DataSpec, betas: Sequence[float], seeds: Sequence[int], *, dnpfl_feature: str = "gated",
    **train: object
) -> dict[tuple[str, float, int], RunSpec]:
    """{(setting, β, seed): RunSpec}: dnpfl at every β (its feature pass `dnpfl_feature`) and relu (β = NaN), for
    every seed, sharing everything else."""
    if len(betas) < 3 or any(not b > 0 for b in betas) or len(set(betas)) != len(betas):
        raise ValueError(f"betas must be at least 3 distinct positive values, got {list(betas)}")
    specs = {}
    for seed in seeds:
        for b in betas:
            specs[setting_name(b), float(b), seed] = RunSpec(model.replace(variant="dnpfl", beta=float(b),
                                                                              feature_act=dnpfl_feature), data,
                                                            seed, **train)
        specs[RELU, float("nan"), seed] = RunSpec(model.replace(variant="relu"), data, seed, **train)
    return specs


def soft_gating_sweep(
    model: ModelSpec,
    data: DataSpec,
    betas: Sequence[float],
    seeds: Sequence[int],
    *,
    store: RunStore,
    executor: Executor | None = None,
    progress: bool = True,
    device: str = "auto",
    **train: object,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or find in `store`) every setting for every seed; (history, per_seed).

    history: one row per (setting, seed, epoch) with the engine's metrics, `beta` (NaN for relu) and `status`.
    per_seed: one row per (setting, seed): `comparison.final_accuracy`'s columns, plus the best validation accuracy,
    the final fraction of gates changed in each gated layer (`changed_l1`, ...) and the run's status.
    """
    specs = soft_gating_specs(model, data, betas, seeds, **train)
    results = run_sweep(list(specs.values()), store, executor=executor, progress=progress, device=device)
    history = sweep_history(specs, results, ["setting", "beta", "seed"])
    return history, per_seed_table(specs, results, history)


nan = float("nan")


def _choose_on_a(run: pd.DataFrame) -> tuple[float, float]:
    """(best accuracy on test half a over a run's epochs, half b's accuracy at that epoch, the first maximum): the
    β of figure 09 is chosen on half a and judged on half b, so that no image both chooses and reports."""
    if "test_acc_a" not in run or not run["test_acc_a"].notna().any():
        return nan, nan
    row = run.loc[run["test_acc_a"].idxmax()]
    return float(row["test_acc_a"]), float(row["test_acc_b"])


def per_seed_table(specs: Mapping[tuple, RunSpec], results: Mapping[str, RunResult], history: pd.DataFrame):
    """Per (setting, β, seed): final accuracies, best validation accuracy, the best accuracy on test half a and half
    b's at its epoch (`best_half_a`, `half_b_at_a`), per-layer gates changed, status."""
    per = final_accuracy(history.assign(variant=history["setting"])).rename(columns={"variant": "setting"})
    trained = history[history["epoch"] > 0]
    best_val = trained.groupby(["setting", "seed"])["val_acc"].max()
    halves = {key: _choose_on_a(run) for key, run in trained.groupby(["setting", "seed"])}
    rows = []
    for (setting, beta, seed), spec in specs.items():
        result = results[spec.key()]
        layers = result.gate_stats.get("gates_changed_layers", [])
        rows.append({"setting": setting, "seed": seed, "beta": beta, "status": result.status,
                     "best_val_acc": best_val.get((setting, seed), float("nan")),
                     **dict(zip(("best_half_a", "half_b_at_a"), halves.get((setting, seed), (nan, nan)))),
                     **{f"changed_l{l + 1}": float(v) for l, v in enumerate(layers)}})
    return per.merge(pd.DataFrame(rows), on=["setting", "seed"], how="right")


def matrix(per_seed: pd.DataFrame, column: str, betas: Sequence[float], seeds: Sequence[int]) -> np.ndarray:
    """seeds × β array of one per-seed column of the dnpfl settings (NaN where a run is missing)."""
    table = per_seed.pivot_table(index="seed", columns="beta", values=column, dropna=False)
    return table.reindex(index=list(seeds), columns=[float(b) for b in betas]).to_numpy(dtype=float)


def relu_values(per_seed: pd.DataFrame, column: str, seeds: Sequence[int]) -> np.ndarray:
    """relu's per-seed values of one column, in the order of seeds."""
    relu = per_seed[per_seed["setting"] == RELU].set_index("seed")[column]
    return relu.reindex(list(seeds)).to_numpy(dtype=float)


def interior_part(
    acc: np.ndarray,
    betas: Sequence[float],
    seeds: Sequence | None = None,
    *,
    level: float = 0.95,
    min_seeds: int = 3,
    invalid: bool | Sequence[bool] = False,
    name: str = "an interior β beats both ends of the sweep",
) -> verdict.Part:
    """Claim "some interior β has a higher accuracy than both the smallest and the largest β", paired by seed.

    acc: seeds × β (β increasing). For each of the k interior βs, `verdict.paired` compares it with each end at the
    level 1 − (1 − level)/k (Bonferroni over the interior βs). An interior β beats both ends when both its comparisons
    are held (an intersection-union test: no correction for the two ends). The part is held when some interior β
    beats both ends, not held when every interior β is significantly below at least one end, inconclusive otherwise;
    invalid if any comparison is. Its estimate and interval are those of the deciding comparison (the weaker end of
    the best interior β).
    """
    a = np.asarray(acc, dtype=float)
    if a.ndim != 2 or a.shape[1] != len(betas) or len(betas) < 3:
        raise ValueError(f"acc must be seeds × β with at least 3 βs, got shape {a.shape} for {len(betas)} βs")
    if list(betas) != sorted(betas):
        raise ValueError(f"betas must be increasing, got {list(betas)}")
    k = len(betas) - 2
    adjusted = 1 - (1 - level) / k
    seeds = list(range(a.shape[0])) if seeds is None else list(seeds)
    common = dict(seeds=seeds, side="greater", min_seeds=min_seeds, level=adjusted, invalid=invalid)
    per_beta, candidates = {}, []
    for j in range(1, len(betas) - 1):
        low = verdict.paired(a[:, j], a[:, 0], name=f"β={betas[j]:g} − β={betas[0]:g}", **common)
        high = verdict.paired(a[:, j], a[:, -1], name=f"β={betas[j]:g} − β={betas[-1]:g}", **common)
        words = {low.verdict, high.verdict}
        word = ("invalid" if "invalid" in words else "held" if words == {"held"} else
                "not held" if "not held" in words else "inconclusive")
        weaker = min((low, high), key=lambda p: -np.inf if p.interval is None else p.interval[0])
        per_beta[f"{betas[j]:g}"] = {"verdict": word, "vs_smallest": low.to_dict(), "vs_largest": high.to_dict()}
        candidates.append((word, weaker, betas[j]))
    words = [w for w, _, _ in candidates]
    if "invalid" in words:
        overall = "invalid"
    elif "held" in words:
        overall = "held"
    elif all(w == "not held" for w in words):
        overall = "not held"
    else:
        overall = "inconclusive"
    rank = {"held": 3, "inconclusive": 2, "not held": 1, "invalid": 0}
    word, part, beta = max(candidates, key=lambda c: (rank[c[0]], -np.inf if c[1].interval is None
                                                      else c[1].interval[0]))
    detail = (f"best interior β={beta:g}: {part.name} {part.detail}; Bonferroni over {k} interior β "
              f"(each comparison at level {adjusted:.4g}); per interior β: "
              + ", ".join(f"β={b}: {v['verdict']}" for b, v in per_beta.items()))
    return verdict.Part(name, overall, "mean paired difference, interior β − the weaker-beaten end",
                        part.estimate, part.interval, part.n, adjusted, "t", detail,
                        {"per_interior_beta": per_beta, "deciding_beta": beta, "bonferroni_k": k})


def old_inner_rule(acc: np.ndarray) -> bool:
    """The rule figure 09 used before: the best interior mean over seeds exceeds the better end's mean."""
    m = np.asarray(acc, dtype=float).mean(axis=0)
    return bool(m[1:-1].max() > max(m[0], m[-1]))


def null_rate(
    rule: Callable[[np.ndarray], bool],
    n_seeds: int,
    n_betas: int = 5,
    n_sims: int = 2000,
    seed: int = 0,
    seed_sd: float = 1.0,
) -> float:
    """Fraction of simulated sweeps in which `rule(acc)` is true when β does not matter at all.

    acc[s, j] = seed effect u_s ~ N(0, seed_sd²) + noise ~ N(0, 1), independent across s and j: every β has the same
    distribution (the null), with a seed effect shared by the settings of a seed as in the real sweep (pairing).
    """
    rng = np.random.default_rng(derive_seed(seed, "null_rate", n_seeds, n_betas))
    hits = 0
    for _ in range(n_sims):
        acc = seed_sd * rng.standard_normal((n_seeds, 1)) + rng.standard_normal((n_seeds, n_betas))
        hits += bool(rule(acc))
    return hits / n_sims


@torch.no_grad()
def initial_layer1_patterns(specs: Sequence[RunSpec], x: torch.Tensor) -> list[torch.Tensor]:
    """Layer-1 on/off gate pattern (1{q > 0}) at initialisation of each spec's model, built as the engine builds it."""
    return [spec.model.build(spec.init_seed()).gate_pattern(x)[0] for spec in specs]


@torch.no_grad()
def soft_pattern_mismatch(model: torch.nn.Module, x: torch.Tensor, slack: float = 1e-5) -> int:
    """Number of dnpfl gates where 1{q > 0} and G > (1+ε)/2 disagree, outside |βq| ≤ slack (float rounding)."""
    if getattr(model, "variant", None) != "dnpfl":
        raise ValueError("soft_pattern_mismatch needs a dnpfl model")
    pres = model._run(x, keep="pre")[1]
    gates = model.gates(x)
    bad = 0
    for q, g in zip(pres, gates):
        clear = (model.beta * q).abs() > slack
        bad += int(((q > 0) != (g > (1 + model.eps) / 2))[clear].sum())
    return bad
