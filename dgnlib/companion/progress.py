"""Sweep progress on the runner's terminal: the kernels write their sweep's state to a file, the runner shows it.

A notebook's kernel runs with DGN_PROGRESS_FILE naming a private file (`dgnlib.engine.sweep.Progress` rewrites it
atomically as epochs and runs finish, whether the groups train in this kernel, in worker processes or on Dask
workers). The runner polls the files of the notebooks running now: on a terminal one bar per sweep, updated in place;
otherwise one line per notebook when its state changed and at least `every_s` seconds passed, and one when it ends.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from dgnlib.companion.table import format_seconds

PROGRESS_FILE_ENV = "DGN_PROGRESS_FILE"  # = dgnlib.engine.sweep.PROGRESS_FILE_ENV (the tooling does not import torch)
LINE_EVERY_S = 30.0  # off a terminal: at most one progress line per notebook this often


def read_state(path: Path) -> dict[str, Any] | None:
    """The last state a kernel wrote, or None when there is none (yet) or it is unreadable."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("epochs"), int) else None


def describe(stem: str, state: dict[str, Any]) -> str:
    """'06_gate… sweep: runs 3/50, epochs 300/5000 (6 %), elapsed 2 min 01 s, ETA 31 min 40 s'."""
    epochs, done = state.get("epochs") or 0, state.get("epochs_done") or 0
    share = f" ({100 * done // epochs} %)" if epochs else ""
    eta = state.get("eta_s")
    stored = f", {state['skipped']} already stored" if state.get("skipped") else ""
    return (f"{stem} sweep: runs {state.get('runs_done', 0)}/{state.get('runs', 0)}{stored}, epochs {done}/{epochs}"
            f"{share}, elapsed {format_seconds(state.get('elapsed_s'))}, ETA "
            f"{format_seconds(eta) if eta is not None else 'after the first epoch'}")


class SweepTail:
    """Shows the progress files of the notebooks running now; `poll()` is cheap and is called from the run loop."""

    def __init__(self, tty: bool, stream: TextIO | None = None, every_s: float = LINE_EVERY_S) -> None:
        self.tty, self.stream, self.every_s = tty, stream or sys.stderr, every_s
        self.files: dict[str, Path] = {}
        self.shown: dict[str, tuple[str, float]] = {}  # stem -> (last state shown, when)
        self.bars: dict[str, Any] = {}

    def watch(self, stem: str, path: Path) -> None:
        """Follow `path` for notebook `stem` (the file appears when its first sweep starts)."""
        self.files[stem] = Path(path)

    def poll(self) -> None:
        """Show what changed since the last poll."""
        for stem, path in list(self.files.items()):
            state = read_state(path)
            if state is not None:
                self._show(stem, state, final=False)

    def forget(self, stem: str) -> None:
        """The notebook ended: show its last state once (off a terminal) and stop following it."""
        path = self.files.pop(stem, None)
        state = read_state(path) if path is not None else None
        if state is not None and not self.tty:
            self._show(stem, state, final=True)
        bar = self.bars.pop(stem, None)
        if bar is not None:
            bar.close()
        self.shown.pop(stem, None)

    def close(self) -> None:
        """Close every bar."""
        for stem in list(self.bars):
            self.bars.pop(stem).close()

    def _show(self, stem: str, state: dict[str, Any], final: bool) -> None:
        key = json.dumps({k: state.get(k) for k in ("runs_done", "runs", "epochs_done", "epochs")})
        last, when = self.shown.get(stem, ("", 0.0))
        now = time.monotonic()
        if self.tty:
            self._bar(stem, state)
            return
        if key == last or (not final and last and now - when < self.every_s):
            return
        self.shown[stem] = (key, now)
        print(describe(stem, state), file=self.stream, flush=True)

    def _bar(self, stem: str, state: dict[str, Any]) -> None:
        """One tqdm bar per sweep, in place; tqdm finds it a free line beside papermill's cell bars."""
        from tqdm import tqdm

        bar = self.bars.get(stem)
        if bar is None or bar.total != state["epochs"]:  # a notebook's next sweep starts a new bar
            if bar is not None:
                bar.close()
            bar = self.bars[stem] = tqdm(total=state["epochs"], desc=f"{stem} sweep", unit="epoch",
                                         file=self.stream, leave=False, dynamic_ncols=True)
        bar.n = state.get("epochs_done") or 0
        eta = state.get("eta_s")
        bar.set_postfix_str(f"runs {state.get('runs_done', 0)}/{state.get('runs', 0)}, elapsed "
                            f"{format_seconds(state.get('elapsed_s'))}, ETA "
                            f"{format_seconds(eta) if eta is not None else '—'}", refresh=False)
        bar.refresh()
