"""The reference protocol's pieces: dnpfl's ReLU feature network, flnpf's best checkpoint, the test set's halves, and
the run keys of the committed store left as they were."""

import math

import numpy as np
import pytest
import torch

from dgnlib.core.models import DGN
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, gate_weight_id
from dgnlib.engine.selection import best_test_epoch
from dgnlib.engine.sweep import run_sweep
from dgnlib.experiments import comparison
from dgnlib.names import repo_root

SYNTH = DataSpec("synthetic", n_train=120, n_test=41, shape=(6,), n_classes=3, val_fraction=0.0)


def test_committed_run_keys_still_hash_the_same():
    """Figure 06's published protocol (legacy dnpfl pass, flnpf on the final epoch) keeps its keys in runs/."""
    mnist = comparison.image_data("mnist", 0, 0, 0.1, 0)
    model = comparison.fc_model(784, 128, 6, 10, init="glorot", beta=4.0)
    seeds = comparison.run_seeds(0, 5)
    specs = comparison.variant_specs(model, mnist, ["relu", "dnpfl", "flnpf"], seeds, optimizer="adam", lr=1e-4,
                                     batch_size=32, epochs=100, loss="ce")
    for spec in specs.values():
        key = spec.key()
        assert (repo_root() / "runs" / key[:2] / f"{key}.json").is_file(), spec.model.variant


def test_new_fields_enter_the_key_only_away_from_their_defaults():
    base = RunSpec(ModelSpec("fc", "dnpfl", d_in=6, width=8, depth=3, d_out=3), SYNTH, 1, epochs=2)
    assert "feature_act" not in base.describe()["model"]
    relu_feature = base.replace(model=base.model.replace(feature_act="relu"))
    assert relu_feature.key() != base.key() and relu_feature.describe()["model"]["feature_act"] == "relu"
    assert relu_feature.group_key() == base.group_key()  # one stack may hold both
    relu = base.replace(model=base.model.replace(variant="relu"))
    final, best = (RunSpec(relu.model.replace(variant="flnpf"), SYNTH, 1, epochs=2, gate_source=GateSource(relu, 2, s))
                   for s in ("epoch", "best"))
    assert "select" not in final.describe()["gate_source"] and final.key() != best.key()
    assert base.replace(keep_best=True).key() == base.key()  # a storage request
    with pytest.raises(ValueError, match="feature_act"):
        ModelSpec("fc", "relu", feature_act="relu")
    with pytest.raises(ValueError, match="epoch must be 2"):
        GateSource(relu, 1, "best")


def test_relu_feature_network_propagates_relu_and_sets_soft_gates():
    torch.manual_seed(0)
    net = DGN(5, 7, 4, 2, variant="dnpfl", beta=3.0, eps=0.1, init="glorot", seed=3, feature_act="relu")
    x = torch.randn(9, 5)
    zf, z = x, x
    for l in range(3):
        qf = net.feature[l](zf)
        gate = 1.1 * torch.sigmoid(3.0 * qf)
        zf = torch.relu(qf)  # the feature network is a ReLU network
        z = net.value[l](z) * gate  # its pre-activations gate the value network softly
    assert torch.allclose(net(x), net.value[3](z), atol=1e-6)
    legacy = DGN(5, 7, 4, 2, variant="dnpfl", beta=3.0, eps=0.1, init="glorot", seed=3)
    assert not torch.allclose(legacy(x), net(x), atol=1e-4)  # the legacy pass q·gate differs
    net(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.feature.parameters())  # it is trained


