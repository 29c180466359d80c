#!/usr/bin/env python3
"""Replay issue 19's move of `dgnlib` into wings (core, data, engine, experiments, companion) on any checkout.

Run at the root of a clean checkout derived from 3e2a7f4. It
  1. refuses to run when a top-level `dgnlib/*.py` or `dgnlib/companion/*.py` module has no row in MODULES;
  2. rewrites every import and reference (Python files, notebooks' code and markdown cells, docs, pyproject,
     Makefile) with one table old module -> new module (MODULES) plus a symbol table (SYMBOLS) for names that
     move between modules; re-exports (facades) are followed to the module that defines the name;
  3. moves the vocabulary constants of VOCABULARY into dgnlib/names.py (their old definitions must equal it);
  4. `git mv`s the files, adds the wings' __init__.py, `git rm`s the facades, fixes pyproject's packages list.
Anything it cannot map makes it stop with a list, before it changes a file.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

KIT = Path(__file__).resolve().parent

# ---------------------------------------------------------------- the tables

MODULES: dict[str, str | None] = {  # old module -> new module (None: removed, every symbol must be in SYMBOLS)
    "dgnlib.__init__": "dgnlib.__init__", "dgnlib.__main__": "dgnlib.__main__",
    "dgnlib.params": "dgnlib.params", "dgnlib.constraints": "dgnlib.constraints", "dgnlib.schemas": "dgnlib.schemas",
    "dgnlib.verdict": "dgnlib.verdict", "dgnlib.record": "dgnlib.record", "dgnlib.stats": "dgnlib.stats",
    "dgnlib.seeding": "dgnlib.seeding", "dgnlib.atomic": "dgnlib.atomic",
    "dgnlib.report": None, "dgnlib.cli": None,
    # core: the paper's objects
    "dgnlib.models": "dgnlib.core.models", "dgnlib.paths": "dgnlib.core.paths", "dgnlib.kernels": "dgnlib.core.kernels",
    "dgnlib.theory": "dgnlib.core.theory",
    # data: the verified files on disk
    "dgnlib.datafiles": "dgnlib.data.files", "dgnlib.data_hashes": "dgnlib.data.hashes",
    # engine: specs, store, tensors of a spec, training, sweeps, executors
    "dgnlib.runs": "dgnlib.engine.runs", "dgnlib.data": "dgnlib.engine.tensors", "dgnlib.stacked": "dgnlib.engine.stacked",
    "dgnlib.ensemble": "dgnlib.engine.ensemble", "dgnlib.sweep": "dgnlib.engine.sweep", "dgnlib.pool": "dgnlib.engine.pool",
    "dgnlib.cluster": "dgnlib.engine.cluster", "dgnlib.threads": "dgnlib.engine.threads",
    "dgnlib.train": "dgnlib.engine.reference",
    # experiments: one module per figure family + what they share
    "dgnlib.comparison": "dgnlib.experiments.comparison", "dgnlib.gatestats": "dgnlib.experiments.gatestats",
    "dgnlib.ntk_sampling": "dgnlib.experiments.ntk_sampling", "dgnlib.depth": "dgnlib.experiments.depth",
    "dgnlib.depth_training": "dgnlib.experiments.depth_training",
    "dgnlib.npk_alignment": "dgnlib.experiments.npk_alignment", "dgnlib.gate_learning": "dgnlib.experiments.gate_learning",
    "dgnlib.soft_gating": "dgnlib.experiments.soft_gating", "dgnlib.conv_gates": "dgnlib.experiments.conv_gates",
    "dgnlib.explore": "dgnlib.experiments.explore",
    # companion: tooling
    "dgnlib.listing": "dgnlib.companion.listing", "dgnlib.render": "dgnlib.companion.render",
    "dgnlib.companion.__init__": "dgnlib.companion.__init__", "dgnlib.companion.cache": "dgnlib.companion.cache",
    "dgnlib.companion.cli": "dgnlib.companion.cli", "dgnlib.companion.execute": "dgnlib.companion.execute",
    "dgnlib.companion.fsio": "dgnlib.companion.fsio", "dgnlib.companion.layout": "dgnlib.companion.layout",
    "dgnlib.companion.manifest": "dgnlib.companion.manifest", "dgnlib.companion.plan": "dgnlib.companion.plan",
    "dgnlib.companion.reproduce": "dgnlib.companion.reproduce", "dgnlib.companion.table": "dgnlib.companion.table",
}
PACKAGES = {"dgnlib": "dgnlib", "dgnlib.companion": "dgnlib.companion"}  # old packages (kept)
NEW_PACKAGES = {  # new wing -> its __init__ docstring
    "core": "The paper's objects: DGN models, neural paths, kernels (NPK, NTK) and the closed forms of the theory.",
    "data": "The data files on disk: verified reading and fetching, and their known hashes.",
    "engine": "The training engine: run specs and the run store, tensors of a spec, stacked ensembles, sweeps, "
              "worker pool, Dask executor, and the one-run reference loop.",
    "experiments": "One module per figure family, named after what its figure measures, and the variant comparison "
                   "they share.",
}

VOCABULARY = ("VARIANTS", "OPTIMIZERS", "LOSSES", "PROFILES", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT")
REDIRECTS = {"dgnlib.cli": "dgnlib.companion.cli", "dgnlib.report": "dgnlib.names"}  # text references to removed ones
SYMBOLS: dict[tuple[str, str], str] = {  # (old module, name) -> new module, for names that move between modules
    ("dgnlib.report", "repo_root"): "dgnlib.names", ("dgnlib.report", "PROFILES"): "dgnlib.names",
    ("dgnlib.report", "title"): "dgnlib.names",
    ("dgnlib.cli", "main"): "dgnlib.companion.cli", ("dgnlib.cli", "build_parser"): "dgnlib.companion.cli",
    ("dgnlib.verdict", "conclude"): "dgnlib.record", ("dgnlib.verdict", "parts_table"): "dgnlib.record",
    ("dgnlib.companion.layout", "repo_root"): "dgnlib.names",
    ("dgnlib.soft_gating", "run_seeds"): "dgnlib.experiments.comparison",
}
for _mod in ("dgnlib.models", "dgnlib.train", "dgnlib.runs", "dgnlib.schemas", "dgnlib.companion.layout",
             "dgnlib.render", "dgnlib.report"):
    for _name in VOCABULARY:
        SYMBOLS.setdefault((_mod, _name), "dgnlib.names")

LOCAL_RENAMES = {"record": "outcome"}  # notebook variables renamed when the module of that name is imported there
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".yaml", ".yml", ".txt", ".cff"}
TEXT_NAMES = {"Makefile", "run"}
SKIP_DIRS = {".git", ".venv", "build", "executed", "figures", "runs", "__pycache__", ".ruff_cache", "node_modules"}

# ---------------------------------------------------------------- helpers


class MoveError(Exception):
    """Something the tables do not cover."""


def git(*args: str) -> str:
    """Run git at the checkout root."""
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def module_of(path: Path) -> str:
    """dgnlib/companion/x.py -> dgnlib.companion.x"""
    return ".".join(path.with_suffix("").parts)


def new_path(module: str) -> Path:
    """dgnlib.core.models -> dgnlib/core/models.py"""
    return Path(*module.split(".")).with_suffix(".py")


def split(module: str) -> tuple[str, str]:
    parent, _, leaf = module.rpartition(".")
    return parent, leaf


class Index:
    """What each old module defines and re-exports, read from the checkout before anything moves."""

    def __init__(self) -> None:
        self.defines: dict[str, set[str]] = {}
        self.reexports: dict[str, dict[str, tuple[str, str]]] = {}  # module -> name -> (source module, source name)
        for old in MODULES:
            path = new_path(old)
            if not path.exists():
                continue
            tree = ast.parse(path.read_text())
            defs, imps = set(), {}
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defs.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                        for n in ast.walk(t):
                            if isinstance(n, ast.Name):
                                defs.add(n.id)
                elif isinstance(node, ast.ImportFrom):
                    src = resolve(old, node)
                    if src and src.startswith("dgnlib"):
                        for a in node.names:
                            imps[a.asname or a.name] = (src, a.name)
            self.defines[old], self.reexports[old] = defs, imps

    def home(self, module: str, name: str, seen: int = 0) -> str:
        """The new module that defines `name` imported from old `module` (following re-exports)."""
        if (module, name) in SYMBOLS:
            return SYMBOLS[(module, name)]
        if module in PACKAGES:
            return PACKAGES[module]
        if name in self.defines.get(module, ()) or seen > 8:
            target = MODULES.get(module)
            if target is None:
                raise MoveError(f"{module}.{name}: no row in SYMBOLS for a name of a removed module")
            return target
        if name in self.reexports.get(module, {}):
            src, src_name = self.reexports[module][name]
            if f"{src}.{src_name}" in MODULES:  # a module re-exported as a name: stays where it is
                return MODULES[module] or MODULES[f"{src}.{src_name}"]
            return self.home(src, src_name, seen + 1)
        if module not in MODULES:
            raise MoveError(f"{module}: no row in MODULES")
        if MODULES[module] is None:
            raise MoveError(f"{module}.{name}: no row in SYMBOLS for a name of a removed module")
        return MODULES[module]


def resolve(current: str, node: ast.ImportFrom) -> str | None:
    """The absolute module of a `from ... import` in module `current` (old names)."""
    if not node.level:
        return node.module
    base = current.split(".")[:-1]  # the package of the module (of dgnlib/x/__init__.py: dgnlib.x)
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def is_module(name: str) -> bool:
    return name in MODULES or name in PACKAGES


# ---------------------------------------------------------------- rewriting Python source


class Edits:
    """Edits (start, end, text) on one text, applied together."""

    def __init__(self, text: str) -> None:
        self.text, self.edits = text, []
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + len(self.text[self.starts[line - 1]:].encode()[:col].decode())

    def add(self, start: int, end: int, new: str) -> None:
        self.edits.append((start, end, new))

    def covered(self, pos: int) -> bool:
        return any(s <= pos < e for s, e, _ in self.edits)

    def apply(self) -> str:
        out, last = [], 0
        for s, e, new in sorted(self.edits):
            if s < last:
                raise MoveError(f"overlapping edits at offset {s}")
            out += [self.text[last:s], new]
            last = e
        return "".join(out) + self.text[last:]


def mask_magics(src: str) -> str:
    """IPython magics and shell lines blanked (same length) so that ast can parse a notebook cell."""
    return "\n".join("#" + line[1:] if line.lstrip().startswith(("%", "!")) else line for line in src.split("\n"))


def format_from(module: str, names: list[str], indent: str) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(indent + line) <= 120:
        return line
    body = "".join(f"{indent}    {n},\n" for n in names)
    return f"from {module} import (\n{body}{indent})"


def rewrite_sources(sources: list[str], current: str, where: str, idx: Index,
                    vocabulary: dict[str, object]) -> list[Edits]:
    """Edits for the dgnlib imports and module-attribute uses of one namespace (a file, or a notebook's cells)."""
    trees = []
    for s in sources:
        try:
            trees.append(ast.parse(mask_magics(s)))
        except SyntaxError as exc:
            raise MoveError(f"{where}: cannot parse ({exc})") from exc
    edits = [Edits(s) for s in sources]
    bound: dict[str, str] = {}        # local name -> old module it is bound to
    binder: dict[str, int] = {}       # local name -> the plan (import statement) that binds it
    renamed: dict[str, str] = {}      # local name -> new local name (module renamed, imported without alias)
    stores = set()
    for tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                stores.add(n.id)
            elif isinstance(n, ast.arg):
                stores.add(n.arg)
            elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                stores.add(n.name)
    # a notebook's local variable named like a module it now needs (record = verdict.conclude(...)) is renamed first
    needed = {split(SYMBOLS[k])[1] for k in SYMBOLS} & set(LOCAL_RENAMES) & stores
    if where.endswith(".ipynb") and needed:
        if taken := {LOCAL_RENAMES[n] for n in needed} & stores:
            raise MoveError(f"{where}: cannot rename a local variable to {sorted(taken)}, a local name there too")
        for ci, tree in enumerate(trees):
            for n in ast.walk(tree):
                if isinstance(n, ast.Name) and n.id in needed:
                    e = edits[ci]
                    e.add(e.offset(n.lineno, n.col_offset), e.offset(n.end_lineno, n.end_col_offset),
                          LOCAL_RENAMES[n.id])
        stores -= needed
    plans = []  # (cell, node, {new module: [names]})
    for ci, tree in enumerate(trees):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = resolve(current, node)
                if not mod or not (mod == "dgnlib" or mod.startswith("dgnlib.")):
                    continue
                groups: dict[str, list[str]] = {}
                for a in node.names:
                    full = f"{mod}.{a.name}"
                    local = a.asname or a.name
                    if is_module(full):
                        bound[local], binder[local] = full, len(plans)
                        if full in PACKAGES:
                            target, name = split(PACKAGES[full])
                        elif MODULES[full] is None:
                            continue  # a removed module: every use must move by SYMBOLS (checked below)
                        else:
                            target, name = split(MODULES[full])
                        if a.asname:
                            groups.setdefault(target, []).append(f"{name} as {a.asname}" if a.asname != name else name)
                        elif name != a.name:  # a renamed module: its uses follow the new name
                            local = name if name not in stores else f"{target.rpartition('.')[2]}_{name}"
                            if local in stores:
                                raise MoveError(f"{where}: module {a.name} becomes {name}, a local name there")
                            renamed[a.name] = local
                            groups.setdefault(target, []).append(name if local == name else f"{name} as {local}")
                        else:
                            groups.setdefault(target, []).append(name)
                    else:
                        target = idx.home(mod, a.name)
                        groups.setdefault(target, []).append(a.name + (f" as {a.asname}" if a.asname else ""))
                plans.append((ci, node, groups))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("dgnlib.") and a.asname:
                        bound[a.asname] = a.name
    extra: dict[int, dict[str, set[str]]] = {}  # plan -> module -> names to import with it (-1: the first one)
    for ci, tree in enumerate(trees):
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                old = bound[node.value.id]
                if old in PACKAGES:
                    continue
                home = idx.home(old, node.attr)
                if home != MODULES.get(old):
                    parent, leaf = split(home)
                    local = leaf
                    if leaf in stores:  # the module's name is taken there: import it under its wing's prefix
                        local = f"{parent.rpartition('.')[2]}_{leaf}"
                        if local in stores:
                            raise MoveError(f"{where}: {node.value.id}.{node.attr} would become {leaf}.{node.attr}, "
                                            f"but {leaf} and {local} are local names there")
                    e = edits[ci]
                    e.add(e.offset(node.value.lineno, node.value.col_offset),
                          e.offset(node.value.end_lineno, node.value.end_col_offset), local)
                    extra.setdefault(binder.get(node.value.id, -1), {}).setdefault(parent, set()).add(
                        leaf if local == leaf else f"{leaf} as {local}")
                    node.value.id = "\0moved"
    for ci, tree in enumerate(trees):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Name):
                continue
            if node.id in bound and bound[node.id] not in PACKAGES and MODULES.get(bound[node.id], "") is None:
                raise MoveError(f"{where}: {node.id} (the removed {bound[node.id]}) is used as a whole")
            if node.id in renamed:
                new = renamed[node.id]
                e = edits[ci]
                e.add(e.offset(node.lineno, node.col_offset), e.offset(node.end_lineno, node.end_col_offset), new)
    # vocabulary constants defined here move to dgnlib.names (their values must be the same)
    if where.startswith("dgnlib/"):
        tree, e = trees[0], edits[0]
        for node in tree.body:
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            t = node.targets[0]
            names = [t.id] if isinstance(t, ast.Name) else (
                [x.id for x in t.elts if isinstance(x, ast.Name)] if isinstance(t, ast.Tuple) else [])
            if not names or not all(SYMBOLS.get((current, n)) == "dgnlib.names" for n in names):
                continue
            value = ast.literal_eval(node.value)
            values = [value] if isinstance(t, ast.Name) else list(value)
            for n, v in zip(names, values):
                if vocabulary[n] != v:
                    raise MoveError(f"{where}: {n} = {v!r} differs from dgnlib.names.{n} = {vocabulary[n]!r}")
            start = e.starts[node.lineno - 1]
            e.add(start, e.starts[node.end_lineno], "")
            used_here = {x.id for x in ast.walk(tree) if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load)}
            for n in names:
                if n in used_here:
                    extra.setdefault(-1, {}).setdefault("dgnlib.names", set()).add(n)
    used = {n.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    used |= set(renamed.values()) | {n.rpartition(" as ")[2] for m in extra.values() for v in m.values() for n in v}
    if where.startswith("dgnlib/"):
        used |= {n.id for n in ast.walk(trees[0]) if isinstance(n, ast.Name)}  # ruff judges unused imports there
        used |= {a.asname or a.name for p in plans for a in p[1].names}  # keep re-exports for ruff's F401 to judge
    first = next((k for k, (_, node, _) in enumerate(plans) if node.col_offset == 0), None)
    if -1 in extra and first is not None:
        for parent, leaves in extra.pop(-1).items():
            extra.setdefault(first, {}).setdefault(parent, set()).update(leaves)
    for k, (ci, node, groups) in enumerate(plans):
        if k in extra:
            for parent, leaves in extra[k].items():
                have = groups.setdefault(parent, [])
                for leaf in sorted(leaves):
                    if leaf not in have:
                        have.append(leaf)
        e = edits[ci]
        indent = e.text[e.starts[node.lineno - 1]:e.offset(node.lineno, node.col_offset)]
        stmts = []
        for target, names in groups.items():
            keep = [n for n in names if n.split(" as ")[-1] in used
                    or not is_module(f"{target}.{n.split(' as ')[0]}") and target != "dgnlib"]
            if keep:
                stmts.append(format_from(target, keep, indent))
        start = e.offset(node.lineno, node.col_offset)
        end = e.offset(node.end_lineno, node.end_col_offset)
        if stmts:
            e.add(start, end, ("\n" + indent).join(stmts))
        else:  # nothing left to import: drop the statement with its line
            e.add(e.starts[node.lineno - 1], e.starts[node.end_lineno], "")
    for k, mods in extra.items():
        if k != -1:
            continue
        ci = 0
        tops = [n for n in trees[ci].body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if not tops:
            raise MoveError(f"{where}: a moved name is used in a cell without an import")
        e = edits[ci]
        at = e.starts[tops[-1].end_lineno]
        e.add(at, at, "".join(format_from(m, sorted(v), "") + "\n" for m, v in sorted(mods.items())))
    return edits


# ---------------------------------------------------------------- rewriting text references

DOTTED = re.compile(r"\bdgnlib((?:\.[A-Za-z_]\w*)+)")
FROM_STRING = re.compile(r"\bfrom (dgnlib(?:\.\w+)*) import (\w+(?:, \w+)*)")
SLASHED = re.compile(r"\bdgnlib/((?:\w+/)*\w+)\.py\b")


def dotted_new(text: str, idx: Index, where: str) -> str:
    """The new spelling of a dotted reference dgnlib.a.b.c (longest old module prefix, then its symbol)."""
    parts = text.split(".")
    for k in range(len(parts), 0, -1):
        mod = ".".join(parts[:k])
        if mod in PACKAGES:
            if k < len(parts) and not is_module(f"{mod}.{parts[k]}") and mod != "dgnlib":
                return text
            if k == len(parts) or mod == "dgnlib" and not is_module(f"{mod}.{parts[k]}"):
                return text
        if mod in MODULES:
            rest = parts[k:]
            if rest and rest[0] not in ("py",):
                try:
                    return ".".join([idx.home(mod, rest[0]), *rest])
                except MoveError:
                    if MODULES[mod] is None:
                        raise MoveError(f"{where}: {text}: no row in SYMBOLS") from None
            if MODULES[mod] is None:
                if mod in REDIRECTS:
                    return ".".join([REDIRECTS[mod], *rest])
                raise MoveError(f"{where}: reference to the removed module {mod}")
            return ".".join([MODULES[mod], *rest])
    return text


def text_edits(e: Edits, idx: Index, where: str) -> None:
    """Edits for dotted module references and dgnlib/x.py paths anywhere in a text (strings, comments, docs)."""
    for m in FROM_STRING.finditer(e.text):  # an import inside a string (code run in a subprocess or a fixture)
        if e.covered(m.start()):
            continue
        mod, names = m.group(1), [n.strip() for n in m.group(2).split(",")]
        if mod not in MODULES and mod not in PACKAGES:
            continue
        out = {}
        for name in names:
            full = f"{mod}.{name}"
            if is_module(full):
                if MODULES.get(full, full) is None:
                    raise MoveError(f"{where}: 'from {mod} import {name}' in a string names a removed module")
                parent, leaf = split(MODULES.get(full) or PACKAGES[full])
                out.setdefault(parent, []).append(leaf if leaf == name else f"{leaf} as {name}")
            else:
                out.setdefault(idx.home(mod, name), []).append(name)
        e.add(m.start(), m.end(), "\n".join(f"from {t} import {', '.join(n)}" for t, n in out.items()))
    for m in DOTTED.finditer(e.text):
        if e.covered(m.start()):
            continue
        new = dotted_new(m.group(0), idx, where)
        if new != m.group(0):
            e.add(m.start(), m.end(), new)
    for m in SLASHED.finditer(e.text):
        if e.covered(m.start()):
            continue
        mod = "dgnlib." + m.group(1).replace("/", ".")
        if mod in MODULES:
            new = MODULES[mod] or REDIRECTS.get(mod)
            if new is None:
                raise MoveError(f"{where}: path of the removed module {mod}")
            e.add(m.start(), m.end(), new_path(new).as_posix())


# ---------------------------------------------------------------- the move


def check_tables() -> None:
    """Stop, listing them, when modules of the checkout have no row in MODULES."""
    found = {module_of(p) for p in Path("dgnlib").glob("*.py")} | {module_of(p) for p in Path("dgnlib").glob("*/*.py")}
    unknown = sorted(found - set(MODULES))
    if unknown:
        raise MoveError("no row in MODULES for: " + ", ".join(unknown) + " (add them to MODULES in move.py)")
    if Path("dgnlib/names.py").exists() or Path("dgnlib/core").exists():
        raise MoveError("dgnlib/names.py or dgnlib/core/ exists already: the move was made")


def tracked_texts() -> list[Path]:
    out = []
    for line in git("ls-files").splitlines():
        p = Path(line)
        if set(p.parts) & SKIP_DIRS or not p.is_file():
            continue
        if p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES or p.suffix == ".ipynb":
            out.append(p)
    return out


def rewrite_all(idx: Index, vocabulary: dict[str, object]) -> dict[Path, str]:
    """New contents of every tracked text file (nothing written yet)."""
    out, errors = {}, []
    for p in tracked_texts():
        where = p.as_posix()
        if p.suffix == ".py" and p.parts[0] == "dgnlib" and MODULES.get(module_of(p), "") is None:
            continue  # a removed module (its names move by SYMBOLS)
        try:
            if p.suffix == ".py":
                text = p.read_text()
                current = module_of(p) if p.parts[0] == "dgnlib" else "__main__"
                (e,) = rewrite_sources([text], current, where, idx, vocabulary)
                text_edits(e, idx, where)
                new = e.apply()
            elif p.suffix == ".ipynb":
                raw = p.read_text()
                nb = json.loads(raw)
                cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
                srcs = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
                es = rewrite_sources(srcs, "__main__", where, idx, vocabulary)
                for c, e in zip(cells, es):
                    text_edits(e, idx, where)
                    c["source"] = lines_like(c["source"], e.apply())
                for c in nb["cells"]:
                    if c["cell_type"] == "markdown":
                        s = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                        e = Edits(s)
                        text_edits(e, idx, where)
                        c["source"] = lines_like(c["source"], e.apply())
                new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
                if json.loads(raw) == nb:
                    new = raw
            else:
                text = p.read_text()
                e = Edits(text)
                text_edits(e, idx, where)
                new = e.apply()
            if p.name == "pyproject.toml":
                new = re.sub(r'packages = \[[^\]]*\]', 'packages = [' + ", ".join(
                    f'"{pkg}"' for pkg in ["dgnlib", *(f"dgnlib.{w}" for w in sorted({*NEW_PACKAGES, "companion"}))]
                ) + "]", new)
        except (MoveError, ValueError) as exc:
            errors.append(str(exc))
            continue
        if new != p.read_text():
            out[p] = new
    if errors:
        raise MoveError("\n  ".join(["cannot rewrite:", *errors]))
    return out


def lines_like(old: object, text: str) -> object:
    """A cell source in the form it had (a list of lines, or one string)."""
    return text.splitlines(keepends=True) if isinstance(old, list) else text


def strip_reexport_noqa() -> None:
    """Drop the `noqa: F401` of re-exports, so that ruff removes the imports nobody uses any more."""
    for p in Path("dgnlib").rglob("*.py"):
        text = p.read_text()
        new = re.sub(r"^(\s*from dgnlib[.\w]* import [^\n]*?)  # noqa: [^\n]*F401[^\n]*", r"\1", text, flags=re.M)
        if new != text:
            p.write_text(new)


def main() -> int:
    try:
        if git("status", "--porcelain", "--untracked-files=no").strip():
            raise MoveError("the work tree has uncommitted changes: commit or stash them first")
        check_tables()
        names_src = (KIT / "names.py").read_text()
        vocabulary = {}
        for node in ast.parse(names_src).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in VOCABULARY:
                vocabulary[node.targets[0].id] = ast.literal_eval(node.value)
        idx = Index()
        contents = rewrite_all(idx, vocabulary)
    except MoveError as exc:
        print(f"move.py: {exc}", file=sys.stderr)
        return 2
    for p, text in contents.items():
        p.write_text(text)
    Path("dgnlib/names.py").write_text(names_src)
    git("add", "dgnlib/names.py")
    for wing, doc in NEW_PACKAGES.items():
        Path(f"dgnlib/{wing}").mkdir(exist_ok=True)
        text = textwrap.fill(f'"""{doc}"""', width=120, break_on_hyphens=False)
        Path(f"dgnlib/{wing}/__init__.py").write_text(text + "\n")
        git("add", f"dgnlib/{wing}/__init__.py")
    for old, new in MODULES.items():
        src, dst = new_path(old), new_path(new) if new else None
        if not src.exists():
            continue
        if dst is None:
            git("rm", "-q", "-f", src.as_posix())
        elif dst != src:
            git("mv", src.as_posix(), dst.as_posix())
    git("add", "-u")
    strip_reexport_noqa()
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "--quiet", "--select", "F401,I",
                    "dgnlib", "tests", "bench"], check=False)
    git("add", "-A", "dgnlib", "tests", "bench")
    print(f"move.py: {len(contents)} files rewritten, {sum(1 for o, n in MODULES.items() if n != o)} modules moved")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
