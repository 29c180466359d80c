"""Run one notebook with papermill into a private folder, with a kernel this module starts and always stops."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Job:
    """One execution: the notebook, its parameters (out_dir included), and its private output paths."""

    stem: str
    notebook: Path
    parameters: dict[str, Any]
    out_dir: Path  # the notebook's out_dir: a private folder that nothing else writes to
    output: Path  # where papermill writes the executed copy (private too)
    runtime: Path  # the kernel's connection file goes here
    cwd: Path
    progress: bool = False
    position: int = 0
    env: dict[str, str] = field(default_factory=dict)  # variables for this kernel alone (e.g. its progress file)
    timeout: float | None = None  # seconds the whole notebook may take (None: no limit)


@dataclass
class Result:
    """What happened: executed or failed (in which cell, with which error), how long it took, what it wrote."""

    status: str = "failed"
    started: str = ""
    seconds: float = 0.0
    cell: int | None = None
    exec_count: int | None = None
    error: str = ""
    outputs: list[str] = field(default_factory=list)


class Kernels:
    """The kernels running now (one per thread), so that an interrupted run can stop every one of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Any] = {}
        self.closed = False  # after an interruption: no new kernel may start

    def add(self, km: Any) -> None:
        """Register a kernel manager."""
        with self._lock:
            self._running[id(km)] = km

    def close(self) -> None:
        """Refuse new kernels and kill the running ones (safe in a signal handler: it only sends SIGKILL)."""
        self.closed = True
        with self._lock:
            running = list(self._running.values())
        for km in running:
            process = getattr(getattr(km, "provisioner", None), "process", None)
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)

    def discard(self, km: Any) -> None:
        """Forget a kernel manager."""
        with self._lock:
            self._running.pop(id(km), None)

    def stop_all(self) -> None:
        """Kill every registered kernel and remove its connection file."""
        with self._lock:
            running = list(self._running.values())
        for km in running:
            stop_kernel(km)


def stop_kernel(km: Any) -> None:
    """Kill the kernel process (if any), wait for it, and remove its connection file; never raises."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)  # the kernel runs in a session of its own, with its children
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(Exception):
            process.wait(timeout=10)
    with contextlib.suppress(Exception):
        km.cleanup_resources()
    with contextlib.suppress(OSError, TypeError):
        Path(km.connection_file).unlink(missing_ok=True)


DEATH_GRACE_S = 3.0  # how long papermill may take to notice a dead kernel itself before the runner gives up on it
POLL_S = 0.2


def kernel_process(km: Any) -> Any:
    """The kernel's Popen object, once it has started (None before)."""
    return getattr(getattr(km, "provisioner", None), "process", None)


def death_message(returncode: int) -> str:
    """Why a kernel ended, in words: the signal that killed it (SIGKILL: often the out-of-memory killer)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the out-of-memory killer sends it: see `dmesg`, or run fewer --jobs)" if name == "SIGKILL" else ""
        return f"DeadKernel: the kernel died, killed by {name}{hint}"
    return f"DeadKernel: the kernel exited with status {returncode} while a cell ran"


def utc_now() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def relative_record(notebook: Path, root: Path) -> None:
    """Rewrite papermill's record of the paths (input, output, parameters) relative to `root` where inside it.

    papermill stores the absolute paths it was given in the notebook's metadata; the executed copy is published, and
    the build machine's folders are nobody's business.
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    record = nb.metadata.get("papermill", {})

    def rel(value: Any) -> Any:
        if not isinstance(value, str) or not Path(value).is_absolute():
            return value
        try:
            return Path(value).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return value

    changed = False
    for key in ("input_path", "output_path"):
        if key in record and rel(record[key]) != record[key]:
            record[key], changed = rel(record[key]), True
    for key, value in (record.get("parameters") or {}).items():
        if rel(value) != value:
            record["parameters"][key], changed = rel(value), True
    if changed:
        nbformat.write(nb, notebook)