def test_best_test_epoch_is_the_first_maximum_after_initialisation():
    rows = [{"epoch": 0, "test_acc": 0.99}, {"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.7},
            {"epoch": 3, "test_acc": float("nan")}, {"epoch": 4, "test_acc": 0.7}, {"epoch": 5, "test_acc": 0.6}]
    assert best_test_epoch(rows) == 2
    assert best_test_epoch(rows[:1]) is None


class _Recorder:
    """An executor that runs tasks here and keeps them (to see which weights flnpf was given)."""

    def __init__(self) -> None:
        self.tasks = []

    def map(self, fn, items):
        items = list(items)
        self.tasks += items
        return [fn(t) for t in items]


def test_flnpf_copies_the_relu_runs_best_test_accuracy_checkpoint():
    relu = RunSpec(ModelSpec("fc", d_in=6, width=16, depth=3, d_out=3, init="glorot"), SYNTH, 4, lr=3e-2,
                   batch_size=8, epochs=6)
    flnpf = RunSpec(relu.model.replace(variant="flnpf"), SYNTH, 4, lr=3e-2, batch_size=8, epochs=2,
                    gate_source=GateSource(relu, 6, "best"))
    store, ex = MemoryStore(), _Recorder()
    results = run_sweep([relu, flnpf], store, executor=ex, progress=False, device="cpu")
    rows = results[relu.key()].rows
    best = best_test_epoch(rows)
    assert best is not None and store.has_weights(relu.key(), best)
    given = next(t.gate_weights for t in ex.tasks if t.gate_weights)[gate_weight_id(flnpf.gate_source)]
    kept = store.weights(relu.key(), best)
    assert all(np.array_equal(given[k], kept[k]) for k in kept)
    # the checkpoint is the first maximum of the test accuracy over epochs 1..6
    accs = [r["test_acc"] for r in rows[1:]]
    assert accs[best - 1] == max(accs) and all(a < max(accs) for a in accs[: best - 1])


def test_each_epoch_logs_the_test_sets_two_fixed_halves():
    spec = RunSpec(ModelSpec("fc", d_in=6, width=8, depth=3, d_out=3, init="glorot"), SYNTH, 2, lr=1e-2,
                   batch_size=8, epochs=2)
    result = run_sweep([spec], MemoryStore(), executor=_Recorder(), progress=False, device="cpu")[spec.key()]
    for row in result.rows:  # 41 test examples: 21 at even positions, 20 at odd ones
        assert math.isclose((21 * row["test_acc_a"] + 20 * row["test_acc_b"]) / 41, row["test_acc"], abs_tol=1e-12)
        assert math.isclose(row["test_acc_a"] * 21, round(row["test_acc_a"] * 21), abs_tol=1e-9)


def test_split_half_selection_on_a_hand_made_history():
    from dgnlib.engine.selection import split_half_selected

    rows = [{"epoch": 0, "test_acc_a": 1.0, "test_acc_b": 1.0},  # initialisation: never chosen
            {"epoch": 1, "test_acc_a": 0.90, "test_acc_b": 0.80},
            {"epoch": 2, "test_acc_a": 0.95, "test_acc_b": 0.70},  # a's best: report b 0.70
            {"epoch": 3, "test_acc_a": 0.60, "test_acc_b": 0.85}]  # b's best: report a 0.60
    assert math.isclose(split_half_selected(rows), (0.70 + 0.60) / 2)
    assert math.isnan(split_half_selected([{"epoch": 1, "test_acc": 0.9}]))  # a run stored before the halves


def test_the_follow_up_table_has_both_optimisers_and_every_variant():
    from dgnlib.engine.selection import FOLLOW_UP_FC_MNIST

    for opt in ("adam", "sgd"):
        assert set(FOLLOW_UP_FC_MNIST[opt]) == {"frnpf-ii", "frnpf-di", "flnpf", "dnpfl", "relu"}
    assert FOLLOW_UP_FC_MNIST["adam"]["dnpfl"] == (98.22, 0.05) and "neural-path-kernel" in FOLLOW_UP_FC_MNIST["source"]


def _history(variant: str, seed: int, test: list[float], halves: list[tuple[float, float]], status: str = "ok"):
    import pandas as pd

    rows = [{"variant": variant, "seed": seed, "epoch": 0, "test_acc": 0.1, "test_acc_a": 0.1, "test_acc_b": 0.1,
             "val_acc": float("nan"), "train_acc": 0.1, "gates_changed": 0.0, "status": status}]
    for e, (acc, (a, b)) in enumerate(zip(test, halves), start=1):
        rows.append({"variant": variant, "seed": seed, "epoch": e, "test_acc": acc, "test_acc_a": a,
                     "test_acc_b": b, "val_acc": float("nan"), "train_acc": 0.9, "gates_changed": 0.0,
                     "status": status})
    return pd.DataFrame(rows)


def test_the_reference_table_is_the_mean_of_best_epochs_with_population_std_and_split_half_beside_it():
    import pandas as pd

    from dgnlib.experiments import reference_table

    adam = pd.concat([
        _history("relu", 0, [0.90, 0.96, 0.95], [(0.91, 0.89), (0.97, 0.95), (0.94, 0.96)]),
        _history("relu", 1, [0.92, 0.94, 0.98], [(0.93, 0.91), (0.95, 0.93), (0.97, 0.99)]),
        _history("linear", 0, [0.80, 0.85, 0.84], [(0.8, 0.8), (0.85, 0.85), (0.84, 0.84)]),
        _history("linear", 1, [0.5, 0.5, 0.5], [(0.5, 0.5)] * 3, status="nonfinite"),
    ], ignore_index=True)
    sgd = _history("relu", 0, [0.5, 0.7, 0.6], [(0.5, 0.5), (0.6, 0.8), (0.7, 0.5)])
    t = reference_table.tables({"adam": adam, "sgd": sgd})
    assert t["reference_table"]["adam"]["relu"] == pytest.approx((0.96 + 0.98) / 2)
    assert t["reference_table_std"]["adam"]["relu"] == pytest.approx(0.01)  # ddof 0: |0.96 - 0.98| / 2
    assert t["reference_table"]["adam"]["linear"] == pytest.approx(0.85)  # the invalid run is left out
    assert t["reference_table_std"]["adam"]["linear"] == 0.0
    # seed 0: choose on a (epoch 2: 0.97) -> b 0.95; choose on b (epoch 3: 0.96) -> a 0.94; mean 0.945
    # seed 1: a best at epoch 3 (0.97) -> b 0.99; b best at epoch 3 (0.99) -> a 0.97; mean 0.98
    assert t["split_half_table"]["adam"]["relu"] == pytest.approx((0.945 + 0.98) / 2)
    assert t["reference_table"]["sgd"] == {"relu": pytest.approx(0.7)}
    # a best at epoch 3 (0.7) -> b 0.5; b best at epoch 2 (0.8) -> a 0.6: each half reports the other's choice
    assert t["split_half_table"]["sgd"]["relu"] == pytest.approx((0.5 + 0.6) / 2)
    page = reference_table.beside_follow_up(t)
    assert page.loc[("adam", "relu"), "follow-up paper (%)"] == 98.14
    assert page.loc[("adam", "relu"), "difference (points)"] == pytest.approx(97.0 - 98.14)
    assert page.loc[("sgd", "relu"), "follow-up paper (%)"] == 97.85
    assert np.isnan(page.loc[("adam", "linear"), "follow-up paper (%)"])  # the follow-up has no linear cell
