"""Set-up files agree with each other: environment.yml ↔ pyproject.toml, README ↔ .ci/run, notebooks stripped."""

import json
import re

import tomllib
import yaml

from dgnlib.names import repo_root

CONDA_NAMES = {"torch": "pytorch"}  # PyPI name → conda-forge name where they differ


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_direct_dependencies_as_pyproject():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"test", "dev", "book", "lab"}, "a new extra: add it to environment.yml and to this test"
    wanted = {_name(r) for r in project["dependencies"] + [r for e in extras.values() for r in e]}
    wanted = {CONDA_NAMES.get(n, n) for n in wanted}
    env = yaml.safe_load((repo_root() / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == wanted, f"only in environment.yml: {conda - wanted}; only in pyproject.toml: {wanted - conda}"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"-e .[{','.join(sorted(extras, key=['test', 'dev', 'book', 'lab'].index))}]" in pip_section


def test_ci_runs_exactly_the_readme_test_command():
    readme = (repo_root() / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, "README.md must show the test command in a code block after <!-- test-command -->"
    command = match.group(1).strip()
    lines = [ln.strip() for ln in (repo_root() / ".ci/run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert commands == [command]


def test_constraints_pin_the_cpu_torch_and_pyproject_pins_nothing():
    assert (repo_root() / "constraints.txt").read_text().split() == ["torch==2.13.0"]
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    assert not [r for r in project["dependencies"] if "==" in r]


def test_notebooks_are_committed_without_outputs_and_with_the_python3_kernel():
    for path in sorted((repo_root() / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), f"{path.name} has outputs"


def _make_n(*args: str) -> str:
    """The commands `make setup` would run (-W: as if pyproject.toml had changed), without running them."""
    import subprocess

    return subprocess.run(["make", "-n", "-W", "pyproject.toml", "setup", *args], cwd=repo_root(), capture_output=True,
                          text=True, check=True).stdout


def test_make_setup_torch_cpu_takes_torch_alone_from_the_cpu_index_and_installs_the_hooks():
    cpu = [ln for ln in _make_n("TORCH=cpu").splitlines() if "pip install" in ln]
    assert len(cpu) == 2 and cpu[0].endswith("--index-url https://download.pytorch.org/whl/cpu torch")
    assert "--index-url" not in cpu[1] and "-c constraints.txt" in cpu[0] and "-c constraints.txt" in cpu[1]
    default = _make_n()
    assert "download.pytorch.org" not in default and "pre-commit install" in default


def test_pre_commit_hooks_call_the_venv_tools_by_path():
    config = yaml.safe_load((repo_root() / ".pre-commit-config.yaml").read_text())
    entries = [h["entry"] for r in config["repos"] for h in r["hooks"]]
    assert entries and all(".venv/bin/" in e for e in entries)
