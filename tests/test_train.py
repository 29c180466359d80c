"""Training: frozen parts stay frozen, relu learns, same seed same numbers, fixed-gate GD."""

import math

import pandas as pd
import pytest
import torch
from autograd_reference import gd_fixed_gates
from synthetic import two_blobs

from dgnlib.core import theory
from dgnlib.core.kernels import value_ntk
from dgnlib.core.models import DGN
from dgnlib.engine.reference import fit, seed_everything


def blobs(n=200, d=5, seed=0):
    return two_blobs(n, d, shift=1.5, n_train=150, seed=seed)


def test_frozen_parameters_stay_bit_identical_and_dnpfl_features_move():
    data = blobs()
    for variant in ("frnpf-ii", "frnpf-di", "flnpf", "dnpfl"):
        model = DGN(5, 16, 3, d_out=2, variant=variant, seed=0)
        before_f = [p.detach().clone() for p in model.feature_parameters()]
        before_v = [p.detach().clone() for p in model.value_parameters()]
        fit(model, data, lr=1e-2, epochs=2, batch_size=16, progress=False)
        same_f = all(torch.equal(a, b) for a, b in zip(before_f, model.feature_parameters()))
        assert same_f == (variant != "dnpfl"), variant
        assert not all(torch.equal(a, b) for a, b in zip(before_v, model.value_parameters()))


def test_relu_fit_learns_a_separable_set():
    df = fit(DGN(5, 32, 3, d_out=2, seed=0), blobs(), lr=1e-2, epochs=15, batch_size=16, progress=False)
    assert df["train_acc"].iloc[-1] >= 0.95
    assert df["train_acc"].iloc[0] < df["train_acc"].iloc[-1]
    assert list(df.columns[:6]) == ["epoch", "train_loss", "train_acc", "val_acc", "test_acc", "gates_changed"]
    assert len(df) == 16 and df["gates_changed"].iloc[0] == 0 and df["gates_changed"].iloc[-1] > 0


def test_same_seed_gives_identical_dataframes():
    def run():
        return fit(DGN(5, 16, 3, d_out=2, variant="dnpfl", seed=3), blobs(), lr=1e-2, epochs=2, batch_size=8,
                   seed=3, progress=False)

    pd.testing.assert_frame_equal(run(), run())


def test_mse_with_probe_logs_alignment_and_fixed_gates_keep_it_constant():
    data = blobs(n=160, d=6)
    x, y = data["train"]
    data = {"train": (x, y.float() * 2 - 1), "test": (data["test"][0], data["test"][1].float() * 2 - 1)}
    probe = (x[:20].double(), (y[:20].double() * 2 - 1))
    fixed = fit(
        DGN(6, 16, 3, variant="frnpf-ii", seed=1),
        data,
        optimizer="rmsprop",
        lr=1e-2,
        epochs=2,
        loss="mse",
        probe=probe,
        progress=False,
    )
    assert fixed["nu"].nunique() == 1 and (fixed["gates_changed"] == 0).all()
    relu = fit(
        DGN(6, 16, 3, variant="relu", seed=1),
        data,
        optimizer="rmsprop",
        lr=1e-2,
        epochs=2,
        loss="mse",
        probe=probe,
        progress=False,
    )
    assert relu["nu"].iloc[-1] != relu["nu"].iloc[0]


def test_fit_rejects_bad_arguments():
    model = DGN(5, 8, 3, d_out=2, seed=0)
    with pytest.raises(ValueError, match="adam, sgd, rmsprop"):
        fit(model, blobs(), optimizer="lbfgs")
    with pytest.raises(ValueError, match="ce, mse"):
        fit(model, blobs(), loss="hinge")
    with pytest.raises(ValueError, match="'train'"):
        fit(model, {"test": blobs()["test"]})
    with pytest.raises(ValueError, match="integer"):
        seed_everything("0")


def test_gd_with_fixed_gates_converges_and_matches_the_linearised_rate():
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(20, 10, generator=gen, dtype=torch.float64), dim=1)
    y = torch.where(torch.rand(20, generator=gen) < 0.5, -1.0, 1.0).double()
    gates = theory.bernoulli_gates(20, 200, 3, 0.5, seed=0)
    weights = theory.bernoulli_weights(10, 200, 3, math.sqrt(2 / 200), seed=1)
    run = gd_fixed_gates(x, y, gates, weights, steps=5000)
    assert run["steps_to_tol"] is not None and run["loss"][-1] <= 0.01 * run["loss"][0]
    assert all(a >= b for a, b in zip(run["loss"], run["loss"][1:]))  # step 0.5/λmax: monotone descent
    # the first step follows the linearised dynamics e_1 = (I − α K_0) e_0 (up to second-order terms in α)
    k0 = value_ntk(x, gates, weights)
    assert run["lr"] == pytest.approx(0.5 / float(torch.linalg.eigvalsh(k0)[-1]))
    z = x
    for theta, g in zip(weights[:-1], gates):
        z = (z @ theta) * g
    e = (z @ weights[-1])[:, 0] - y
    for t in range(1, 2):
        e = e - run["lr"] * (k0 @ e)
        assert float(0.5 * (e**2).sum()) == pytest.approx(run["loss"][t], rel=0.02), t


def test_train_metrics_after_an_epoch_are_the_means_over_its_minibatches():
    # one epoch of one full-batch step: the running mean is the loss of the weights before that step, not after
    model = DGN(5, 8, 3, d_out=2, seed=1)
    data = blobs()
    n_train = len(data["train"][0]) - round(0.1 * len(data["train"][0]))
    hist = fit(model, data, lr=0.5, epochs=1, batch_size=n_train, seed=0, progress=False)
    assert hist.loc[1, "train_loss"] == pytest.approx(hist.loc[0, "train_loss"], rel=1e-6)
    assert hist.loc[1, "train_acc"] == pytest.approx(hist.loc[0, "train_acc"])
