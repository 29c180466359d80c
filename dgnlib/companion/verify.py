"""`dgn verify`: re-derive each published figure from the committed code and run store, and compare it with figures/.

For every figure in figures/MANIFEST.json (the front page 00 has no outputs and is skipped), the notebook runs again
under the parameters its manifest entry records, into a scratch folder under build/verify/ (removed afterwards),
with the committed store runs/ opened read-only: a run missing from it fails the figure, naming the key, and is
never trained. Its CSV and JSON are then compared with the published ones byte for byte, and so are its PNG and
PDF (the figures are saved without dates or software versions, so the same code and libraries give the same bytes).
Before that, every entry of runs/ is audited (`dgnlib.engine.runcheck.audit`), and the runs a figure read when it
was last verified (`runs_read` in its entry: key → file → SHA-256) must still be there, byte for byte.

`--record` (after a fully green run on a clean checkout) writes `verified` and `runs_read` into each verified
figure's entry; `dgn reproduce` drops both when it republishes a figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgnlib import params
from dgnlib.companion.diff import describe_difference
from dgnlib.companion.execute import Job, Kernels, Result, execute, utc_now
from dgnlib.companion.fsio import Interrupted, sha256_file, signals_call, write_json
from dgnlib.companion.layout import INDEX_ID, InputError, Layout
from dgnlib.companion.manifest import Manifest
from dgnlib.companion.reproduce import kernel_environment
from dgnlib.engine import runcheck
from dgnlib.engine.runs import SCHEMA
from dgnlib.names import EXIT_FAILED, EXIT_OK

# The figures that re-derive in at most a minute and a half and match figures/ byte for byte on the development
# machines (measured on 2 shared CPU cores: see README, "Verify the published figures"). 03 and 10 re-derive in
# seconds but differ from the published run in the last bits of a few floats, so they are left to the full verify,
# which reports them; 02, 04 (which differ in the same way) and 05 take longer.
QUICK = ("01", "06", "07", "08", "09")
COMPARED = (".csv", ".json", ".png", ".pdf")  # every output type is deterministic (see the module docstring)


@dataclass
class Outcome:
    """What verifying one figure found: the files compared, the problems (empty: it matches), the runs it read."""

    fig_id: str
    compared: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    runs_read: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0


def say(line: str) -> None:
    """One line of verify's report (stdout)."""
    print(line, flush=True)


def select(manifest: Manifest, only: str | None, quick: bool) -> list[str]:
    """The figure ids to verify: --only's (each must be in the manifest), else all, cut to QUICK with --quick."""
    known = sorted(manifest.figures)
    if only is not None:
        wanted = [part.strip()[:2] for part in only.split(",") if part.strip()]
        unknown = [w for w in wanted if w not in manifest.figures]
        if not wanted or unknown:
            raise InputError(f"--only {only!r}: {', '.join(unknown) or 'no id'} not in the published manifest "
                             f"(figures: {', '.join(known)})")
        known = sorted(set(wanted))
    chosen = [i for i in known if not quick or i in QUICK or i == INDEX_ID]
    if quick and only is not None and not [i for i in chosen if i != INDEX_ID]:
        raise InputError(f"--only {only} --quick: none of these is in the quick set ({', '.join(QUICK)}); drop "
                         "--quick to verify them")
    return chosen


