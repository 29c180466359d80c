"""Figure 09's helpers: the interior-β rule (power, null rate, edge cases), seeds, gate-pattern identities, a sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dgnlib.engine import memstore
from dgnlib.engine.runs import DataSpec, ModelSpec
from dgnlib.experiments import comparison, soft_gating

BETAS = [1.0, 2.0, 4.0, 8.0, 16.0]


def interior_effect(n_seeds: int, bump: float, seed: int = 0) -> np.ndarray:
    """seeds × β accuracies: a seed effect, noise of sd 1, and `bump` added at the middle β."""
    rng = np.random.default_rng(seed)
    acc = rng.standard_normal((n_seeds, 1)) + rng.standard_normal((n_seeds, len(BETAS)))
    acc[:, 2] += bump
    return acc


def test_interior_part_holds_for_a_clear_interior_best_and_not_for_a_monotone_sweep():
    part = soft_gating.interior_part(interior_effect(5, 10.0), BETAS, seeds=[11, 12, 13, 14, 15])
    assert part.verdict == "held" and part.numbers["deciding_beta"] == 4.0
    assert part.level == pytest.approx(1 - 0.05 / 3) and part.interval[0] > 0
    monotone = np.tile(np.arange(5.0), (5, 1)) * 10 + np.random.default_rng(1).standard_normal((5, 5))
    assert soft_gating.interior_part(monotone, BETAS).verdict == "not held"  # every interior β below the top end


def test_interior_part_needs_three_seeds_and_flags_invalid_runs():
    assert soft_gating.interior_part(interior_effect(2, 10.0), BETAS).verdict == "inconclusive"
    acc = interior_effect(5, 10.0)
    assert soft_gating.interior_part(acc, BETAS, invalid=[False, True, False, False, False]).verdict == "invalid"
    acc[3, 0] = math.nan
    assert soft_gating.interior_part(acc, BETAS).verdict == "invalid"
    with pytest.raises(ValueError, match="increasing"):
        soft_gating.interior_part(interior_effect(5, 0.0), BETAS[::-1])
    with pytest.raises(ValueError, match="at least 3"):
        soft_gating.interior_part(np.zeros((5, 2)), BETAS[:2])


def test_the_old_rule_holds_often_under_no_effect_and_the_new_one_rarely():
    old = soft_gating.null_rate(soft_gating.old_inner_rule, 5, n_sims=2000)
    assert 0.55 < old < 0.65  # 3 of 5 values are interior
    new = soft_gating.null_rate(lambda a: soft_gating.interior_part(a, BETAS).verdict == "held", 5, n_sims=300)
    assert new <= 0.025
    power = soft_gating.null_rate(lambda a: soft_gating.interior_part(a + np.array([0, 0, 4.0, 0, 0]), BETAS).verdict
                                == "held", 5, n_sims=200)
    assert power > 0.5  # an effect of 4 noise sds at 5 seeds is usually found


def test_run_seeds_are_deterministic_and_distinct():
    assert comparison.run_seeds(0, 4) == comparison.run_seeds(0, 4)
    assert len(set(comparison.run_seeds(0, 4))) == 4 and comparison.run_seeds(1, 4) != comparison.run_seeds(0, 4)
    with pytest.raises(ValueError):
        comparison.run_seeds(0, 0)


def test_soft_patterns_and_initial_layer1_gates():
    model = ModelSpec("fc", init="glorot", d_in=6, width=8, depth=4, d_out=3)
    data = DataSpec("synthetic", n_train=40, n_test=20, shape=(6,), n_classes=3)
    specs = soft_gating.soft_gating_specs(model, data, [1.0, 4.0, 16.0], [5], epochs=1)
    soft = [s for (name, _, _), s in specs.items() if name != soft_gating.RELU]
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    first = soft_gating.initial_layer1_patterns(soft, x)
    assert all(torch.equal(p, first[0]) for p in first)
    for spec in soft:
        assert soft_gating.soft_pattern_mismatch(spec.model.build(spec.init_seed()), x) == 0
    with pytest.raises(ValueError, match="dnpfl"):
        soft_gating.soft_pattern_mismatch(model.build(0), x)


def test_a_tiny_sweep_gives_one_row_per_setting_and_seed():
    model = ModelSpec("fc", init="glorot", d_in=6, width=8, depth=3, d_out=3)
    data = DataSpec("synthetic", n_train=60, n_test=30, shape=(6,), n_classes=3)
    store = memstore.MemoryStore()
    seeds = comparison.run_seeds(0, 3)
    history, per = soft_gating.soft_gating_sweep(model, data, [1.0, 4.0, 16.0], seeds, store=store, progress=False,
                                               epochs=2, lr=1e-2)
    assert len(per) == 4 * 3 and set(per["status"]) == {"ok"}
    assert {"changed_l1", "changed_l2", "best_val_acc", "val_selected_test_acc"} <= set(per.columns)
    assert (history.loc[history["epoch"] == 0, "gates_changed"] == 0).all()
    acc = soft_gating.matrix(per, "val_selected_test_acc", [1.0, 4.0, 16.0], seeds)
    assert acc.shape == (3, 3) and np.isfinite(acc).all()
    assert soft_gating.relu_values(per, "val_selected_test_acc", seeds).shape == (3,)
    again, _ = soft_gating.soft_gating_sweep(model, data, [1.0, 4.0, 16.0], seeds, store=store, progress=False,
                                           epochs=2, lr=1e-2)  # found in the store
    assert again.equals(history)
