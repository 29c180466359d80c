"""Depth and width sweeps: data, seeds, helpers, closed-form checks of the spectrum, variance and training sweeps."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from autograd_reference import gd_fixed_gates

from dgnlib import seeding, stats
from dgnlib.core import theory
from dgnlib.experiments import depth, depth_training


def test_unit_sphere_data_is_unit_norm_balanced_and_seeded():
    x, y = depth.unit_sphere_data(11, 4, seed=3)
    assert x.shape == (11, 4) and y.shape == (11,) and x.dtype == y.dtype == torch.float64
    torch.testing.assert_close(x.norm(dim=1), torch.ones(11, dtype=torch.float64))
    assert set(y.tolist()) == {-1.0, 1.0} and int((y == 1).sum()) == 6
    x2, y2 = depth.unit_sphere_data(11, 4, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, depth.unit_sphere_data(11, 4, seed=4)[0])
    with pytest.raises(ValueError):
        depth.unit_sphere_data(1, 4, seed=0)


def test_derive_seed_is_deterministic_distinct_and_in_range():
    seeds = {seeding.derive_seed(0, a, b) for a in range(5) for b in range(5)}
    assert len(seeds) == 25 and all(0 <= s < 2**31 for s in seeds)
    assert seeding.derive_seed(7, 1, 2) == seeding.derive_seed(7, 1, 2) != seeding.derive_seed(7, 2, 1)


def test_offdiag_fraction_spearman_interior_minimum():
    assert depth.offdiag_fraction(torch.diag(torch.tensor([1.0, 2.0]))) == 0
    assert depth.offdiag_fraction(torch.tensor([[1.0, 1.0], [1.0, 1.0]])) == pytest.approx(math.sqrt(0.5))
    assert stats.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert stats.spearman([1, 2, 3], [0.5, 0.1, 0.3]) == pytest.approx(-0.5)
    assert math.isnan(stats.spearman([1, 2, 3], [1, 1, 1]))
    assert stats.interior_minimum([2, 4, 6, 8], [5, 2, 3, 9]) == (4, True)
    assert stats.interior_minimum([2, 4, 6], [1, 2, 3]) == (2, False)
    assert stats.interior_minimum([2, 4, 6], [3, 2, 1]) == (6, False)


def test_fit_power_law_recovers_exponents_and_rejects_non_positive():
    d, w = np.meshgrid([2.0, 4.0, 8.0, 16.0], [25.0, 100.0, 500.0])
    df = pd.DataFrame({"d": d.ravel(), "w": w.ravel(), "v": 0.3 * d.ravel() ** 1.6 / w.ravel()})
    fit = stats.fit_power_law(df, "v", ["d", "w"])
    assert fit["exponent_d"] == pytest.approx(1.6) and fit["exponent_w"] == pytest.approx(-1.0)
    assert fit["prefactor"] == pytest.approx(0.3) and fit["r2"] == pytest.approx(1.0) and fit["points"] == 12
    with pytest.raises(ValueError, match="positive"):
        stats.fit_power_law(df.assign(v=-df["v"]), "v", ["d"])
    expo = stats.fit_power_law(df.assign(v=2.0 * np.exp(0.7 * df["d"]) * df["w"] ** -0.5), "v", ["w"], linear=["d"])
    assert expo["rate_d"] == pytest.approx(0.7) and expo["exponent_w"] == pytest.approx(-0.5)
    assert expo["prefactor"] == pytest.approx(2.0) and "exponent_d" not in expo


def test_spectrum_sweep_ideal_condition_number_in_closed_form():
    """Unit inputs, n > dim: Σ is singular, so cond of d·(mΣ + (1−m)I) is 1 + m·λ_max(Σ)/(1−m), m = μ^{d−1}."""
    x, _ = depth.unit_sphere_data(12, 3, seed=0)
    lam_max = float(torch.linalg.eigvalsh(x @ x.T)[-1])
    eigs, summary = depth.spectrum_sweep(x, [2, 3, 5], [4, 7], mu=0.5, draws=2, seed=1)
    ideal = summary[summary["kernel"] == "ideal"].set_index("depth")
    for d in (2, 3, 5):
        m = 0.5 ** (d - 1)
        assert ideal.loc[d, "cond"] == pytest.approx(1 + m * lam_max / (1 - m))
    assert ideal["offdiag_fraction"].is_monotonic_decreasing
    assert len(eigs) == (3 + 2 * 3 * 2) * 12 and len(summary) == 3 + 2 * 3 * 2
    mean_eig = eigs.groupby(["kernel", "width", "depth", "draw"], dropna=False)["eigenvalue"].mean()
    np.testing.assert_allclose(mean_eig.to_numpy(), 1.0)  # trace-normalised
    sampled = summary[summary["kernel"] == "sampled"]
    assert (sampled["cond"] > 1).all() and sampled["width"].notna().all() and ideal["width"].isna().all()


def test_entry_relative_variance_matches_closed_form_at_depth_two():
    """d = 2, all gates on, ±σ weights: Var/E² of K(s, s) = (1 − Σ_j x_j⁴) / (2w) for unit x (σ cancels)."""
    x, _ = depth.unit_sphere_data(3, 4, seed=2)
    width = 6
    gates = [torch.ones(3, width, dtype=torch.float64)]
    stats = depth.entry_relative_variance(x, gates, sigma=0.7, draws=20_000, seed=0)
    expected = float(((1 - (x**4).sum(1)) / (2 * width)).mean())
    assert stats["relvar_diag"] == pytest.approx(expected, rel=0.05)
    assert stats["mc_mean_error"] < 0.02
    # off-diagonal: K(s, t) = (x_s·x_t)·wσ² + σ² Σ_i (x_s·ε_i)(x_t·ε_i) with ε_i ±1 vectors and E K(s, s) = 2wσ², so
    # Var K(s, t) / (E K(s, s) E K(t, t)) = Var[(x_s·ε)(x_t·ε)] / (4w) = (1 + (x_s·x_t)² − 2 Σ_j x_sj² x_tj²) / (4w)
    pair_noise = [
        1 + float(x[a] @ x[b]) ** 2 - 2 * float((x[a] ** 2 * x[b] ** 2).sum()) for a, b in [(0, 1), (0, 2), (1, 2)]
    ]
    assert stats["offdiag_noise"] == pytest.approx(np.mean(pair_noise) / (4 * width), rel=0.05)


def test_variance_sweep_grows_with_depth_and_shrinks_with_width():
    x, _ = depth.unit_sphere_data(5, 3, seed=0)
    df = depth.variance_sweep(x, [2, 6], [4, 32], draws=300, seed=0)
    assert len(df) == 4 and set(df.columns) >= {"width", "depth", "gate_draw", "relvar_diag", "relvar_off"}
    v = df.set_index(["width", "depth"])["relvar_diag"]
    assert v[(4, 6)] > v[(4, 2)] and v[(32, 6)] > v[(32, 2)]
    assert v[(4, 2)] > v[(32, 2)] and v[(4, 6)] > v[(32, 6)]


def test_training_sweep_standard_protocol_matches_gd_fixed_gates_and_summarise_censors():
    x, y = depth.unit_sphere_data(8, 3, seed=0)
    runs, curves = depth_training.training_sweep(
        x, y, [2, 3], [5], seeds=[0, 1], protocol="standard", max_steps=3000, tol=0.05, curve_points=10_000
    )
    assert len(runs) == 4 and runs["reached"].all()
    for _, run in runs.iterrows():
        c = curves[(curves["depth"] == run["depth"]) & (curves["seed"] == run["seed"])]["loss_ratio"].dropna()
        c = c.to_numpy()
        assert c[0] == 1.0 and c[-1] <= 0.05 and (c[:-1] > 0.05).all() and len(c) == run["steps"] + 1
        assert run["loss_increases"] == int((np.diff(c) > 0).sum())
    # the depth-2 network of seed 0 is the prefix of the deepest network's draws
    gates = theory.bernoulli_gates(8, 5, 3, 0.5, seed=seeding.derive_seed(0, 1, 5))
    weights = theory.bernoulli_weights(3, 5, 3, math.sqrt(2 / 5), seed=seeding.derive_seed(0, 2, 5))
    direct = gd_fixed_gates(x, y, gates[:1], [weights[0], weights[-1]], 3000, tol=0.05)
    first = runs[(runs["depth"] == 2) & (runs["seed"] == 0)].iloc[0]
    assert first["steps"] == direct["steps_to_tol"] and first["cond"] == pytest.approx(direct["cond"])


def test_summarise_runs_counts_unreached_and_unstable_runs_as_max_steps():
    runs = pd.DataFrame(
        {
            "width": [5] * 6,
            "depth": [2, 2, 2, 3, 3, 3],
            "seed": [0, 1, 2, 0, 1, 2],
            "steps": [1.0, 3.0, 5.0, 10.0, np.nan, 20.0],
            "steps_linear": [1.0, 3.0, 5.0, 10.0, 10.0, 10.0],
            "reached": [True, True, True, True, False, True],
            "unstable": [False, False, False, False, False, True],
            "lam_drift_max": [1.0, 1.0, 1.1, 1.0, 1.0, 3.0],
            "cond": [2.0, 4.0, 6.0, 1.0, 1.0, 1.0],
        }
    )
    summary = depth_training.summarise_runs(runs, max_steps=100)
    assert list(summary["censored"]) == [0, 1] and list(summary["unstable"]) == [0, 1]
    assert list(summary["steps_median"]) == [3.0, 100.0] and list(summary["steps_q25"]) == [2.0, 55.0]
    assert list(summary["cond_median"]) == [4.0, 1.0] and list(summary["lam_drift_max"]) == [1.1, 3.0]


def test_seeding_keys_and_generators():
    assert seeding.derive_seed(3, "minibatch", 2) == seeding.derive_seed(3, "minibatch", 2)
    assert seeding.derive_seed(3, "minibatch", 2) != seeding.derive_seed(3, "init", 2)
    a = torch.rand(4, generator=seeding.generator(1, "x"))
    assert torch.equal(a, torch.rand(4, generator=seeding.generator(1, "x")))
    with pytest.raises(TypeError):
        seeding.derive_seed(0, 1.5)
    with pytest.raises(ValueError):
        seeding.derive_seed(0, -1)