def git(root: Path, *args: str) -> str | None:
    """A git command's stdout in `root`, or None when git fails (no repository, no git)."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def check_recorded_runs(store: Path, entry: dict[str, Any]) -> list[str]:
    """Problems with the runs the figure read when it was last verified (each file still there, same SHA-256)."""
    problems = []
    recorded = entry.get("runs_read") or {}
    for key, files in sorted(recorded.items()) if isinstance(recorded, dict) else []:
        for name, sha in sorted(files.items()):
            path = store / key[:2] / name
            if not path.is_file():
                problems.append(f"run {key}: {path} is missing")
            elif sha256_file(path) != sha:
                problems.append(f"run {key}: {path} changed since the figure was verified (SHA-256 {sha[:12]}… "
                                f"recorded, {sha256_file(path)[:12]}… now)")
    return problems


def runs_read(log: Path, store: Path) -> dict[str, dict[str, str]]:
    """key → {file: SHA-256} for every run named in a read log (all of each run's files: entry and weights)."""
    keys = set()
    if log.is_file():
        keys = {json.loads(line)["key"] for line in log.read_text().splitlines() if line.strip()}
    return {key: {p.name: sha256_file(p) for p in runcheck.entry_files(store, key)} for key in sorted(keys)}


def _execute_interruptibly(job: Job, kernels: Kernels, caught: list[int]) -> Result:
    """`execute` in a daemon thread, so that a signal (which kills the kernel) ends the wait at once: papermill does
    not notice a dead kernel while it waits for a cell, and is left behind to die with the process."""
    results: queue.Queue = queue.Queue()

    def worker() -> None:
        try:
            results.put(execute(job, kernels))
        except Exception as exc:  # a broken installation: this figure's failure, not a traceback
            results.put(Result(error=f"{type(exc).__name__}: {exc}"))

    threading.Thread(target=worker, daemon=True, name=job.stem).start()
    while True:
        if caught:
            raise Interrupted(caught[0])
        try:
            return results.get(timeout=0.1)
        except queue.Empty:
            continue


def verify_figure(layout: Layout, entry: dict[str, Any], scratch: Path, kernels: Kernels,
                  caught: list[int]) -> Outcome:
    """Re-execute one figure's notebook read-only from runs/ and compare its outputs with figures/."""
    fig_id, store = entry["id"], layout.root / "runs"
    outcome = Outcome(fig_id, problems=check_recorded_runs(store, entry))
    notebook = layout.root / str(entry.get("notebook", ""))
    if not notebook.is_file():
        outcome.problems.append(f"its notebook {entry.get('notebook')!r} is missing")
        return outcome
    out, log = scratch / "out" / fig_id, scratch / f"reads-{fig_id}.jsonl"
    job = Job(stem=notebook.stem, notebook=notebook, out_dir=out, output=scratch / "executed" / notebook.name,
              parameters={**entry.get("parameters", {}), "out_dir": str(out)}, runtime=scratch / "runtime",
              cwd=layout.root)
    env = {params.RUNNER_ENV: f"verify-{os.getpid()}", "DGN_RUN_STORE": str(store), runcheck.READ_ONLY_ENV: "1",
           runcheck.READ_LOG_ENV: str(log), "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
           "DGN_WIDGETS": "static", "DGN_WORKERS": "1",
           "PYTHONPATH": os.pathsep.join([str(layout.root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with kernel_environment(env):  # the kernel inherits this process's environment
        result = _execute_interruptibly(job, kernels, caught)
    outcome.seconds = result.seconds
    outcome.runs_read = runs_read(log, store)
    if result.status != "executed":
        where = f"cell {result.cell}" if result.cell is not None else "outside any cell"
        outcome.problems.append(f"the notebook failed in {where}: {result.error.splitlines()[0][:600]}")
        return outcome
    published = entry.get("outputs", {})
    for name in sorted(published):
        if Path(name).suffix not in COMPARED:
            continue
        outcome.compared.append(name)
        mine, theirs = out / name, layout.figures / name
        if not theirs.is_file() or not mine.is_file():
            outcome.problems.append(f"{name}: {'not re-derived' if theirs.is_file() else 'missing from figures/'}")
            continue
        difference = describe_difference(name, theirs.read_bytes(), mine.read_bytes())
        if difference:
            outcome.problems.append(difference)
    extra = sorted(set(result.outputs) - set(published))
    if extra:
        outcome.problems.append(f"outputs the published run did not have: {', '.join(extra)}")
    recorded = entry.get("runs_read")
    if isinstance(recorded, dict) and set(recorded) != set(outcome.runs_read):
        outcome.problems.append(f"it now reads {len(outcome.runs_read)} runs, {len(recorded)} when verified "
                                f"({len(set(outcome.runs_read) ^ set(recorded))} differ)")
    return outcome


def record(layout: Layout, outcomes: list[Outcome], commit: str) -> None:
    """Write `verified` and `runs_read` into each verified figure's manifest entry, atomically, nothing else."""
    path = layout.figures / "MANIFEST.json"
    data = json.loads(path.read_text())
    date = utc_now()
    for o in outcomes:
        entry = data["figures"][o.fig_id]
        entry["verified"] = {"commit": commit, "date": date, "compared": o.compared, "ok": True}
        entry["runs_read"] = o.runs_read
    write_json(path, data)


def verify(layout: Layout, only: str | None = None, quick: bool = False, record_results: bool = False) -> int:
    """`dgn verify`: returns 0 when every selected figure and the store check out, 1 otherwise (2: InputError)."""
    started = time.monotonic()
    manifest_path = layout.figures / "MANIFEST.json"
    if not layout.root.is_dir():
        raise InputError(f"--root {layout.root}: no such folder (give a checkout of the companion)")
    if not manifest_path.is_file():
        raise InputError(f"{layout.rel(manifest_path)} is missing: there is no published run to verify (publish one "
                         "with `dgn reproduce --profile paper`)")
    manifest = Manifest.read(manifest_path, layout)
    ids = select(manifest, only, quick)
    commit = None
    if record_results:
        commit, status = git(layout.root, "rev-parse", "HEAD"), git(layout.root, "status", "--porcelain")
        if commit is None or status is None or status:
            raise InputError("--record needs a clean git checkout (commit or stash your changes first), so that "
                             "the recorded commit is what was verified")
    store = layout.root / "runs"
    entries, problems = runcheck.audit(store, SCHEMA)
    say(f"runs/: {entries} entries checked (JSON parses, key field and spec hash match the key, weights load and "
        "match the SHA-256 their entry records, where it does): " + ("ok" if not problems else f"{len(problems)} bad"))
    for line in problems:
        say(f"   BAD {line}")
    outcomes: list[Outcome] = []
    caught: list[int] = []
    kernels = Kernels()

    def on_signal(signum: int) -> None:
        caught.append(signum)
        kernels.close()

    (layout.build / "verify").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=layout.build / "verify"))
    try:
        with signals_call(on_signal):
            for fig_id in ids:
                entry = {**manifest.figures[fig_id], "id": fig_id}
                if fig_id == INDEX_ID or not entry.get("outputs"):
                    say(f"{fig_id} skipped: {'the front page' if fig_id == INDEX_ID else 'this figure'} has no "
                        "outputs to compare")
                    continue
                outcome = verify_figure(layout, entry, scratch, kernels, caught)
                outcomes.append(outcome)
                read = f"; read {len(outcome.runs_read)} runs" if outcome.runs_read else ""
                if outcome.problems:
                    say(f"{fig_id} MISMATCH ({outcome.seconds:.0f} s{read}): {outcome.problems[0]}")
                    for more in outcome.problems[1:]:
                        say(f"   also {more}")
                else:
                    say(f"{fig_id} ok ({outcome.seconds:.0f} s{read}): {', '.join(outcome.compared)} identical")
    finally:
        kernels.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            (layout.build / "verify").rmdir()  # only when empty: another verify may be running beside this one
    bad = [o.fig_id for o in outcomes if o.problems]
    total = f"{len(outcomes)} figures in {time.monotonic() - started:.0f} s"
    if bad or problems:
        say(f"verify FAILED: {total}; " + ", ".join(filter(None, [
            f"figures differing or failing: {', '.join(bad)}" if bad else "",
            f"{len(problems)} bad run-store files" if problems else ""])))
        if record_results:
            print("--record: nothing recorded (it records only a fully green verify)", file=sys.stderr)
        return EXIT_FAILED
    if record_results and commit:
        record(layout, outcomes, commit)
        say(f"recorded verified (commit {commit[:12]}) and runs_read in {layout.rel(manifest_path)}")
    say(f"verify ok: {total}, every compared file identical to figures/")
    return EXIT_OK