def relocate_copy(notebook: Path, moves: dict[str, str]) -> int:
    """Replace the run's private paths by where its files are published, in every string of an executed copy.

    The runner executes a notebook into a private folder (`build/tmp/<run>/out/<id>`, `.../executed/<stem>.ipynb`)
    so that a failed run leaves the published files alone; the published copy then names the folders its files were
    committed to (the injected `out_dir`, papermill's `output_path` and `parameters`, any printed path), so that it
    reads as what it is and reruns into them. Returns how many strings changed; rewritten atomically.
    """
    import nbformat

    from dgnlib.atomic import write_via

    order = sorted(moves, key=len, reverse=True)  # the most specific path first
    changed = 0

    def fix(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str):
            new = value
            for old in order:
                new = new.replace(old, moves[old])
            changed += new != value
            return new
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return type(value)((k, fix(v)) for k, v in value.items())
        return value

    nb = nbformat.from_dict(fix(nbformat.read(notebook, as_version=4)))
    if changed:
        write_via(notebook, lambda tmp: nbformat.write(nb, tmp))
    return changed


def execute(job: Job, kernels: Kernels) -> Result:
    """Run the notebook; its outputs stay in job.out_dir and job.output. Interrupted propagates after cleanup."""
    import papermill
    from jupyter_client import KernelManager
    from papermill.exceptions import PapermillExecutionError

    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.runtime.mkdir(parents=True, exist_ok=True)
    result = Result(started=utc_now())
    if kernels.closed:
        result.error = "not started: the run was interrupted"
        return result
    km = KernelManager(kernel_name="python3", connection_file=str(job.runtime / f"kernel-{job.stem}.json"))
    if job.env:  # nbclient starts the kernel through km.start_kernel(**kw): add this job's variables to its env
        start_kernel = km.start_kernel
        km.start_kernel = lambda **kw: start_kernel(**{**kw, "env": {**os.environ, **kw.get("env", {}), **job.env}})
    kernels.add(km)
    start = time.monotonic()
    bar: bool | dict = {"desc": job.stem, "leave": False, "position": job.position} if job.progress else False
    outcome: list[BaseException | None] = []

    def papermill_thread() -> None:
        try:
            papermill.execute_notebook(
                str(job.notebook), str(job.output), parameters=job.parameters, kernel_name="python3",
                progress_bar=bar, km=km, extra_arguments=["--IPKernelApp.log_level=ERROR"],
                # the kernel's working folder, given to nbclient: papermill's own `cwd` would chdir this process
                resources={"metadata": {"path": str(job.cwd)}},
            )
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (handed to the waiting thread, which reports it)
            outcome.append(exc)

    try:
        thread = threading.Thread(target=papermill_thread, daemon=True, name=f"papermill-{job.stem}")
        thread.start()
        error = _watch(thread, km, job, start)
        if error is None:
            exc = outcome[0]
            if isinstance(exc, PapermillExecutionError):
                result.cell, result.exec_count = exc.cell_index, exc.exec_count
                result.error = f"{exc.ename}: {exc.evalue}"
            elif exc is not None:  # the kernel was stopped, an unreadable notebook ...
                result.error = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'}"
            else:
                result.status = "executed"
                relative_record(job.output, job.cwd)
                result.outputs = sorted(p.name for p in job.out_dir.iterdir()
                                        if p.is_file() and not p.name.startswith("."))
        else:
            result.error = error
    finally:
        stop_kernel(km)
        kernels.discard(km)
        result.seconds = round(time.monotonic() - start, 2)
    return result


def _watch(thread: threading.Thread, km: Any, job: Job, start: float) -> str | None:
    """Wait for papermill; None when it returned, else why the runner stopped waiting (dead kernel, timeout).

    nbclient waits for a cell's reply without checking that the kernel lives, so a kernel killed by a signal (the
    out-of-memory killer) would leave it waiting forever: the kernel's process is polled here instead. The papermill
    thread is a daemon: when it is given up on, it is left behind and dies with the process.
    """
    died_at: float | None = None
    while thread.is_alive():
        thread.join(POLL_S)
        now = time.monotonic()
        process = kernel_process(km)
        if died_at is None and process is not None and process.poll() is not None:
            died_at = now
        if died_at is not None and thread.is_alive() and now - died_at > DEATH_GRACE_S:
            return death_message(process.returncode)
        if job.timeout is not None and now - start > job.timeout and thread.is_alive():
            stop_kernel(km)
            thread.join(DEATH_GRACE_S)
            return (f"Timeout: the notebook ran longer than {job.timeout:g} s and was stopped (raise the limit "
                    "with --timeout SECONDS, or 0 for none)")
    return None
