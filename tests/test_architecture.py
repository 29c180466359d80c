"""The floor plan of dgnlib: wings on disk, imports that point one way, no circle, a short top level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dgnlib.names import PACKAGE, TOOLING, is_science

# companion -> experiments -> engine -> core | data -> the small shared modules at the top: a module may import its
# own layer or a lower one, never a higher one.
LAYERS = {"companion": 4, "experiments": 3, "engine": 2, "core": 1, "data": 1}
TOP_LEVEL_MAX = 12  # modules directly in dgnlib/ (the small shared ones), __init__ and __main__ included


def module_name(path: Path) -> str:
    """dgnlib/engine/runs.py -> dgnlib.engine.runs (a package's __init__ is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """A module's layer: its wing's, or 0 for the shared modules at the top (the entry point __main__ is tooling)."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return LAYERS["companion"]
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The dgnlib modules a file imports, anywhere in it (lazy imports count), resolved to module names."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "dgnlib" and name != me:
                out.add(name)
    return out


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the dgnlib modules it imports."""
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (each as a path that comes back to its start), found by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_sees_a_cycle():  # so that an empty answer above means something
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_runs_up_a_layer():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
    assert upward == []


def test_layers_are_read_from_the_path():
    modules = ("dgnlib.names", "dgnlib.core.models", "dgnlib.engine.runs", "dgnlib.experiments.depth",
               "dgnlib.companion.cli", "dgnlib.__main__")
    assert [layer(m) for m in modules] == [0, 1, 2, 3, 4, 4]


def test_the_top_level_is_short_and_every_folder_is_a_known_wing():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MAX, top
    wings = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert wings == sorted(LAYERS), "a new folder of dgnlib needs a layer here and a row in CONTRIBUTING's layout"


@pytest.mark.parametrize("relative, science", [("core/models.py", True), ("params.py", True),
                                               ("companion/cache.py", False), ("__main__.py", False)])
def test_the_science_tooling_line_is_the_declared_one(relative, science):
    assert is_science(relative) is science
    assert TOOLING == ("companion", "__main__.py")


def test_science_imports_nothing_from_the_tooling():
    edges = graph()
    first = {m: m.split(".")[1] for m in edges if m != "dgnlib"}  # dgnlib.x.y -> x: its folder, or x.py
    tooling = {m for m, x in first.items() if not is_science(x if (PACKAGE / x).is_dir() else f"{x}.py")}
    assert {"dgnlib.companion", "dgnlib.companion.cache", "dgnlib.__main__"} <= tooling
    for module, targets in edges.items():
        if module not in tooling:
            assert not targets & tooling, f"{module} imports the tooling: {sorted(targets & tooling)}"


def test_tooling_sources_stay_out_of_the_cache_key_and_the_dask_fingerprint(tmp_path):
    from dgnlib.companion import cache
    from dgnlib.engine import sources

    for rel in ("companion/render.py", "__main__.py", "core/models.py", "params.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    for hashes in (cache.source_hashes(tmp_path), sources.source_hashes(tmp_path)):
        assert sorted(hashes) == ["core/models.py", "params.py"]
