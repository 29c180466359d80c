"""The plan of a run: which notebooks, with which checked parameters, going where; all checked before anything runs."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dgnlib import constraints, params
from dgnlib.companion.fsio import probe_writable
from dgnlib.companion.layout import INDEX_ID, Destination, InputError, Layout
from dgnlib.constraints import ParamError, Schema

NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
INJECTED = ("profile", "out_dir")


@dataclass(frozen=True)
class Notebook:
    """A notebook `NN_name.ipynb`: its path, the code of its cells, and its parameters cell's defaults."""

    path: Path
    defaults: dict[str, Any]
    code: tuple[str, ...]

    @property
    def stem(self) -> str:
        """`03_depth_spectrum`."""
        return self.path.stem

    @property
    def id(self) -> str:
        """`03`."""
        return self.path.name[:2]


@dataclass
class Task:
    """One notebook to run: its overrides (profile + --set), its effective parameters, and then its fate."""

    notebook: Notebook
    overrides: dict[str, Any]
    values: dict[str, Any]  # effective parameters (defaults, then overrides, then profile); out_dir excluded
    key: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # then cached | executed | failed | not run
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Plan:
    """The checked tasks of one invocation and where their results go."""

    profile: str
    destination: Destination
    tasks: list[Task]


def parameters_cell(path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """(defaults of the cell tagged `parameters`, sources of all code cells); raises InputError when malformed."""
    try:
        node = json.loads(path.read_text())
        cells = [c for c in node["cells"] if c.get("cell_type") == "code"]
        sources = tuple("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path.name}: cannot read the notebook ({type(exc).__name__}: {exc})") from exc
    tagged = [s for c, s in zip(cells, sources) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise InputError(f"{path.name}: no code cell tagged 'parameters' (see CONTRIBUTING.md)")
    defaults: dict[str, Any] = {}
    try:
        tree = ast.parse(tagged[0])
    except SyntaxError as exc:
        raise InputError(f"{path.name}: the parameters cell is not Python ({exc.msg}, line {exc.lineno})") from exc
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise InputError(f"{path.name}: parameters cell line {stmt.lineno}: only `name = literal` lines go there")
        try:
            defaults[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        except ValueError as exc:
            raise InputError(f"{path.name}: parameter '{stmt.targets[0].id}' needs a literal default") from exc
    return defaults, sources


def find_notebooks(layout: Layout) -> list[Path]:
    """The notebooks `NN_name.ipynb`, sorted by name; two sharing an id is an error."""
    if not layout.notebooks.is_dir():
        raise InputError(f"{layout.rel(layout.notebooks)}: no notebooks folder")
    paths = sorted(p for p in layout.notebooks.iterdir() if NOTEBOOK_NAME.match(p.name))
    ids: dict[str, Path] = {}
    for path in paths:
        if path.name[:2] in ids:
            raise InputError(f"{layout.rel(path)} and {layout.rel(ids[path.name[:2]])} share the id {path.name[:2]}")
        ids[path.name[:2]] = path
    return paths


def run_order(path: Path) -> tuple[bool, str]:
    """Sort key: by name, the index page last (it reads what the others wrote)."""
    return path.name[:2] == INDEX_ID, path.stem


def select(paths: Sequence[Path], only: str | None) -> list[Path]:
    """The notebooks named by `--only` (ids like 03 or stems, comma separated); all when `only` is None."""
    if only is None:
        return sorted(paths, key=run_order)
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise InputError(f"--only {only!r}: an empty selection; name notebooks by id or name, e.g. --only 03,05")
    chosen: list[Path] = []
    for name in names:
        name = name.zfill(2) if name.isdigit() else name
        match = [p for p in paths if name in (p.name[:2], p.stem, p.name)]
        if not match:
            known = ", ".join(p.name[:2] for p in paths) or "none"
            raise InputError(f"--only {name}: no notebook with that id or name (ids available: {known})")
        if match[0] not in chosen:
            chosen.append(match[0])
    return sorted(chosen, key=run_order)


def load_schemas(layout: Layout) -> dict[str, Schema]:
    """The schemas of the checkout the kernel imports: <root>/dgnlib/schemas.py when present, else this one's."""
    path = layout.root / "dgnlib" / "schemas.py"
    if not path.is_file():
        from dgnlib.schemas import SCHEMAS

        return SCHEMAS
    spec = importlib.util.spec_from_file_location(f"_dgn_schemas_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise InputError(f"{layout.rel(path)}: cannot load its schemas ({type(exc).__name__}: {exc})") from exc
    finally:
        sys.modules.pop(spec.name, None)
    return module.SCHEMAS


def parse_sets(items: Sequence[str]) -> list[tuple[str | None, str, Any]]:
    """`--set key=value` / `--set NN.key=value` -> (target or None, key, value read as plain YAML data)."""
    parsed = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set {item}: expected key=value or NN.key=value (e.g. --set seed=1)")
        target, _, key = name.strip().rpartition(".")
        try:
            value = params.load_yaml(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item}: the value is not plain YAML data ({' '.join(str(exc).split())})") from exc
        if problem := constraints.json_problem(value):
            raise InputError(f"--set {item}: {problem}")
        parsed.append((target or None, key, value))
    return parsed


def _check_overrides(schema: Schema | None, stem: str, values: Mapping[str, Any], where: str) -> list[str]:
    """Problems with overrides: injected names, unknown names, bad values (rules wait for the full set)."""
    errors = [f"{where}: {stem}: '{k}' is set by the runner (from --profile, and a folder of its own); remove it"
              for k in values if k in INJECTED]
    rest = {k: v for k, v in values.items() if k not in INJECTED}
    if schema is None:
        return errors + [f"{where}: {stem}: no parameter schema for this notebook in dgnlib/schemas.py"]
    return errors + schema.problems(rest, stem, where=where, complete=False, rules=False)


def make_plan(layout: Layout, profile: str, only: str | None, sets: Sequence[str], publish: bool) -> Plan:
    """Find, select and check the notebooks and their parameters; raise InputError (exit 2) before anything runs."""
    known = layout.profile_names()
    if profile not in known:
        raise InputError(f"unknown profile {profile!r}: expected one of {', '.join(known) or 'none'} "
                         f"(the files in {layout.rel(layout.profiles)}/)")
    profile_path = layout.profile_file(profile)
    try:
        sections = params.read_profile(profile_path)
    except ParamError as exc:
        raise InputError(str(exc).replace(str(profile_path), layout.rel(profile_path))) from exc
    paths = find_notebooks(layout)
    chosen = select(paths, only)
    schemas = load_schemas(layout)
    where = layout.rel(profile_path)
    by_stem = {p.stem: p for p in paths}
    errors = [f"{where}: section '{s}' names no notebook in {layout.rel(layout.notebooks)} (notebooks: "
              f"{', '.join(by_stem) or 'none'})" for s in sections if s not in by_stem]
    for stem, section in sections.items():
        if stem in by_stem:
            errors += _check_overrides(schemas.get(stem), stem, section, where)
    overrides = {p.stem: dict(sections.get(p.stem, {})) for p in chosen}
    for target, key, value in parse_sets(sets):
        targets = [p for p in chosen if target is None or target in (p.name[:2], p.stem)]
        if target is not None and not targets:
            errors.append(f"--set {target}.{key}: no selected notebook has the id or name {target!r}")
        for p in targets:
            found = _check_overrides(schemas.get(p.stem), p.stem, {key: value}, "--set")
            if found and target is None and "no parameter" in found[0]:
                found[0] += f" (to set it for one notebook only, write --set NN.{key}=... or use --only)"
            errors += found
            overrides[p.stem][key] = value
    if errors:
        raise InputError("\n".join(errors))
    tasks = []
    for path in chosen:
        defaults, code = parameters_cell(path)
        values = {**defaults, **overrides[path.stem], "profile": profile}
        values.pop("out_dir", None)
        schema = schemas.get(path.stem)
        errors += schema.problems({**values, "out_dir": ""}, path.stem, where=f"{layout.rel(path)} ({profile})",
                                  root=layout.root)
        values = {k: values[k] for k in defaults if k in values}  # the parameters cell's order
        tasks.append(Task(Notebook(path, defaults, code), overrides[path.stem], values))
    if errors:
        raise InputError("\n".join(errors))
    destination = layout.destination(profile, publish)
    check_writable(layout, destination)
    return Plan(profile, destination, tasks)


def check_writable(layout: Layout, dest: Destination) -> None:
    """Raise InputError unless build/ and the destination's folders can take new files."""
    # the run store too: a read-only one would otherwise fail only after the first group of runs has trained
    folders = [layout.build, dest.figures, dest.executed, dest.runs]
    folders += [layout.readme.parent] if dest.published else []
    folders += sorted(p for p in dest.runs.iterdir() if p.is_dir()) if dest.runs.is_dir() else []  # <key[:2]>/
    problems = [f"{layout.rel(f)}: {why}" for f in folders if (why := probe_writable(f))]
    if problems:
        raise InputError("cannot write the results: " + "; ".join(problems) + " (fix the permissions and rerun)")
