"""The hand-written dense step and the gate tables give the autograd step's numbers bit for bit."""

import json

import numpy as np
import pytest
import torch

from dgnlib.engine import dense
from dgnlib.engine.ensemble import make_optimizer, train_ensemble
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, gate_weight_id
from dgnlib.engine.stacked import StackedDGN, per_run_loss
from dgnlib.names import VARIANTS

# 100 training examples, batch 8: 13 steps an epoch, the last one on 4 examples (a partial batch, as in MNIST's epochs
# of the quick profile); every variant in one stack, so that every slice of the step is exercised.
DATA = DataSpec("synthetic", n_train=100, n_test=30, shape=(6,), n_classes=3, val_fraction=0.0)
CONFIGS = [(opt, loss, bias) for opt in ("adam", "sgd", "rmsprop") for loss in ("ce", "mse") for bias in (True, False)]
LR = {"adam": 1e-2, "sgd": 5e-2, "rmsprop": 1e-3}


def _models(bias: bool, features: tuple[str, ...] = ("gated",)) -> list:
    """One network of every variant; one dnpfl per entry of `features` (its feature pass, models.FEATURE_ACTS)."""
    spec = ModelSpec("fc", d_in=6, width=16, depth=4, d_out=3, bias=bias)
    relu = spec.build(99)
    out = []
    for i, v in enumerate(VARIANTS):
        for j, act in enumerate(features if v == "dnpfl" else ("gated",)):
            m = spec.replace(variant=v, beta=1.0 + i + j, feature_act=act).build(i + 10 * j)
            if v == "flnpf":
                m.copy_gates_from(relu)
            out.append(m)
    return out


@pytest.mark.parametrize("optimizer,loss,bias", CONFIGS, ids=["-".join(map(str, c)) for c in CONFIGS])
def test_dense_step_equals_autograd_bitwise(optimizer, loss, bias):
    _check_bitwise(optimizer, loss, bias, ("gated",))


FEATURES = [(opt, loss, bias, feats) for opt, loss, bias in (("adam", "ce", True), ("sgd", "mse", False))
            for feats in (("relu",), ("relu", "gated"))]


@pytest.mark.parametrize("optimizer,loss,bias,features", FEATURES, ids=["-".join(map(str, c[:3])) + "-" + "+".join(c[3])
                                                                         for c in FEATURES])
def test_dense_step_equals_autograd_bitwise_with_relu_feature_networks(optimizer, loss, bias, features):
    """dnpfl with a ReLU feature network (the reference's), alone or stacked beside the legacy q·gate pass."""
    _check_bitwise(optimizer, loss, bias, features)


def _check_bitwise(optimizer: str, loss: str, bias: bool, features: tuple[str, ...]) -> None:
    ref, fast = StackedDGN(_models(bias, features)), StackedDGN(_models(bias, features))
    ref_opt = make_optimizer(optimizer, ref.trainable(), LR[optimizer])
    fast_opt = make_optimizer(optimizer, fast.trainable(), LR[optimizer])
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    step = dense.DenseStep(fast, loss, dense.gate_table(fast, x, 8))
    fast_step = dense.OptimizerStep(fast_opt)
    assert fast_step.direct == (optimizer == "adam")  # the direct fused call is what this test checks for Adam
    for _ in range(12):
        idx = torch.randint(0, 64, (ref.R, 8), generator=gen)
        out = ref(x[idx])
        ref_loss = per_run_loss(loss, out, y[idx]).mean(1)
        ref_opt.zero_grad(set_to_none=True)
        ref_loss.sum().backward()
        fast_loss, fast_out = step.step(x[idx], y[idx], idx)
        assert torch.equal(fast_loss, ref_loss.detach()) and torch.equal(fast_out, out.detach())
        for p, q in zip(ref.trainable(), fast.trainable()):
            assert torch.equal(p.grad, q.grad)
        ref_opt.step()
        fast_step()
    for p, q in zip(ref.trainable(), fast.trainable()):
        assert torch.equal(p, q)
        for name, state in ref_opt.state[p].items():
            assert torch.equal(state, fast_opt.state[q][name]), name
    # a wrong gradient would show: the 12 steps moved every weight
    assert all(not torch.equal(p, q) for p, q in zip(ref.trainable(), StackedDGN(_models(bias, features)).trainable())
               if p.numel())


