"""Variant comparison: flnpf copies the relu gates of the same seed; the summary picks the right epochs."""

import pandas as pd
import pytest
from synthetic import two_blobs

from dgnlib.experiments.comparison import dgn_factory, final_accuracy, summarise, train_variants


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


def test_run_seeds_are_derived_and_prefix_stable():
    from dgnlib.experiments.comparison import run_seeds

    assert run_seeds(0, 5)[:3] == run_seeds(0, 3)
    assert run_seeds(0, 3) != run_seeds(1, 3) and len(set(run_seeds(0, 5))) == 5
    with pytest.raises(ValueError, match="seeds"):
        run_seeds(0, 0)


def test_figures_with_the_same_protocol_build_the_same_relu_and_frnpf_runs():
    from dgnlib.experiments.comparison import fc_model, image_data, variant_specs
    from dgnlib.experiments.gate_learning import stage_specs

    data = image_data("mnist", 0, 0, 0.1, seed=7)
    assert data.subset_seed == 0 and data.n_train is None  # the whole set: the subset seed cannot matter
    assert image_data("mnist", 1000, 500, 0.1, seed=7).subset_seed == 7
    train = dict(optimizer="adam", lr=1e-4, batch_size=32, loss="ce")
    # figure 06 passes its dnpfl beta to the model; figure 08 uses the default: relu runs must not depend on it
    fig06 = variant_specs(fc_model(784, 16, 3, 10, beta=2.0), data, ["relu", "frnpf-ii", "dnpfl", "flnpf"], [3],
                          keep_relu_weights=[0, 1, 2, 9], epochs=2, **train)
    fig08 = stage_specs(fc_model(784, 16, 3, 10), data, [0, 1, 2], 2, [3], **train)
    assert fig06["relu", 3].key() == fig08["relu", 2, 3].key()
    assert fig06["frnpf-ii", 3].key() == fig08["frnpf-ii", None, 3].key()
    assert fig06["flnpf", 3].key() == fig08["flnpf", 2, 3].key()  # the last stage is figure 06's flnpf
    assert fig06["relu", 3].keep_weights == (0, 1, 2)  # epochs past the run's end are dropped
    assert fig06["dnpfl", 3].model.beta == 2.0
    other_init = variant_specs(fc_model(784, 16, 3, 10, init="he"), data, ["relu"], [3], epochs=2, **train)
    assert other_init["relu", 3].key() != fig06["relu", 3].key()


def _per_seed(values: dict, invalid: tuple = ()) -> pd.DataFrame:
    rows = [{"variant": v, "seed": s, "val_selected_test_acc": a, "invalid": (v, s) in invalid}
            for v, accs in values.items() for s, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_beats_decides_every_pair_paired_by_seed():
    from dgnlib.experiments.comparison import beats
    from dgnlib.verdict import combine

    # seed effects shared by all variants: paired differences are steady although the spread is large
    per_seed = _per_seed({"relu": [0.90, 0.95, 0.99], "dnpfl": [0.89, 0.94, 0.985], "frnpf-ii": [0.88, 0.93, 0.97]})
    parts = beats(per_seed, ["relu", "dnpfl"], ["frnpf-ii"])
    assert [p.name for p in parts] == ["relu > frnpf-ii", "dnpfl > frnpf-ii"]
    assert combine(parts) == "held"
    assert combine(beats(per_seed, ["frnpf-ii"], ["relu"])) == "not held"
    assert combine(beats(_per_seed({"a": [0.9], "b": [0.1]}), ["a"], ["b"])) == "inconclusive"  # one seed
    bad = _per_seed({"relu": [0.90, 0.95, 0.99], "frnpf-ii": [0.88, 0.93, 0.97]}, invalid=(("frnpf-ii", 1),))
    assert combine(beats(bad, ["relu"], ["frnpf-ii"])) == "invalid"
    with pytest.raises(ValueError, match="no runs"):
        beats(per_seed, ["linear"], ["relu"])


def test_final_accuracy_flags_invalid_runs():
    hist = pd.DataFrame({"variant": ["a"] * 4, "seed": [0, 0, 1, 1], "epoch": [0, 1, 0, 1],
                         "val_acc": [0.1, 0.5, 0.1, float("nan")], "test_acc": [0.1, 0.5, 0.1, float("nan")],
                         "train_acc": [0.5] * 4, "gates_changed": [0.0] * 4,
                         "status": ["ok", "ok", "invalid", "invalid"]})
    assert final_accuracy(hist)["invalid"].tolist() == [False, True]
    assert summarise(hist)["seeds"].tolist() == [2]
