"""The falsification suite (`dgnlib.experiments.falsification`): every figure run under a setting where its claim must
not come out held, through its notebook (papermill, smoke sizes, a private run store and output folder)."""

from __future__ import annotations

import json

import papermill
import pytest
import yaml

from dgnlib.experiments import falsification
from dgnlib.names import repo_root

SMOKE = yaml.safe_load((repo_root() / "profiles" / "smoke.yaml").read_text())


def test_every_figure_has_a_falsifier_and_none_allows_held():
    assert {f.figure for f in falsification.SUITE} == {f"{i:02d}" for i in range(1, 11)}
    assert all("held" not in f.allowed and f.why for f in falsification.SUITE)
    with pytest.raises(ValueError, match="other than held"):
        falsification.Falsifier("01", "01_dgn_paths", {}, ("held",), "no")
    assert len(falsification.table()) == len(falsification.SUITE)


@pytest.mark.parametrize("entry", falsification.SUITE, ids=lambda f: f"{f.figure}-{'-'.join(map(str, f.setting))}")
def test_the_claim_does_not_come_out_held(entry, tmp_path, monkeypatch):
    monkeypatch.setenv("DGN_RUNNER", "falsification")
    monkeypatch.setenv("DGN_RUN_STORE", str(tmp_path / "runs"))
    monkeypatch.setenv("DGN_THREADS", "1")
    monkeypatch.setenv("DGN_WORKERS", "1")
    out = tmp_path / "figures"
    parameters = {**SMOKE.get(entry.notebook, {}), **entry.setting, "profile": "smoke", "out_dir": str(out)}
    try:
        papermill.execute_notebook(str(repo_root() / "notebooks" / f"{entry.notebook}.ipynb"),
                                   str(tmp_path / "run.ipynb"), parameters=parameters, kernel_name="python3",
                                   cwd=str(repo_root()), progress_bar=False)
        failed = False
    except papermill.PapermillExecutionError as err:
        failed = True
        assert entry.fails_notebook and "IdentityError" in str(err), str(err)[-2000:]
    assert failed == entry.fails_notebook
    record = json.loads((out / f"{entry.figure}.json").read_text())
    assert record["verdict"] in entry.allowed, (record["verdict"], [(p["name"], p["verdict"]) for p in record["parts"]])


def test_the_front_page_lists_the_suite():
    text = falsification.markdown()
    assert text.count("\n") == len(falsification.SUITE) + 1 and "lr_adam = 1e-09" in text
    page = (repo_root() / "notebooks" / "00_index.ipynb").read_text()
    assert "falsification.markdown()" in page
