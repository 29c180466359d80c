"""Run the notebooks with papermill: validate parameters, execute, cache, record provenance, keep README in step.

One notebook runs with `out_dir` pointed at a fresh folder `build/tmp/<profile>/<id>/`. Only when it succeeds are
its files moved into `figures/` (one `os.replace` per file), then `figures/MANIFEST.json` is rewritten (temp +
rename), then the cache entry `build/cache/<profile>/<id>.json` is written last. A failing or interrupted notebook
therefore leaves its previous figures, its manifest entry and its cache entry as they were.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import contextlib
import difflib
import hashlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from dgnlib.report import PROFILES, repo_root

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

CACHE_FORMAT = 1
INJECTED = ("profile", "out_dir")
NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
# Files of dgnlib that drive the runner only: a change to them does not change any figure.
RUNNER_ONLY = frozenset({"runner.py", "render.py", "cli.py", "__main__.py"})
MAIN_PACKAGES = ("torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "pooch", "papermill", "ipykernel")
INDEX_ID = "00"  # the front page: it lists the other figures, so it runs last and is never served from the cache
README_START = "<!-- figures:start -->"
README_END = "<!-- figures:end -->"
UNKNOWN = object()  # a default that is not a Python literal: any value is accepted


class InputError(Exception):
    """Bad input (profile file, parameter, notebook selection): exit status 2, nothing has run."""


# ---------------------------------------------------------------------------------------------------------------
# Layout and notebooks


@dataclass(frozen=True)
class Layout:
    """Where the runner reads and writes; every path derives from the repository root unless given."""

    root: Path
    notebooks: Path
    profiles: Path
    figures: Path
    build: Path
    readme: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None, **paths: str | os.PathLike) -> Layout:
        """The standard layout under `root` (default: the repository root); keyword paths override parts."""
        base = Path(root).resolve() if root is not None else repo_root()
        parts = {
            "notebooks": base / "notebooks",
            "profiles": base / "profiles",
            "figures": base / "figures",
            "build": base / "build",
            "readme": base / "README.md",
        }
        parts.update({k: Path(v).resolve() for k, v in paths.items()})
        return cls(root=base, **parts)

    def rel(self, path: Path) -> str:
        """`path` relative to the root when inside it (POSIX separators), else absolute."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def executed(self, profile: str) -> Path:
        """Folder of the executed copies for `profile`."""
        return self.build / "executed" / profile

    def cache_file(self, profile: str, fig_id: str) -> Path:
        """The cache entry of one notebook under one profile."""
        return self.build / "cache" / profile / f"{fig_id}.json"

    def tmp_out(self, profile: str, fig_id: str) -> Path:
        """The temporary `out_dir` of one notebook's run."""
        return self.build / "tmp" / profile / fig_id

    @property
    def manifest(self) -> Path:
        """figures/MANIFEST.json."""
        return self.figures / "MANIFEST.json"


@dataclass(frozen=True)
class Param:
    """One name of a notebook's parameters cell: its default (a Python value, or UNKNOWN) and its source text."""

    name: str
    default: Any
    source: str


@dataclass
class Notebook:
    """A notebook `NN_name.ipynb`: id NN, stem NN_name, and its declared parameters."""

    path: Path
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """`03_depth_spectrum`."""
        return self.path.stem

    @property
    def id(self) -> str:
        """`03`."""
        return self.path.name[:2]


@dataclass
class Job:
    """One notebook to run under one profile, with its validated overrides and its cache key."""

    notebook: Notebook
    overrides: dict[str, Any]
    key: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # then cached | executed | failed | not run
    reason: str = ""
    seconds: float = 0.0


def find_notebooks(layout: Layout) -> list[Notebook]:
    """The notebooks `NN_name.ipynb` of the notebooks folder, sorted by name."""
    if not layout.notebooks.is_dir():
        return []
    paths = [p for p in layout.notebooks.iterdir() if NOTEBOOK_NAME.match(p.name)]
    ids: dict[str, Path] = {}
    for path in sorted(paths):
        if path.name[:2] in ids:
            raise InputError(
                f"{layout.rel(path)} and {layout.rel(ids[path.name[:2]])} share the id {path.name[:2]}: "
                "each notebook needs its own two-digit prefix"
            )
        ids[path.name[:2]] = path
    return [Notebook(p) for p in sorted(paths)]


