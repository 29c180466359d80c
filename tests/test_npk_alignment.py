"""Figure 07: relu vs frnpf-ii through the engine with a probe; identities of fixed gates; a diverged run is invalid."""

import pytest
import torch

from dgnlib.engine import tensors
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import RunResult
from dgnlib.experiments import npk_alignment
from dgnlib.verdict import combine


def _pair_data(n: int = 64, d: int = 16, seed: int = 0):
    """Two Gaussian blobs with ±1 labels, as an inline DataSpec without validation split."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    x = 0.8 * y[:, None] + torch.randn(n, d, generator=gen)
    return tensors.inline({"train": (x[:48], y[:48]), "test": (x[48:], y[48:])}, val_fraction=0.0)


def _specs(lr: float, seeds=(0, 1, 2), epochs: int = 3):
    return npk_alignment.alignment_specs(_pair_data(), 16, list(seeds), depth=3, width=32, optimizer="rmsprop", lr=lr,
                                         batch_size=8, epochs=epochs, probe_per_class=5)


def test_engine_runs_give_exact_fixed_gate_identities_and_decidable_parts():
    specs = _specs(1e-2)
    hist = npk_alignment.train_alignment(specs, MemoryStore(), progress=False, device="cpu")
    assert set(hist["variant"]) == {"relu", "frnpf-ii"} and len(hist) == 2 * 3 * 4
    parts, checks, table = npk_alignment.decide_alignment(hist)
    assert all(c.passed for c in checks) and [c.kind for c in checks] == ["identity", "identity"]
    assert len(table) == 3 and (table["relu_gates_changed_T"] > 0).all()
    assert {p.verdict for p in parts} <= {"held", "not held", "inconclusive"}
    # the same seeds with fewer than three of them can never be held
    two = hist[hist["seed"].isin(sorted(hist["seed"].unique())[:2])]
    assert {p.verdict for p in npk_alignment.decide_alignment(two)[0]} == {"inconclusive"}


def test_a_diverged_run_makes_the_claim_invalid_never_held():
    specs = _specs(1.0e9)
    hist = npk_alignment.train_alignment(specs, MemoryStore(), progress=False, device="cpu")
    assert (hist.loc[hist["variant"] == "relu", "status"] == "invalid").all()
    parts, checks, _ = npk_alignment.decide_alignment(hist)
    assert combine(parts) == "invalid" and all(p.verdict == "invalid" for p in parts)


def test_verdict_path_on_hand_made_results_with_one_invalid_seed():
    specs = _specs(1e-3, epochs=2)
    results = {}
    for (variant, seed), spec in specs.items():
        relu = variant == "relu"
        rows = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_acc": float("nan"), "test_acc": 0.5,
                 "gates_changed": 0.1 * e if relu else 0.0, "nu": 100.0 - (10.0 * e if relu else 0.0)}
                for e in range(3)]
        status = "ok"
        if relu and seed == 1:  # diverged in epoch 1: only the initial row was logged
            rows, status = rows[:1], "invalid"
        results[spec.key()] = RunResult(spec.key(), spec.describe(), status, rows)
    hist = npk_alignment.history_of(specs, results)
    parts, checks, table = npk_alignment.decide_alignment(hist)
    assert table["invalid"].tolist() == [False, True, False]
    assert combine(parts) == "invalid" and all(c.passed for c in checks)
    ok = {k: RunResult(r.key, r.spec, "ok", r.rows) for k, r in results.items()}
    parts, _, _ = npk_alignment.decide_alignment(npk_alignment.history_of(specs, ok))
    assert parts[0].verdict != "invalid"


def test_identity_checks_fail_when_fixed_gates_move():
    specs = _specs(1e-3, seeds=(0,), epochs=1)
    results = {spec.key(): RunResult(spec.key(), spec.describe(), "ok", [
        {"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5, "test_acc": 0.5,
         "gates_changed": 0.01 * e, "nu": 50.0 + e} for e in range(2)]) for spec in specs.values()}
    checks = npk_alignment.fixed_gate_checks(npk_alignment.history_of(specs, results))
    assert not any(c.passed for c in checks)


def test_seeds_and_bad_input():
    assert npk_alignment.run_seeds(0, 3) == npk_alignment.run_seeds(0, 5)[:3]
    assert len(set(npk_alignment.run_seeds(0, 5))) == 5
    with pytest.raises(ValueError, match="number of seeds"):
        npk_alignment.run_seeds(0, 0)
    with pytest.raises(ValueError, match="differ"):
        npk_alignment.mnist_pair(4, 4, 0, 0)
    spec = npk_alignment.mnist_pair(4, 7, 0, 0)
    assert spec.n_train is None and spec.val_fraction == 0 and spec.binary_pair == (4, 7)


def test_single_thread_restores_the_thread_count():
    from dgnlib.engine.threads import single_thread

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), single_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
