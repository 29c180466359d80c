"""DGN models: the path identity, relu = ReLU MLP, freezing, argument checks."""

import math

import numpy as np
import pytest
import torch

from dgnlib.core.kernels import npk
from dgnlib.core.models import DGN, ConvDGN, fans, plain_relu_mlp
from dgnlib.core.paths import path_features, path_values
from dgnlib.names import VARIANTS


def tiny(variant: str, seed: int = 1) -> DGN:
    return DGN(3, 4, 3, variant=variant, bias=False, init="bernoulli", seed=seed).double()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_is_inner_product_of_path_features_and_values(variant, x):
    model = tiny(variant)
    phi, v = path_features(model, x), path_values(model)
    assert phi.shape == (7, 3 * 4**2) and v.shape == (3 * 4**2,)
    torch.testing.assert_close(phi @ v, model(x)[:, 0], atol=1e-9, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_npk_equals_gram_of_path_features(variant, x):
    model = tiny(variant)
    phi = path_features(model, x)
    torch.testing.assert_close(npk(x, model.gates(x), normalise=False), phi @ phi.T, atol=1e-9, rtol=0)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_relu_dgn_is_a_relu_mlp(depth):
    model = DGN(10, 16, depth, d_out=3, variant="relu", seed=3).double()
    x = torch.randn(20, 10, dtype=torch.float64)
    torch.testing.assert_close(model(x), plain_relu_mlp(model)(x), atol=1e-12, rtol=0)


def test_gates_are_in_range_and_shaped(x):
    for variant in VARIANTS:
        gates = tiny(variant).gates(x)
        assert len(gates) == 2 and all(g.shape == (7, 4) for g in gates)
        upper = 1.1 if variant == "dnpfl" else 1.0
        assert all(bool(((g >= 0) & (g <= upper)).all()) for g in gates)
    assert all(bool((g == 1).all()) for g in tiny("linear").gates(x))


def test_frnpf_di_gates_are_the_initial_relu_gates(x):
    di = tiny("frnpf-di", seed=5)
    relu = tiny("relu", seed=5)
    for a, b in zip(di.gates(x), relu.gates(x)):
        assert torch.equal(a, b)


def test_from_relu_copies_the_gates_and_starts_a_fresh_value_network(x):
    relu = DGN(3, 4, 3, seed=2).double()
    fl = DGN.from_relu(relu, seed=9)
    for a, b in zip(fl.gates(x), relu.gates(x)):
        assert torch.equal(a, b)
    assert not torch.equal(fl.value[0].weight, relu.value[0].weight)
    assert not any(p.requires_grad for p in fl.feature_parameters())


def test_frozen_parts_are_left_out_of_the_optimiser():
    for variant in ("frnpf-ii", "frnpf-di", "flnpf"):
        model = DGN(5, 8, 3, variant=variant, seed=0)
        trainable = {id(p) for p in model.trainable_parameters()}
        assert all(not p.requires_grad and id(p) not in trainable for p in model.feature_parameters())
        assert {id(p) for p in model.value_parameters()} == trainable
    model = DGN(5, 8, 3, variant="dnpfl", seed=0)
    assert len(model.trainable_parameters()) == len(model.value_parameters()) + len(model.feature_parameters())


def test_same_seed_same_weights_different_seed_different():
    a, b, c = (
        DGN(5, 8, 3, variant="frnpf-ii", seed=4),
        DGN(5, 8, 3, variant="frnpf-ii", seed=4),
        DGN(5, 8, 3, variant="frnpf-ii", seed=5),
    )
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.value[0].weight, c.value[0].weight)
    # independent init: the feature network is not a copy of the value network
    assert not torch.equal(a.feature[0].weight, a.value[0].weight)


