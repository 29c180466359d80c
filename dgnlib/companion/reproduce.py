"""`dgn reproduce` and `dgn prepare`: plan, lock, recover, run what changed, commit, update the table."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from dgnlib import params
from dgnlib.companion import cache, preflight, table
from dgnlib.companion.execute import Job, Kernels, Result, execute, relocate_copy
from dgnlib.companion.fsio import (
    Interrupted,
    complete_notebook,
    folder_holder,
    hold_folder,
    move_atomic,
    read_json,
    signals_call,
    signals_raise,
)
from dgnlib.companion.layout import DEFAULT_TIMEOUT_S, INDEX_ID, InputError, Layout
from dgnlib.companion.manifest import Manifest, Staged, commit, journal_path, recover, restore_entry, stage_outputs
from dgnlib.companion.plan import Plan, Task, make_plan
from dgnlib.companion.progress import PROGRESS_FILE_ENV, SweepTail
from dgnlib.names import EXIT_FAILED, EXIT_OK


def log(message: str) -> None:
    """One line of the run log (stderr, so that progress bars and log lines interleave sensibly)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def kernel_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernels started in the block (they inherit this process's environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether sources differ from it); figures/, executed/, runs/ and README.md do not count."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--", ".", ":(exclude)figures", ":(exclude)executed", ":(exclude)runs",
                 ":(exclude)README.md")
    return git("rev-parse", "HEAD"), (None if status is None else bool(status))


