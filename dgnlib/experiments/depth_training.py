"""Figure 05: full-batch gradient descent of the value network with fixed gates, its speed vs depth, decided per width.

Every run trains the bias-free value network with fixed Bernoulli(μ) gates by full-batch GD on ½‖ŷ − y‖² with the
step α = step_scale/λ_max(K_0) of its own K_0, beside the K_0-linearised prediction e_{t+1} = (I − αK_0)e_t, and
records whether it stayed in that regime (λ_max(K_t) drift, loss increases, non-finite values). The claim "depth
helps, then hurts" is decided within each width over seeds (`decide_training`), unstable runs counting as failures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from dgnlib import seeding
from dgnlib.core import theory
from dgnlib.core.kernels import value_ntk
from dgnlib.engine.threads import single_thread
from dgnlib.experiments.depth import _STREAM_GATES, _STREAM_WEIGHTS, _check_sizes
from dgnlib.experiments.depth import interior_minimum_part as depth_interior_minimum
from dgnlib.seeding import derive_seed
from dgnlib.verdict import Check, Part
from dgnlib.verdict import trend as verdict_trend

# -- figure 05: training speed -----------------------------------------------------------------------------------

# How the value network is set up for figure 05 (bench/05_protocol.md has the measurements behind the choice):
#   "centred"         the protocol: standard parametrisation, ±σ weights with σ² = sigma2_w/w on every layer,
#                     targets y × 0.05 and the network's initial output subtracted (GD trains ŷ − ŷ_0), so that the
#                     initial error is −0.05·y exactly, at every width and depth: the kernel stays at K_0 (λ_max
#                     within 10 %) and real GD takes the steps the K_0-linearised dynamics predict;
#   "scaled-targets"  as "centred" without the subtraction: at w = 25 the initial output (rms ≈ 0.27) dwarfs the
#                     targets, GD must undo it, and the kernel shrinks (λ_max down to 0.2×);
#   "ntk"             NTK parametrisation, ±1 weights, layer l multiplied by √(sigma2_w / fan_in), targets × 1:
#                     λ_max(K_t) grows up to 4.6× at w = 25 and some runs become unstable;
#   "standard"        the first protocol (σ² = sigma2_w/w, targets × 1): λ_max grows 2–8×, runs oscillate.
PROTOCOLS = ("centred", "scaled-targets", "ntk", "standard")
DEFAULT_TARGET_SCALE = {"centred": 0.05, "scaled-targets": 0.05, "ntk": 1.0, "standard": 1.0}


def run_seeds(master: int, n_seeds: int) -> list[int]:
    """The network draws of figure 05: derive_seed(master, 5, k) for k < n_seeds (the seeds bench/05_protocol.md
    measured with master seed 0)."""
    return seeding.run_seeds(master, n_seeds, 5)


def protocol_network(
    protocol: str, d_in: int, width: int, depth: int, sigma2_w: float, seed: int
) -> tuple[list[torch.Tensor], list[float]]:
    """(weights of the deepest network, per-layer multipliers) of a protocol; depth d < `depth` uses a prefix."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if protocol == "ntk":
        weights = theory.bernoulli_weights(d_in, width, depth, 1.0, seed=seed)
        return weights, [math.sqrt(sigma2_w / d_in)] + [math.sqrt(sigma2_w / width)] * (depth - 1)
    return theory.bernoulli_weights(d_in, width, depth, math.sqrt(sigma2_w / width), seed=seed), [1.0] * depth


def _thin(length: int, points: int) -> np.ndarray:
    """About `points` log-spaced indices in [0, length), always with the first and the last."""
    idx = np.unique(np.round(np.geomspace(1, max(length, 1), points)).astype(int) - 1)
    return np.unique(np.concatenate([[0], idx, [length - 1]]))


