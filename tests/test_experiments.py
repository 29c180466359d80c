"""Variant comparison: flnpf copies the relu gates of the same seed; the summary picks the right epochs."""

import pandas as pd
import pytest
from synthetic import two_blobs

from dgnlib.experiments import dgn_factory, final_accuracy, summarise, train_variants


def test_train_variants_rows_and_flnpf_uses_trained_relu_gates():
    data = two_blobs()
    hist = train_variants(
        dgn_factory(d_in=4, width=8, depth=3, d_out=2),
        data,
        ["flnpf", "relu", "frnpf-ii"],
        [0, 1],
        lr=1e-2,
        epochs=2,
        batch_size=16,
        progress=False,
    )
    assert len(hist) == 3 * 2 * 3  # variants × seeds × (epochs + 1)
    assert set(hist["variant"]) == {"flnpf", "relu", "frnpf-ii"}
    # flnpf's gates are frozen copies of a trained network: they do not change during its own training
    assert (hist.loc[hist["variant"] == "flnpf", "gates_changed"] == 0).all()
    with pytest.raises(ValueError, match="unknown variants"):
        train_variants(dgn_factory(d_in=4, width=8, depth=3), data, ["tanh"], [0])


def test_final_accuracy_selects_by_validation_and_summarise_averages_seeds():
    hist = pd.DataFrame(
        {
            "variant": ["a"] * 6 + ["b"] * 3,
            "seed": [0, 0, 0, 1, 1, 1, 0, 0, 0],
            "epoch": [0, 1, 2] * 3,
            "val_acc": [0.1, 0.9, 0.5, 0.1, 0.2, 0.8, 0.0, 0.3, 0.3],
            "test_acc": [0.0, 0.7, 0.8, 0.0, 0.9, 0.6, 0, 0.4, 0.2],
            "train_acc": [0.5] * 9,
            "gates_changed": [0.0] * 9,
        }
    )
    per_seed = final_accuracy(hist)
    assert per_seed["best_epoch_test_acc"].tolist() == [0.8, 0.9, 0.4]
    assert per_seed["val_selected_test_acc"].tolist() == [0.7, 0.6, 0.4]
    summary = summarise(hist)
    assert summary["variant"].tolist() == ["a", "b"]
    assert summary.loc[0, "val_selected_test_acc_mean"] == pytest.approx(0.65)
    assert summary.loc[0, "seeds"] == 2