class Run:
    """One `dgn reproduce` invocation after its plan passed: lock held, private folder, kernels, commits."""

    def __init__(self, layout: Layout, plan: Plan, *, force: bool, keep_going: bool, jobs: int, progress: bool,
                 timeout: float | None = None):
        self.layout, self.plan, self.dest, self.timeout = layout, plan, plan.destination, timeout
        self.force, self.keep_going, self.jobs, self.progress = force, keep_going, jobs, progress
        self.id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
        self.tmp = layout.tmp / self.id
        self.kernels = Kernels()
        self.tail = SweepTail(tty=progress)  # the sweeps' progress, which the kernels write to files
        self.running: set[str] = set()
        self.owner_fd: int | None = None
        self.keep: set[Path] = set()  # staged files of commits cut short, which the next run finishes
        self.committed: set[str] = set()  # notebooks whose commit completed (a signal may follow it)

    def claim(self) -> None:
        """Make this run's private folder and hold it; InputError when another live run holds one (lock removed)."""
        others = [(p.name, pid) for p in sorted(self.layout.tmp.glob("*")) if (pid := folder_holder(p)) is not None]
        if others:
            name, pid = others[0]
            raise InputError(f"another `dgn reproduce` (pid {pid or 'unknown'}, run {name}) is still running in this "
                             f"checkout although {self.layout.rel(self.layout.lock)} was removed: wait for it to "
                             "finish (or stop it), then rerun")
        try:
            self.owner_fd = hold_folder(self.tmp)
        except OSError as exc:
            raise InputError(f"{self.layout.rel(self.tmp)}: cannot create this run's folder ({exc.strerror})") from exc

    def prepare(self) -> list[Task]:
        """Repair what a killed run left, check the manifests, and sort the tasks into cached and to-run."""
        for what in recover(self.layout):
            log(f"repaired: finished the commit of {what} that an earlier run left half done")
        if self.layout.tmp.is_dir():  # we hold the lock, and `claim` found no live owner: these runs are gone
            for stale in self.layout.tmp.iterdir():
                if stale != self.tmp and folder_holder(stale) is None:
                    shutil.rmtree(stale, ignore_errors=True)
        self.manifest = Manifest.read(self.dest.manifest, self.layout)
        self.published = Manifest.read(self.layout.figures / "MANIFEST.json", self.layout)
        self.ctx = cache.Context.of(self.layout)
        self.git = git_state(self.layout.root)
        todo = []
        for task in self.plan.tasks:
            task.key, task.parts = cache.cache_key(task, self.ctx)
            if self.force:
                fresh, task.reason = False, "--force"
            elif task.notebook.id == INDEX_ID:
                fresh, task.reason = False, "the index page always reruns"
            else:
                fresh, task.reason = cache.status(self.layout, self.dest, task, self.ctx)
            if fresh:
                task.status = "cached"
                entry = (read_json(cache.entry_path(self.dest, task.notebook.id)) or {}).get("entry")
                if isinstance(entry, dict):
                    restore_entry(self.layout, self.dest, task.notebook.id, entry)
                log(f"cached   {task.notebook.stem} (unchanged since its last {self.plan.profile} run; "
                    "--force reruns it)")
            else:
                todo.append(task)
        return todo

    def job(self, task: Task, position: int) -> Job:
        """The execution of one task, in this run's private folder."""
        nb = task.notebook
        out = self.tmp / "out" / nb.id
        progress_file = self.tmp / "progress" / f"{nb.stem}.json"
        progress_file.parent.mkdir(parents=True, exist_ok=True)
        self.tail.watch(nb.stem, progress_file)
        # out_dir relative to the root (the kernel's working folder), so that no machine path enters the copy
        return Job(stem=nb.stem, notebook=nb.path, out_dir=out, output=self.tmp / "executed" / f"{nb.stem}.ipynb",
                   parameters={**task.overrides, "profile": self.plan.profile, "out_dir": self.layout.rel(out)},
                   runtime=self.tmp / "runtime", cwd=self.layout.root, progress=self.progress, position=position,
                   env={PROGRESS_FILE_ENV: str(progress_file)}, timeout=self.timeout)

    def announce(self, task: Task) -> None:
        """The 'running' line, with the last recorded run time as an estimate."""
        fig_id, profile = task.notebook.id, self.plan.profile
        seconds = self.manifest.last_seconds(fig_id, profile) or self.published.last_seconds(fig_id, profile)
        estimate = f"; last run took {table.format_seconds(seconds)}" if seconds is not None else ""
        log(f"running  {task.notebook.stem} ({profile} profile; {task.reason}{estimate})")

    def finish(self, task: Task, job: Job, result: Result) -> None:
        """Commit a successful run (all or nothing) or report a failed one; a commit that hits an OSError fails."""
        task.seconds = result.seconds
        if result.status == "executed":
            try:
                self.commit(task, job, result)
                return
            except OSError as exc:  # a full disk, a permission changed under us: this notebook fails, clearly
                where = f" ({exc.filename})" if exc.filename else ""
                later = ""
                if journal_path(self.dest, task.notebook.id).exists():  # the next run finishes this commit
                    self.keep.update({job.out_dir, job.output})
                    later = "; the next run finishes this commit"
                result = Result(seconds=result.seconds, error=f"CommitError: cannot commit its results: "
                                f"{exc.strerror or exc}{where}; free the space (or fix the permissions) and "
                                f"rerun{later}")
        self.report_failure(task, job, result)

    def report_failure(self, task: Task, job: Job, result: Result) -> None:
        """Keep the executed copy of a failed run when it is complete, and log what failed where."""
        task.status = "failed"
        layout, nb = self.layout, task.notebook
        failed_copy = layout.failed_copies(self.plan.profile) / f"{nb.stem}.failed.ipynb"
        copy = "none (it did not start)"
        if job.output in self.keep:
            copy = f"{layout.rel(job.output)} (kept for the commit that the next run finishes)"
        else:
            failed_copy.unlink(missing_ok=True)  # an earlier failure's copy would be taken for this one's
        if job.output not in self.keep and job.output.is_file():
            copy = "none (it was left incomplete, e.g. by a full disk)"
            if complete_notebook(job.output):
                try:
                    move_atomic(job.output, failed_copy)
                    copy = layout.rel(failed_copy)
                except OSError as exc:
                    copy = f"none (it could not be kept: {exc.strerror or exc})"
        where = f"cell {result.cell} (In [{result.exec_count}])" if result.cell is not None else "outside any cell"
        error = result.error.replace("\n", "\n         ")
        log(f"FAILED   {nb.stem} after {result.seconds:.1f} s: {where} raised {error}\n"
            f"         executed copy: {copy}\n"
            f"         its previous outputs in {layout.rel(self.dest.figures)}/ are left as they were")

    def commit(self, task: Task, job: Job, result: Result) -> None:
        """Record and commit a successful run, all or nothing (OSError when the disk refuses)."""
        layout, nb, profile = self.layout, task.notebook, self.plan.profile
        failed_copy = layout.failed_copies(profile) / f"{nb.stem}.failed.ipynb"
        outputs = stage_outputs(job.out_dir)
        record = read_json(job.out_dir / f"{nb.id}.json")
        record = record if isinstance(record, dict) else {}
        executed_to = self.dest.executed / f"{nb.stem}.ipynb"
        commit_id, dirty = self.git
        entry = {
            "id": nb.id, "notebook": layout.rel(nb.path), "executed_notebook": layout.rel(executed_to),
            "profile": profile, "parameters": {**task.values, "out_dir": layout.rel(self.dest.figures)},
            "overrides": task.overrides, "git_commit": commit_id, "git_dirty": dirty,
            "versions": {k: self.ctx.versions.get(k) for k in ("dgnlib", "torch", "python")},
            "started": result.started, "run_seconds": result.seconds,
            "run_seconds_by_profile": {profile: result.seconds}, "outputs": outputs,
            "claim": record.get("claim"), "verdict": record.get("verdict"),
        }
        cache_entry = cache.make_entry(task, self.ctx, outputs, layout.rel(executed_to), entry)
        relocate_copy(job.output, {layout.rel(job.out_dir): layout.rel(self.dest.figures),
                                   layout.rel(job.output): layout.rel(executed_to)})
        try:
            commit(layout, self.dest, Staged(nb.id, job.out_dir, job.output, executed_to, entry,
                                             cache.entry_path(self.dest, nb.id), cache_entry))
        except Interrupted:  # raised once the commit has completed, signals having been held during it
            task.status = "executed"
            self.committed.add(nb.stem)
            raise
        task.status = "executed"
        self.committed.add(nb.stem)
        self.manifest = Manifest.read(self.dest.manifest, layout)
        failed_copy.unlink(missing_ok=True)
        verdict = f", verdict: {entry['verdict']}" if entry["verdict"] else ""
        log(f"executed {nb.stem} in {result.seconds:.1f} s ({len(outputs)} files{verdict})")

    def run(self, todo: list[Task]) -> None:
        """Run up to `jobs` notebooks at once, each in a daemon thread; commits happen here, one at a time.

        The front page (`INDEX_ID`) starts only after every other notebook of the run has finished and committed.

        A SIGINT or SIGTERM kills the kernels and raises Interrupted here at once: papermill, which does not notice
        a dead kernel while it waits for a cell, is left behind in its daemon thread and dies with the process.
        """
        caught: list[int] = []
        results: queue.Queue = queue.Queue()

        def on_signal(signum: int) -> None:
            caught.append(signum)
            self.kernels.close()

        def worker(task: Task, job: Job) -> None:
            try:
                result = execute(job, self.kernels)
            except Exception as exc:  # a bug or a broken installation: report it as this notebook's failure
                result = Result(error=f"{type(exc).__name__}: {exc}")
            results.put((task, job, result))

        pending, active = list(todo), 0
        with signals_call(on_signal):
            while pending or active:
                while pending and active < self.jobs:
                    if pending[0].notebook.id == INDEX_ID and active:
                        break  # the front page lists the others' results: it starts once they are all committed
                    task = pending.pop(0)
                    self.announce(task)
                    job = self.job(task, active)
                    self.running.add(task.notebook.stem)
                    threading.Thread(target=worker, args=(task, job), daemon=True, name=task.notebook.stem).start()
                    active += 1
                while True:
                    if caught:
                        raise Interrupted(caught[0])
                    try:
                        task, job, result = results.get(timeout=0.1)
                        break
                    except queue.Empty:
                        self.tail.poll()
                        continue
                active -= 1
                self.tail.forget(task.notebook.stem)
                self.finish(task, job, result)
                self.running.discard(task.notebook.stem)
                if task.status == "failed" and not self.keep_going:
                    pending.clear()  # the notebooks already running finish and are committed

    def close(self) -> None:
        """Stop any kernel still running and remove this run's private folder."""
        self.tail.close()
        self.kernels.stop_all()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:  # staged files that a commit journal names stay for the next run's `recover`
            for path in [self.tmp / "runtime", *self.tmp.glob("out/*"), *self.tmp.glob("executed/*")]:
                if path not in self.keep:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if self.owner_fd is not None:
            os.close(self.owner_fd)
            self.owner_fd = None


