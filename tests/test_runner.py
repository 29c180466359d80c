"""The runner on a tiny temporary checkout: bad input, cache, failures, publishing, manifest, README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from companion_fixture import make_repo

from dgnlib.companion.cli import main
from dgnlib.companion.fsio import sha256_file


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with notebooks 01_flaky and 02_ok, a smoke and a paper profile, its own dgnlib."""
    return make_repo(tmp_path)


def dgn(root: Path, *args: str) -> int:
    """`dgn --root <root> ...` in this process."""
    return main(["--root", str(root), *args])


@pytest.mark.parametrize(
    ("profile_text", "extra", "expected"),
    [
        ("01_flaky:\n  nn: 4\n", [], ["profiles/smoke.yaml", "01_flaky", "'nn'", "did you mean 'n'"]),
        ("01_flaky:\n  n: 4.5\n", [], ["profiles/smoke.yaml: 01_flaky: parameter 'n' must be an integer"]),
        ("01_flaky:\n  lr: 1e-3\n", [], ["'lr' must be a number", "YAML reads 1e-3 as a string", "1.0e-3"]),
        ("01_flaky:\n  depths: [2, x]\n", [], ["'depths' must be a list of integers"]),
        ("01_flaky:\n  fail: 1\n", [], ["'fail' must be true or false"]),
        ("01_flaky: [1, 2\n", [], ["profiles/smoke.yaml", "malformed YAML"]),
        ("01_flaky:\n  n: 1\n01_flaky:\n  n: 2\n", [], ["duplicate key '01_flaky'"]),
        ("01_flaky:\n  n: 1\n  n: 2\n", [], ["duplicate key 'n'"]),
        ("03_missing:\n  n: 1\n", [], ["'03_missing'", "names no notebook"]),
        ("01_flaky:\n  out_dir: x\n", [], ["'out_dir' is set by the runner"]),
        ("01_flaky:\n  n: 2020-01-01\n", [], ["date", "only JSON values"]),
        ("", ["--set", "n=abc"], ["--set: 01_flaky: parameter 'n' must be an integer"]),
        ("", ["--set", "01.missing=1"], ["--set: 01_flaky: no parameter 'missing'"]),
        ("", ["--set", "10.n_train=!!omap [{a: 1}]"], ["--set 10.n_train=", "tuple", "only JSON values"]),
        ("", ["--set", "n=!!set {1, 2}"], ["--set n=", "set"]),
        ("", ["--set", "n=!!python/object/apply:os.system ['echo pwned']"], ["--set n=", "not plain YAML"]),
        ("", ["--set", "n=!!python/tuple [1, 2]"], ["--set n=", "not plain YAML"]),
        ("", ["--only", "07"], ["--only 07", "01, 02"]),
        ("", ["--only", ""], ["--only ''", "empty selection"]),
        ("", ["--only", ","], ["--only ','", "empty selection"]),
        ("", ["--profile", "huge"], ["unknown profile 'huge'", "paper, smoke"]),
        ("", ["--jobs", "0"], ["--jobs 0"]),
        ("", ["--scheduler", "not an address"], ["Dask scheduler", "not an address"]),
    ],
)
def test_bad_input_exits_2_before_running(repo, capsys, profile_text, extra, expected):
    (repo / "profiles" / "smoke.yaml").write_text(profile_text)
    args = ["reproduce", "--profile", "smoke", *extra] if "--profile" not in extra else ["reproduce", *extra]
    assert dgn(repo, *args) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert not (repo / "build").exists() and not (repo / "figures").exists()


def test_usage_errors_version_and_module_entry_point(repo, capsys):
    assert main([]) == 2
    assert main(["--version"]) == 0
    from dgnlib import __version__

    assert __version__ in capsys.readouterr().out


def test_unwritable_destination_exits_2_before_running(repo, capsys):
    (repo / "figures").write_text("a file where the published folder should be")
    assert dgn(repo, "reproduce", "--profile", "paper") == 2
    assert "cannot write the results" in capsys.readouterr().err
    assert not (repo / "build" / "tmp").exists()


