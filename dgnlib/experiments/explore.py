"""Explorers of the depth theory (figures 03 and 04): sliders in a live Jupyter frontend, a static figure elsewhere.

`spectrum_explorer` redraws the eigenvalue e.c.d.f. of the ideal E[K_0] and of sampled finite-width K_0, with their
condition numbers, for a depth, a width and a gate probability μ; `variance_explorer` redraws the relative variance of
the entries of K_0 against depth for one width. Both return an `Explorer`: shown in Jupyter it is a set of sliders
over a picture when a frontend can draw widgets, and a plain PNG otherwise (papermill, nbval, a terminal), so an
executed notebook keeps a figure. The environment variable DGN_WIDGETS=static|live overrides the detection.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from dgnlib.core import theory
from dgnlib.experiments import depth as depth_sweeps
from dgnlib.seeding import derive_seed

ENV = "DGN_WIDGETS"
WIDTHS = (10, 25, 50, 100, 200, 500)


def live_frontend() -> bool:
    """True when widgets can be drawn: DGN_WIDGETS says so, or an IPython kernel was started by a Jupyter frontend.

    papermill and nbval start kernels through jupyter_client, which leaves no frontend session: Jupyter Server sets
    JPY_SESSION_NAME for the kernels of its notebooks, VS Code defines `__vsc_ipynb_file__`, Colab loads google.colab.
    """
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in {"static", "0", "off", "false", "no"}:
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    if forced in {"live", "1", "on", "true", "yes"}:
        return True
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or "__vsc_ipynb_file__" in shell.user_ns
                or "google.colab" in sys.modules)


def _check(name: str, value: Any, low: float, high: float, integer: bool) -> None:
    """Bad input → a clear error naming the argument."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} in [{low}, {high}], got {value!r}")


def default_inputs(n: int = 20, dim: int = 10, seed: int = 0) -> torch.Tensor:
    """n unit-norm inputs in R^dim (the data of figures 03 and 04, smaller so that sliders respond at once)."""
    return depth_sweeps.unit_sphere_data(n, dim, seed)[0]


def spectrum_state(x: torch.Tensor, depth: int, width: int, mu: float, draws: int = 3, seed: int = 0) -> dict:
    """Eigenvalues (trace-normalised) and condition numbers of the ideal E[K_0] and of `draws` sampled K_0."""
    _check("depth", depth, 2, 64, True)
    _check("width", width, 1, 4096, True)
    _check("mu", mu, 1e-6, 1 - 1e-6, False)
    _check("draws", draws, 1, 256, True)
    ideal = theory.ideal_gram(x, depth, mu)
    sigma = math.sqrt(1.0 / (mu * width))
    sampled = theory.sample_ntk(x, width, depth, mu, sigma, draws=draws, seed=derive_seed(seed, "explore", width,
                                                                                           depth))
    eigs = [theory.eig_ecdf(k)[0] for k in sampled]
    return {
        "depth": depth, "width": width, "mu": mu, "draws": draws,
        "ideal_eigs": theory.eig_ecdf(ideal)[0], "ideal_cond": theory.condition_number(ideal),
        "sampled_eigs": np.sort(np.concatenate(eigs)),
        "sampled_cond": float(np.median([theory.condition_number(k) for k in sampled])),
    }


def draw_spectrum(state: dict) -> Figure:
    """The ideal and sampled e.c.d.f.s of one state, with the two condition numbers in the title."""
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for key, label, style in [("ideal_eigs", "ideal E[K_0]", dict(color="black", ls="--")),
                              ("sampled_eigs", f"sampled K_0, w = {state['width']} ({state['draws']} draws)",
                               dict(color="tab:blue"))]:
        vals = state[key]
        ax.step(vals, np.arange(1, len(vals) + 1) / len(vals), where="post", label=label, **style)
    ax.axvline(1.0, color="grey", lw=0.6, ls=":")
    ax.set(xscale="log", xlabel="eigenvalue / mean eigenvalue", ylabel="e.c.d.f.")
    ax.set_title(f"d = {state['depth']}, μ = {state['mu']:g}: κ ideal = {state['ideal_cond']:.3g}, "
                 f"κ sampled (median) = {state['sampled_cond']:.3g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def variance_state(x: torch.Tensor, width: int, mu: float, depths: Sequence[int] = (2, 4, 6, 8, 12, 16),
                   draws: int = 16, seed: int = 0) -> dict:
    """Relative variance of K_0 entries vs depth for one width (columns of `depth.entry_relative_variance`)."""
    _check("width", width, 1, 4096, True)
    _check("mu", mu, 1e-6, 1 - 1e-6, False)
    _check("draws", draws, 2, 4096, True)
    depths = list(depths)
    if len(depths) < 2 or sorted(set(depths)) != depths or depths[0] < 2:
        raise ValueError(f"depths must be at least 2 increasing integers >= 2, got {depths!r}")
    sigma = math.sqrt(1.0 / (mu * width))
    gates = theory.bernoulli_gates(x.shape[0], width, max(depths), mu, seed=derive_seed(seed, "explore-gates", width))
    rows = [{"depth": d, **depth_sweeps.entry_relative_variance(
        x, gates[: d - 1], sigma, draws, seed=derive_seed(seed, "explore-weights", width, d))} for d in depths]
    return {"width": width, "mu": mu, "draws": draws, "table": pd.DataFrame(rows)}


