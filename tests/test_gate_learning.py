"""Continuous gate learning: relu snapshots equal the full run's epochs; each flnpf gets its own stage's gates."""

import pandas as pd
import pytest
import torch
from synthetic import two_blobs

from dgnlib.engine.reference import evaluate, fit
from dgnlib.engine.tensors import train_val_indices
from dgnlib.experiments.comparison import dgn_factory
from dgnlib.experiments.gate_learning import check_stages, relu_snapshots, stage_accuracy, stage_gates_experiment
from dgnlib.seeding import derive_seed

FIT = {"lr": 1e-2, "batch_size": 16, "progress": False}


def factory():
    return dgn_factory(d_in=4, width=8, depth=3, d_out=2)


def test_check_stages_sorts_and_rejects_bad_stages():
    assert check_stages([4, 0, 2], 4) == [0, 2, 4]
    for stages in ([], [0, 5], [-1], [1, 1], [1.5]):
        with pytest.raises(ValueError, match="stages"):
            check_stages(stages, 4)
    with pytest.raises(ValueError, match="epochs"):
        check_stages([0], 0)


def test_snapshots_are_the_full_runs_state_after_each_stage():
    data = two_blobs()
    snaps, history = relu_snapshots(factory(), data, [0, 1, 3], epochs=3, seed=2, **FIT)
    assert list(snaps) == [0, 1, 3] and history["epoch"].tolist() == [0, 1, 2, 3]
    initial = factory()("relu", derive_seed(2, "init"))
    assert all(torch.equal(a, b) for a, b in zip(snaps[0].parameters(), initial.parameters()))
    assert not torch.equal(snaps[1].value[0].weight, snaps[3].value[0].weight)
    # fit validates on a seeded split of train; recompute it as fit does to evaluate on the same examples
    x, y = data["train"]
    tr, va = train_val_indices(90, 0.1, derive_seed(2, "val_split"))
    loss, acc = evaluate(snaps[0], x[tr], y[tr])  # epoch 0: the whole training split at initialisation
    assert loss == history.loc[0, "train_loss"] and acc == history.loc[0, "train_acc"]
    for e in (0, 1, 3):  # after training: the snapshot's validation accuracy is the one logged for that epoch
        assert evaluate(snaps[e], x[va], y[va])[1] == history.loc[e, "val_acc"], e


def test_experiment_rows_and_each_flnpf_uses_its_stage_gates():
    data = two_blobs()
    hist = stage_gates_experiment(factory(), data, [2, 0], epochs=2, seeds=[0, 1], **FIT)
    assert len(hist) == 2 * (1 + 1 + 2) * 3  # seeds × (relu, frnpf-ii, 2 stages) × (epochs + 1)
    assert (hist.loc[hist["variant"] == "flnpf", "gates_changed"] == 0).all()
    assert hist.loc[hist["variant"] == "frnpf-ii", "stage"].isna().all()
    assert set(hist.loc[hist["variant"] == "relu", "stage"]) == {2}
    # redo seed 1, stage 0 by hand with plain fit: the same gates and value init give the same history (the ensemble
    # sums in another order than fit: float32 round-off, well below a single example's share of the metrics)
    snaps, _ = relu_snapshots(factory(), data, [0], epochs=2, seed=1, **FIT)
    model = factory()("flnpf", derive_seed(1, "init", "flnpf"))
    model.copy_gates_from(snaps[0])
    expected = fit(model, data, epochs=2, seed=1, **FIT)
    got = hist[(hist["variant"] == "flnpf") & (hist["stage"] == 0) & (hist["seed"] == 1)]
    pd.testing.assert_frame_equal(got[expected.columns].reset_index(drop=True), expected, rtol=1e-5, atol=1e-6)
    later = hist[(hist["variant"] == "flnpf") & (hist["stage"] == 2) & (hist["seed"] == 1)]
    assert not later["train_loss"].reset_index(drop=True).equals(got["train_loss"].reset_index(drop=True))


def test_stage_accuracy_one_row_per_variant_stage_seed():
    hist = stage_gates_experiment(factory(), two_blobs(), [0, 1], epochs=1, seeds=[0], **FIT)
    acc = stage_accuracy(hist)
    assert len(acc) == 4 and list(acc.columns[:3]) == ["variant", "stage", "seed"]
    flnpf = acc[acc["variant"] == "flnpf"]
    assert flnpf["stage"].tolist() == [0, 1]
    assert acc["best_epoch_test_acc"].between(0, 1).all()


def test_default_stages_are_powers_of_two_and_the_end():
    from dgnlib.experiments.gate_learning import default_stages

    assert default_stages(50) == [0, 1, 2, 4, 8, 16, 32, 50]
    assert default_stages(1) == [0, 1] and default_stages(4) == [0, 1, 2, 4]
    with pytest.raises(ValueError, match="epochs"):
        default_stages(0)


def test_stage_matrix_seeds_by_stages_with_invalid_seeds():
    from dgnlib.experiments.gate_learning import stage_matrix

    per_run = pd.DataFrame({
        "variant": ["flnpf", "flnpf", "flnpf", "flnpf", "frnpf-ii", "frnpf-ii"],
        "stage": pd.array([2, 0, 2, 0, None, None], dtype="Int64"),
        "seed": [5, 5, 9, 9, 5, 9],
        "split_half_test_acc": [0.8, 0.6, 0.7, 0.5, 0.55, 0.52],
        "invalid": [False, False, False, False, False, True],
    })
    table, bad = stage_matrix(per_run)
    assert list(table.index) == [5, 9] and list(table.columns) == [0, 2]
    assert table.loc[5, 2] == 0.8 and table.loc[9, 0] == 0.5
    assert bad.tolist() == [False, True]  # seed 9's frnpf-ii run was invalid
    with pytest.raises(ValueError, match="flnpf"):
        stage_matrix(per_run[per_run["variant"] != "flnpf"])
