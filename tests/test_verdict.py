"""Verdicts: the four words, paired / trend / equivalence parts, their error rates under the null, conclude()."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from dgnlib import record
from dgnlib import verdict as v

matplotlib.use("Agg")


def test_paired_held_not_held_inconclusive_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.5, 1.0, 2.0, 3.0]  # differences 1, 1.5, 2, 2, 2
    part = v.paired(a, b, name="a beats b")
    assert part.verdict == "held" and part.n == 5 and part.estimate == pytest.approx(1.7)
    half = 2.776445 * np.std([1, 1.5, 2, 2, 2], ddof=1) / np.sqrt(5)
    assert part.interval == pytest.approx((1.7 - half, 1.7 + half))
    assert v.paired(b, a).verdict == "not held"
    assert v.paired(a, b, side="less").verdict == "not held"
    assert v.paired([1.0, 2.0, 3.0], [1.5, 1.5, 2.5]).verdict == "inconclusive"  # differences −.5, .5, .5


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_seeds_are_inconclusive_whatever_the_effect(n):
    part = v.paired([100.0 + k for k in range(n)], [0.0] * n)
    assert part.verdict == "inconclusive" and "at least 3" in part.detail
    assert v.paired([100.0, 101.0], [0.0, 0.0], method="bootstrap").verdict == "inconclusive"
    assert v.trend([[1.0, 2.0, 3.0]] * n, [1, 2, 3]).verdict == "inconclusive"
    assert v.equivalent([1.0] * n, [1.0] * n, tolerance=1.0).verdict == "inconclusive"


def test_invalid_when_non_finite_or_flagged():
    assert v.paired([1.0, float("nan"), 3.0], [0.0, 0.0, 0.0]).verdict == "invalid"
    assert v.paired([5.0, 6.0, 7.0], [0.0, 0.0, float("inf")]).verdict == "invalid"
    flagged = v.paired([5.0, 6.0, 7.0], [0.0, 0.0, 0.0], invalid=[False, True, False])
    assert flagged.verdict == "invalid" and "flagged invalid" in flagged.detail
    assert v.trend([[1.0, 2.0, float("nan")]] * 3, [1, 2, 3]).verdict == "invalid"
    assert v.equivalent([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], tolerance=0.1, invalid=True).verdict == "invalid"


def test_paired_by_mapping_keys_and_mismatch_is_an_error():
    part = v.paired({"s1": 3.0, "s2": 4.0, "s3": 5.0}, {"s3": 1.0, "s1": 1.0, "s2": 1.5})
    assert part.verdict == "held" and part.numbers["per_seed"] == {"s1": 2.0, "s2": 2.5, "s3": 4.0}
    with pytest.raises(ValueError, match="only in a"):
        v.paired({"s1": 1.0, "s2": 1.0}, {"s1": 1.0})
    with pytest.raises(ValueError, match="equally long"):
        v.paired([1.0, 2.0], [1.0])


def _rates(verdicts):
    return {w: sum(x == w for x in verdicts) / len(verdicts) for w in v.VERDICTS}


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_paired_under_the_null_is_rarely_held_and_mostly_inconclusive(method):
    rng = np.random.default_rng(20240611)
    verdicts = [v.paired(rng.normal(size=5), rng.normal(size=5), method=method, n_boot=400, seed=k).verdict
                for k in range(400)]
    rates = _rates(verdicts)
    assert rates["held"] <= (0.05 if method == "t" else 0.08)  # bootstrap under-covers at n = 5
    assert rates["inconclusive"] >= (0.9 if method == "t" else 0.84)


def test_paired_detects_a_real_effect_with_enough_seeds():
    rng = np.random.default_rng(1)
    verdicts = [v.paired(rng.normal(1.5, 1, 8), rng.normal(0, 1, 8)).verdict for _ in range(200)]
    assert _rates(verdicts)["held"] > 0.7


def test_trend_under_the_null_and_with_an_effect():
    rng = np.random.default_rng(7)
    levels = [2, 4, 8, 16, 32]
    null = [v.trend(rng.normal(size=(5, 5)), levels).verdict for _ in range(400)]
    assert _rates(null)["held"] <= 0.05 and _rates(null)["inconclusive"] >= 0.9
    rising = v.trend(np.log(levels) + rng.normal(0, 0.3, (5, 5)), levels)
    assert rising.verdict == "held" and rising.estimate > 0.5
    assert v.trend(-np.log(levels) + rng.normal(0, 0.3, (5, 5)), levels).verdict == "not held"
    # per-seed levels (e.g. each seed's condition numbers), and a constant row counts as no trend
    part = v.trend([[1, 2, 3], [5, 5, 5], [1, 3, 2]], [[1, 2, 3], [3, 2, 1], [1, 2, 3]])
    assert part.numbers["per_seed"]["1"] == 0.0 and part.n == 3


def test_equivalence_tost():
    close = v.equivalent([1.0, 1.01, 0.99, 1.0], [1.0, 1.0, 1.0, 1.005], tolerance=0.05)
    assert close.verdict == "held" and close.level == pytest.approx(0.90)
    far = v.equivalent([2.0, 2.1, 1.9, 2.0], [1.0, 1.0, 1.0, 1.0], tolerance=0.05)
    assert far.verdict == "not held"
    assert v.equivalent([0.9, 0.92, 0.91], [1.0, 1.0, 1.0], tolerance=0.2, side="greater").verdict == "held"
    assert v.equivalent([0.5, 0.52, 0.51], [1.0, 1.0, 1.0], tolerance=0.2, side="greater").verdict == "not held"
    noisy = v.equivalent([1.0, 1.3, 0.7], [1.0, 1.0, 1.0], tolerance=0.05)
    assert noisy.verdict == "inconclusive"
    rng = np.random.default_rng(3)  # a true difference of exactly the tolerance: held rarely
    edge = [v.equivalent(rng.normal(0.1, 0.05, 5), np.zeros(5), tolerance=0.1).verdict for _ in range(400)]
    assert _rates(edge)["held"] <= 0.06


def _part(word):
    return v.Part("p", word, "s", 0.0, (0.0, 0.0), 3, 0.95, "t")


@pytest.mark.parametrize(
    "words, expected",
    [(["held", "held"], "held"), (["held", "inconclusive"], "inconclusive"), (["inconclusive", "not held"], "not held"),
     (["not held", "invalid", "held"], "invalid"), (["held"], "held")],
)
def test_combine(words, expected):
    assert v.combine([_part(w) for w in words]) == expected


def test_combine_rule_is_stated_and_words_are_checked():
    assert "Any part invalid → invalid" in v.RULE and "fewer than three" in v.RULE
    with pytest.raises(ValueError):
        v.combine([])
    with pytest.raises(ValueError, match="unknown verdict"):
        _part("partly held")
    with pytest.raises(ValueError, match="kind"):
        v.Check("c", True, kind="claim")


def test_find_nonfinite_everywhere():
    import torch

    tree = {"a": [1, float("nan")], "b": {"c": np.array([[1.0, np.inf]])}, "k": torch.tensor([0.0, float("nan")]),
            "df": pd.DataFrame({"x": [1.0, 2.0], "y": [np.nan, 1.0], "s": ["u", "v"]}), "ok": None, "t": "nan"}
    assert v.find_nonfinite(tree) == ["a[1]", "b.c[0,1]", "k[1]", "df.y[0]"]
    assert v.is_finite_tree({"a": [1, 2.5], "b": np.ones(3), "c": None}) and not v.is_finite_tree(float("-inf"))


def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2])
    return fig


def test_conclude_writes_four_files_and_deterministic_pdf(tmp_path):
    parts = [v.paired([3.0, 4.0, 5.0], [1.0, 1.0, 1.5], name="a beats b")]
    checks = [v.Check("identity holds", True, "max error 1e-15", error=1e-15),
              v.Check("in regime", True, kind="sanity")]
    fig, df = _figure(), pd.DataFrame({"x": [1, 2], "y": [0.5, np.nan]})
    rec = record.conclude("99", "a claim", parts, checks, params={"profile": "smoke", "n": 3}, numbers={"r": np.nan},
                     fig=fig, table=df, out_dir=tmp_path / "a")
    assert rec["verdict"] == "held" and rec["profile"] == "smoke"
    on_disk = json.loads((tmp_path / "a" / "99.json").read_text())
    assert on_disk == rec and list(on_disk) == ["id", "claim", "profile", "verdict", "parts", "checks", "numbers",
                                                 "parameters"]
    assert on_disk["parts"][0]["interval"] and on_disk["checks"][1]["kind"] == "sanity"
    assert on_disk["numbers"]["r"] is None and on_disk["parameters"] == {"profile": "smoke", "n": 3}
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"99.png", "99.pdf", "99.csv", "99.json"}
    record.conclude("99", "a claim", parts, checks, params={"profile": "smoke", "n": 3}, fig=fig,
                    out_dir=tmp_path / "b")
    for ext in ("pdf", "png"):
        assert (tmp_path / "a" / f"99.{ext}").read_bytes() == (tmp_path / "b" / f"99.{ext}").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a" / "99.pdf").read_bytes()


def test_conclude_records_then_raises_on_a_failed_check(tmp_path):
    class P:  # the params object of params.bind: anything with as_dict()
        def as_dict(self):
            return {"profile": "quick", "lr": 1.0}

    parts = [v.paired([3.0, 4.0, 5.0], [1.0, 1.0, 1.5])]
    with pytest.raises(v.IdentityError, match="identity check 'npk = Σ⊙Λ' failed") as err:
        record.conclude("98", "c", parts, [v.Check("npk = Σ⊙Λ", False, "error 0.3")], params=P(), out_dir=tmp_path)
    assert isinstance(err.value, AssertionError)
    rec = json.loads((tmp_path / "98.json").read_text())
    assert rec["checks"][0]["passed"] is False and rec["parameters"]["lr"] == 1.0
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="profile"):
        record.conclude("97", "c", parts, [], params={}, out_dir=tmp_path)
    # no parts: the claim is its identities
    assert record.conclude("96", "c", [], [v.Check("x", True)], params={"profile": "smoke"}, out_dir=tmp_path)[
        "verdict"] == "held"


def test_parts_table_lists_parts_then_checks():
    df = record.parts_table([v.paired([3.0, 4.0, 5.0], [1.0, 1.0, 1.5], name="a beats b")],
                            [v.Check("x", False, "bad")])
    assert list(df["what"]) == ["claim: a beats b", "identity: x"] and list(df["verdict"]) == ["held", "FAILED"]


def test_a_spearman_interval_stays_within_minus_one_and_one():
    rising = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 3, 2, 4]]  # per-seed ρ = 1, 1, 0.8: the t interval's top is above 1
    part = v.trend(rising, [1, 2, 3, 4], side="greater")
    assert part.verdict == "held" and part.interval[1] == 1.0 and -1.0 <= part.interval[0] < 1.0
    falling = [[4, 3, 2, 1], [4, 3, 2, 1], [4, 2, 3, 1]]
    assert v.trend(falling, [1, 2, 3, 4], side="less").interval[0] == -1.0
