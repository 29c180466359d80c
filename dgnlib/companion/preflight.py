"""Checks made before a run takes the checkout: workers, environment variables, the Dask scheduler, the lock."""

from __future__ import annotations

import os
import sys

from dgnlib.companion.fsio import CheckoutLock, LockBusy
from dgnlib.companion.layout import InputError, Layout


def log(message: str) -> None:
    """One line of the run log (stderr)."""
    print(message, file=sys.stderr, flush=True)


def workers(workers: int | None, jobs: int) -> int:
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


def check_environment() -> None:
    """Refuse, before anything runs, environment variables the kernels would trip on late: DGN_THREADS, DGN_DATA_DIR."""
    from dgnlib.data.files import data_dir_problem
    from dgnlib.engine import threads

    try:
        threads.threads_from_env()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if problem := data_dir_problem():
        raise InputError(problem)


def check_scheduler(address: str) -> None:
    """Fail fast (exit 2) when the Dask scheduler is malformed, unreachable, or its workers differ from this client."""
    from dgnlib.engine import cluster  # imports Dask: only when a scheduler is given

    try:
        cluster.check_address(address)
        with cluster.DaskExecutor(address):
            pass
    except cluster.ClusterError as exc:
        raise InputError(str(exc)) from None


def take_lock(layout: Layout, wait: bool) -> CheckoutLock:
    """The checkout lock, held; InputError (exit 2) when another run holds it (unless `wait`) or it cannot be made."""
    lock = CheckoutLock(layout.lock)
    try:
        try:
            lock.acquire(wait=False)
        except LockBusy as busy:
            holder = f"pid {busy.pid}" if busy.pid else "another process"
            if not wait:
                raise InputError(f"another `dgn reproduce` ({holder}) is running in this checkout "
                                 f"({layout.rel(layout.lock)}): wait for it to finish, or rerun with --wait") from None
            log(f"waiting for the `dgn reproduce` of {holder} to finish ...")
            lock.acquire(wait=True)
    except OSError as exc:
        kind = "a folder" if layout.lock.is_dir() else "not usable"
        raise InputError(f"{layout.rel(layout.lock)}: cannot take the checkout lock, it is {kind} ({exc.strerror}); "
                         "remove it and rerun") from None
    return lock
