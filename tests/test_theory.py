"""Theory: the expected NTK with fixed gates, the ideal Gram matrix, Monte Carlo moments."""

import pytest
import torch

from dgnlib.core import theory
from dgnlib.core.kernels import ntk
from dgnlib.core.models import DGN


def _rel_fro(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("depth", [2, 4])
def test_monte_carlo_mean_of_empirical_ntk_matches_expected_ntk(depth):
    """2000 Bernoulli ±σ draws of the value weights, the gates fixed by a frozen feature network (torch.func NTK)."""
    width, draws, sigma = 6, 2000, 0.5
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gates = DGN(3, width, depth, variant="frnpf-ii", bias=False, seed=0).double().gates(x)
    total = torch.zeros(5, 5, dtype=torch.float64)
    for k in range(draws):
        model = DGN(3, width, depth, variant="frnpf-ii", bias=False, init="bernoulli", sigma=sigma, seed=k).double()
        model.feature.load_state_dict(
            DGN(3, width, depth, variant="frnpf-ii", bias=False, seed=0).double().feature.state_dict()
        )
        total += ntk(model, x)
    assert _rel_fro(total / draws, theory.expected_ntk(x, gates, sigma)) < 0.05


def test_ntk_moments_mean_matches_expected_ntk_and_error_shrinks_with_draws():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gates = theory.bernoulli_gates(6, 10, 4, 0.5, seed=0)
    exact = theory.expected_ntk(x, gates, sigma=0.3)
    errs = [_rel_fro(theory.ntk_moments(x, gates, 0.3, draws=n, seed=3)[0], exact) for n in (50, 5000)]
    assert errs[1] < 0.03 and errs[1] < errs[0]


def test_ntk_moments_variance_matches_a_direct_estimate():
    x = torch.randn(4, 3, dtype=torch.float64)
    gates = theory.bernoulli_gates(4, 5, 3, 0.5, seed=1)
    mean, var = theory.ntk_moments(x, gates, 0.4, draws=40, seed=2, batch=7)
    from dgnlib.core.kernels import value_ntk

    samples = torch.cat(
        [
            value_ntk(x, gates, theory.bernoulli_weights(3, 5, 3, 0.4, draws=b, seed=2 * 1_000_003 + i))
            for i, b in enumerate([7, 7, 7, 7, 7, 5])
        ]
    )
    torch.testing.assert_close(mean, samples.mean(0))
    torch.testing.assert_close(var, samples.var(0))


def test_ideal_gram_is_the_gate_average_of_the_expected_ntk():
    """Average expected_ntk over many Bernoulli(μ) gate draws with σ² = 1/(μw): it tends to ideal_gram."""
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mu, width, depth = 0.5, 20, 3
    sigma = (1 / (mu * width)) ** 0.5
    avg = (
        sum(theory.expected_ntk(x, theory.bernoulli_gates(4, width, depth, mu, seed=s), sigma) for s in range(3000))
        / 3000
    )
    assert _rel_fro(avg, theory.ideal_gram(x, depth, mu)) < 0.03


def test_ideal_gram_becomes_diagonal_with_depth():
    x = torch.nn.functional.normalize(torch.randn(30, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    conds = [theory.condition_number(theory.ideal_gram(x, d, 0.5)) for d in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(conds, conds[1:]))
    g = theory.ideal_gram(x, 40, 0.5)
    torch.testing.assert_close(g, torch.diag(torch.diag(g)), atol=1e-9, rtol=0)


def test_eig_ecdf_and_condition_number():
    evals, cdf = theory.eig_ecdf(torch.diag(torch.tensor([1.0, 2.0, 3.0])))
    assert evals.tolist() == pytest.approx([0.5, 1.0, 1.5]) and cdf.tolist() == pytest.approx([1 / 3, 2 / 3, 1])
    assert theory.condition_number(torch.diag(torch.tensor([1.0, 4.0]))) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="mu"):
        theory.bernoulli_gates(3, 4, 3, 1.5, seed=0)