def draw_variance(state: dict) -> Figure:
    """Relative variance vs depth on log-log axes, with d/w and d²/w drawn for scale."""
    table, w = state["table"], state["width"]
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    d = table["depth"].to_numpy(dtype=float)
    ax.plot(d, table["relvar_diag"], "o-", label="diagonal entries")
    # off-diagonal fluctuations on the diagonal's scale: entrywise ratios blow up where E[K_0(s, s')] is near 0
    ax.plot(d, table["offdiag_noise"], "s-", label="off-diagonal, Var / (E K(s,s) E K(s',s'))")
    ax.plot(d, d / w, color="grey", ls=":", label="d / w")
    ax.plot(d, d**2 / w, color="grey", ls="--", label="d² / w")
    ax.set(xscale="log", yscale="log", xlabel="depth d (weight layers)", ylabel="Var[K_0] / E[K_0]²")
    ax.set_title(f"w = {w}, μ = {state['mu']:g}, {state['draws']} weight draws", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


class Explorer:
    """Sliders over a picture in a live frontend; the picture alone elsewhere. `update(**values)` recomputes."""

    def __init__(self, compute: Callable[..., dict], draw: Callable[[dict], Figure], values: dict,
                 sliders: dict[str, Callable[[Any], Any]], interactive: bool) -> None:
        self._compute, self._draw, self.values = compute, draw, dict(values)
        self.state = compute(**self.values)
        self.figure = draw(self.state)
        self.interactive = interactive
        self.controls: dict[str, Any] = {}
        self.widget = self._build(sliders) if self.interactive else None

    def _build(self, sliders: dict[str, Callable[[Any], Any]]) -> Any:
        """The slider panel; each change recomputes and swaps the picture."""
        import ipywidgets as widgets

        self._image = widgets.Image(value=_png(self.figure), format="png")
        for name, make in sliders.items():
            control = make(self.values[name])
            control.observe(lambda change, key=name: self.update(**{key: change["new"]}), names="value")
            self.controls[name] = control
        return widgets.VBox([widgets.HBox(list(self.controls.values())), self._image])

    def update(self, **values: Any) -> dict:
        """Recompute with new values (e.g. depth=12) and redraw; returns the new state."""
        unknown = set(values) - set(self.values)
        if unknown:
            raise ValueError(f"unknown explorer setting(s) {sorted(unknown)}: expected {sorted(self.values)}")
        self.state = self._compute(**{**self.values, **values})
        self.values.update(values)
        self.figure = self._draw(self.state)
        if self.widget is not None:
            self._image.value = _png(self.figure)
        return self.state

    def _repr_png_(self) -> bytes:
        """The static picture (papermill, nbval and any frontend without widgets show this)."""
        return _png(self.figure)

    def _ipython_display_(self) -> None:
        """Widgets when live, else the PNG."""
        from IPython.display import Image, display

        display(self.widget if self.widget is not None else Image(data=self._repr_png_()))


def _sliders(depth_max: int | None = None) -> dict[str, Callable[[Any], Any]]:
    """Slider factories for depth, width (a fixed ladder) and μ."""
    import ipywidgets as widgets

    common = dict(continuous_update=False, style={"description_width": "initial"})
    out: dict[str, Callable[[Any], Any]] = {
        "width": lambda v: widgets.SelectionSlider(options=sorted(set(WIDTHS) | {v}), value=v, description="width w",
                                                   **common),
        "mu": lambda v: widgets.FloatSlider(value=v, min=0.05, max=0.95, step=0.05, description="μ", **common),
    }
    if depth_max is not None:
        out["depth"] = lambda v: widgets.IntSlider(value=v, min=2, max=max(depth_max, v), description="depth d",
                                                   **common)
    return out


def spectrum_explorer(x: torch.Tensor | None = None, *, depth: int = 8, width: int = 100, mu: float = 0.5,
                      draws: int = 3, seed: int = 0, interactive: bool | None = None) -> Explorer:
    """Figure 03 explorer: sliders for depth, width and μ redraw the ideal/sampled spectrum and condition number."""
    x = default_inputs(seed=seed) if x is None else x

    def compute(depth: int, width: int, mu: float) -> dict:
        return spectrum_state(x, depth, width, mu, draws=draws, seed=seed)

    live = _wants(interactive)
    values = {"depth": depth, "width": width, "mu": mu}
    return Explorer(compute, draw_spectrum, values, _sliders(depth_max=32) if live else {}, live)


def variance_explorer(x: torch.Tensor | None = None, *, width: int = 50, mu: float = 0.5,
                      depths: Sequence[int] = (2, 4, 6, 8, 12, 16), draws: int = 16, seed: int = 0,
                      interactive: bool | None = None) -> Explorer:
    """Figure 04 explorer: sliders for width and μ redraw the relative variance of K_0 entries against depth."""
    x = default_inputs(seed=seed) if x is None else x

    def compute(width: int, mu: float) -> dict:
        return variance_state(x, width, mu, depths=depths, draws=draws, seed=seed)

    live = _wants(interactive)
    return Explorer(compute, draw_variance, {"width": width, "mu": mu}, _sliders() if live else {}, live)


def _wants(interactive: bool | None) -> bool:
    """Sliders or not: the caller's choice, else what `live_frontend` detects."""
    return live_frontend() if interactive is None else bool(interactive)
