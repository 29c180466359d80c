"""MANIFEST.json and the all-or-nothing commit of a figure's files, executed copy, manifest entry and cache entry.

A commit first writes a journal (build/commit/<destination>.json) naming the staged files and the new entries,
then moves the files, writes the manifest and the cache entry, and deletes the journal, all with SIGINT and
SIGTERM held back. A run killed outright (SIGKILL) mid-commit leaves the journal; the next run finishes the commit
(`recover`) before doing anything else, so files and manifest never disagree for long.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgnlib import __version__
from dgnlib.companion.execute import utc_now
from dgnlib.companion.fsio import move_atomic, read_json, sha256_file, signals_held, write_json
from dgnlib.companion.layout import Destination, InputError, Layout

# Written by `dgn verify --record` about one publication of a figure: a republished figure drops them (its new
# outputs are not the ones verified), even if an entry handed to a commit carried them along.
VERIFY_FIELDS = ("verified", "runs_read")


class ManifestError(InputError):
    """MANIFEST.json exists but cannot be read as a manifest: the run stops and leaves it as it is."""


@dataclass
class Manifest:
    """The figures of one destination: id -> entry (notebook, profile, parameters, outputs and their hashes...)."""

    path: Path
    figures: dict[str, dict[str, Any]]
    extra: dict[str, Any]

    @classmethod
    def read(cls, path: Path, layout: Layout) -> Manifest:
        """Read a manifest (empty when absent); raise ManifestError when it is there but unreadable."""
        if not path.exists():
            return cls(path, {}, {})
        advice = (f"it was left unchanged: restore it (e.g. `git checkout -- {layout.rel(path)}`, or resolve the "
                  "merge conflict), or delete it to rebuild it from the next runs")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{layout.rel(path)}: cannot read it ({exc}); {advice}") from exc
        except ValueError as exc:
            raise ManifestError(f"{layout.rel(path)}: not valid JSON ({exc}); {advice}") from exc
        figures = data.get("figures") if isinstance(data, dict) else None
        if not isinstance(figures, dict) or not all(isinstance(v, dict) for v in figures.values()):
            raise ManifestError(f"{layout.rel(path)}: not a manifest (expected {{'figures': {{id: entry}}}}); {advice}")
        for fig_id, entry in figures.items():
            if problem := entry_problem(entry):
                raise ManifestError(f"{layout.rel(path)}: figure {fig_id!r}: {problem}; {advice}")
        return cls(path, figures, {k: v for k, v in data.items() if k not in ("figures", "generated_by", "updated")})

    def write(self) -> None:
        """Write it atomically, figures sorted by id."""
        write_json(self.path, {"generated_by": f"dgnlib {__version__} (dgn reproduce)", "updated": utc_now(),
                               **self.extra, "figures": dict(sorted(self.figures.items()))})

    def last_seconds(self, fig_id: str, profile: str) -> float | None:
        """The last recorded run time of a figure under a profile, if any."""
        value = self.figures.get(fig_id, {}).get("run_seconds_by_profile", {}).get(profile)
        return value if isinstance(value, (int, float)) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# the fields the runner reads from an entry, with their type in words and a test of it (absent fields are fine)
ENTRY_FIELDS: dict[str, tuple[str, Any]] = {
    "outputs": ("a mapping of file name to SHA-256",
                lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(h, str) for k, h in v.items())),
    "run_seconds_by_profile": ("a mapping of profile to seconds",
                               lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values())),
    "run_seconds": ("a number of seconds", _is_number),
    "parameters": ("a mapping", lambda v: isinstance(v, dict)),
    "overrides": ("a mapping", lambda v: isinstance(v, dict)),
    **{name: ("a string", lambda v: isinstance(v, str)) for name in ("id", "notebook", "executed_notebook", "profile")},
    **{name: ("a string or null", lambda v: v is None or isinstance(v, str)) for name in ("claim", "verdict")},
}


def entry_problem(entry: dict[str, Any]) -> str | None:
    """Why a manifest entry cannot be used ("field 'outputs' must be ..., got list"), or None when it can."""
    for name, (words, ok) in ENTRY_FIELDS.items():
        if name in entry and not ok(entry[name]):
            return f"field {name!r} must be {words}, got {type(entry[name]).__name__} {entry[name]!r:.60}"
    return None


@dataclass(frozen=True)
class Staged:
    """A finished run waiting to be committed: its staged files and executed copy, its entries."""

    fig_id: str
    folder: Path  # the private out_dir holding the outputs
    executed_from: Path  # the executed copy, in the run's private folder
    executed_to: Path  # its destination
    entry: dict[str, Any]  # the manifest entry (outputs and their hashes included)
    cache_path: Path
    cache_entry: dict[str, Any]


def stage_outputs(folder: Path) -> dict[str, str]:
    """Name -> SHA-256 of each output file in a run's private folder."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def commit(layout: Layout, dest: Destination, staged: Staged) -> None:
    """Move the staged files into place and record them, all or nothing, signals held (see the module docstring)."""
    journal = {
        "fig_id": staged.fig_id, "folder": str(staged.folder), "figures": str(dest.figures),
        "executed_from": str(staged.executed_from), "executed_to": str(staged.executed_to),
        "entry": staged.entry, "cache_path": str(staged.cache_path), "cache_entry": staged.cache_entry,
    }
    path = journal_path(dest, staged.fig_id)
    with signals_held():
        write_json(path, journal)
        _roll_forward(layout, dest, journal, path)


