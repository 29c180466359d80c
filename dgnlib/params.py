"""Declarative parameter checks: constraint objects, one checker, uniform messages, and `bind` for notebooks.

In the spirit of scikit-learn's `_param_validation`: each notebook's parameters are described once, in
`dgnlib.schemas.SCHEMAS`, by constraint objects (`Int(min=1)`, `FloatList(low=0)`, `Choice("adam", "sgd")`, ...)
and cross-parameter `Rule`s. The runner checks a profile against the schema before anything runs; the notebook
checks itself with one line, `P = params.bind("05_depth_training", globals())`, and records `P.as_dict()`.

Values are JSON values only (None, bool, int, float, str, lists and dicts of them, keys strings), checked all the
way down, so nothing but data can travel from a profile or `--set` into a notebook.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from dgnlib.constraints import (
    ParamError,
)
from dgnlib.names import repo_root

RUNNER_ENV = "DGN_RUNNER"  # set by `dgn reproduce` (and `make nbval`) for the kernels it starts
PROFILE_ENV = "DGN_PROFILE"  # chooses the sizes of a notebook run by hand (default: quick)
INTERACTIVE_DEFAULT = "quick"


# ---------------------------------------------------------------------------------------------------------------
# Profile files (read here so that the runner and a notebook run by hand agree)


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys in a mapping, and aliases.

    Aliases (`*name`) are refused outright: a few hundred bytes of nested aliases expand to billions of nodes (the
    "billion laughs"), and a recursive one makes a structure that no JSON check can walk. Parameters are small data:
    writing a value twice costs less than bounding every expansion.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose the next node; an alias is an error."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"the alias *{event.anchor} is not allowed (YAML aliases are refused in parameters: "
                "write the value itself)", event.start_mark)
        return super().compose_node(parent, index)


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the later one would silently replace the first)",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_yaml(text: str) -> Any:
    """Parse YAML safely, refusing duplicate keys (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def read_profile(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A profile file: notebook stem -> {parameter: value}; raises ParamError when malformed."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParamError(f"{path}: cannot read the profile file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save "
                         "the profile as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: malformed YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"{path}: expected a mapping of notebook name -> parameters, got {type(data).__name__}")
    sections = {}
    for stem, section in data.items():
        section = {} if section is None else section
        if not isinstance(section, dict):
            raise ParamError(f"{path}: section {stem!r} must map parameter names to values, "
                             f"got {type(section).__name__}")
        sections[str(stem)] = {str(k): v for k, v in section.items()}
    return sections


# ---------------------------------------------------------------------------------------------------------------
# Notebooks: bind


class Params(Mapping[str, Any]):
    """A notebook's checked parameters, read-only: `P.depths`, `P["depths"]`, `P.as_dict()`."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("parameters are read-only once bound")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def as_dict(self) -> dict[str, Any]:
        """The values a figure records: every parameter except `out_dir` (where it went, not what it is)."""
        return {k: v for k, v in self._values.items() if k != "out_dir"}


def resolve_out_dir(out_dir: str, profile: str, root: Path | None = None) -> Path:
    """Where a notebook writes: `out_dir` from the repository root, or build/figures/<profile>/ when empty.

    The tracked `figures/` holds the published run only: only `dgn reproduce` moves files there, so an `out_dir`
    inside it is refused.
    """
    # a kernel of the runner resolves from the checkout it runs (DGN_ROOT), which need not be this package's own
    root = root or (Path(os.environ["DGN_ROOT"]) if os.environ.get("DGN_ROOT") else repo_root())
    path = (root / "build" / "figures" / profile) if not out_dir else Path(out_dir)
    path = (path if path.is_absolute() else root / path).resolve()
    tracked = (root / "figures").resolve()
    if path == tracked or tracked in path.parents:
        raise ParamError(
            f"out_dir {out_dir!r} lies in the tracked figures/ folder, which holds the published run only: leave "
            f"out_dir empty (outputs go to build/figures/{profile}/) or publish with "
            f"`dgn reproduce --profile {profile} --publish`")
    path.mkdir(parents=True, exist_ok=True)
    return path


def bind(stem: str, namespace: dict[str, Any]) -> Params:
    """Check a notebook's parameters (its globals) against its schema; resolve `out_dir`; return them frozen.

    Launched by `dgn reproduce` (environment variable DGN_RUNNER set), the values are used as they are. Run by
    hand, the values given are first checked exactly as the runner checks them (so `papermill -p epochs -1` is
    refused, not replaced); then the notebook takes safe sizes: the profile named by DGN_PROFILE, else `quick` when
    the cell still says "paper", is overlaid from profiles/<profile>.yaml onto the parameters that still hold the
    cell's defaults (a value given explicitly, e.g. by papermill's `-p`, wins; one printed line says so). `out_dir`
    in `namespace` is replaced by the resolved folder. Raises ParamError listing every problem.
    """
    from dgnlib.schemas import SCHEMAS

    if stem not in SCHEMAS:
        raise ParamError(f"no parameter schema for notebook {stem!r} in dgnlib/schemas.py")
    schema = SCHEMAS[stem]
    root = repo_root()
    if not os.environ.get(RUNNER_ENV):
        schema.check({name: namespace.get(name) for name in schema.params if name in namespace}, stem, root=root)
        _overlay_interactive(stem, namespace)
    values = {name: namespace.get(name) for name in schema.params if name in namespace}
    schema.check(values, stem, root=root)
    values["out_dir"] = str(resolve_out_dir(values["out_dir"], values["profile"]))
    namespace["out_dir"] = values["out_dir"]
    return Params(values)


def cell_defaults(stem: str, root: Path | None = None) -> dict[str, Any] | None:
    """The literal defaults of notebooks/<stem>.ipynb's parameters cell, or None when it cannot be read."""
    try:
        node = json.loads((root or repo_root()).joinpath("notebooks", f"{stem}.ipynb").read_text(encoding="utf-8"))
        cell = next(c for c in node["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        tree = ast.parse(source)
    except (OSError, ValueError, KeyError, TypeError, StopIteration, SyntaxError):
        return None
    defaults = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                defaults[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    return defaults


def _overlay_interactive(stem: str, namespace: dict[str, Any]) -> None:
    """Give a notebook run by hand the sizes of a cheap profile (see `bind`) and say so in one line."""
    chosen = os.environ.get(PROFILE_ENV) or (
        INTERACTIVE_DEFAULT if namespace.get("profile") == "paper" else namespace.get("profile"))
    if not isinstance(chosen, str):
        return  # the schema check reports the bad `profile`
    path = repo_root() / "profiles" / f"{chosen}.yaml"
    section = read_profile(path).get(stem, {}) if chosen != "paper" and path.is_file() else {}
    defaults = cell_defaults(stem)
    kept = {} if defaults is None else {
        k: namespace[k] for k in section if k in namespace and k in defaults and namespace[k] != defaults[k]}
    section = {k: v for k, v in section.items() if k not in kept}
    namespace.update(section)
    namespace["profile"] = chosen
    sizes = ", ".join(f"{k}={v!r}" for k, v in section.items()) or "the notebook's defaults"
    given = f"; kept as given: {', '.join(f'{k}={v!r}' for k, v in kept.items())}" if kept else ""
    print(f"run by hand: {chosen} profile ({sizes}{given}), outputs in build/figures/{chosen}/; for the paper sizes "
          f"set {PROFILE_ENV}=paper (e.g. `%env {PROFILE_ENV}=paper`) and rerun, or run `dgn reproduce --profile "
          "paper`")
