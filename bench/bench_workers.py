"""Worker processes for bench_sweep.py: one torch thread each, every measurement released by one barrier.

A task is (factory, args): the worker calls factory(*args) to build and warm up what it measures (untimed), waits on
the barrier shared by all workers, then times the callable the factory returned; it sends back (its value, wall
seconds, CPU seconds of its thread): CPU below wall means the worker was descheduled (a shared machine).
Workers are spawned (torch's thread pools do not survive a fork) and are daemons: they die with the benchmark.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from typing import Any

SETUP_TIMEOUT_S = 600  # the longest a worker waits on the barrier for the others to finish building


def _serve(worker: int, tasks, results, barrier) -> None:
    import torch

    torch.set_num_threads(1)
    while (task := tasks.get()) is not None:
        try:
            factory, args = task
            run = factory(*args)
            barrier.wait(timeout=SETUP_TIMEOUT_S)
            start, cpu = time.perf_counter(), time.thread_time()
            value = run()
            results.put((worker, (value, time.perf_counter() - start, time.thread_time() - cpu)))
        except BaseException as exc:  # noqa: BLE001  (sent to the parent, which raises it)
            barrier.abort()
            results.put((worker, RuntimeError(f"bench worker {worker}: {type(exc).__name__}: {exc}")))


class Workers:
    """n spawned worker processes; `run(tasks)` gives one task to each and returns their (value, wall s, CPU s)."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.n, self.barrier, self.results = n, ctx.Barrier(n), ctx.Queue()
        self.queues = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=_serve, args=(w, q, self.results, self.barrier), daemon=True)
                      for w, q in enumerate(self.queues)]

    def __enter__(self) -> Workers:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for q in self.queues:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()

    def run(self, tasks: Sequence[tuple[Callable[..., Callable[[], Any]], tuple]]) -> list[tuple[Any, float, float]]:
        """One task per worker, all timed from the same barrier; (value, wall s, CPU s) per worker, in order."""
        if len(tasks) != self.n:
            raise ValueError(f"one task per worker: {self.n} workers, {len(tasks)} tasks")
        for q, task in zip(self.queues, tasks):
            q.put(task)
        out: list[Any] = [None] * self.n
        for _ in range(self.n):
            worker, value = self.results.get(timeout=2 * SETUP_TIMEOUT_S)
            if isinstance(value, BaseException):
                raise value
            out[worker] = value
        return out
