"""The ensemble is the same computation as separate `fit` runs, up to float32 round-off; invalid runs stop alone."""

import numpy as np
import pytest
import torch

from dgnlib.engine import tensors as datamod
from dgnlib.engine.ensemble import build_models, train_ensemble
from dgnlib.engine.reference import fit
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunSpec, gate_weight_id
from dgnlib.engine.stacked import StackedDGN
from dgnlib.seeding import derive_seed

# 400 training examples, no validation split, batch 8: one epoch is 50 optimiser steps.
FC_DATA = DataSpec("synthetic", n_train=400, n_test=40, shape=(6,), n_classes=3, val_fraction=0.0)
CONV_DATA = DataSpec("synthetic", n_train=400, n_test=40, shape=(2, 6, 6), n_classes=3, val_fraction=0.0,
                     flatten=False)
FC = ModelSpec("fc", d_in=6, width=16, depth=4, d_out=3)
CONV = ModelSpec("conv", in_channels=2, image_size=6, channels=(3, 4), dense=(8,), d_out=3)
# Tolerance. Both sides are float32; they sum in different orders (batched bmm / grouped convolution against mm /
# conv, a fused Adam against the for-loop one, the batch mean of 8 examples), so each step's gradient differs by a
# few ulps (relative 1e-7 .. 1e-6). Adam moves each weight by at most about lr = 1e-2 per step whatever the
# gradient's size, so 50 steps of such relative errors move a weight by well under 50 · 1e-2 · 1e-5 = 5e-6 unless a
# hard gate flips (it flips only where a pre-activation is within round-off of 0, which these small sets avoid).
# We allow 2e-5 absolute on weights of size ~0.3 and 1e-5 on losses; a real bug (wrong minibatch, wrong gate, a
# state shared between runs) shows up at 1e-2 or more after the first step.
ATOL_W, ATOL_LOSS = 2e-5, 1e-5


def _by_fit(spec: RunSpec, relu_weights=None) -> tuple:
    model = spec.model.build(spec.init_seed())
    if relu_weights is not None:
        relu = spec.gate_source.spec.model.build(0)
        relu.load_state_dict({k: torch.as_tensor(v) for k, v in relu_weights.items()})
        model.copy_gates_from(relu)
    hist = fit(model, datamod.materialise(spec.data), optimizer=spec.optimizer, lr=spec.lr,
               batch_size=spec.batch_size, epochs=spec.epochs, loss=spec.loss, seed=spec.seed,
               val_fraction=spec.data.val_fraction, progress=False, device="cpu")
    return hist, {k: v.detach() for k, v in model.state_dict().items() if k.startswith("value.")}


def _compare(specs, results, gate_weights=None):
    for spec, result in zip(specs, results):
        wid = gate_weight_id(spec.gate_source) if spec.gate_source else None
        hist, weights = _by_fit(spec, gate_weights[wid] if wid else None)
        got = result.history()
        assert result.status == "ok" and len(got) == spec.epochs + 1
        np.testing.assert_allclose(got["train_loss"], hist["train_loss"], rtol=0, atol=ATOL_LOSS)
        for col in ("train_acc", "test_acc", "gates_changed"):
            np.testing.assert_allclose(got[col], hist[col], rtol=0, atol=1e-6, err_msg=f"{spec.model.variant} {col}")
        kept = result.weights[spec.epochs]
        for name, w in weights.items():
            np.testing.assert_allclose(kept[name], w.numpy(), rtol=0, atol=ATOL_W, err_msg=spec.model.variant)


@pytest.mark.parametrize("model,data,optimizer", [(FC, FC_DATA, "adam"), (CONV, CONV_DATA, "adam"),
                                                  (FC, FC_DATA, "rmsprop")], ids=["fc-adam", "conv-adam", "fc-rmsprop"])
def test_three_runs_for_50_steps_match_three_fit_runs(model, data, optimizer):
    lr = 1e-2 if optimizer == "adam" else 1e-3
    specs = [RunSpec(model.replace(variant=v, beta=b), data, seed, optimizer=optimizer, lr=lr, batch_size=8,
                     epochs=1, keep_weights=(1,))
             for v, b, seed in (("frnpf-ii", 4.0, 0), ("dnpfl", 2.0, 1), ("relu", 4.0, 2))]
    _compare(specs, train_ensemble(specs, device="cpu"))