def train_run(
    x: torch.Tensor,
    target: torch.Tensor,
    gates: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    scales: Sequence[float],
    *,
    max_steps: int,
    step_scale: float = 0.5,
    tol: float = 0.01,
    window: int = 10,
    curve_points: int = 200,
    centre: bool = False,
) -> tuple[dict, pd.DataFrame]:
    """One figure-05 run: real GD (α = step_scale/λ_max(K_0)) beside the K_0-linearised prediction, with flags.

    Returns (row, curve). row: steps / steps_linear (first t with loss ≤ tol·loss_0, NaN if not within max_steps),
    reached, cond and lam_max of K_0, lr, lam_drift_max and lam_drift_final (λ_max(K_t)/λ_max(K_0), maximum over
    log-spaced t and at the end), sharpness_max (α·max_t λ_max(K_t); ≥ 2 is past the stability bound of GD),
    final_ratio, loss_increases (steps where the loss went up), stalled (the loss did not fall over some window of
    `window` steps), invalid (a non-finite loss or kernel), unstable (invalid, stalled, ≥ 2 increases or
    sharpness_max ≥ 2), init_rms (rms of ŷ_0) and target_rms. curve: step, loss_ratio (real), linear_ratio,
    log-thinned to about `curve_points` steps. With `centre` the model trained is ŷ − ŷ_0 (initial output removed).
    """
    f0 = theory.value_forward(x, gates, weights, scales)
    target_rms = float(target.pow(2).mean().sqrt())
    if centre:  # ŷ − ŷ_0 against target is ŷ against target + ŷ_0: same gradients, same kernel
        target = target + f0
    k0 = value_ntk(x, gates, weights, scales)
    if not (torch.isfinite(k0).all() and torch.isfinite(f0).all()):  # overflow: no step size, nothing to train
        nan = float("nan")
        row = dict(steps=nan, steps_linear=nan, reached=False, cond=nan, lam_max=nan, lr=nan, lam_drift_max=nan,
                   lam_drift_final=nan, sharpness_max=float("inf"), final_ratio=nan, loss_increases=0, stalled=False,
                   invalid=True, unstable=True, init_rms=float(f0.pow(2).mean().sqrt()), target_rms=target_rms)
        return row, pd.DataFrame({"step": [0], "loss_ratio": [nan], "linear_ratio": [nan]})
    evals = torch.linalg.eigvalsh(k0)
    lr = step_scale / float(evals[-1])
    grid = np.unique(np.round(np.geomspace(1, max_steps, 24)).astype(int)).tolist()
    res = theory.gd_value_network(
        x, target, gates, weights, lr=lr, steps=max_steps, scales=scales, tol=tol, kernel_steps=[0, *grid]
    )
    linear = theory.linearised_loss(k0, f0 - target, lr, max_steps)
    steps_linear = theory.first_below(linear, tol)
    real = res["loss"] / res["loss"][0]
    lin = linear / linear[0]
    lam = np.array(res["lam_max"]) / float(evals[-1])
    inc = np.diff(real) > 0
    stalled = bool(len(real) > window and (real[window:] >= real[:-window]).any())
    invalid = bool(res["nonfinite"]) or not np.isfinite(lam).all()
    sharp = float(lr * np.max(res["lam_max"])) if not invalid else float("inf")
    row = {
        "steps": float(res["steps_to_tol"]) if res["steps_to_tol"] is not None else float("nan"),
        "steps_linear": float(steps_linear) if steps_linear is not None else float("nan"),
        "reached": res["steps_to_tol"] is not None,
        "cond": float(evals[-1] / evals[0]) if evals[0] > 0 else float("inf"),
        "lam_max": float(evals[-1]),
        "lr": lr,
        "lam_drift_max": float(np.max(lam)),
        "lam_drift_final": float(lam[-1]),
        "sharpness_max": sharp,
        "final_ratio": float(real[-1]),
        "loss_increases": int(inc.sum()),
        "stalled": stalled,
        "invalid": invalid,
        "unstable": bool(invalid or stalled or inc.sum() >= 2 or sharp >= 2.0),
        "init_rms": float(f0.pow(2).mean().sqrt()),
        "target_rms": target_rms,
    }
    length = max(len(real), (steps_linear + 1) if steps_linear is not None else len(real))
    idx = _thin(length, curve_points)
    padded = np.full(length, np.nan)
    padded[: len(real)] = real
    curve = pd.DataFrame({"step": idx, "loss_ratio": padded[idx], "linear_ratio": lin[idx]})
    return row, curve