def run_order(nb: Notebook) -> tuple[bool, str]:
    """Sort key: by name, the index page last (it reads what the others wrote)."""
    return nb.id == INDEX_ID, nb.stem


def select(notebooks: Sequence[Notebook], only: str | Sequence[str] | None) -> list[Notebook]:
    """The notebooks named by `--only` (ids like 03 or stems, comma separated); all when `only` is empty."""
    if not only:
        return sorted(notebooks, key=run_order)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    chosen = []
    for name in names:
        name = name.zfill(2) if name.isdigit() else name
        match = [nb for nb in notebooks if name in (nb.id, nb.stem, nb.path.name)]
        if not match:
            known = ", ".join(nb.id for nb in notebooks) or "none"
            raise InputError(f"--only {name}: no notebook with that id or name (ids available: {known})")
        if match[0] not in chosen:
            chosen.append(match[0])
    return sorted(chosen, key=run_order)


def read_params(layout: Layout, nb: Notebook) -> dict[str, Param]:
    """The parameters declared in the notebook's cell tagged `parameters` (papermill.inspect_notebook)."""
    import nbformat
    import papermill

    try:
        found = papermill.inspect_notebook(str(nb.path))
    except ValueError:  # no kernelspec in the notebook: inspect its parameters cell as Python
        from papermill.translators import PythonTranslator

        node = nbformat.read(nb.path, as_version=4)
        cells = [c for c in node.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        found = {p.name: p._asdict() for p in PythonTranslator.inspect(cells[0])} if cells else {}
    except Exception as exc:  # unreadable JSON and the like
        raise InputError(f"{layout.rel(nb.path)}: cannot read the notebook ({type(exc).__name__}: {exc})") from exc
    if not found:
        raise InputError(
            f"{layout.rel(nb.path)}: no cell tagged 'parameters' (or it is empty): the first code cell must be "
            "tagged `parameters` and define at least profile, out_dir and seed (see CONTRIBUTING.md)"
        )
    return {name: Param(name, _literal(info["default"], info.get("inferred_type_name")), info["default"])
            for name, info in found.items()}


_TYPE_SAMPLES = {"int": 0, "float": 0.0, "str": "", "bool": False, "list": [], "dict": {}}


def _literal(source: str, annotation: str | None) -> Any:
    """A default's value from its source text; a sample of its annotated type, or UNKNOWN, when not a literal."""
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _TYPE_SAMPLES.get(annotation or "", UNKNOWN)


# ---------------------------------------------------------------------------------------------------------------
# Parameter validation


def type_name(default: Any) -> str:
    """The expected type of a value, read from a default: int, float, str, bool, list of int, dict, any."""
    if default is None or default is UNKNOWN:
        return "any"
    if isinstance(default, (list, tuple)):
        inner = sorted({type_name(d) for d in default})
        return f"list of {' or '.join(inner)}" if inner else "list"
    return type(default).__name__


def compatible(value: Any, default: Any) -> bool:
    """Whether `value` may replace `default`: same type; float accepts int; bool is not int; lists elementwise."""
    if default is None or default is UNKNOWN:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        return not default or all(any(compatible(v, d) for d in default) for v in value)
    return isinstance(value, type(default))


def _hint(value: Any, default: Any) -> str:
    """Extra advice for a common mistake: a number written so that YAML reads it as a string."""
    wants_number = isinstance(default, (int, float)) and not isinstance(default, bool)
    if isinstance(value, str) and wants_number and "e" in value.lower():
        try:
            number = float(value)
        except ValueError:
            return ""
        return (f" YAML reads {value} as a string: write it with a decimal point and a signed exponent, "
                f"e.g. {number:.1e}".replace("e-0", "e-").replace("e+0", "e+"))
    return ""


def check_param(nb: Notebook, key: str, value: Any, where: str) -> str | None:
    """An error message when `key` is not a parameter of `nb` or `value` has the wrong type; None when fine."""
    if key in INJECTED:
        how = "from --profile" if key == "profile" else "to a temporary folder whose files then move to figures/"
        return f"{where}: notebook {nb.stem}: '{key}' is set by the runner ({how}); remove it"
    if key not in nb.params:
        close = difflib.get_close_matches(key, list(nb.params), n=1)
        suggestion = f" (did you mean '{close[0]}'?)" if close else ""
        names = ", ".join(k for k in nb.params if k not in INJECTED)
        return (f"{where}: notebook {nb.stem} ({nb.path.name}) has no parameter '{key}'{suggestion}; "
                f"its parameters are: {names}")
    param = nb.params[key]
    if not compatible(value, param.default):
        return (f"{where}: notebook {nb.stem}: parameter '{key}' expects {type_name(param.default)} "
                f"(default {param.source}), got {type(value).__name__} {value!r}.{_hint(value, param.default)}")
    return None


def load_profile(layout: Layout, profile: str) -> dict[str, dict[str, Any]]:
    """Read `profiles/<profile>.yaml`: notebook stem -> parameter overrides (an empty file is an empty mapping)."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    path = layout.profiles / f"{profile}.yaml"
    where = layout.rel(path)
    if not path.is_file():
        raise InputError(f"{where}: profile file not found (create it; an empty file means: all defaults)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{where}: malformed YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of notebook name -> parameters, got {type(data).__name__}")
    sections = {}
    for stem, section in data.items():
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise InputError(
                f"{where}: section {stem!r} must map parameter names to values, got {type(section).__name__}"
            )
        sections[str(stem)] = section
    return sections


def parse_sets(items: Sequence[str] | None) -> list[tuple[str | None, str, Any]]:
    """`--set key=value` or `--set NN.key=value` (one notebook) -> (target or None, key, value parsed as YAML)."""
    parsed = []
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set {item}: expected key=value or NN.key=value (e.g. --set seed=1)")
        target, _, key = name.strip().rpartition(".")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item}: the value is not valid YAML ({exc})") from exc
        parsed.append((target or None, key, value))
    return parsed


def validate(
    layout: Layout, profile: str, notebooks: Sequence[Notebook], chosen: Sequence[Notebook],
    sets: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Check the profile file and the --set overrides against the notebooks; stem -> overrides for `chosen`."""
    sections = load_profile(layout, profile)
    where = layout.rel(layout.profiles / f"{profile}.yaml")
    by_name = {nb.stem: nb for nb in notebooks}
    errors = []
    for nb in notebooks:
        if not nb.params and (nb in chosen or nb.stem in sections):  # others may be half-written: leave them
            nb.params = read_params(layout, nb)
        missing = [k for k in INJECTED if k not in nb.params]
        if missing and nb in chosen:
            errors.append(f"{layout.rel(nb.path)}: its parameters cell lacks {', '.join(missing)}: add e.g. "
                          'profile = "paper" and out_dir = "figures" (see CONTRIBUTING.md)')
    for stem, section in sections.items():
        if stem not in by_name:
            known = ", ".join(by_name) or "none"
            errors.append(f"{where}: section '{stem}' names no notebook in {layout.rel(layout.notebooks)} "
                          f"(notebooks: {known})")
            continue
        errors += [e for k, v in section.items() if (e := check_param(by_name[stem], str(k), v, where))]
    overrides = {nb.stem: dict(sections.get(nb.stem, {})) for nb in chosen}
    for target, key, value in parse_sets(sets):
        if target is None:
            targets = list(chosen)
        else:
            targets = [nb for nb in chosen if target in (nb.id, nb.stem)]
            if not targets:
                errors.append(f"--set {target}.{key}: no selected notebook has the id or name {target!r}")
        for nb in targets:
            if (error := check_param(nb, key, value, "--set")) is None:
                overrides[nb.stem][key] = value
            else:
                if target is None and key not in nb.params and key not in INJECTED:
                    error += f" (to set it for one notebook only, write --set NN.{key}=... or use --only)"
                errors.append(error)
    if errors:
        raise InputError("\n".join(errors))
    return overrides


def effective_parameters(layout: Layout, nb: Notebook, profile: str, overrides: Mapping[str, Any]) -> dict:
    """The full set of values the notebook ran with: defaults, then overrides, then what the runner injects."""
    values = {name: (p.source if p.default is UNKNOWN else p.default) for name, p in nb.params.items()}
    values.update(overrides)
    values.update(profile=profile, out_dir=layout.rel(layout.figures))
    return values


# ---------------------------------------------------------------------------------------------------------------
# Cache key


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(obj: Any) -> str:
    """SHA-256 of a JSON-serialisable object in canonical form."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def source_files() -> list[Path]:
    """The dgnlib files that notebooks use (everything in the package except the runner's own modules)."""
    package = Path(__file__).resolve().parent
    return sorted(
        p for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and p.name not in RUNNER_ONLY
    )


def package_versions() -> dict[str, str | None]:
    """Installed versions of Python, dgnlib and the main packages (from metadata; nothing is imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("dgnlib", *MAIN_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


HEX_DIGEST = re.compile(r"\b(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{32})\b")


def data_checksums() -> list[str] | None:
    """The expected checksums of the data files: every SHA-256 / MD5 hex digest written in dgnlib/data.py.

    Read from the source text rather than by importing dgnlib.data (which imports torch: seconds); a data set
    is identified by the digests its loader verifies. None when dgnlib/data.py is absent.
    """
    try:
        text = (Path(__file__).resolve().parent / "data.py").read_text()
    except OSError:
        return None
    return sorted({d.lower() for d in HEX_DIGEST.findall(text)}) or None


@dataclass
class Context:
    """What every cache key and manifest entry of one invocation shares (computed once)."""

    sources: str
    versions: dict[str, str | None]
    data: str
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def now(cls) -> Context:
        """Hash the dgnlib sources, read the package versions and the data checksums."""
        files = {_source_name(p): sha256_file(p) for p in source_files() if p.is_file()}
        return cls(sources=_digest(files), versions=package_versions(), data=_digest(data_checksums()), files=files)


def _source_name(path: Path) -> str:
    """A stable name for a hashed source file (relative to the dgnlib package when inside it)."""
    package = Path(__file__).resolve().parent
    try:
        return path.resolve().relative_to(package).as_posix()
    except ValueError:
        return path.name


def code_digest(path: Path) -> str:
    """SHA-256 over the sources of the notebook's code cells (markdown and outputs do not count)."""
    import nbformat

    node = nbformat.read(path, as_version=4)
    return _digest([c.source for c in node.cells if c.cell_type == "code"])


def cache_key(nb: Notebook, profile: str, overrides: Mapping[str, Any], ctx: Context) -> tuple[str, dict]:
    """The cache key of one run and its named parts (to say why a notebook reruns)."""
    parts = {
        "notebook code": code_digest(nb.path),
        "parameters": _digest({**overrides, "profile": profile}),
        "dgnlib sources": ctx.sources,
        "package versions": _digest(ctx.versions),
        "data checksums": ctx.data,
        "cache format": str(CACHE_FORMAT),
    }
    return _digest(parts), parts


def read_json(path: Path) -> dict | None:
    """A JSON object from a file, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cache_status(layout: Layout, profile: str, job: Job, ctx: Context) -> tuple[bool, str]:
    """(True, '') when the cache entry matches the key and its outputs are intact; else (False, why not)."""
    entry = read_json(layout.cache_file(profile, job.notebook.id))
    if entry is None:
        return False, "no cache entry"
    if entry.get("key") != job.key:
        old = entry.get("parts", {})
        changed = [name for name, value in job.parts.items() if old.get(name) != value]
        if "dgnlib sources" in changed and isinstance(entry.get("source_files"), dict):
            before = entry["source_files"]
            files = sorted(n for n in set(before) | set(ctx.files) if before.get(n) != ctx.files.get(n))
            changed[changed.index("dgnlib sources")] = f"dgnlib sources ({', '.join(files)})"
        return False, f"{', '.join(changed) or 'cache key'} changed"
    for name, digest in entry.get("outputs", {}).items():
        path = layout.figures / name
        if not path.is_file() or sha256_file(path) != digest:
            return False, f"{layout.rel(path)} missing or changed since the cached run"
    if not (layout.executed(profile) / f"{job.notebook.stem}.ipynb").is_file():
        return False, "executed copy missing"
    return True, ""


# ---------------------------------------------------------------------------------------------------------------
# Execution (may run in a worker process: plain data in, plain data out)


def execute(task: dict) -> dict:
    """Run one notebook with papermill into its fresh temporary out_dir; never touches figures/."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    tmp_out, executed = Path(task["tmp_out"]), Path(task["executed"])
    partial = executed.with_name(f".{executed.stem}.partial.ipynb")
    failed = executed.with_name(f"{executed.stem}.failed.ipynb")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    executed.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    parameters = {**task["overrides"], "profile": task["profile"], "out_dir": str(tmp_out)}
    bar: bool | dict = {"desc": task["stem"], "leave": False, "position": task.get("position", 0)}
    result = {"stem": task["stem"], "started": _utc_now(), "status": "failed", "cell": None, "exec_count": None}
    start = time.monotonic()
    previous = _sigint(signal.default_int_handler)  # a worker ignores Ctrl-C except while a notebook runs
    try:
        papermill.execute_notebook(
            str(task["notebook"]), str(partial), parameters=parameters, kernel_name="python3",
            cwd=str(task["cwd"]), progress_bar=bar if task.get("progress") else False,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not the kernel's transport warnings
        )
    except PapermillExecutionError as exc:
        result.update(cell=exc.cell_index, exec_count=exc.exec_count, error=f"{exc.ename}: {exc.evalue}")
    except KeyboardInterrupt:
        _sigint(signal.SIG_IGN)
        partial.unlink(missing_ok=True)
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    except Exception as exc:  # kernel died, timeout, unreadable notebook ...
        result.update(error=f"{type(exc).__name__}: {exc}")
    else:
        result["status"] = "executed"
    finally:
        _sigint(previous)
    result["seconds"] = round(time.monotonic() - start, 2)
    if result["status"] == "executed":
        os.replace(partial, executed)
        failed.unlink(missing_ok=True)
        result["executed"] = str(executed)
        result["outputs"] = sorted(p.name for p in tmp_out.iterdir() if p.is_file() and not p.name.startswith("."))
    elif partial.exists():
        os.replace(partial, failed)
        result["executed"] = str(failed)
    else:
        result["executed"] = None
    return result


def _utc_now() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _ignore_sigint() -> None:
    """Worker initialiser: an idle worker ignores Ctrl-C (execute() takes it while a notebook runs)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sigint(handler: Any) -> Any:
    """Install a SIGINT handler in the main thread and return the previous one (no-op elsewhere or for None)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------------------------------------------------
# Commit: figures, manifest, cache (in that order), all in the parent process


def file_mode() -> int:
    """The mode a new file gets under the current umask (temporary files are created 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_into(src: Path, dst: Path) -> None:
    """Move a file onto `dst` atomically (copy beside it first when the two are on different file systems)."""
    os.chmod(src, file_mode())
    try:
        os.replace(src, dst)
    except OSError:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        src.unlink()


@contextlib.contextmanager
def no_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C while the block runs (main thread only) and raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked or untracked sources differ from it); figures/ and README.md do not count."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)figures", ":(exclude)README.md")
    return commit, (None if status is None else bool(status))


def read_manifest(layout: Layout) -> dict:
    """figures/MANIFEST.json, or an empty manifest when missing or unreadable."""
    data = read_json(layout.manifest) or {}
    if not isinstance(data.get("figures"), dict):
        data["figures"] = {}
    return data


def write_manifest(layout: Layout, manifest: dict) -> None:
    """Write figures/MANIFEST.json atomically, figures sorted by id."""
    from dgnlib import __version__

    ordered = {
        "generated_by": f"dgnlib {__version__} runner (dgn reproduce)",
        "updated": _utc_now(),
        **{k: v for k, v in manifest.items() if k not in ("generated_by", "updated", "figures")},
        "figures": dict(sorted(manifest["figures"].items())),
    }
    write_atomic(layout.manifest, json.dumps(ordered, indent=2) + "\n")


def manifest_entry(
    layout: Layout, profile: str, job: Job, result: dict, outputs: dict[str, str], run: dict, previous: dict
) -> dict:
    """The manifest record of a successful run."""
    nb = job.notebook
    verdict = read_json(layout.figures / f"{nb.id}.json") if f"{nb.id}.json" in outputs else None
    by_profile = dict(previous.get("run_seconds_by_profile", {}))
    by_profile[profile] = result["seconds"]
    return {
        "id": nb.id,
        "notebook": layout.rel(nb.path),
        "executed_notebook": layout.rel(Path(result["executed"])),
        "profile": profile,
        "parameters": effective_parameters(layout, nb, profile, job.overrides),
        "overrides": job.overrides,
        "git_commit": run["commit"],
        "git_dirty": run["dirty"],
        "versions": {k: run["versions"].get(k) for k in ("dgnlib", "torch", "python")},
        "started": result["started"],
        "run_seconds": result["seconds"],
        "run_seconds_by_profile": dict(sorted(by_profile.items())),
        "outputs": outputs,
        "claim": (verdict or {}).get("claim"),
        "verdict": (verdict or {}).get("verdict"),
    }


def commit(layout: Layout, profile: str, job: Job, result: dict, run: dict) -> dict:
    """Move the outputs into figures/, update the manifest, then write the cache entry (last)."""
    tmp_out = Path(result["tmp_out"])
    layout.figures.mkdir(parents=True, exist_ok=True)
    with no_interrupt():
        outputs = {name: sha256_file(tmp_out / name) for name in result["outputs"]}
        for name in outputs:
            move_into(tmp_out / name, layout.figures / name)
        manifest = read_manifest(layout)
        previous = manifest["figures"].get(job.notebook.id, {})
        for stale in set(previous.get("outputs", {})) - set(outputs):
            if stale.startswith(job.notebook.id):
                (layout.figures / stale).unlink(missing_ok=True)
        entry = manifest_entry(layout, profile, job, result, outputs, run, previous)
        manifest["figures"][job.notebook.id] = entry
        write_manifest(layout, manifest)
        cache = {"key": job.key, "parts": job.parts, "source_files": run["files"], "outputs": outputs, "entry": entry}
        write_atomic(layout.cache_file(profile, job.notebook.id), json.dumps(cache, indent=2) + "\n")
    shutil.rmtree(tmp_out, ignore_errors=True)
    return entry


def restore_entry(layout: Layout, profile: str, job: Job) -> None:
    """For a cached notebook whose manifest entry is missing or out of date, put back the cached one."""
    cached = read_json(layout.cache_file(profile, job.notebook.id)) or {}
    entry = cached.get("entry")
    manifest = read_manifest(layout)
    current = manifest["figures"].get(job.notebook.id)
    if entry and (current is None or current.get("outputs") != entry.get("outputs")):
        if current:
            entry["run_seconds_by_profile"] = {**current.get("run_seconds_by_profile", {}),
                                               **entry.get("run_seconds_by_profile", {})}
        manifest["figures"][job.notebook.id] = entry
        with no_interrupt():
            write_manifest(layout, manifest)


# ---------------------------------------------------------------------------------------------------------------
# README table


def _cell(text: Any) -> str:
    """Text safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else "—"


def format_seconds(seconds: float | None) -> str:
    """12 s, 3 min 20 s, 1 h 02 min; — when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds) // 60
    if minutes < 60:
        return f"{minutes} min {round(seconds) % 60:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def readme_table(layout: Layout, manifest: dict) -> str:
    """The figures table (Markdown) built from the manifest, with links relative to the README's folder."""
    base = layout.readme.parent

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, base)).as_posix()

    lines = [
        "<!-- generated by `dgn reproduce` from figures/MANIFEST.json: do not edit by hand -->",
        "",
        "| id | claim | notebook | verdict (profile) | quick-profile run time | figure |",
        "|---|---|---|---|---|---|",
    ]
    for fig_id, entry in sorted(manifest["figures"].items()):
        if fig_id == INDEX_ID:
            continue
        notebook = layout.root / entry.get("notebook", "")
        verdict = f"{_cell(entry.get('verdict'))} ({entry.get('profile', '?')})"
        seconds = entry.get("run_seconds_by_profile", {}).get("quick")
        png = f"{fig_id}.png"
        thumb = f'<img src="{link(layout.figures / png)}" width="160">' if png in entry.get("outputs", {}) else "—"
        lines.append(
            f"| {fig_id} | {_cell(entry.get('claim'))} | [{notebook.stem}]({link(notebook)}) | {verdict} "
            f"| {format_seconds(seconds)} | {thumb} |"
        )
    return "\n".join(lines)


