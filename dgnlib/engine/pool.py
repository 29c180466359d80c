"""Train a sweep's groups side by side on this machine: one worker process per core, each on one torch thread.

Why processes and not threads: a group's step is a few dozen small batched GEMMs (batch 32) and one fused optimiser
pass; torch's intra-op threads synchronise at every one of them. Measured on the 2-core machine with figure 06's
runs (`bench/bench_sweep.py`): 25 runs as one ensemble on 2 threads took 0.75-0.87 ms per run and step, two
ensembles of 12 side by side on 1 thread each 0.51-0.60 ms.

Determinism: on the CPU every group trains on one thread wherever it runs (`ensemble.train_ensemble`), and the groups
are a fixed function of the specs (`sweep.group_specs`), so a run's numbers do not depend on how many workers train
the sweep, here or on a Dask cluster.

    with LocalExecutor(2) as ex:
        for index, result in ex.map_unordered(train_group, tasks, on_epoch=bar_update):
            ...

Workers are spawned (never forked: torch's thread pools do not survive a fork), ignore SIGINT (the parent decides
what Ctrl-C stops) and exit by themselves when their parent dies, so a killed notebook leaves no trainer behind.
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from dgnlib.engine.threads import positive_int_env

WORKERS_ENV = "DGN_WORKERS"  # set by `dgn reproduce --workers N`; unset: one worker per usable core
POLL_S = 0.2  # how often the parent wakes to forward progress and notice Ctrl-C

_QUEUE: Any = None  # in a worker: where per-epoch progress goes


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_from_env() -> int:
    """Worker processes for a CPU sweep: DGN_WORKERS when set (a positive integer), else the usable cores."""
    return positive_int_env(WORKERS_ENV, usable_cores(), "worker processes for a sweep")


def _watch_parent(parent: int) -> None:
    """In a worker: exit at once when the parent process is gone (a killed kernel must not leave trainers)."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(1.0)


def _init(progress: Any, parent: int) -> None:
    """Worker start-up: one torch thread, SIGINT ignored, a watchdog on the parent, the progress queue."""
    global _QUEUE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["DGN_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    _QUEUE = progress
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _takes_on_epoch(fn: Callable[..., Any]) -> bool:
    try:
        return "on_epoch" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _call(fn: Callable[..., Any], item: Any, index: int) -> Any:
    """In a worker: fn(item), forwarding fn's per-epoch progress (epoch, runs active) to the parent."""
    if not _takes_on_epoch(fn):
        return fn(item)

    def on_epoch(epoch: int, active: int) -> None:
        if epoch:
            _QUEUE.put((index, active))

    return fn(item, on_epoch=on_epoch)


class LocalExecutor:
    """`workers` spawned processes training groups side by side; `map` / `map_unordered` as `sweep` expects."""

    local = True  # sweep trains a single group in-process instead of spawning a worker for it

    def __init__(self, workers: int) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers

    def __repr__(self) -> str:
        return f"LocalExecutor({self.workers})"

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        """fn(item) for each item, in the items' order."""
        results = dict(self.map_unordered(fn, items))
        return (results[i] for i in range(len(results)))

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[Any],
                      on_epoch: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any]]:
        """(index, fn(item)) in the order the items finish; on_epoch(runs active) after each epoch of any item.

        Items start in the order given. Leaving early (an error, Ctrl-C, the caller stops reading) cancels what has
        not started and terminates the workers.
        """
        items = list(items)
        if not items:
            return
        ctx = mp.get_context("spawn")
        progress = ctx.SimpleQueue()  # put() writes through at once: a group's last epochs arrive before its result
        pool = ProcessPoolExecutor(min(self.workers, len(items)), mp_context=ctx, initializer=_init,
                                   initargs=(progress, os.getpid()))
        finished = False
        try:
            futures: dict[Future, int] = {pool.submit(_call, fn, item, i): i for i, item in enumerate(items)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                _forward(progress, on_epoch)
                for future in sorted(done, key=futures.__getitem__):
                    try:
                        value = future.result()
                    except BrokenProcessPool:
                        raise RuntimeError(
                            "a training worker process died (killed, or out of memory); rerun: the runs already "
                            "stored are kept, or set DGN_WORKERS=1 to train in this process") from None
                    _forward(progress, on_epoch)
                    yield futures[future], value
            finished = True
        finally:
            if not finished:
                _terminate(pool)
            pool.shutdown(wait=finished, cancel_futures=True)
            progress.close()


def _forward(progress: Any, on_epoch: Callable[[int], None] | None) -> None:
    """Pass the workers' per-epoch reports on to on_epoch."""
    while not progress.empty():
        _, active = progress.get()
        if on_epoch is not None:
            on_epoch(active)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (their groups are lost; finished groups were already handed back)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            proc.terminate()
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.join(timeout=5)


def executor_for(device: str) -> LocalExecutor | None:
    """A LocalExecutor when training on the CPU with more than one worker (DGN_WORKERS, else the cores), else None."""
    if workers_from_env() < 2:
        return None
    from dgnlib.engine.reference import resolve_device

    return LocalExecutor(workers_from_env()) if resolve_device(device).type == "cpu" else None