def reproduce(layout: Layout, profile: str, only: str | None = None, sets: Sequence[str] = (), *,
              publish: bool | None = None, force: bool = False, keep_going: bool = False, jobs: int = 1,
              progress: bool | None = None, wait: bool = False, scheduler: str | None = None,
              workers: int | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> int:
    """`dgn reproduce`: run the selected notebooks under a profile; returns the exit status.

    `scheduler` (or the environment variable DGN_SCHEDULER): the address of a Dask scheduler that trains the sweeps'
    ensemble groups; it is checked before anything runs, and Dask is imported only when one is given.
    `workers` (or DGN_WORKERS): processes training the groups of a sweep side by side here (`dgnlib.engine.pool`); by
    default the usable cores divided by `jobs`. `timeout`: seconds a notebook may run (0 or None: no limit).
    """
    with signals_raise():
        try:
            return _reproduce(layout, profile, only, sets, publish, force, keep_going, jobs, progress, wait,
                              scheduler or os.environ.get("DGN_SCHEDULER") or None, workers, timeout)
        except Interrupted as exc:
            log(f"interrupted ({exc}): nothing half-done was kept; the next run redoes only what is missing")
            return exc.exit_status












def _reproduce(layout: Layout, profile: str, only: str | None, sets: Sequence[str], publish: bool | None,
               force: bool, keep_going: bool, jobs: int, progress: bool | None, wait: bool,
               scheduler: str | None = None, workers: int | None = None,
               timeout: float | None = DEFAULT_TIMEOUT_S) -> int:
    """The body of `reproduce`, inside its signal handlers."""
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: expected a positive number of notebooks run at once")
    if timeout is not None and not (timeout >= 0 and math.isfinite(timeout)):
        raise InputError(f"--timeout {timeout:g}: expected a number of seconds, at least 0 (0: no limit)")
    workers = preflight.workers(workers, jobs)
    preflight.check_environment()
    started = time.monotonic()
    publish = (profile == "paper") if publish is None else publish
    plan = make_plan(layout, profile, only, sets, publish)
    if not plan.tasks:
        log(f"nothing to run: no notebooks named NN_name.ipynb in {layout.rel(layout.notebooks)}")
        return EXIT_OK
    if scheduler:
        preflight.check_scheduler(scheduler)
    lock = preflight.take_lock(layout, wait)
    run = Run(layout, plan, force=force, keep_going=keep_going, jobs=jobs,
              progress=sys.stderr.isatty() if progress is None else progress, timeout=timeout or None)
    try:
        run.claim()
    except BaseException:
        lock.release()
        raise
    env = {params.RUNNER_ENV: run.id, "DGN_RUN_STORE": layout.rel(plan.destination.runs), "DGN_ROOT": str(layout.root),
           "JUPYTER_RUNTIME_DIR": str(run.tmp / "runtime"), "DGN_WIDGETS": "static",
           **({"DGN_SCHEDULER": scheduler} if scheduler else {}), "DGN_WORKERS": str(workers),
           "PYTHONPATH": os.pathsep.join([str(layout.root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        todo = run.prepare()
        with kernel_environment(env):
            try:
                run.run(todo)
            except Interrupted:
                if kept := sorted(run.running & run.committed):
                    log(f"committed {', '.join(kept)} before stopping: its results are kept")
                if lost := sorted(run.running - run.committed):
                    log(f"stopped  {', '.join(lost)}: nothing of it is kept")
                raise
        if plan.destination.published:
            rows = table.figure_table({"figures": Manifest.read(layout.figures / "MANIFEST.json", layout).figures},
                                      layout.root, layout.figures)
            table.update_readme(layout.readme, rows, layout.root)
    finally:
        run.close()
        lock.release()
    for task in todo:
        task.status = "not run" if task.status == "pending" else task.status
    return _summary(layout, plan, time.monotonic() - started)


def _summary(layout: Layout, plan: Plan, seconds: float) -> int:
    """Log the totals and return the exit status (1 if any notebook failed)."""
    counts = {s: [t.notebook.stem for t in plan.tasks if t.status == s]
              for s in ("executed", "cached", "failed", "not run")}
    log(f"done in {seconds:.1f} s: " + ", ".join(f"{len(v)} {k}" for k, v in counts.items())
        + f"; results in {layout.rel(plan.destination.figures)}/")
    if counts["not run"]:
        log(f"not run after the first failure (--keep-going runs them): {', '.join(counts['not run'])}")
    if counts["failed"]:
        log(f"failed: {', '.join(counts['failed'])}")
        return EXIT_FAILED
    return EXIT_OK