def update_readme(layout: Layout, manifest: dict | None = None) -> bool:
    """Replace the block between the README markers with the figures table; True when the file changed."""
    if not layout.readme.is_file():
        return False
    text = layout.readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    table = readme_table(layout, manifest or read_manifest(layout))
    new = f"{text[:start]}{README_START}\n{table}\n{text[end:]}"
    if new == text:
        return False
    with no_interrupt():
        write_atomic(layout.readme, new)
    return True


# ---------------------------------------------------------------------------------------------------------------
# Commands


def log(message: str) -> None:
    """One line of the run log (stderr, so that progress bars and log lines interleave sensibly)."""
    print(message, file=sys.stderr, flush=True)


def plan(
    layout: Layout, profile: str, only: str | Sequence[str] | None, sets: Sequence[str] | None
) -> list[Job]:
    """Find, select and validate the notebooks; raise InputError (exit 2) before anything runs."""
    notebooks = find_notebooks(layout)
    chosen = select(notebooks, only) if notebooks else []
    if only and not notebooks:
        raise InputError(f"--only {only}: there are no notebooks in {layout.rel(layout.notebooks)}")
    overrides = validate(layout, profile, notebooks, chosen, sets)
    return [Job(nb, overrides[nb.stem]) for nb in chosen]


def _task(layout: Layout, profile: str, job: Job, progress: bool, position: int) -> dict:
    """The plain-data description of one execution (picklable for worker processes)."""
    nb = job.notebook
    return {
        "notebook": str(nb.path), "stem": nb.stem, "profile": profile, "overrides": job.overrides,
        "tmp_out": str(layout.tmp_out(profile, nb.id)), "cwd": str(layout.root),
        "executed": str(layout.executed(profile) / f"{nb.stem}.ipynb"), "progress": progress, "position": position,
    }


