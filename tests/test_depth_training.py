"""Figure 05: GD of the value network against autograd and the linearised dynamics, stability flags, decisions."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from autograd_reference import gd_fixed_gates

from dgnlib.core import theory
from dgnlib.core.kernels import value_ntk
from dgnlib.experiments import depth, depth_training


@pytest.fixture
def setup():
    x, y = depth.unit_sphere_data(12, 3, seed=0)
    gates = theory.bernoulli_gates(12, 6, 4, 0.5, seed=1)
    return x, y, gates


def test_gd_value_network_matches_the_autograd_loop_of_train(setup):
    x, y, gates = setup
    weights = theory.bernoulli_weights(3, 6, 4, math.sqrt(2 / 6), seed=2)
    ref = gd_fixed_gates(x, y, gates, weights, 150, 0.5, 0.01, stop=False)
    mine = theory.gd_value_network(x, y, gates, weights, lr=ref["lr"], steps=150, stop=False)
    np.testing.assert_allclose(mine["loss"], ref["loss"], rtol=1e-10)
    assert mine["kernel_steps"] == [150] and not mine["nonfinite"]


def test_ntk_parametrisation_kernel_and_gradient_against_autograd(setup):
    x, y, gates = setup
    raw = theory.bernoulli_weights(3, 6, 4, 1.0, seed=3)
    scales = [math.sqrt(2 / 3), math.sqrt(2 / 6), math.sqrt(2 / 6), math.sqrt(2 / 6)]
    thetas = [w.clone().requires_grad_(True) for w in raw]
    jac = []
    for i in range(x.shape[0]):
        out = theory.value_forward(x[i : i + 1], [g[i : i + 1] for g in gates], thetas, scales)[0]
        jac.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, thetas)]))
    jac = torch.stack(jac)
    torch.testing.assert_close(value_ntk(x, gates, raw, scales), jac @ jac.T)
    # one GD step moves the outputs by −α K e to first order
    lr = 1e-6
    res = theory.gd_value_network(x, y, gates, raw, lr=lr, steps=1, scales=scales, stop=False)
    e0 = theory.value_forward(x, gates, raw, scales) - y
    predicted = 0.5 * float(((e0 - lr * (jac @ jac.T) @ e0) ** 2).sum())
    assert res["loss"][1] == pytest.approx(predicted, rel=1e-9)


def test_linearised_loss_is_the_iterated_linear_map(setup):
    x, y, gates = setup
    weights = theory.bernoulli_weights(3, 6, 4, 0.5, seed=4)
    k0 = value_ntk(x, gates, weights)
    lr = 0.5 / float(torch.linalg.eigvalsh(k0)[-1])
    e = y.clone()
    expected = []
    for _ in range(30):
        expected.append(0.5 * float(e @ e))
        e = e - lr * k0 @ e
    np.testing.assert_allclose(theory.linearised_loss(k0, y, lr, 29), expected, rtol=1e-10)
    assert theory.first_below(np.array([4.0, 2.0, 0.05, 0.01]), 0.01) == 3
    assert theory.first_below(np.array([4.0, 2.0]), 0.01) is None


def test_centred_wide_runs_follow_the_linearised_prediction():
    x, y = depth.unit_sphere_data(16, 4, seed=1)
    runs, curves = depth_training.training_sweep(x, y, [2, 3, 4], [400], [0, 1], protocol="centred", max_steps=2000)
    assert len(runs) == 6 and runs["reached"].all() and not runs["unstable"].any() and not runs["invalid"].any()
    assert (runs["lam_drift_max"] < 1.05).all()
    assert (np.abs(runs["steps"] - runs["steps_linear"]) <= 0.1 * runs["steps_linear"] + 1).all()
    assert set(curves.columns) == {"width", "depth", "seed", "step", "loss_ratio", "linear_ratio"}
    first = curves[(curves["depth"] == 2) & (curves["seed"] == 0)]
    assert first["loss_ratio"].iloc[0] == 1.0 and first["linear_ratio"].iloc[0] == 1.0


def test_too_large_a_step_is_unstable_and_divergence_is_invalid():
    x, y = depth.unit_sphere_data(10, 3, seed=0)
    runs, _ = depth_training.training_sweep(x, y, [2, 3], [20], [0], step_scale=2.6, max_steps=40)
    assert runs["unstable"].all() and (runs["sharpness_max"] >= 2).all()
    runs, _ = depth_training.training_sweep(x, y, [3], [20], [0], step_scale=50.0, max_steps=400)
    assert runs["invalid"].all() and runs["unstable"].all()
    with pytest.raises(ValueError, match="protocol"):
        depth_training.training_sweep(x, y, [2, 3], [5], [0], protocol="mup")


def _runs(table: np.ndarray, depths, width=10, unstable=None, invalid=None) -> pd.DataFrame:
    seeds, rows = range(table.shape[0]), []
    for s in seeds:
        for j, d in enumerate(depths):
            rows.append({"width": width, "depth": d, "seed": s, "steps": table[s, j], "reached": True,
                         "unstable": bool(unstable is not None and unstable[s, j]),
                         "invalid": bool(invalid is not None and invalid[s, j]), "cond": 10.0 * table[s, j]})
    return pd.DataFrame(rows)


DEPTHS = [2, 4, 8, 16, 20]


def test_interior_minimum_part_held_not_held_inconclusive():
    rng = np.random.default_rng(0)
    u_shape = np.array([80, 30, 20, 40, 90.0]) * np.exp(rng.normal(0, 0.1, (5, 5)))
    part = depth_training.interior_minimum_part(_runs(u_shape, DEPTHS), 10, 1000)
    assert part.verdict == "held" and part.numbers["best_depth"] == 8 and part.n == 5
    falling = np.array([80, 60, 40, 30, 20.0]) * np.exp(rng.normal(0, 0.1, (5, 5)))
    assert depth_training.interior_minimum_part(_runs(falling, DEPTHS), 10, 1000).verdict == "not held"
    assert depth_training.interior_minimum_part(_runs(u_shape[:2], DEPTHS), 10, 1000).verdict == "inconclusive"
    bad = np.zeros_like(u_shape, dtype=bool)
    bad[1, 2] = True
    assert depth_training.interior_minimum_part(_runs(u_shape, DEPTHS, invalid=bad), 10, 1000).verdict == "invalid"
    # an unstable run at the best depth is a failure (max_steps), which removes that depth's advantage
    unstable = np.zeros_like(u_shape, dtype=bool)
    unstable[:, 2] = True
    part = depth_training.interior_minimum_part(_runs(u_shape, DEPTHS, unstable=unstable), 10, 1000)
    assert part.numbers["best_depth"] != 8 or part.verdict != "held"


def test_interior_minimum_part_under_the_null_is_rarely_held():
    rng = np.random.default_rng(1)
    verdicts = [depth_training.interior_minimum_part(_runs(np.exp(rng.normal(3, 0.5, (5, 5))), DEPTHS), 10,
                                                     10**6).verdict for _ in range(200)]
    assert sum(v == "held" for v in verdicts) <= 10


def test_cond_trend_part_and_decide_training():
    rng = np.random.default_rng(2)
    table = np.array([80, 30, 20, 40, 90.0]) * np.exp(rng.normal(0, 0.1, (5, 5)))
    runs = pd.concat([_runs(table, DEPTHS, width=10), _runs(table[:, ::-1].copy(), DEPTHS, width=20)])
    runs.loc[runs["width"] == 20, "cond"] = rng.permutation(runs.loc[runs["width"] == 20, "cond"].to_numpy())
    parts = depth_training.decide_training(runs, 1000)
    assert [p.name.split(":")[0] for p in parts] == ["w = 10", "w = 10", "w = 20", "w = 20"]
    assert parts[1].verdict == "held" and parts[1].estimate == pytest.approx(1.0)  # cond = 10 × steps
    assert parts[3].verdict != "held" or parts[3].interval[0] > 0


def test_regime_check_passes_for_lazy_runs_and_fails_for_drifting_ones():
    x, y = depth.unit_sphere_data(12, 3, seed=2)
    lazy, _ = depth_training.training_sweep(x, y, [2, 3], [300], [0], protocol="centred", max_steps=2000)
    check = depth_training.regime_check(lazy)
    assert check.passed and check.kind == "sanity" and "w = 300" in check.detail
    drifting = lazy.assign(lam_drift_max=3.0)
    assert not depth_training.regime_check(drifting).passed
    assert set(depth_training.regime(lazy).columns) >= {"width", "drift_max", "gap_median", "unstable", "invalid"}


def test_protocol_names_repeated_for_the_runner_and_seeds():
    from dgnlib import schemas

    assert schemas.PROTOCOLS_05 == depth_training.PROTOCOLS
    assert depth_training.run_seeds(0, 2) == depth_training.run_seeds(0, 5)[:2]
    with pytest.raises(ValueError, match="number of seeds"):
        depth_training.run_seeds(0, 0)