def test_bernoulli_init_is_plus_minus_sigma():
    model = DGN(5, 50, 4, bias=False, init="bernoulli", seed=0)
    sigma = (2 / 50) ** 0.5
    for layer in model.value:
        assert torch.allclose(layer.weight.abs(), torch.full_like(layer.weight, sigma))
        assert 0.3 < (layer.weight > 0).float().mean() < 0.7


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(variant="gelu"), ["variant", "relu", "frnpf-ii", "dnpfl", "linear"]),
        (dict(depth=1), ["depth", ">= 2"]),
        (dict(width=0), ["width", ">= 1"]),
        (dict(beta=0.0), ["beta", "positive"]),
        (dict(beta=-1.0), ["beta"]),
        (dict(init="xavier"), ["init", "default", "glorot", "he", "bernoulli"]),
    ],
)
def test_bad_arguments_raise_value_error_with_allowed_values(kwargs, words):
    args = dict(d_in=3, width=4, depth=3, seed=0) | kwargs
    with pytest.raises(ValueError) as err:
        DGN(**args)
    assert all(w in str(err.value) for w in words)


def test_mismatched_input_size_is_a_value_error():
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        DGN(3, 4, 3, seed=0)(torch.randn(2, 5))


@pytest.mark.parametrize("pooling", ["flatten", "gap"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_dgn_shapes_and_gates(pooling, variant):
    model = ConvDGN(in_channels=1, image_size=8, channels=(4, 6), dense=(10,), pooling=pooling, variant=variant, seed=0)
    x = torch.randn(3, 1, 8, 8)
    assert model(x).shape == (3, 10)
    shapes = [tuple(g.shape) for g in model.gates(x)]
    assert shapes == [(3, 4, 8, 8), (3, 6, 8, 8), (3, 10)]
    assert model(x.reshape(3, -1)).shape == (3, 10)
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(3, 3, 8, 8))


def test_conv_flnpf_copies_the_gates_of_a_trained_conv_relu():
    relu = ConvDGN(in_channels=1, image_size=8, channels=(4, 4), dense=(8,), pooling="gap", seed=0)
    fl = ConvDGN(in_channels=1, image_size=8, channels=(4, 4), dense=(8,), pooling="gap", variant="flnpf", seed=1)
    x = torch.randn(2, 1, 8, 8)
    assert not all(torch.equal(a, b) for a, b in zip(relu.gates(x), fl.gates(x)))
    fl.copy_gates_from(relu)
    assert all(torch.equal(a, b) for a, b in zip(relu.gates(x), fl.gates(x)))
    with pytest.raises(ValueError, match="relu"):
        fl.copy_gates_from(fl)


def test_seed_is_required_and_checked():
    with pytest.raises(ValueError, match="seed is required"):
        DGN(3, 4, 3)
    with pytest.raises(ValueError, match="seed is required"):
        ConvDGN(in_channels=1, image_size=4, channels=(2,), dense=(3,))
    with pytest.raises(ValueError, match="seed is required"):
        DGN.from_relu(DGN(3, 4, 3, seed=0))
    with pytest.raises(ValueError, match="seed must be an integer"):
        DGN(3, 4, 3, seed=-1)
    torch.manual_seed(0)
    a = DGN(3, 4, 3, seed=np.int64(7))
    torch.manual_seed(1)  # the global generator plays no part
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), DGN(3, 4, 3, seed=7).parameters()))


def test_glorot_init_bounds_zero_biases_and_keras_fans_for_conv():
    model = DGN(300, 200, 3, d_out=10, init="glorot", seed=0)
    for layer in model.value:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.97 * bound and bool((layer.bias == 0).all())
        assert float(w.var()) == pytest.approx(bound**2 / 3, rel=0.1)  # U(±b): variance b²/3
    conv = ConvDGN(in_channels=3, image_size=4, channels=(16,), dense=(8,), init="glorot", variant="frnpf-ii", seed=1)
    assert fans(conv.value[0].weight) == (3 * 9, 16 * 9)
    for net in (conv.value, conv.feature):
        w = net[0].weight
        assert w.abs().max() <= math.sqrt(6 / (27 + 144)) and bool((net[0].bias == 0).all())


def test_he_init_variance_and_zero_biases():
    model = DGN(400, 300, 3, init="he", variant="frnpf-ii", seed=0)
    for net in (model.value, model.feature):
        w = net[1].weight.detach()
        assert float(w.var()) == pytest.approx(2 / 300, rel=0.05) and abs(float(w.mean())) < 1e-3
        assert bool((net[1].bias == 0).all())


def test_default_init_is_pytorch_uniform_with_biases():
    layer = DGN(50, 40, 2, seed=0).value[0]
    bound = 1 / math.sqrt(50)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound and bool((layer.bias != 0).all())
