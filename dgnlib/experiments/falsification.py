"""The falsification suite: for every figure, settings under which its claim must not come out *held*.

A verdict means something only if it can fail. Each `Falsifier` names a figure, a setting (parameter overrides on
top of the smoke profile's section for that notebook), the verdicts allowed under it (never *held*), and why the
claim cannot hold there: too few seeds to decide, a learning rate too small to train (the comparisons then presume
networks that learnt: `premises.require_learnt`), one so large that the runs diverge (non-finite: *invalid*, with
its dependants), or a tolerance no floating-point computation can meet (an identity that is really compared). The
tests run every entry through its notebook (`tests/test_falsification.py`) and the front page lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dgnlib.verdict import VERDICTS


@dataclass(frozen=True)
class Falsifier:
    """One setting of figure `figure` (notebook `notebook`) under which its verdict must be one of `allowed`."""

    figure: str
    notebook: str
    setting: dict = field(hash=False)
    allowed: tuple[str, ...]
    why: str
    fails_notebook: bool = False  # True when the setting breaks an identity: the record is written, then it stops

    def __post_init__(self) -> None:
        if "held" in self.allowed or not set(self.allowed) <= set(VERDICTS) or not self.allowed:
            raise ValueError(f"figure {self.figure}: allowed must be verdicts other than held, got {self.allowed}")


_UNDECIDED = ("inconclusive",)
_NOT_HELD = ("not held", "inconclusive")

SUITE: tuple[Falsifier, ...] = (
    Falsifier("01", "01_dgn_paths", {"tolerance": 1.0e-30}, ("not held",),
              "an identity checked to 1e-30, far below float64 round-off (about 1e-16 of values of order 1), must "
              "fail: the path sum is really compared with the forward pass, not with itself", fails_notebook=True),
    Falsifier("02", "02_expected_ntk", {"repeats": 2}, _UNDECIDED,
              "two repeats of the Monte Carlo experiment are too few to decide a part (at least three are needed)"),
    Falsifier("03", "03_depth_spectrum", {"draws": 2}, _UNDECIDED,
              "two weight draws per depth are too few to decide where κ(K_0) is smallest"),
    Falsifier("04", "04_depth_variance", {"draws": 20}, _UNDECIDED,
              "20 weight draws per cell are fewer than the 30 the bootstrap of the exponents needs to stand for "
              "their distribution"),
    Falsifier("05", "05_depth_training", {"n_seeds": 2}, _UNDECIDED,
              "two seeds are too few to decide where training is fastest"),
    Falsifier("06", "06_gate_adaptation_mnist", {"n_seeds": 3, "lr_adam": 1.0e-9, "lr_sgd": 1.0e-9}, _UNDECIDED,
              "a learning rate of 1e-9 (Adam and SGD) does not train: networks near chance decide no pair, whatever "
              "their gaps"),
    Falsifier("06", "06_gate_adaptation_mnist", {"n_seeds": 3, "optimizers": ["sgd"], "lr_sgd": 1.0e6}, ("invalid",),
              "SGD with a learning rate of 1e6 diverges: its runs are non-finite, and so the figure is invalid"),
    Falsifier("06", "06_gate_adaptation_mnist", {"n_seeds": 3, "lr_adam": 1.0e6}, ("invalid",),
              "a learning rate of 1e6 diverges: every run is non-finite, and flnpf, whose relu source diverged, is "
              "not trained"),
    Falsifier("07", "07_npk_alignment", {"lr": 1.0e-9}, _NOT_HELD,
              "a learning rate of 1e-9 does not train relu: its gates hardly move, and the gate part is "
              "inconclusive"),
    Falsifier("07", "07_npk_alignment", {"lr": 1.0e9}, ("invalid",),
              "a learning rate of 1e9 diverges: the runs are non-finite"),
    Falsifier("08", "08_continuous_gate_learning", {"lr": 1.0e6}, ("invalid",),
              "a learning rate of 1e6 diverges: relu and every flnpf copying its gates are invalid"),
    Falsifier("09", "09_soft_gating", {"n_seeds": 2}, _UNDECIDED,
              "two seeds are too few to decide any part"),
    Falsifier("10", "10_cifar10_conv", {"optimizer": "sgd", "lr_sgd_vconv": 1.0e6, "lr_sgd_gconv": 1.0e6},
              ("invalid",), "SGD with a learning rate of 1e6 diverges in both architectures"),
)


def table() -> pd.DataFrame:
    """The suite as a table for the front page: figure, setting, verdict expected, why."""
    rows = [{"figure": f.figure, "setting (on the smoke profile)": ", ".join(f"{k} = {v}" for k, v in
                                                                              f.setting.items()),
             "verdict must be": " or ".join(f.allowed), "why": f.why} for f in SUITE]
    return pd.DataFrame(rows)


def markdown() -> str:
    """The suite as a Markdown table (what the front page shows)."""
    frame = table()
    cells = [[str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
