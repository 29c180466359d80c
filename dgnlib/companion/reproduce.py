"""`dgn reproduce` and `dgn prepare`: plan, lock, recover, run what changed, commit, update the table."""

from __future__ import annotations

import contextlib
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
from dgnlib.companion import cache, table
from dgnlib.companion.execute import Job, Kernels, Result, execute
from dgnlib.companion.fsio import (
    CheckoutLock,
    Interrupted,
    LockBusy,
    move_atomic,
    read_json,
    signals_call,
    signals_raise,
)
from dgnlib.companion.layout import INDEX_ID, InputError, Layout
from dgnlib.companion.manifest import Manifest, Staged, commit, recover, restore_entry, stage_outputs
from dgnlib.companion.plan import Plan, Task, make_plan
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

    def __init__(self, layout: Layout, plan: Plan, *, force: bool, keep_going: bool, jobs: int, progress: bool):
        self.layout, self.plan, self.dest = layout, plan, plan.destination
        self.force, self.keep_going, self.jobs, self.progress = force, keep_going, jobs, progress
        self.id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
        self.tmp = layout.tmp / self.id
        self.kernels = Kernels()
        self.running: set[str] = set()

    def prepare(self) -> list[Task]:
        """Repair what a killed run left, check the manifests, and sort the tasks into cached and to-run."""
        for what in recover(self.layout):
            log(f"repaired: finished the commit of {what} that an earlier run left half done")
        if self.layout.tmp.is_dir():  # we hold the lock: any folder there belongs to a run that is gone
            for stale in self.layout.tmp.iterdir():
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
        return Job(stem=nb.stem, notebook=nb.path, out_dir=out, output=self.tmp / "executed" / f"{nb.stem}.ipynb",
                   parameters={**task.overrides, "profile": self.plan.profile, "out_dir": str(out)},
                   runtime=self.tmp / "runtime", cwd=self.layout.root, progress=self.progress, position=position)

    def announce(self, task: Task) -> None:
        """The 'running' line, with the last recorded run time as an estimate."""
        fig_id, profile = task.notebook.id, self.plan.profile
        seconds = self.manifest.last_seconds(fig_id, profile) or self.published.last_seconds(fig_id, profile)
        estimate = f"; last run took {table.format_seconds(seconds)}" if seconds is not None else ""
        log(f"running  {task.notebook.stem} ({profile} profile; {task.reason}{estimate})")

    def finish(self, task: Task, job: Job, result: Result) -> None:
        """Commit a successful run (all or nothing) or report a failed one."""
        task.seconds = result.seconds
        layout, nb, profile = self.layout, task.notebook, self.plan.profile
        failed_copy = layout.failed_copies(profile) / f"{nb.stem}.failed.ipynb"
        if result.status != "executed":
            task.status = "failed"
            if job.output.is_file():
                move_atomic(job.output, failed_copy)
            where = f"cell {result.cell} (In [{result.exec_count}])" if result.cell is not None else "outside any cell"
            copy = layout.rel(failed_copy) if failed_copy.is_file() else "none (it did not start)"
            error = result.error.replace("\n", "\n         ")
            log(f"FAILED   {nb.stem} after {result.seconds:.1f} s: {where} raised {error}\n"
                f"         executed copy: {copy}\n"
                f"         its previous outputs in {layout.rel(self.dest.figures)}/ are left as they were")
            return
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
        commit(layout, self.dest, Staged(nb.id, job.out_dir, job.output, executed_to, entry,
                                         cache.entry_path(self.dest, nb.id), cache_entry))
        self.manifest = Manifest.read(self.dest.manifest, layout)
        failed_copy.unlink(missing_ok=True)
        task.status = "executed"
        verdict = f", verdict: {entry['verdict']}" if entry["verdict"] else ""
        log(f"executed {nb.stem} in {result.seconds:.1f} s ({len(outputs)} files{verdict})")

    def run(self, todo: list[Task]) -> None:
        """Run up to `jobs` notebooks at once, each in a daemon thread; commits happen here, one at a time.

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
                        continue
                active -= 1
                self.finish(task, job, result)
                self.running.discard(task.notebook.stem)
                if task.status == "failed" and not self.keep_going:
                    pending.clear()  # the notebooks already running finish and are committed

    def close(self) -> None:
        """Stop any kernel still running and remove this run's private folder."""
        self.kernels.stop_all()
        shutil.rmtree(self.tmp, ignore_errors=True)


