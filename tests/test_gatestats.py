"""Gate input-dependence: constructed layers whose answers are known."""

import pytest
import torch

from dgnlib.gatestats import gate_dependence
from dgnlib.models import DGN, ConvDGN


def test_zero_input_weights_give_constant_gates_and_share_zero():
    model = DGN(4, 6, 3, variant="frnpf-ii", seed=0).double()
    with torch.no_grad():
        model.feature[0].weight.zero_()
        model.feature[0].bias.copy_(torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]))
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    df = gate_dependence(model, x, batch=7)
    first = df.iloc[0]
    assert first["always_on"] == 0.5 and first["always_off"] == 0.5 and first["on_fraction"] == 0.5
    assert first["input_share"] == pytest.approx(0.0, abs=1e-12)
    assert df.iloc[1]["input_share"] == pytest.approx(0.0, abs=1e-12)  # its input is the same for every x
    assert list(df["layer"]) == [1, 2] and list(df["units"]) == [6, 6]


def test_symmetric_inputs_and_no_bias_give_share_one_and_no_constant_gate():
    model = DGN(4, 8, 2, variant="relu", bias=False, init="glorot", seed=3).double()
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    df = gate_dependence(model, torch.cat([x, -x]))
    assert df.iloc[0]["input_share"] == pytest.approx(1.0) and df.iloc[0]["on_fraction"] == pytest.approx(0.5)
    assert df.iloc[0]["always_on"] == 0 and df.iloc[0]["always_off"] == 0


def test_batches_do_not_change_the_answer_and_conv_counts_positions():
    model = ConvDGN(in_channels=1, image_size=4, channels=(3,), dense=(5,), variant="frnpf-ii", seed=0).double()
    x = torch.randn(9, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = gate_dependence(model, x, batch=2), gate_dependence(model, x, batch=100)
    assert list(a["units"]) == [3 * 16, 5]
    for col in ("always_on", "always_off", "on_fraction", "input_share"):
        assert a[col].to_numpy() == pytest.approx(b[col].to_numpy())
    assert ((a["input_share"] > 0) & (a["input_share"] <= 1)).all()


def test_linear_has_all_gates_on_and_bad_input_is_an_error():
    df = gate_dependence(DGN(3, 4, 3, variant="linear", seed=0), torch.randn(5, 3))
    assert (df["always_on"] == 1).all() and (df["input_share"] == 0).all()
    with pytest.raises(TypeError):
        gate_dependence(torch.nn.Linear(3, 1), torch.randn(5, 3))
    with pytest.raises(ValueError):
        gate_dependence(DGN(3, 4, 3, seed=0), torch.randn(3))
