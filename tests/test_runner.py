"""The runner on tiny temporary notebooks: validation, failure handling, cache, manifest, README, render."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dgnlib import runner
from dgnlib.cli import main

PARAMS = """profile = "paper"  # smoke | quick | paper
out_dir = "figures"  # where outputs go
seed = 0  # master seed
n = 3  # a count
lr = 1.0e-3  # a step size
depths = [2, 4]  # depths to try
fail = False  # raise on purpose
"""

BODY = """import json, pathlib
out = pathlib.Path(out_dir)
(out / "{id}.csv").write_text(f"n,seed,lr\\n{{n}},{{seed}},{{lr}}\\n")
if fail:
    raise RuntimeError("boom on purpose")
(out / "{id}.png").write_bytes(b"not really a png {id}")
(out / "{id}.json").write_text(json.dumps({{"claim": "claim {id}", "verdict": "held", "profile": profile}}))
"""


def write_notebook(folder: Path, stem: str) -> Path:
    """A tiny notebook with a parameters cell and a cell that writes <out_dir>/<id>.csv/.png/.json."""
    nb = new_notebook(cells=[
        new_markdown_cell(f"# {stem}"),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(BODY.format(id=stem[:2])),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository-shaped folder with two notebooks, a smoke profile, a README with markers, a fake source."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles").mkdir()
    write_notebook(tmp_path / "notebooks", "01_flaky")
    write_notebook(tmp_path / "notebooks", "02_ok")
    (tmp_path / "profiles" / "smoke.yaml").write_text("# smoke\n02_ok:\n  n: 5\n")
    (tmp_path / "README.md").write_text("# t\n\n<!-- figures:start -->\nold\n<!-- figures:end -->\n\nend\n")
    source = tmp_path / "fake_dgnlib.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(runner, "source_files", lambda: [source])
    monkeypatch.setattr(runner, "data_checksums", lambda: None)
    return tmp_path


def dgn(root: Path, *args: str) -> int:
    """Run `dgn --root <root> ...` in this process."""
    return main(["--root", str(root), *args])


def no_execution(*args, **kwargs):
    """Stand-in for runner.execute in tests where nothing may run."""
    raise AssertionError("a notebook was executed")


@pytest.mark.parametrize(
    ("profile_text", "extra", "expected"),
    [
        ("01_flaky:\n  nn: 4\n", [], ["profiles/smoke.yaml", "01_flaky", "'nn'", "did you mean 'n'"]),
        ("01_flaky:\n  n: 4.5\n", [], ["profiles/smoke.yaml", "01_flaky", "'n'", "expects int"]),
        ("01_flaky:\n  lr: 1e-3\n", [], ["'lr'", "expects float", "1.0e-3"]),
        ("01_flaky:\n  depths: [2, x]\n", [], ["'depths'", "list of int"]),
        ("01_flaky:\n  fail: 1\n", [], ["'fail'", "expects bool"]),
        ("01_flaky: [1, 2\n", [], ["profiles/smoke.yaml", "malformed YAML"]),
        ("03_missing:\n  n: 1\n", [], ["'03_missing'", "names no notebook"]),
        ("01_flaky:\n  out_dir: x\n", [], ["'out_dir' is set by the runner"]),
        ("", ["--set", "n=abc"], ["--set", "01_flaky", "'n'", "expects int"]),
        ("", ["--set", "01.missing=1"], ["--set", "01_flaky", "'missing'"]),
        ("", ["--only", "07"], ["--only 07", "01, 02"]),
    ],
)
def test_bad_input_exits_2_before_running(repo, monkeypatch, capsys, profile_text, extra, expected):
    (repo / "profiles" / "smoke.yaml").write_text(profile_text)
    monkeypatch.setattr(runner, "execute", no_execution)
    assert dgn(repo, "reproduce", "--profile", "smoke", *extra) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert not (repo / "build").exists() and not (repo / "figures").exists()


def test_missing_profile_file_and_prepare_validate_too(repo, monkeypatch, capsys):
    monkeypatch.setattr(runner, "execute", no_execution)
    assert dgn(repo, "reproduce", "--profile", "quick") == 2
    assert "profiles/quick.yaml" in capsys.readouterr().err
    (repo / "profiles" / "smoke.yaml").write_text("02_ok:\n  seed: '1'\n")
    assert dgn(repo, "prepare", "--profile", "smoke") == 2
    assert "'seed' expects int" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "default", "ok"),
    [(3, 1, True), (True, 1, False), (3, 1.0, True), (1.5, 1, False), ("a", "b", True), (1, "b", False),
     (False, True, True), (1, True, False), ([1, 2], [3], True), ([1.5], [3], False), ([], [3], True),
     ("x", None, True), ([1, "a"], [], True), ({"a": 1}, {}, True), ([1], (2, 3), True)],
)
def test_type_compatibility(value, default, ok):
    assert runner.compatible(value, default) is ok


def test_prepare_writes_parameterised_copies(repo):
    assert dgn(repo, "prepare", "--profile", "smoke", "--dest", "build/nbval", "--set", "02.seed=7") == 0
    nb = nbformat.read(repo / "build" / "nbval" / "02_ok.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "n = 5" in injected.source and "seed = 7" in injected.source and 'profile = "smoke"' in injected.source
    assert f'out_dir = "{(repo / "build" / "nbval" / "figures").resolve()}"' in injected.source
    assert all("outputs" not in c or not c.outputs for c in nb.cells)  # prepared, not executed
    assert not (repo / "figures").exists()


def test_interrupt_leaves_nothing_half_done(repo, monkeypatch):
    def interrupted(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute", interrupted)
    assert dgn(repo, "reproduce", "--profile", "smoke") == 130
    assert not (repo / "figures" / "MANIFEST.json").exists()
    assert not (repo / "build" / "cache").exists() and not (repo / "build" / "executed" / "smoke").exists()


def test_run_cache_failure_keep_going_render(repo, monkeypatch, capsys):
    figures = repo / "figures"
    # 1. Both notebooks run (two worker processes); outputs, manifest, cache, README.
    assert dgn(repo, "reproduce", "--profile", "smoke", "--jobs", "2") == 0
    assert "executed 01_flaky" in capsys.readouterr().err
    manifest = json.loads((figures / "MANIFEST.json").read_text())
    entry = manifest["figures"]["02"]
    assert entry["notebook"] == "notebooks/02_ok.ipynb" and entry["profile"] == "smoke"
    assert entry["parameters"]["n"] == 5 and entry["parameters"]["out_dir"] == "figures"
    assert entry["claim"] == "claim 02" and entry["verdict"] == "held"
    assert set(entry["outputs"]) == {"02.csv", "02.png", "02.json"}
    assert entry["outputs"]["02.csv"] == runner.sha256_file(figures / "02.csv")
    assert "smoke" in entry["run_seconds_by_profile"] and {"python", "torch", "dgnlib"} <= set(entry["versions"])
    assert (figures / "02.csv").read_text() == "n,seed,lr\n5,0,0.001\n"
    readme = (repo / "README.md").read_text()
    assert "| 01 | claim 01 | [01_flaky](notebooks/01_flaky.ipynb) | held (smoke)" in readme
    assert '<img src="figures/02.png" width="160">' in readme and "old" not in readme and readme.endswith("end\n")
    assert (repo / "build" / "executed" / "smoke" / "01_flaky.ipynb").is_file()
    assert not list((repo / "build" / "tmp").rglob("*.*"))

    # 2. A second identical run is served from the cache: nothing executes.
    monkeypatch.setattr(runner, "execute", no_execution)
    assert dgn(repo, "reproduce", "--profile", "smoke") == 0
    err = capsys.readouterr().err
    assert "cached   01_flaky" in err and "cached   02_ok" in err and "2 cached" in err
    monkeypatch.undo()
    source = repo / "fake_dgnlib.py"
    monkeypatch.setattr(runner, "source_files", lambda: [source])
    monkeypatch.setattr(runner, "data_checksums", lambda: None)

    # 3. The reading copy.
    assert dgn(repo, "render") == 0
    index = (repo / "build" / "html" / "index.html").read_text()
    assert 'href="01_flaky.html"' in index and "claim 02" in index and "data:image/png;base64," in index

    # 4. A dgnlib source change invalidates the cache; 01 now fails, 02 still runs with --keep-going.
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    cache_01 = (repo / "build" / "cache" / "smoke" / "01.json").read_bytes()
    source.write_text("A = 2\n")
    (repo / "profiles" / "smoke.yaml").write_text("01_flaky:\n  fail: true\n02_ok:\n  n: 5\n")
    assert dgn(repo, "reproduce", "--profile", "smoke", "--keep-going") == 1
    err = capsys.readouterr().err
    assert "FAILED   01_flaky" in err and "cell 3 (In [3])" in err and "RuntimeError: boom on purpose" in err
    assert "build/executed/smoke/01_flaky.failed.ipynb" in err
    assert "running  02_ok (smoke profile; dgnlib sources (fake_dgnlib.py) changed)" in err and "executed 02_ok" in err
    for name in ("01.csv", "01.json", "01.png"):
        assert (figures / name).read_bytes() == before[name]
    after = json.loads((figures / "MANIFEST.json").read_text())["figures"]
    assert after["01"] == manifest["figures"]["01"] and after["02"]["started"] >= entry["started"]
    assert (repo / "build" / "cache" / "smoke" / "01.json").read_bytes() == cache_01
    assert (repo / "build" / "executed" / "smoke" / "01_flaky.ipynb").is_file()
    assert dgn(repo, "render", "--profile", "smoke") == 0  # still the last successful run of 01
    assert "most recent call last" not in (repo / "build" / "html" / "01_flaky.html").read_text()

    # 5. Without --keep-going the run stops at the failure; the rest is reported as not run.
    assert dgn(repo, "reproduce", "--profile", "smoke", "--force") == 1
    err = capsys.readouterr().err
    assert "FAILED   01_flaky" in err and "not run after the first failure" in err and "02_ok" in err


def test_module_entry_point_and_usage_errors(repo):
    done = subprocess.run([sys.executable, "-m", "dgnlib", "reproduce", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--keep-going" in done.stdout
    assert main([]) == 2 and main(["reproduce", "--profile", "huge"]) == 2
    assert dgn(repo, "reproduce", "--profile", "smoke", "--jobs", "0") == 2
