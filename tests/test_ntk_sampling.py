"""Monte Carlo over value-weight draws: torch.func NTK draws, error against E[K_0] vs the number of draws."""

import numpy as np
import pytest
import torch

from dgnlib import stats
from dgnlib.core import theory
from dgnlib.core.models import DGN
from dgnlib.experiments import ntk_sampling


def _x(n: int = 4, d_in: int = 3) -> torch.Tensor:
    return torch.randn(n, d_in, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("variant", ["frnpf-ii", "frnpf-di", "linear"])
def test_ntk_draws_mean_converges_to_expected_ntk_with_the_models_own_gates(variant):
    model = DGN(3, 3, 3, variant=variant, bias=False, init="bernoulli", sigma=0.6, seed=4).double()
    x = _x()
    samples = ntk_sampling.ntk_draws(model, x, draws=200, seed=1)
    assert samples.shape == (200, 4, 4) and samples.dtype == torch.float64
    exact = theory.expected_ntk(x, model.gates(x), 0.6)
    err = ntk_sampling.relative_error(samples.mean(0), exact)
    assert err < 3 * ntk_sampling.predicted_error(samples.var(0), exact, 200)
    assert err < 0.1


def test_ntk_draws_are_ntks_of_fresh_bernoulli_value_weights_and_leave_the_model_alone():
    model = DGN(3, 3, 3, variant="frnpf-ii", bias=False, init="bernoulli", sigma=0.5, seed=2).double()
    x = _x()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = ntk_sampling.ntk_draws(model, x, draws=5, seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(first, ntk_sampling.ntk_draws(model, x, draws=5, seed=3))  # reproducible
    assert not torch.allclose(first[0], first[1])  # the draws differ
    # a sigma given explicitly scales a depth-3 NTK by (σ'/σ)^4, the same signs being drawn from the same seed
    scaled = ntk_sampling.ntk_draws(model, x, draws=5, sigma=1.0, seed=3)
    torch.testing.assert_close(scaled, first * (1.0 / 0.5) ** 4)


def test_ntk_draws_refuses_relu_and_bad_arguments():
    x = _x()
    with pytest.raises(ValueError, match="relu gates depend on the value weights"):
        ntk_sampling.ntk_draws(DGN(3, 3, 3, bias=False, init="bernoulli", seed=0).double(), x, draws=2)
    with pytest.raises(ValueError, match="sigma"):
        ntk_sampling.ntk_draws(DGN(3, 3, 3, variant="frnpf-ii", bias=False, seed=0).double(), x, draws=2)
    with pytest.raises(ValueError, match="draws"):
        ntk_sampling.ntk_draws(DGN(3, 3, 3, variant="linear", bias=False, init="bernoulli", seed=0), x, draws=0)


def test_relative_predicted_and_running_errors_on_known_samples():
    exact = torch.eye(2, dtype=torch.float64) * 2.0  # ‖exact‖_F = 2√2
    d = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)  # ‖d‖_F = √2
    samples = torch.stack([exact + d, exact - d, exact + d])
    errs = ntk_sampling.running_error(samples, exact, [1, 2, 3])
    np.testing.assert_allclose(errs, [0.5, 0.0, 0.5 / 3], atol=1e-15)
    var = torch.full((2, 2), 4.0, dtype=torch.float64)
    assert ntk_sampling.predicted_error(var, exact, 4) == pytest.approx(np.sqrt(16 / 4) / (2 * np.sqrt(2)))
    with pytest.raises(ValueError, match="only 3"):
        ntk_sampling.running_error(samples, exact, [4])


def test_error_vs_draws_shrinks_and_matches_the_predicted_error():
    x = _x(5, 4)
    gates = theory.bernoulli_gates(5, 6, 4, 0.5, seed=0)
    df = ntk_sampling.error_vs_draws(x, gates, 0.4, draws=[20, 1000], repeats=20, seed=1, batch=256)
    assert list(df.columns) == ["draws", "repeat", "rel_error", "predicted"] and len(df) == 40
    rms = df.groupby("draws")["rel_error"].apply(lambda e: float(np.sqrt((e**2).mean())))
    pred = df.groupby("draws")["predicted"].mean()
    assert rms[1000] < rms[20] / 4  # 1/√N: a factor 7 expected
    ratio = rms / pred
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio
    # the runs are independent: no two rows give the same error
    assert df["rel_error"].nunique() == len(df)


def test_error_vs_draws_rejects_bad_arguments():
    x = _x()
    gates = theory.bernoulli_gates(4, 3, 3, 0.5, seed=0)
    with pytest.raises(ValueError, match=">= 2"):
        ntk_sampling.error_vs_draws(x, gates, 0.5, draws=[1])
    with pytest.raises(ValueError, match="repeats"):
        ntk_sampling.error_vs_draws(x, gates, 0.5, draws=[4], repeats=0)


def test_loglog_slope_recovers_a_power_law():
    n = np.array([10, 100, 1000, 10000])
    assert stats.loglog_slope(n, 3.0 * n**-0.5) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="positive"):
        stats.loglog_slope([1, 2], [0.1, 0.0])


def test_fixed_gates_sources_and_a_dead_network_is_refused():
    x = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=1)
    net = ntk_sampling.fixed_gates(x, 3, 4, "network", 0.5, seed=2)
    bern = ntk_sampling.fixed_gates(x, 3, 4, "bernoulli", 0.5, seed=2)
    assert [g.shape for g in net] == [g.shape for g in bern] == [(5, 4), (5, 4)]
    assert torch.equal(net[0], ntk_sampling.fixed_gates(x, 3, 4, "network", 0.5, seed=2)[0])  # seeded
    exact = ntk_sampling.exact_mean(x, bern, 0.5)
    torch.testing.assert_close(exact, theory.expected_ntk(x, bern, 0.5))
    dead = [torch.zeros(5, 4, dtype=torch.float64)] * 2
    with pytest.raises(ValueError, match="every path is switched off"):
        ntk_sampling.exact_mean(x, dead, 0.5)
    with pytest.raises(ValueError, match="source must be"):
        ntk_sampling.fixed_gates(x, 3, 4, "random", 0.5, seed=0)
