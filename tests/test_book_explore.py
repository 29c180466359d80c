"""Explorers of figures 03 and 04: closed-form numbers, slider updates, and the static fallback without a frontend."""

import nbformat
import numpy as np
import pytest
import torch

from dgnlib.core import theory
from dgnlib.experiments import explore
from dgnlib.names import repo_root

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_frontend(monkeypatch):
    monkeypatch.delenv(explore.ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


def test_without_a_kernel_the_explorer_is_a_static_picture():
    assert explore.live_frontend() is False
    ex = explore.spectrum_explorer(depth=4, width=10, draws=1)
    assert ex.widget is None and ex.controls == {}
    assert ex._repr_png_().startswith(PNG)


def test_the_environment_variable_overrides_the_detection(monkeypatch):
    monkeypatch.setenv(explore.ENV, "live")
    assert explore.live_frontend() is True
    monkeypatch.setenv(explore.ENV, "static")
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/03_depth_spectrum.ipynb")
    assert explore.live_frontend() is False


def test_ideal_condition_number_is_the_closed_form():
    x = explore.default_inputs(n=20, dim=10, seed=3)
    state = explore.spectrum_state(x, depth=5, width=10, mu=0.5, draws=2, seed=3)
    lam = torch.linalg.eigvalsh(x @ x.T).numpy()
    m = 0.5**4
    expected = (m * lam.max() + 1 - m) / (m * max(lam.min(), 0.0) + 1 - m)  # n > dim: Σ is singular, λ_min = 0
    assert state["ideal_cond"] == pytest.approx(expected, rel=1e-9)
    assert len(state["sampled_eigs"]) == 2 * 20 and np.isfinite(state["sampled_cond"])
    assert np.mean(state["ideal_eigs"]) == pytest.approx(1.0)


def test_moving_a_slider_recomputes_and_redraws():
    ex = explore.spectrum_explorer(depth=3, width=10, mu=0.5, draws=1, interactive=True)
    before = bytes(ex._image.value)
    ex.controls["depth"].value = 9
    assert ex.values["depth"] == 9 and ex.state["depth"] == 9
    x = explore.default_inputs()
    assert ex.state["ideal_cond"] == pytest.approx(theory.condition_number(theory.ideal_gram(x, 9, 0.5)))
    assert bytes(ex._image.value) != before and bytes(ex._image.value).startswith(PNG)
    ex.controls["mu"].value = 0.25
    assert ex.state["mu"] == 0.25


def test_variance_explorer_tabulates_every_depth_and_grows_on_the_diagonal():
    ex = explore.variance_explorer(width=10, depths=(2, 4, 8), draws=32, interactive=True)
    table = ex.state["table"]
    assert table["depth"].tolist() == [2, 4, 8]
    assert np.all(np.isfinite(table[["relvar_diag", "offdiag_noise"]].to_numpy()))
    assert table["relvar_diag"].iloc[-1] > table["relvar_diag"].iloc[0]  # d = 8 vs 2 at w = 10: a large gap
    ex.controls["width"].value = 25
    assert ex.state["width"] == 25


@pytest.mark.parametrize("bad", [dict(depth=1), dict(width=0), dict(mu=1.0), dict(mu=True)])
def test_bad_settings_are_clear_errors(bad):
    args = dict(depth=3, width=10, mu=0.5) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        explore.spectrum_state(explore.default_inputs(), **args)
    with pytest.raises(ValueError, match="unknown explorer setting"):
        explore.spectrum_explorer(depth=3, width=10, draws=1).update(depht=4)


def test_under_a_headless_kernel_the_output_is_a_png_not_a_widget():
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from dgnlib.experiments import explore\nexplore.spectrum_explorer(depth=3, width=10, draws=1)")])
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(repo_root())}}).execute()
    outputs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
