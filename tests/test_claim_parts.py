"""Claim parts of figures 02–04 (ntk_sampling, depth) and the closed forms behind the identities of 01 and 03."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dgnlib.core import paths, theory
from dgnlib.core.models import DGN
from dgnlib.experiments import depth, ntk_sampling


def _curves(slope: float = -0.5, floor: float = 0.0, repeats: int = 4, noise: float = 0.1, seed: int = 0,
            draws=(10, 100, 1000, 10000)) -> pd.DataFrame:
    """Synthetic error curves: predicted = 1/√N, error = √(pred²·χ-ish noise + floor²) (floor: a wrong formula)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d, w in [(2, 8), (4, 32)]:
        for n in draws:
            for r in range(repeats):
                pred = n ** -0.5
                err = math.sqrt((n ** slope * math.exp(noise * rng.standard_normal())) ** 2 + floor**2)
                rows.append({"depth": d, "width": w, "draws": n, "repeat": r, "rel_error": err, "predicted": pred})
    return pd.DataFrame(rows)


def test_within_error_part_holds_for_monte_carlo_error_and_fails_for_a_wrong_formula():
    assert ntk_sampling.within_error_part(_curves(), factor=3.0).verdict == "held"
    wrong = ntk_sampling.within_error_part(_curves(floor=0.05), factor=3.0)  # a 5 % error that does not shrink
    assert wrong.verdict == "not held" and wrong.estimate > 3
    assert ntk_sampling.within_error_part(_curves(repeats=2), factor=3.0).verdict == "inconclusive"
    few = ntk_sampling.within_error_part(_curves(draws=(10, 50, 100)), factor=3.0)
    assert few.verdict == "inconclusive" and "too few draws" in few.detail
    bad = _curves()
    bad.loc[bad.index[-1], "rel_error"] = float("nan")
    assert ntk_sampling.within_error_part(bad, factor=3.0).verdict == "invalid"


def test_slope_part_holds_at_minus_one_half_and_fails_when_the_error_stops_falling():
    assert ntk_sampling.slope_part(_curves(noise=0.05)).verdict == "held"
    assert ntk_sampling.slope_part(_curves(slope=-0.1, noise=0.05)).verdict == "not held"
    assert ntk_sampling.slope_part(_curves(repeats=2)).verdict == "inconclusive"
    assert ntk_sampling.slope_part(_curves(draws=(10, 1000))).verdict == "inconclusive"
    with pytest.raises(ValueError, match="contain -1/2"):
        ntk_sampling.slope_part(_curves(), slope_range=(-0.4, -0.1))


def _table(values_by_depth: dict, draws: int = 5, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({d: v * np.exp(noise * rng.standard_normal(draws)) for d, v in values_by_depth.items()})


def test_interior_minimum_part_decides_over_draws():
    dip = depth.interior_minimum_part(_table({2: 10.0, 4: 3.0, 8: 6.0}), name="dip")
    assert dip.verdict == "held" and dip.numbers["best_depth"] == 4
    falling = depth.interior_minimum_part(_table({2: 10.0, 4: 5.0, 8: 2.0}), name="falls")
    assert falling.verdict == "not held"
    noise = depth.interior_minimum_part(_table({2: 1.0, 4: 1.0, 8: 1.0}, noise=0.5), name="flat")
    assert noise.verdict in ("inconclusive", "not held")
    assert depth.interior_minimum_part(_table({2: 10.0, 4: 3.0, 8: 6.0}, draws=2), name="few").verdict == "inconclusive"
    inf = _table({2: 10.0, 4: 3.0, 8: 6.0})
    inf.iloc[0, 1] = float("inf")
    assert depth.interior_minimum_part(inf, name="singular").verdict == "invalid"
    with pytest.raises(ValueError, match="3 increasing depths"):
        depth.interior_minimum_part(_table({2: 1.0, 4: 1.0}), name="short")


def test_cond_interior_part_reads_the_spectrum_sweep():
    x, _ = depth.unit_sphere_data(12, 4, seed=0)
    _, summary = depth.spectrum_sweep(x, [2, 4, 8], [16], draws=3, seed=0)
    part = depth.cond_interior_part(summary, 16)
    assert part.n == 3 and part.verdict in ("held", "not held", "inconclusive")
    assert set(part.numbers["median"]) == {"2", "4", "8"}
    with pytest.raises(ValueError, match="no sampled kernels"):
        depth.cond_interior_part(summary, 99)


def test_relvar_from_samples_matches_the_sweep_and_exponent_parts_decide():
    x, _ = depth.unit_sphere_data(8, 4, seed=1)
    table, diagonals = depth.variance_sweep(x, [2, 4, 8], [10, 40], draws=64, seed=0, keep_diagonals=True)
    for (w, d, g), (samples, exact) in diagonals.items():
        row = table[(table.width == w) & (table.depth == d) & (table.gate_draw == g)].iloc[0]
        assert samples.shape == (64, 8)
        assert float(depth.relvar_from_samples(samples, exact)) == pytest.approx(row["relvar_diag"], rel=1e-6)
    parts, numbers = depth.exponent_parts(diagonals, n_boot=200, min_draws=30)
    assert [p.verdict for p in parts] == ["held", "held"]
    assert numbers["exponent_depth"] > 0 > numbers["exponent_width"]
    few, _ = depth.exponent_parts(diagonals, n_boot=50, min_draws=100)
    assert {p.verdict for p in few} == {"inconclusive"}
    # no effect of depth or width: the same samples everywhere ⇒ exponents ≈ 0, never held on the depth side
    same = {k: diagonals[10, 2, 0] for k in diagonals}
    flat, _ = depth.exponent_parts(same, n_boot=200)
    assert flat[0].verdict != "held" and flat[1].verdict != "held"


def test_ideal_eigenvalues_closed_form_and_unit_norm_required():
    x, _ = depth.unit_sphere_data(15, 5, seed=2)
    for d in (2, 5):
        np.testing.assert_allclose(np.linalg.eigvalsh(theory.ideal_gram(x, d, 0.5).numpy()),
                                   theory.ideal_eigenvalues(x, d, 0.5), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unit-norm"):
        theory.ideal_eigenvalues(2 * x, 3, 0.5)


def test_path_matrix_is_paths_by_inputs():
    model = DGN(3, 4, 3, variant="frnpf-ii", bias=False, init="bernoulli", seed=0).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    phi = paths.path_matrix(model, x)
    assert phi.shape == (3 * 4**2, 5)
    torch.testing.assert_close(phi.T @ paths.path_values(model), model(x)[:, 0].detach())
