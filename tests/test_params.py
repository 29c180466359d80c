"""Parameter schemas: one per notebook, equal to its parameters cell; one checker; bind() in the notebooks."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from dgnlib import constraints, params, schemas
from dgnlib.companion.plan import parameters_cell
from dgnlib.constraints import Choice, Float, FloatList, Int, IntList, Optional, ParamError, Schema, StrList
from dgnlib.names import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells."""
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_schema_has_exactly_the_parameters_of_its_notebook_and_accepts_its_defaults(path):
    defaults, _ = parameters_cell(path)
    schema = schemas.SCHEMAS[path.stem]
    assert list(schema.params) == list(defaults)
    assert schema.problems(defaults, path.stem) == []


def test_every_notebook_has_a_schema_and_every_schema_a_notebook():
    assert set(schemas.SCHEMAS) == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_the_profiles_pass_the_schemas(profile):
    for stem, section in params.read_profile(repo_root() / "profiles" / f"{profile}.yaml").items():
        defaults, _ = parameters_cell(repo_root() / "notebooks" / f"{stem}.ipynb")
        assert schemas.SCHEMAS[stem].problems({**defaults, **section, "profile": profile}, stem) == []


def test_names_repeated_for_the_runner_equal_the_science_modules():
    from dgnlib import names
    from dgnlib.core import paths

    assert names.VARIANTS == names.VARIANTS and names.OPTIMIZERS == names.OPTIMIZERS
    assert schemas.MAX_PATHS == paths.MAX_PATHS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_bind_once_raise_nothing_for_validation_and_record_what_they_checked(path):
    cells = code_cells(path)
    assert f'P = params.bind("{path.stem}", globals())' in cells[1]
    assert not any(isinstance(n, ast.Raise) for n in ast.walk(ast.parse(cells[1])))
    for gone in ("check_profile", "check_stages", "_int_at_least", "_ints(", "positive_ints"):
        assert gone not in "".join(cells)
    for cell in cells:
        for call in re.findall(r"save_verdict\((.*?)\n\S", cell + "\nX", re.S):
            assert "parameters=P.as_dict()" in call


@pytest.mark.parametrize(
    ("constraint", "good", "bad", "message"),
    [
        (Int(min=1), [1, 7], [0, 1.0, True, "3", None], "must be an integer at least 1"),
        (Int(min=0, max=100, multiple_of=10), [0, 90], [5, 110], "an integer in [0, 100], a multiple of 10"),
        (Float(low=0, high=1, closed="neither"), [0.5, 1.0e-9], [0, 1, 1.5, False, float("nan")],
         "a number in (0, 1)"),
        (Choice("adam", "sgd"), ["adam"], ["Adam", 1], "one of 'adam', 'sgd'"),
        (IntList(3, increasing=True, min=2), [[2, 4, 6]], [[2, 4], [2, 6, 4], [1, 2, 3], [2, 2, 3], (2, 4, 6)],
         "a list of at least 3 distinct increasing integers (each at least 2)"),
        (FloatList(2, max_len=2, increasing=True, high=0, closed="neither"), [[-0.7, -0.3]], [[-0.3, -0.7], [-1, 0]],
         "a list of exactly 2 distinct increasing numbers (each less than 0)"),
        (StrList(("a", "b"), distinct=True), [["a"], ["b", "a"]], [[], ["a", "a"], ["c"]],
         "a list of distinct names"),
        (Optional(Int(min=10)), [None, 10], [9, "x"], "None or an integer at least 10"),
    ],
)
def test_constraints_accept_reject_and_describe(constraint, good, bad, message):
    assert all(constraint.ok(v) for v in good)
    assert not any(constraint.ok(v) for v in bad)
    assert message in constraints.check_value(constraint, bad[0])


def test_one_checker_lists_every_problem_with_uniform_messages_and_hints():
    schema = schemas.SCHEMAS["05_depth_training"]
    errors = schema.problems({"widths": [0, 3], "tol": "1e-3", "depthz": 2, "mu": 1.0}, "05_depth_training",
                             complete=False)
    assert "05_depth_training: parameter 'widths' must be a list of integers (each at least 1); got [0, 3]" in errors
    assert any("'tol' must be a number in (0, 1); got '1e-3' (YAML reads 1e-3 as a string" in e for e in errors)
    assert any("no parameter 'depthz' (did you mean 'depths'?)" in e for e in errors)
    assert len(errors) == 4
    with pytest.raises(ParamError, match="must include one of relu"):
        defaults, _ = parameters_cell(repo_root() / "notebooks" / "06_gate_adaptation_mnist.ipynb")
        schemas.SCHEMAS["06_gate_adaptation_mnist"].check({**defaults, "variants": ["relu", "dnpfl"]}, "06")


@pytest.mark.parametrize("value", [(1, 2), {1, 2}, {1: "a"}, [1, object()], {"a": [float("inf")]}, b"x"])
def test_only_json_values_pass_all_the_way_down(value):
    assert constraints.json_problem(value) is not None
    assert constraints.check_value(constraints.Dict(), value) is not None


def test_rules_run_only_on_individually_valid_values():
    rule = constraints.Rule(("a", "b"), "a must not exceed b", lambda v: v["a"] <= v["b"])
    schema = Schema({"a": Int(), "b": Int()}, [rule])
    assert schema.problems({"a": 3, "b": 2}, "x") == ["x: a must not exceed b; got a=3, b=2"]
    assert schema.problems({"a": "3", "b": 2}, "x") == ["x: parameter 'a' must be an integer; got '3'"]


