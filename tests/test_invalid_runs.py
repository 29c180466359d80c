"""A run that goes non-finite makes its figure invalid, with its dependants and the reason; an untrained network
decides no comparison (`premises`)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dgnlib import verdict
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import DataSpec, ModelSpec
from dgnlib.engine.sweep import run_sweep
from dgnlib.experiments import comparison, depth_training, premises

DATA = DataSpec("synthetic", n_train=60, n_test=20, shape=(4,), n_classes=2, val_fraction=0.1)
MODEL = ModelSpec("fc", d_in=4, width=8, depth=3, d_out=2, init="glorot")


def _specs(lr):
    return comparison.variant_specs(MODEL, DATA, ["relu", "frnpf-ii", "flnpf"], [1, 2, 3], optimizer="sgd", lr=lr,
                                    batch_size=16, epochs=2)


def test_a_diverged_relu_run_makes_its_flnpf_dependant_invalid_with_the_reason():
    specs = _specs(1.0e12)
    store = MemoryStore()
    results = run_sweep(list(specs.values()), store, progress=False, device="cpu", executor=None)
    relu, flnpf = results[specs["relu", 1].key()], results[specs["flnpf", 1].key()]
    assert relu.status == "invalid" and "non-finite" in relu.reason
    assert flnpf.status == "invalid" and "gate source" in flnpf.reason and specs["relu", 1].key()[:12] in flnpf.reason
    assert len(flnpf.rows) == 1 and math.isnan(flnpf.rows[0]["test_acc"])  # never trained: no numbers
    # a second sweep over the same store trains nothing (an invalid run would diverge again)
    before = dict(store._runs)
    run_sweep(list(specs.values()), store, progress=False, device="cpu")
    assert store._runs.keys() == before.keys()
    history = comparison.sweep_history(specs, results, ["variant", "seed"])
    reasons = comparison.invalid_runs(history)
    assert reasons["flnpf seed 1"].startswith("not trained: its gate source") and "relu seed 1" in reasons
    per_seed = comparison.final_accuracy(history)
    assert per_seed.set_index(["variant", "seed"]).loc[("flnpf", 1), "invalid"]
    parts = comparison.beats(per_seed, ["flnpf", "relu"], ["frnpf-ii"], chance=0.5)
    assert verdict.combine(parts) == "invalid" and all(p.verdict == "invalid" for p in parts)


def test_finite_runs_keep_no_reason_column():
    specs = _specs(1.0e-2)
    results = run_sweep(list(specs.values()), MemoryStore(), progress=False, device="cpu")
    history = comparison.sweep_history(specs, results, ["variant", "seed"])
    assert "reason" not in history and comparison.invalid_runs(history) == {}


def _part(values_a, values_b):
    return verdict.paired(values_a, values_b, [0, 1, 2], name="a > b")


def test_a_pair_of_untrained_networks_is_inconclusive_not_held():
    # b beats a by a clear margin on every seed, but both are at chance (10 classes): no evidence either way
    part = _part([0.13, 0.14, 0.15], [0.09, 0.10, 0.10])
    assert part.verdict == "held"
    gated = premises.require_learnt(part, {"a": [0.13, 0.14, 0.15], "b": [0.09, 0.10, 0.10]}, chance=0.1)
    assert gated.verdict == "inconclusive" and "not trained" in gated.detail
    assert gated.numbers["learnt_threshold"] == pytest.approx(0.55) and set(gated.numbers["not_learnt"]) == {"a", "b"}
    # trained networks keep their verdict, held or not held; an invalid part stays invalid
    trained = premises.require_learnt(part, {"a": [0.93, 0.94, 0.95], "b": [0.9, 0.9, 0.9]}, chance=0.1)
    assert trained.verdict == "held" and trained.numbers["not_learnt"] == {}
    worse = premises.require_learnt(_part([0.8, 0.8, 0.81], [0.9, 0.91, 0.9]), {"a": [0.8] * 3}, chance=0.1)
    assert worse.verdict == "not held"
    bad = verdict.paired([0.1, float("nan"), 0.1], [0.1, 0.1, 0.1], [0, 1, 2])
    assert premises.require_learnt(bad, {"a": [0.1] * 3}, chance=0.1).verdict == "invalid"
    assert premises.learnt_threshold(0.5) == 0.75
    with pytest.raises(ValueError, match="chance must lie in"):
        premises.learnt_threshold(1.0)


def test_figure_06_pairs_need_learnt_networks():
    per_seed = pd.DataFrame([{"variant": v, "seed": s, "val_selected_test_acc": acc + 0.001 * s, "invalid": False}
                             for v, acc in (("relu", 0.12), ("frnpf-ii", 0.09)) for s in range(3)])
    assert comparison.beats(per_seed, ["relu"], ["frnpf-ii"])[0].verdict == "held"  # no premise: the old behaviour
    assert comparison.beats(per_seed, ["relu"], ["frnpf-ii"], chance=0.1)[0].verdict == "inconclusive"


def test_figure_05_overflowing_weights_give_an_invalid_run_not_a_crash():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    target = torch.randn(8, generator=gen, dtype=torch.float64)
    gates = [torch.ones(8, 4, dtype=torch.float64)]
    weights = [torch.full((3, 4), 1e200, dtype=torch.float64), torch.full((4, 1), 1e200, dtype=torch.float64)]
    row, curve = depth_training.train_run(x, target, gates, weights, [1.0, 1.0], max_steps=5)
    assert row["invalid"] and row["unstable"] and np.isnan(row["steps"]) and curve["loss_ratio"].isna().all()
