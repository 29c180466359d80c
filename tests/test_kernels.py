"""Kernels: the torch.func NTK against an explicit autograd loop, the closed form, alignment."""

import pytest
import torch

from dgnlib.core.kernels import alignment, npk, ntk, overlap, value_ntk
from dgnlib.core.models import DGN


def explicit_ntk(model, x, params):
    rows = []
    for xi in x:
        grads = torch.autograd.grad(model(xi[None])[0, 0], params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


@pytest.mark.parametrize("variant", ["relu", "frnpf-ii", "dnpfl", "linear"])
def test_ntk_matches_per_sample_autograd_loop(variant):
    model = DGN(6, 8, 4, variant=variant, seed=0).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    expected = explicit_ntk(model, x, model.value_parameters())
    torch.testing.assert_close(ntk(model, x, params="value"), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ntk(model, x, chunk_size=4), expected, atol=1e-6, rtol=1e-6)
    if variant == "dnpfl":
        everything = model.value_parameters() + model.feature_parameters()
        torch.testing.assert_close(
            ntk(model, x, params="all"), explicit_ntk(model, x, everything), atol=1e-6, rtol=1e-6
        )


def test_ntk_of_hard_gated_feature_network_is_zero():
    model = DGN(6, 8, 3, variant="frnpf-ii", seed=0).double()
    assert ntk(model, torch.randn(4, 6, dtype=torch.float64), params="feature").abs().max() == 0


def test_ntk_rejects_unknown_params_and_missing_feature_network():
    model = DGN(6, 8, 3, seed=0)
    with pytest.raises(ValueError, match="value, feature, all"):
        ntk(model, torch.randn(2, 6), params="weights")
    with pytest.raises(ValueError, match="no feature parameters"):
        ntk(model, torch.randn(2, 6), params="feature")


def test_ntk_with_several_outputs_picks_or_sums():
    model = DGN(4, 5, 3, d_out=3, seed=0).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    k0, k1 = ntk(model, x, output=0), ntk(model, x, output=1)
    assert not torch.allclose(k0, k1)
    ksum = ntk(model, x, output="sum")
    params = model.value_parameters()
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(model(xi[None]).sum(), params)]) for xi in x]
    jac = torch.stack(rows)
    torch.testing.assert_close(ksum, jac @ jac.T)


@pytest.mark.parametrize("variant", ["relu", "frnpf-ii", "flnpf", "linear"])
def test_closed_form_value_ntk_equals_torch_func_ntk(variant):
    model = DGN(5, 7, 4, variant=variant, bias=False, init="bernoulli", seed=2).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    weights = [layer.weight.T for layer in model.value]
    torch.testing.assert_close(value_ntk(x, model.gates(x), weights), ntk(model, x), atol=1e-10, rtol=1e-10)


def test_overlap_counts_common_active_paths():
    g1 = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    g2 = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    lam = overlap([g1, g2], normalise=False)
    # input 0 and 1 share unit 0 in layer 1 and units 1, 2 in layer 2: 1 * 2 active paths in common
    assert lam.tolist() == [[2 * 3, 1 * 2], [1 * 2, 2 * 2]]
    torch.testing.assert_close(overlap([g1, g2]), lam / 9)


def test_npk_is_input_gram_times_overlap():
    x = torch.randn(4, 3, dtype=torch.float64)
    gates = [torch.randint(0, 2, (4, 5)).double() for _ in range(3)]
    torch.testing.assert_close(npk(x, gates), (x @ x.T) * overlap(gates))


def test_alignment_known_value_and_singular_error():
    H = torch.diag(torch.tensor([2.0, 1.0, 1.0]))  # trace 4: H/trH = diag(1/2, 1/4, 1/4)
    assert alignment(H, torch.tensor([1.0, -1.0, 1.0])) == pytest.approx(2 + 4 + 4)
    with pytest.raises(ValueError, match="singular"):
        alignment(torch.ones(3, 3), torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(n, n\)"):
        alignment(torch.eye(3), torch.ones(4))