def training_sweep(
    x: torch.Tensor,
    y: torch.Tensor,
    depths: Sequence[int],
    widths: Sequence[int],
    seeds: Sequence[int],
    *,
    protocol: str = "centred",
    target_scale: float | None = None,
    mu: float = 0.5,
    sigma2_w: float = 2.0,
    max_steps: int = 5000,
    step_scale: float = 0.5,
    tol: float = 0.01,
    window: int = 10,
    curve_points: int = 200,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Full-batch GD of the value network with fixed Bernoulli(μ) gates for every (width, depth, seed): `train_run`.

    For each (width, seed) the gates and weights of the deepest network are drawn once; depth d uses the first d − 1
    gated layers, the input layer and the hidden layers before them, and the same output layer (common random numbers
    across depth). Targets are y × target_scale (the protocol's default when None). Returns (runs, curves): runs
    has width, depth, seed and the columns of `train_run`'s row; curves has width, depth, seed and its curve.
    """
    depths, widths = _check_sizes("depths", depths, 2), _check_sizes("widths", widths, 1)
    seeds = list(seeds)
    if not seeds or max_steps < 1:
        raise ValueError(f"need at least one seed and max_steps >= 1, got seeds={seeds!r}, max_steps={max_steps!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    target_scale = DEFAULT_TARGET_SCALE[protocol] if target_scale is None else float(target_scale)
    if not target_scale > 0:
        raise ValueError(f"target_scale must be positive, got {target_scale!r}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    target = target_scale * y.to(torch.float64).reshape(-1)
    n, d_in, d_max = x.shape[0], x.shape[1], max(depths)
    run_rows, curve_rows = [], []
    with single_thread():  # small matrices: one thread is faster, and far faster on a busy machine
        for width in widths:
            for s in seeds:
                all_gates = theory.bernoulli_gates(n, width, d_max, mu, seed=derive_seed(s, _STREAM_GATES, width))
                all_weights, all_scales = protocol_network(
                    protocol, d_in, width, d_max, sigma2_w, seed=derive_seed(s, _STREAM_WEIGHTS, width)
                )
                for depth in depths:
                    row, curve = train_run(
                        x, target, all_gates[: depth - 1], [*all_weights[: depth - 1], all_weights[-1]],
                        [*all_scales[: depth - 1], all_scales[-1]], max_steps=max_steps, step_scale=step_scale,
                        tol=tol, window=window, curve_points=curve_points, centre=protocol == "centred",
                    )
                    key = {"width": width, "depth": depth, "seed": s}
                    run_rows.append({**key, **row})
                    curve_rows.append(curve.assign(**key))
    curves = pd.concat(curve_rows, ignore_index=True)
    return pd.DataFrame(run_rows), curves[["width", "depth", "seed", "step", "loss_ratio", "linear_ratio"]]


def summarise_runs(runs: pd.DataFrame, max_steps: int) -> pd.DataFrame:
    """Per (width, depth): median and quartiles of steps, censored and unstable counts, median cond of K_0.

    Runs that did not reach the threshold, and unstable runs (failures), count as max_steps (a lower bound);
    `censored` counts the first, `unstable` the second. Also the median linearised steps and the largest λ_max drift.
    """

    def q(p: float):
        return lambda s: float(np.quantile(s, p))

    failed = ~runs["reached"].astype(bool) | runs["unstable"].astype(bool)
    filled = runs.assign(
        steps=runs["steps"].where(~failed, float(max_steps)),
        steps_linear=runs["steps_linear"].fillna(float(max_steps)),
        censored=~runs["reached"].astype(bool),
    )
    out = filled.groupby(["width", "depth"], sort=True).agg(
        steps_median=("steps", "median"),
        steps_q25=("steps", q(0.25)),
        steps_q75=("steps", q(0.75)),
        steps_linear_median=("steps_linear", "median"),
        censored=("censored", "sum"),
        unstable=("unstable", "sum"),
        lam_drift_max=("lam_drift_max", "max"),
        cond_median=("cond", "median"),
        seeds=("seed", "count"),
    )
    return out.reset_index()


# -- figure 05: the claim, decided within each width -------------------------------------------------------------


def steps_by_seed(runs: pd.DataFrame, width: int, max_steps: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(steps, cond, invalid) of one width: seeds × depths tables of steps (failures: unreached or unstable runs,
    counted as max_steps) and of cond(K_0), and per seed whether any of its runs is invalid (non-finite)."""
    r = runs[runs["width"] == width]
    if r.empty:
        raise ValueError(f"no runs at width {width}")
    failed = ~r["reached"].astype(bool) | r["unstable"].astype(bool)
    steps = r.assign(steps=r["steps"].where(~failed, float(max_steps))).pivot(index="seed", columns="depth",
                                                                               values="steps")
    cond = r.pivot(index="seed", columns="depth", values="cond")
    return steps, cond, r.groupby("seed")["invalid"].any().reindex(steps.index)


def interior_minimum_part(
    runs: pd.DataFrame, width: int, max_steps: int, *, level: float = 0.95, min_seeds: int = 3
) -> Part:
    """"At width w, GD is fastest at an intermediate depth": `depth.interior_minimum_part` on log steps, paired by
    seed (Bonferroni over the interior depths). Unreached and unstable runs count as max_steps: failures are slow; a
    non-finite run makes the part invalid."""
    steps, _, bad = steps_by_seed(runs, width, max_steps)
    part = depth_interior_minimum(steps, name=f"w = {width}: fewest steps at an intermediate depth", level=level,
                                  min_draws=min_seeds, what="steps", unit="seeds", invalid=bad.to_numpy())
    return dataclasses.replace(part, numbers={"width": width, **part.numbers})


def cond_trend_part(
    runs: pd.DataFrame, width: int, max_steps: int, *, level: float = 0.95, min_seeds: int = 3
) -> Part:
    """"At width w, steps follow cond(K_0)": per seed, Spearman ρ over depths of steps vs cond(K_0), t interval."""
    steps, cond, bad = steps_by_seed(runs, width, max_steps)
    return verdict_trend(steps.to_numpy(), cond.to_numpy(), list(steps.index), name=f"w = {width}: steps follow "
                         "κ(K_0) across depths", min_seeds=min_seeds, level=level, invalid=bad.to_numpy())


def decide_training(
    runs: pd.DataFrame, max_steps: int, *, level: float = 0.95, min_seeds: int = 3
) -> list[Part]:
    """Figure 05's claim parts, within each width: `interior_minimum_part` and `cond_trend_part` per width."""
    return [
        part
        for width in sorted(runs["width"].unique())
        for part in (
            interior_minimum_part(runs, int(width), max_steps, level=level, min_seeds=min_seeds),
            cond_trend_part(runs, int(width), max_steps, level=level, min_seeds=min_seeds),
        )
    ]


def regime(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width, how far the runs are from the K_0-linearised regime: λ_max drift and real-vs-linearised steps.

    Columns: width, runs, drift_max (largest λ_max(K_t)/λ_max(K_0) over runs and t), drift_final_min (smallest
    final ratio: a kernel that shrinks), gap_median and gap_max (|log₂(real steps / linearised steps)| over runs
    that reached the threshold in both), unstable and invalid (run counts).
    """
    gap = np.abs(np.log2(runs["steps"] / runs["steps_linear"]))
    out = runs.assign(gap=gap).groupby("width").agg(
        runs=("seed", "count"),
        drift_max=("lam_drift_max", "max"),
        drift_final_min=("lam_drift_final", "min"),
        gap_median=("gap", "median"),
        gap_max=("gap", "max"),
        unstable=("unstable", "sum"),
        invalid=("invalid", "sum"),
    )
    return out.reset_index()


def regime_check(runs: pd.DataFrame, *, max_drift: float = 1.5, max_gap: float = 1.0) -> Check:
    """Sanity check: at every width the kernel's λ_max stays within max_drift× its start (and above 1/max_drift) and
    the median |log₂(real/linearised steps)| is at most max_gap: the runs are in the regime the theory describes.
    Invalid runs (non-finite loss or kernel: they make the claim invalid) are left out; so is a width with no other."""
    r = regime(runs[~runs["invalid"].astype(bool)])
    ok = (r["drift_max"] <= max_drift) & (r["drift_final_min"] >= 1 / max_drift) & (r["gap_median"] <= max_gap)
    detail = "; ".join(
        f"w = {int(w)}: λ_max drift {lo:.2f}–{hi:.2f}×, median |log₂(real/linearised)| {g:.2f}"
        for w, lo, hi, g in zip(r["width"], r["drift_final_min"], r["drift_max"], r["gap_median"])
    )
    return Check("GD stays in the K_0-linearised regime", bool(ok.all()), detail, kind="sanity",
                 max_drift=max_drift, max_gap=max_gap, by_width=r.set_index("width").to_dict(orient="index"))