def reproduce(layout: Layout, profile: str, only: str | None = None, sets: Sequence[str] = (), *,
              publish: bool | None = None, force: bool = False, keep_going: bool = False, jobs: int = 1,
              progress: bool | None = None, wait: bool = False, scheduler: str | None = None,
              workers: int | None = None) -> int:
    """`dgn reproduce`: run the selected notebooks under a profile; returns the exit status.

    `scheduler` (or the environment variable DGN_SCHEDULER): the address of a Dask scheduler that trains the sweeps'
    ensemble groups; it is checked before anything runs, and Dask is imported only when one is given.
    `workers` (or DGN_WORKERS): processes training the groups of a sweep side by side here (`dgnlib.engine.pool`); by
    default the usable cores divided by `jobs`.
    """
    with signals_raise():
        try:
            return _reproduce(layout, profile, only, sets, publish, force, keep_going, jobs, progress, wait,
                              scheduler or os.environ.get("DGN_SCHEDULER") or None, workers)
        except Interrupted as exc:
            log(f"interrupted ({exc}): nothing half-done was kept; the next run redoes only what is missing")
            return exc.exit_status


def _workers(workers: int | None, jobs: int) -> int:
    """Training processes per notebook: --workers, else DGN_WORKERS, else the usable cores shared by the jobs."""
    from dgnlib.engine import pool  # no torch: the pool imports it in its workers only

    if workers is None:
        try:
            workers = pool.workers_from_env() if os.environ.get(pool.WORKERS_ENV, "").strip() else max(
                1, pool.usable_cores() // jobs)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    if workers < 1:
        raise InputError(f"--workers {workers}: expected a positive number of training processes")
    return workers


def _check_scheduler(address: str) -> None:
    """Fail fast (exit 2) when the Dask scheduler is malformed, unreachable, or its workers differ from this client."""
    from dgnlib.engine import cluster  # imports Dask: only when a scheduler is given

    try:
        cluster.check_address(address)
        with cluster.DaskExecutor(address):
            pass
    except cluster.ClusterError as exc:
        raise InputError(str(exc)) from None


def _reproduce(layout: Layout, profile: str, only: str | None, sets: Sequence[str], publish: bool | None,
               force: bool, keep_going: bool, jobs: int, progress: bool | None, wait: bool,
               scheduler: str | None = None, workers: int | None = None) -> int:
    """The body of `reproduce`, inside its signal handlers."""
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: expected a positive number of notebooks run at once")
    workers = _workers(workers, jobs)
    started = time.monotonic()
    publish = (profile == "paper") if publish is None else publish
    plan = make_plan(layout, profile, only, sets, publish)
    if not plan.tasks:
        log(f"nothing to run: no notebooks named NN_name.ipynb in {layout.rel(layout.notebooks)}")
        return EXIT_OK
    if scheduler:
        _check_scheduler(scheduler)
    lock = CheckoutLock(layout.lock)
    try:
        lock.acquire(wait=False)
    except LockBusy as busy:
        holder = f"pid {busy.pid}" if busy.pid else "another process"
        if not wait:
            raise InputError(f"another `dgn reproduce` ({holder}) is running in this checkout "
                             f"({layout.rel(layout.lock)}): wait for it to finish, or rerun with --wait") from None
        log(f"waiting for the `dgn reproduce` of {holder} to finish ...")
        lock.acquire(wait=True)
    run = Run(layout, plan, force=force, keep_going=keep_going, jobs=jobs,
              progress=sys.stderr.isatty() if progress is None else progress)
    env = {params.RUNNER_ENV: run.id, "DGN_RUN_STORE": str(plan.destination.runs),
           "JUPYTER_RUNTIME_DIR": str(run.tmp / "runtime"), "DGN_WIDGETS": "static",
           **({"DGN_SCHEDULER": scheduler} if scheduler else {}), "DGN_WORKERS": str(workers),
           "PYTHONPATH": os.pathsep.join([str(layout.root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        todo = run.prepare()
        with kernel_environment(env):
            try:
                run.run(todo)
            except Interrupted:
                if run.running:
                    log(f"stopped  {', '.join(sorted(run.running))}: nothing of it is kept")
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


def prepare(layout: Layout, profile: str, dest: str, only: str | None = None, sets: Sequence[str] = ()) -> int:
    """`dgn prepare`: write the parameterised notebooks (not executed) for nbval, out_dir = <dest>/figures."""
    import papermill

    plan = make_plan(layout, profile, only, sets, publish=False)
    folder = Path(dest) if Path(dest).is_absolute() else layout.root / dest
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