def _report_failure(layout: Layout, job: Job, result: dict) -> None:
    """Say which notebook failed, in which cell, with which exception, and where the executed copy is."""
    cell = (f"cell {result['cell']} (In [{result['exec_count']}])" if result.get("cell") is not None
            else "outside any cell")
    error = result.get("error", "unknown error")
    error = error if len(error) < 600 else error[:600] + " ..."
    copy = layout.rel(Path(result["executed"])) if result.get("executed") else "none (it did not start)"
    log(f"FAILED   {job.notebook.stem} after {result.get('seconds', 0):.1f} s: {cell} raised {error}\n"
        f"         executed copy: {copy}\n"
        f"         its previous outputs in {layout.rel(layout.figures)}/ are left as they were")


def _finish(layout: Layout, profile: str, job: Job, result: dict, run: dict) -> None:
    """Commit a successful run or report a failed one; set the job's status."""
    job.seconds = result.get("seconds", 0.0)
    if result["status"] == "executed":
        result["tmp_out"] = str(layout.tmp_out(profile, job.notebook.id))
        entry = commit(layout, profile, job, result, run)
        job.status = "executed"
        verdict = f", verdict: {entry['verdict']}" if entry.get("verdict") else ""
        log(f"executed {job.notebook.stem} in {job.seconds:.1f} s ({len(entry['outputs'])} files{verdict})")
    else:
        job.status = "failed"
        _report_failure(layout, job, result)