def test_duplicate_keys_in_a_profile_are_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a:\n  x: 1\na:\n  y: 2\n")
    with pytest.raises(ParamError, match="duplicate key 'a'"):
        params.read_profile(path)


def namespace(stem: str) -> dict:
    """A notebook's globals after its parameters cell ran."""
    defaults, _ = parameters_cell(repo_root() / "notebooks" / f"{stem}.ipynb")
    return dict(defaults)


def test_bind_by_hand_takes_quick_sizes_and_never_writes_to_figures(monkeypatch, capsys):
    monkeypatch.delenv(params.RUNNER_ENV, raising=False)
    monkeypatch.delenv(params.PROFILE_ENV, raising=False)
    ns = namespace("06_gate_adaptation_mnist")
    bound = params.bind("06_gate_adaptation_mnist", ns)
    quick = params.read_profile(repo_root() / "profiles" / "quick.yaml")["06_gate_adaptation_mnist"]
    assert bound.profile == "quick" and bound.n_train == quick["n_train"] == ns["n_train"]
    assert Path(ns["out_dir"]) == repo_root() / "build" / "figures" / "quick" == Path(bound.out_dir)
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "quick profile" in line and "DGN_PROFILE=paper" in line
    assert "out_dir" not in bound.as_dict() and bound.as_dict()["n_train"] == quick["n_train"]
    with pytest.raises(AttributeError):
        bound.n_train = 3
    monkeypatch.setenv(params.PROFILE_ENV, "paper")
    ns = namespace("06_gate_adaptation_mnist")
    assert params.bind("06_gate_adaptation_mnist", ns).n_train == 0
    with pytest.raises(ParamError, match="tracked figures/"):
        params.bind("06_gate_adaptation_mnist", {**namespace("06_gate_adaptation_mnist"), "out_dir": "figures"})


def test_bind_under_the_runner_uses_the_values_as_given_and_lists_all_problems(monkeypatch, tmp_path):
    monkeypatch.setenv(params.RUNNER_ENV, "test-run")
    ns = {**namespace("05_depth_training"), "profile": "smoke", "out_dir": str(tmp_path / "out"), "n": 7}
    bound = params.bind("05_depth_training", ns)
    assert bound.n == 7 and bound.profile == "smoke" and Path(bound.out_dir) == tmp_path / "out"
    ns.update(n=1, depths=[4, 2], step_scale=2.0)
    with pytest.raises(ParamError) as info:
        params.bind("05_depth_training", ns)
    assert str(info.value).count("\n") == 2 and "'n'" in str(info.value) and "'step_scale'" in str(info.value)


def test_modules_stay_small():  # the science/tooling line is checked in test_architecture.py
    for path in (repo_root() / "dgnlib").rglob("*.py"):  # every module of the package, science and tooling alike
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_a_hand_run_refuses_a_bad_value_as_the_runner_does_and_keeps_a_good_one(monkeypatch, capsys):
    monkeypatch.delenv(params.RUNNER_ENV, raising=False)
    monkeypatch.delenv(params.PROFILE_ENV, raising=False)
    stem = "06_gate_adaptation_mnist"
    with pytest.raises(ParamError, match="parameter 'epochs' must be an integer at least 1; got -1"):
        params.bind(stem, {**namespace(stem), "epochs": -1})  # what `papermill -p epochs -1` injects
    quick = params.read_profile(repo_root() / "profiles" / "quick.yaml")[stem]
    assert quick["epochs"] != 3
    bound = params.bind(stem, {**namespace(stem), "epochs": 3})
    assert bound.epochs == 3 and bound.profile == "quick" and bound.n_train == quick["n_train"]
    assert "kept as given: epochs=3" in capsys.readouterr().out


def test_yaml_aliases_are_refused_bombs_and_recursion_alike(tmp_path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    for text in (bomb, "&a [*a]"):
        with pytest.raises(Exception, match="alias") as info:
            params.load_yaml(text)
        assert isinstance(info.value, __import__("yaml").YAMLError)
    profile = tmp_path / "p.yaml"
    profile.write_text("06_gate_adaptation_mnist: &s\n  epochs: 2\n07_npk_alignment: *s\n")
    with pytest.raises(ParamError, match="alias"):
        params.read_profile(profile)
    profile.write_bytes(b"06_gate_adaptation_mnist:\n  epochs: 2 # caf\xe9\n")
    with pytest.raises(ParamError, match="not UTF-8 text .byte 0xe9 at offset 43"):
        params.read_profile(profile)


def test_seeds_must_fit_in_64_bits_and_folders_must_exist(tmp_path):
    schema = schemas.SCHEMAS["00_index"]
    values = {"profile": "smoke", "out_dir": "", "seed": 2**64 - 1, "figures_dir": ""}
    assert schema.problems(values, "00_index", root=tmp_path) == []
    for seed in (2**64, -1):
        [problem] = schema.problems({**values, "seed": seed}, "00_index")
        assert f"'seed' must be an integer in [0, 18446744073709551615]; got {seed}" in problem
    (tmp_path / "there").mkdir()
    (tmp_path / "afile").write_text("")
    assert schema.problems({**values, "figures_dir": "there"}, "00_index", root=tmp_path) == []
    [missing] = schema.problems({**values, "figures_dir": "nowhere"}, "00_index", root=tmp_path)
    assert "'figures_dir' names no folder" in missing and "does not exist" in missing
    assert "is a file" in schema.problems({**values, "figures_dir": "afile"}, "00_index", root=tmp_path)[0]