def test_flnpf_linear_and_frnpf_di_with_sgd_match_fit():
    relu = RunSpec(FC, FC_DATA, 3, optimizer="sgd", lr=5e-2, batch_size=8, epochs=1, keep_weights=(0, 1))
    (trained,) = train_ensemble([relu], device="cpu")
    weights = {gate_weight_id(GateSource(relu, 1)): trained.weights[1]}
    specs = [RunSpec(FC.replace(variant="flnpf"), FC_DATA, 5, optimizer="sgd", lr=5e-2, batch_size=8, epochs=1,
                     gate_source=GateSource(relu, 1), keep_weights=(1,)),
             RunSpec(FC.replace(variant="linear"), FC_DATA, 5, optimizer="sgd", lr=5e-2, batch_size=8, epochs=1,
                     keep_weights=(1,)),
             RunSpec(FC.replace(variant="frnpf-di"), FC_DATA, 6, optimizer="sgd", lr=5e-2, batch_size=8, epochs=1,
                     keep_weights=(1,))]
    _compare(specs, train_ensemble(specs, weights, device="cpu"), weights)


def test_stack_forward_equals_each_model_on_shared_and_per_run_inputs():
    variants = ["linear", "relu", "dnpfl", "frnpf-ii", "frnpf-di", "flnpf"]
    for spec, x in ((FC, torch.randn(5, 6)), (CONV.replace(pooling="gap"), torch.randn(5, 2, 6, 6))):
        models = [spec.replace(variant=v, beta=1.0 + i).build(i) for i, v in enumerate(variants)]
        net = StackedDGN(models)
        shared = net(x, shared=True)
        per_run = net(x.expand(len(models), *x.shape).contiguous())
        for pos, i in enumerate(net.order):
            expected = models[i](x)
            torch.testing.assert_close(shared[pos], expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(per_run[pos], expected, rtol=1e-5, atol=1e-5)


def test_a_diverging_run_is_marked_invalid_and_the_others_are_untouched():
    train = dict(optimizer="sgd", lr=1e-2, batch_size=8, epochs=2, keep_weights=(2,))
    small = DataSpec("synthetic", n_train=80, n_test=20, shape=(6,), n_classes=3, val_fraction=0.0)
    sane = RunSpec(FC, small, 0, **train)
    # soft gates scaled by 1 + ε = 1001 per layer: the outputs blow up (10⁹) and the first steps overflow
    wild = RunSpec(FC.replace(variant="dnpfl", eps=1000.0), small, 1, **train)
    alone = train_ensemble([sane], device="cpu")[0]
    both = train_ensemble([wild, sane], device="cpu")
    assert both[0].status == "invalid" and "non-finite" in both[0].reason
    assert len(both[0].rows) < 3 and 2 not in both[0].weights
    assert both[1].status == "ok"
    np.testing.assert_allclose(both[1].history()["train_loss"], alone.history()["train_loss"], rtol=0, atol=1e-6)
    for name, w in alone.weights[2].items():
        np.testing.assert_allclose(both[1].weights[2][name], w, rtol=0, atol=1e-6)


def test_build_models_needs_the_relu_weights_of_flnpf():
    relu = RunSpec(FC, FC_DATA, 0, epochs=1)
    flnpf = RunSpec(FC.replace(variant="flnpf"), FC_DATA, 0, epochs=1, gate_source=GateSource(relu, 1))
    with pytest.raises(ValueError, match="needs the weights"):
        build_models([flnpf], {})
    with pytest.raises(ValueError, match="compatible"):
        train_ensemble([relu, relu.replace(lr=1e-3)])


def test_nu_on_a_probe_matches_fit_and_stays_constant_with_fixed_gates():
    # figure 07's set-up in miniature: one output, squared loss on ±1 labels, RMSprop, no biases, Bernoulli init
    data = DataSpec("synthetic", n_train=64, n_test=16, shape=(6,), n_classes=2, val_fraction=0.0)
    model = ModelSpec("fc", d_in=6, width=12, depth=3, d_out=1, bias=False, init="bernoulli")
    specs = [RunSpec(model.replace(variant=v), data, 0, optimizer="rmsprop", lr=1e-2, batch_size=16, epochs=2,
                     loss="mse", probe_per_class=5) for v in ("relu", "frnpf-ii")]
    splits = {k: (x, y.float() * 2 - 1) for k, (x, y) in datamod.materialise(data).items()}
    inline = datamod.inline(splits, val_fraction=0.0)
    specs = [s.replace(data=inline) for s in specs]
    results = train_ensemble(specs, device="cpu")
    x, y = splits["train"]
    xp, yp = datamod.balanced_subset(x.numpy(), y.numpy(), 5, derive_seed(inline.subset_seed, "probe"))
    for spec, result in zip(specs, results):
        hist = fit(spec.model.build(spec.init_seed()), splits, optimizer="rmsprop", lr=1e-2, batch_size=16, epochs=2,
                   loss="mse", seed=0, val_fraction=0.0, probe=(torch.as_tensor(xp), torch.as_tensor(yp)),
                   progress=False)
        np.testing.assert_allclose(result.history()["nu"], hist["nu"], rtol=1e-4)
    assert results[1].history()["nu"].nunique() == 1 and results[0].history()["nu"].nunique() > 1