@pytest.mark.parametrize("optimizer,loss", [("adam", "ce"), ("sgd", "mse"), ("rmsprop", "ce")])
def test_train_ensemble_rows_and_weights_are_identical_whatever_the_step(optimizer, loss):
    relu = RunSpec(ModelSpec("fc", d_in=6, width=16, depth=4, d_out=3), DATA, 7, optimizer=optimizer,
                   lr=LR[optimizer], batch_size=8, epochs=2, loss=loss)
    weights = {gate_weight_id(GateSource(relu, 0)): {k: v.numpy() for k, v in
                                                      relu.model.build(relu.init_seed()).state_dict().items()}}
    specs = [relu.replace(model=relu.model.replace(variant=v, beta=2.0), seed=s, keep_weights=(1, 2),
                          gate_source=GateSource(relu, 0) if v == "flnpf" else None)
             for s, v in enumerate(VARIANTS)]
    runs = {step: train_ensemble(specs, weights, device="cpu", step=step) for step in ("reference", "dense", "auto")}
    for results in (runs["dense"], runs["auto"]):
        for got, want in zip(results, runs["reference"]):
            assert got.status == want.status == "ok"
            # every metric of every epoch, as the store writes them (repr of each float: exact; NaN equals NaN)
            assert json.dumps(got.rows) == json.dumps(want.rows)
            for epoch in (1, 2):
                for name, w in want.weights[epoch].items():
                    assert np.array_equal(got.weights[epoch][name], w), (got.spec["model"]["variant"], name)


def test_gate_table_equals_the_feature_networks_gates():
    models = _models(True)
    net = StackedDGN(models)
    x = torch.randn(37, 6, generator=torch.Generator().manual_seed(1))
    table = dense.gate_table(net, x, 8)
    a, b = net.run_slice("hard")
    assert [m.variant for m in (models[i] for i in net.order[a:b])] == ["frnpf-ii", "frnpf-di", "flnpf"]
    for k, i in enumerate(net.order[a:b]):
        gates, _ = models[i]._feature_pass(x)  # the run's own feature network, one example after another
        for l, g in enumerate(gates):
            assert table[l].dtype == torch.bool and table[l].shape == (3, 37, 16)
            assert torch.equal(table[l][k], g > 0), (models[i].variant, l)
    assert dense.gate_table(StackedDGN([models[0]]), x, 8) is None  # relu alone: no frozen feature network


def test_unknown_step_and_conv_stacks_are_refused():
    spec = RunSpec(ModelSpec("fc", d_in=6, width=16, depth=4, d_out=3), DATA, 0, epochs=1)
    with pytest.raises(ValueError, match="unknown step"):
        train_ensemble([spec], step="fast")
    conv = ModelSpec("conv", in_channels=2, image_size=6, channels=(3,), dense=(8,), d_out=3).build(0)
    with pytest.raises(ValueError, match="dense layers"):
        dense.DenseStep(StackedDGN([conv]), "ce")


def test_a_wrong_gate_table_is_caught_at_a_checked_step_and_dropped():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(2))
    ref, fast = StackedDGN(_models(True)), StackedDGN(_models(True))
    table = dense.gate_table(fast, x, 8)
    table[0][1, 5, 3] ^= True  # one bit off, as another BLAS could make it
    step = dense.DenseStep(fast, "ce", table)
    idx = torch.arange(5, 13).expand(ref.R, 8)
    with pytest.warns(RuntimeWarning, match="gate table differs"):
        loss, _ = step.step(x[idx], torch.zeros(ref.R, 8, dtype=torch.long), idx, check=True)
    assert step.table is None
    assert torch.equal(loss, per_run_loss("ce", ref(x[idx]), torch.zeros(ref.R, 8, dtype=torch.long)).mean(1))


def test_a_diverging_run_is_stopped_the_same_way_by_both_steps():
    # soft gates scaled by 1 + ε = 1e13 per layer overflow float32 at once: the run is zeroed and masked, with Adam's
    # state, while the other run goes on (the direct fused Adam call must leave the dead run put as well)
    small = DataSpec("synthetic", n_train=80, n_test=20, shape=(6,), n_classes=3, val_fraction=0.0)
    model = ModelSpec("fc", d_in=6, width=16, depth=4, d_out=3)
    train = dict(optimizer="adam", lr=1e-2, batch_size=8, epochs=2, keep_weights=(2,))
    specs = [RunSpec(model.replace(variant="dnpfl", eps=1e13), small, 1, **train),
             RunSpec(model.replace(variant="frnpf-ii"), small, 0, **train)]
    ref, fast = (train_ensemble(specs, device="cpu", step=s) for s in ("reference", "auto"))
    assert [r.status for r in fast] == [r.status for r in ref] == ["invalid", "ok"]
    assert fast[0].reason == ref[0].reason and json.dumps(fast[1].rows) == json.dumps(ref[1].rows)
    assert all(np.array_equal(fast[1].weights[2][k], w) for k, w in ref[1].weights[2].items())
