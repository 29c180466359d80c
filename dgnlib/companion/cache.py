"""The cache: a notebook reruns only when something it depends on changed.

The key is made of the effective parameters, the notebook's code cells, the `*.py` sources of the science modules
of the checkout the kernel imports (`dgnlib.names.TOOLING` excluded), the versions of the main packages, and the
data hashes (read as data from `dgnlib/data/hashes.py`, without importing torch).
"""

from __future__ import annotations

import ast
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from dgnlib.companion.fsio import digest, read_json, sha256_file
from dgnlib.companion.layout import Destination, Layout
from dgnlib.companion.plan import Task
from dgnlib.engine.sources import science_sources
from dgnlib.names import PACKAGE

CACHE_FORMAT = 2
MAIN_PACKAGES = ("dgnlib", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "pooch", "papermill",
                 "ipykernel")


def science_dir(layout: Layout) -> Path:
    """The dgnlib the kernel imports: <root>/dgnlib when the checkout has one, else the installed package."""
    local = layout.root / "dgnlib"
    return local if (local / "__init__.py").is_file() else PACKAGE


def source_hashes(package: Path) -> dict[str, str]:
    """SHA-256 of every science source of the package (`dgnlib.engine.sources`: one rule with the Dask fingerprint)."""
    return {p.relative_to(package).as_posix(): sha256_file(p) for p in science_sources(package)}


def data_hashes(package: Path) -> Any:
    """The HASHES table of <package>/data/hashes.py, read as a literal (None when absent)."""
    path = package / "data" / "hashes.py"
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    for stmt in tree.body:
        target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
            stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "HASHES" and stmt.value is not None:
            try:
                return ast.literal_eval(stmt.value)
            except ValueError:
                return None
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of Python and the main packages (from metadata; nothing is imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in MAIN_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class Context:
    """What every cache key of one invocation shares (computed once)."""

    files: dict[str, str]
    versions: dict[str, str | None]
    data: str

    @classmethod
    def of(cls, layout: Layout) -> Context:
        """Hash the science sources and data table of the checkout the kernel imports; read the versions."""
        package = science_dir(layout)
        return cls(files=source_hashes(package), versions=package_versions(), data=digest(data_hashes(package)))


def cache_key(task: Task, ctx: Context) -> tuple[str, dict[str, str]]:
    """The cache key of one run and its named parts (to say why a notebook reruns)."""
    parts = {
        "parameters": digest(task.values),
        "notebook code": digest(list(task.notebook.code)),
        "science sources": digest(ctx.files),
        "package versions": digest(ctx.versions),
        "data hashes": ctx.data,
        "cache format": str(CACHE_FORMAT),
    }
    return digest(parts), parts


def entry_path(dest: Destination, fig_id: str) -> Path:
    """The cache entry of one notebook for one destination."""
    return dest.cache / f"{fig_id}.json"


def make_entry(task: Task, ctx: Context, outputs: dict[str, str], executed: str, manifest_entry: dict) -> dict:
    """The cache entry of a run (written by the commit, last): key, parts, sources, outputs, manifest entry."""
    return {"key": task.key, "parts": task.parts, "source_files": ctx.files, "outputs": outputs,
            "executed": executed, "entry": manifest_entry}


def status(layout: Layout, dest: Destination, task: Task, ctx: Context) -> tuple[bool, str]:
    """(True, '') when the entry matches the key and its outputs are intact; else (False, why it reruns)."""
    entry = read_json(entry_path(dest, task.notebook.id))
    if not isinstance(entry, dict):
        return False, "no cache entry"
    if entry.get("key") != task.key:
        old = entry.get("parts", {})
        changed = [name for name, value in task.parts.items() if old.get(name) != value]
        if "science sources" in changed and isinstance(entry.get("source_files"), dict):
            before = entry["source_files"]
            files = sorted(n for n in set(before) | set(ctx.files) if before.get(n) != ctx.files.get(n))
            changed[changed.index("science sources")] = f"science sources ({', '.join(files)})"
        return False, f"{', '.join(changed) or 'cache key'} changed"
    for name, sha in entry.get("outputs", {}).items():
        path = dest.figures / name
        if not path.is_file() or sha256_file(path) != sha:
            return False, f"{layout.rel(path)} missing or changed since the cached run"
    if not (layout.root / entry.get("executed", "")).is_file():
        return False, "executed copy missing"
    return True, ""