def _run_serial(layout: Layout, profile: str, todo: list[Job], keep_going: bool, run: dict) -> None:
    """Run the jobs one after the other in this process."""
    for job in todo:
        log(f"running  {job.notebook.stem} ({profile} profile; {job.reason})")
        result = execute(_task(layout, profile, job, run["progress"], 0))
        _finish(layout, profile, job, result, run)
        if job.status == "failed" and not keep_going:
            return


def _run_parallel(layout: Layout, profile: str, todo: list[Job], keep_going: bool, run: dict, jobs: int) -> None:
    """Run the jobs in up to `jobs` worker processes; commits happen here, one at a time."""
    context = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_sigint)
    futures = {}
    try:
        for i, job in enumerate(todo):
            log(f"queued   {job.notebook.stem} ({profile} profile; {job.reason})")
            futures[pool.submit(execute, _task(layout, profile, job, run["progress"], i % jobs))] = job
        for future in cf.as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except cf.CancelledError:
                continue
            except Exception as exc:  # the worker process died
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
            _finish(layout, profile, job, result, run)
            if job.status == "failed" and not keep_going:
                for other in futures:
                    other.cancel()
    except KeyboardInterrupt:
        log("interrupted: stopping the running notebooks (nothing of theirs is kept) ...")
        for process in list(getattr(pool, "_processes", {}).values()):  # when only this process got Ctrl-C
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def reproduce(
    layout: Layout | None = None,
    profile: str = "quick",
    only: str | Sequence[str] | None = None,
    sets: Sequence[str] | None = None,
    force: bool = False,
    keep_going: bool = False,
    jobs: int = 1,
    progress: bool | None = None,
) -> int:
    """`dgn reproduce`: run the selected notebooks under a profile; returns the exit status."""
    layout = layout or Layout.at()
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: expected a positive number of parallel notebooks")
    started = time.monotonic()
    todo_jobs = plan(layout, profile, only, sets)
    if not todo_jobs:
        log(f"nothing to run: no notebooks named NN_name.ipynb in {layout.rel(layout.notebooks)}")
        return EXIT_OK
    ctx = Context.now()
    todo = []
    for job in todo_jobs:
        job.key, job.parts = cache_key(job.notebook, profile, job.overrides, ctx)
        if force:
            cached, job.reason = False, "--force"
        elif job.notebook.id == INDEX_ID:
            cached, job.reason = False, "the index page always reruns"
        else:
            cached, job.reason = cache_status(layout, profile, job, ctx)
        if cached:
            job.status = "cached"
            restore_entry(layout, profile, job)
            log(f"cached   {job.notebook.stem} (unchanged since its last {profile} run; --force reruns it)")
        else:
            todo.append(job)
    commit_id, dirty = git_state(layout.root) if todo else (None, None)
    run = {"commit": commit_id, "dirty": dirty, "versions": ctx.versions, "files": ctx.files,
           "progress": sys.stderr.isatty() if progress is None else progress}
    try:
        if jobs == 1 or len(todo) <= 1:
            _run_serial(layout, profile, todo, keep_going, run)
        else:
            _run_parallel(layout, profile, todo, keep_going, run, min(jobs, len(todo)))
    except KeyboardInterrupt:
        done = [j.notebook.stem for j in todo_jobs if j.status in ("executed", "cached")]
        log(f"interrupted: kept {', '.join(done) or 'nothing'}; the next run redoes only the rest")
        return EXIT_INTERRUPTED
    for job in todo:
        if job.status == "pending":
            job.status = "not run"
    update_readme(layout)
    return _summary(layout, todo_jobs, time.monotonic() - started)


