"""Gate input-dependence: constructed layers whose answers are known."""

import pytest
import torch

from dgnlib.core.models import DGN, ConvDGN
from dgnlib.experiments.gatestats import gate_dependence


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


def test_run_network_builds_the_runs_network_and_loads_stored_weights():
    from dgnlib.engine.runs import DataSpec, GateSource, RunSpec
    from dgnlib.experiments.comparison import fc_model
    from dgnlib.experiments.gatestats import dependence_table, run_network

    data = DataSpec("synthetic", n_train=20, shape=(3,), n_classes=2)
    frnpf = RunSpec(fc_model(3, 4, 3, 2).replace(variant="frnpf-ii"), data, seed=1)
    net = run_network(frnpf)
    again = frnpf.model.build(frnpf.init_seed())  # what the sweep engine trains
    assert all(torch.equal(a, b) for a, b in zip(net.feature.parameters(), again.feature.parameters()))
    relu = RunSpec(fc_model(3, 4, 3, 2), data, seed=1, epochs=2)
    state = {k: torch.full_like(v, 0.5).numpy() for k, v in run_network(relu).state_dict().items()}
    loaded = run_network(relu, state)
    assert all(torch.all(p == 0.5) for p in loaded.parameters())
    flnpf = RunSpec(fc_model(3, 4, 3, 2).replace(variant="flnpf"), data, seed=1, epochs=2,
                    gate_source=GateSource(relu, 2))
    with pytest.raises(ValueError, match="relu run"):
        run_network(flnpf)
    with pytest.raises(ValueError, match="does not"):
        run_network(relu, {"nope": state["value.0.weight"]})
    x = torch.rand(30, 3, generator=torch.Generator().manual_seed(0))  # positive inputs
    table = dependence_table({"a": net, "b": loaded}, x)
    assert table["network"].tolist() == ["a"] * 2 + ["b"] * 2 and table.columns[0] == "network"
    # every weight and bias 0.5 and positive inputs: every pre-activation is positive, every gate always on
    assert table.loc[table["network"] == "b", "always_on"].tolist() == [1.0, 1.0]
