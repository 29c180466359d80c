"""`dgn prepare`: the parameterised notebooks, not executed, for nbval; never over the tracked notebooks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dgnlib.companion.layout import InputError, Layout
from dgnlib.companion.plan import make_plan
from dgnlib.names import EXIT_OK


def log(message: str) -> None:
    """One line of the log (stderr)."""
    print(message, file=sys.stderr, flush=True)


def tracked_files(layout: Layout, folder: Path) -> list[str]:
    """The files git tracks under `folder` (relative to the root); empty outside the checkout or without git."""
    try:
        folder.relative_to(layout.root)
    except ValueError:
        return []
    try:
        done = subprocess.run(["git", "-C", str(layout.root), "ls-files", "--", str(folder)], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return done.stdout.split() if done.returncode == 0 else []


def prepare(layout: Layout, profile: str, dest: str, only: str | None = None, sets: Sequence[str] = ()) -> int:
    """`dgn prepare`: write the parameterised notebooks (not executed) for nbval, out_dir = <dest>/figures."""
    import papermill

    plan = make_plan(layout, profile, only, sets, publish=False)
    folder = (Path(dest) if Path(dest).is_absolute() else layout.root / dest).resolve()
    if folder == layout.notebooks.resolve() or (tracked := tracked_files(layout, folder)):
        what = "the notebooks themselves" if folder == layout.notebooks.resolve() else \
            f"files tracked by git ({', '.join(tracked[:3])}{', ...' if len(tracked) > 3 else ''})"
        raise InputError(f"--dest {dest}: it holds {what}, which preparing would overwrite; give a folder of "
                         "your own, e.g. the default build/nbval")
    figures = (folder / "figures").resolve()
    figures.mkdir(parents=True, exist_ok=True)
    for task in plan.tasks:
        target = folder / task.notebook.path.name
        parameters = {**task.overrides, "profile": profile, "out_dir": str(figures)}
        try:
            papermill.execute_notebook(str(task.notebook.path), str(target), parameters=parameters,
                                       prepare_only=True, kernel_name="python3", progress_bar=False)
        except Exception as exc:
            raise InputError(f"{layout.rel(task.notebook.path)}: cannot prepare it ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from exc
        log(f"prepared {layout.rel(target)}")
    return EXIT_OK