def test_run_cache_publish_failure_and_sources(repo, capsys):
    smoke = repo / "build" / "figures" / "smoke"
    # 1. A smoke run goes to build/figures/smoke/, never to figures/ or the README.
    assert dgn(repo, "reproduce", "--profile", "smoke", "--jobs", "2") == 0
    err = capsys.readouterr().err
    assert "executed 01_flaky" in err and "executed 02_ok" in err
    manifest = json.loads((smoke / "MANIFEST.json").read_text())["figures"]
    entry = manifest["02"]
    assert entry["profile"] == "smoke" and entry["parameters"]["n"] == 5 and entry["parameters"]["seed"] == 0
    assert entry["parameters"]["out_dir"] == "build/figures/smoke"
    assert entry["outputs"]["02.csv"] == sha256_file(smoke / "02.csv") and entry["claim"] == "claim 02"
    assert (smoke / "02.csv").read_text() == "n,seed,lr\n5,0,0.001\n"
    assert (repo / "build" / "executed" / "smoke" / "02_ok.ipynb").is_file()
    assert not (repo / "figures").exists() and "old" in (repo / "README.md").read_text()
    assert not list((repo / "build" / "tmp").iterdir())

    # 2. The key uses the effective parameters: setting the default's value is still a cache hit.
    assert dgn(repo, "reproduce", "--profile", "smoke", "--set", "seed=0", "--set", "02.n=5") == 0
    err = capsys.readouterr().err
    assert "cached   01_flaky" in err and "cached   02_ok" in err and "2 cached" in err

    # 3. Non-Python files do not count; a science source of the --root checkout does, and names the file.
    (repo / "dgnlib" / ".science.py.swp").write_text("editor junk")
    (repo / "dgnlib" / "notes.txt").write_text("x")
    assert dgn(repo, "reproduce", "--profile", "smoke") == 0
    assert "2 cached" in capsys.readouterr().err
    (repo / "dgnlib" / "science.py").write_text("A = 2\n")
    before = {p.name: p.read_bytes() for p in smoke.iterdir()}
    (repo / "profiles" / "smoke.yaml").write_text("01_flaky:\n  fail: true\n02_ok:\n  n: 5\n")
    assert dgn(repo, "reproduce", "--profile", "smoke", "--keep-going") == 1
    err = capsys.readouterr().err
    assert "FAILED   01_flaky" in err and "cell 3 (In [3])" in err and "RuntimeError: boom on purpose." in err
    assert "Advice: replace or remove it" in err and "END-OF-ADVICE" in err  # the whole message, not cut
    assert "build/executed/smoke/01_flaky.failed.ipynb" in err
    assert "running  02_ok (smoke profile; science sources (science.py) changed; last run took" in err
    for name in ("01.csv", "01.json", "01.png"):
        assert (smoke / name).read_bytes() == before[name]  # the failed run left the previous outputs
    after = json.loads((smoke / "MANIFEST.json").read_text())["figures"]
    assert after["01"] == manifest["01"] and after["02"]["started"] >= entry["started"]

    # 4. Without --keep-going the run stops at the failure; the rest is reported as not run.
    assert dgn(repo, "reproduce", "--profile", "smoke", "--force") == 1
    err = capsys.readouterr().err
    assert "not run after the first failure" in err and "02_ok" in err

    # 5. The paper profile publishes: figures/, executed/, the README table.
    assert dgn(repo, "reproduce", "--profile", "paper") == 0
    capsys.readouterr()
    published = json.loads((repo / "figures" / "MANIFEST.json").read_text())["figures"]
    assert set(published) == {"01", "02"} and published["01"]["executed_notebook"] == "executed/01_flaky.ipynb"
    assert (repo / "executed" / "02_ok.ipynb").is_file()
    readme = (repo / "README.md").read_text()
    assert "| 01 | claim 01 | [01_flaky](executed/01_flaky.ipynb) | held | paper | paper " in readme
    assert '<img src="figures/02.png" width="160">' in readme and "old" not in readme and readme.endswith("end\n")

    # 6. --publish for another profile; the smoke folder is untouched by it.
    smoke_manifest = (smoke / "MANIFEST.json").read_bytes()
    assert dgn(repo, "reproduce", "--profile", "smoke", "--only", "02", "--publish") == 0
    assert json.loads((repo / "figures" / "MANIFEST.json").read_text())["figures"]["02"]["profile"] == "smoke"
    assert (smoke / "MANIFEST.json").read_bytes() == smoke_manifest


@pytest.mark.parametrize("where", ["build/figures/smoke", "figures"])
def test_corrupt_manifest_exits_2_and_is_left_unchanged(repo, capsys, where):
    folder = repo / where
    folder.mkdir(parents=True)
    text = '<<<<<<< HEAD\n{"figures": {}}\n=======\n{}\n>>>>>>> other\n'
    (folder / "MANIFEST.json").write_text(text)
    args = ["--publish"] if where == "figures" else []
    assert dgn(repo, "reproduce", "--profile", "smoke", *args) == 2
    err = capsys.readouterr().err
    assert f"{where}/MANIFEST.json: not valid JSON" in err and "left unchanged" in err and "git checkout" in err
    assert (folder / "MANIFEST.json").read_text() == text
    assert not (repo / "build" / "executed").exists()


def test_prepare_writes_parameterised_copies(repo):
    assert dgn(repo, "prepare", "--profile", "smoke", "--dest", "build/nbval", "--set", "02.seed=7") == 0
    import nbformat

    nb = nbformat.read(repo / "build" / "nbval" / "02_ok.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "n = 5" in injected.source and "seed = 7" in injected.source and 'profile = "smoke"' in injected.source
    assert f'out_dir = "{(repo / "build" / "nbval" / "figures").resolve()}"' in injected.source
    assert not (repo / "figures").exists()