def journal_path(dest: Destination, fig_id: str) -> Path:
    """The journal of one figure's commit: one per figure, so that a commit cut short by a full disk blocks no other."""
    return dest.journal.with_name(f"{dest.journal.stem}--{fig_id}.json")


def _roll_forward(layout: Layout, dest: Destination, journal: dict[str, Any], path: Path) -> None:
    """Finish a journalled commit; each step may already have happened (idempotent)."""
    folder, figures = Path(journal["folder"]), Path(journal["figures"])
    entry, fig_id = journal["entry"], journal["fig_id"]
    manifest = Manifest.read(dest.manifest, layout)
    figures.mkdir(parents=True, exist_ok=True)
    for name, sha in entry["outputs"].items():
        if (folder / name).is_file():
            move_atomic(folder / name, figures / name)
        elif not (figures / name).is_file() or sha256_file(figures / name) != sha:
            raise InputError(f"{layout.rel(path)}: cannot finish the commit of {fig_id}: {name} is lost; "
                             "delete the journal and rerun that notebook")
    previous = manifest.figures.get(fig_id, {})
    for stale in set(previous.get("outputs", {})) - set(entry["outputs"]):
        if stale.startswith(fig_id):
            (figures / stale).unlink(missing_ok=True)
    source, target = Path(journal["executed_from"]), Path(journal["executed_to"])
    if source.is_file():
        move_atomic(source, target)
    seconds = {**previous.get("run_seconds_by_profile", {}), **entry.get("run_seconds_by_profile", {})}
    fresh = {k: v for k, v in entry.items() if k not in VERIFY_FIELDS}
    manifest.figures[fig_id] = {**fresh, "run_seconds_by_profile": dict(sorted(seconds.items()))}
    manifest.write()
    write_json(Path(journal["cache_path"]), journal["cache_entry"])
    path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def recover(layout: Layout) -> list[str]:
    """Finish every commit cut short by a kill; returns what was repaired (figure ids, with destination)."""
    repaired = []
    for path in sorted(layout.commits.glob("*.json")) if layout.commits.is_dir() else []:
        journal = read_json(path)
        if not isinstance(journal, dict) or "entry" not in journal:
            path.unlink()  # written half (it is written atomically, so only by hand): nothing was moved yet
            continue
        name = path.stem.split("--")[0]  # <destination>--<figure id>.json (<destination>.json before)
        dest = layout.destination(name, publish=name == "published")
        with signals_held():
            _roll_forward(layout, dest, journal, path)
        repaired.append(f"{journal['fig_id']} ({'published' if dest.published else name})")
    return repaired


def restore_entry(layout: Layout, dest: Destination, fig_id: str, entry: dict[str, Any]) -> bool:
    """Put back a cached figure's manifest entry when the manifest lacks it or lists other outputs; True if so."""
    manifest = Manifest.read(dest.manifest, layout)
    current = manifest.figures.get(fig_id)
    if current is not None and current.get("outputs") == entry.get("outputs"):
        return False
    manifest.figures[fig_id] = entry
    with signals_held():
        manifest.write()
    return True


def read_manifest(layout: Layout) -> dict[str, Any]:
    """The published manifest as a plain dict ({'figures': {}} when absent); ManifestError when unreadable."""
    manifest = Manifest.read(layout.figures / "MANIFEST.json", layout)
    return {**manifest.extra, "figures": manifest.figures}