def _summary(layout: Layout, jobs: Sequence[Job], seconds: float) -> int:
    """Log the totals and return the exit status (1 if any notebook failed)."""
    counts = {s: [j.notebook.stem for j in jobs if j.status == s] for s in ("executed", "cached", "failed", "not run")}
    log(f"done in {seconds:.1f} s: " + ", ".join(f"{len(v)} {k}" for k, v in counts.items()))
    if counts["not run"]:
        log(f"not run after the first failure (--keep-going runs them): {', '.join(counts['not run'])}")
    if counts["failed"]:
        log(f"failed: {', '.join(counts['failed'])}")
        return EXIT_FAILED
    if counts["executed"]:
        log(f"manifest: {layout.rel(layout.manifest)}")
    return EXIT_OK


def prepare(
    layout: Layout | None = None,
    profile: str = "smoke",
    dest: str | os.PathLike = "build/nbval",
    only: str | Sequence[str] | None = None,
    sets: Sequence[str] | None = None,
) -> int:
    """`dgn prepare`: write the parameterised notebooks (not executed) for nbval, out_dir = <dest>/figures."""
    import papermill

    layout = layout or Layout.at()
    jobs = plan(layout, profile, only, sets)
    folder = Path(dest) if Path(dest).is_absolute() else layout.root / dest
    figures = (folder / "figures").resolve()
    figures.mkdir(parents=True, exist_ok=True)
    if not jobs:
        log(f"nothing to prepare: no notebooks named NN_name.ipynb in {layout.rel(layout.notebooks)}")
        return EXIT_OK
    for job in jobs:
        target = folder / job.notebook.path.name
        parameters = {**job.overrides, "profile": profile, "out_dir": str(figures)}
        papermill.execute_notebook(
            str(job.notebook.path), str(target), parameters=parameters, prepare_only=True, kernel_name="python3",
            progress_bar=False,
        )
        log(f"prepared {layout.rel(target)}")
    return EXIT_OK
