"""The sweep engine: group compatible runs into ensembles, order them by dependency, skip what is stored, resume.

    results = run_sweep(specs, store)                 # in this process
    results = run_sweep(specs, store, executor=ex)    # ex.map(train_group, tasks) anywhere (e.g. Dask workers)

Executor interface: any object with `map(fn, items)` returning an iterable of fn(item) (lazily or not, in
order or not: results carry their keys). The engine calls `executor.map(train_group, tasks)` with `GroupTask`s;
`train_group` is a pure, importable function of its task (the group's specs, the stored weights of the relu runs
that flnpf runs copy, the device): it reads no store, writes nothing and needs no state from this process, so a
worker can run it from the pickled task alone (inline data travel inside the spec; named data sets are loaded by
`tensors.materialise` on the worker). The engine stores each group's results as soon as they come back, so a sweep
killed at any point reruns only the groups that had not come back.

Order: phase 1 trains every run without a gate source (including relu runs that flnpf runs need, with the weights
they need kept); phase 2 trains the flnpf runs, with their relu runs' weights read from the store.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dgnlib.data import files
from dgnlib.engine.ensemble import train_ensemble
from dgnlib.engine.runcheck import StoreError
from dgnlib.engine.runs import METRICS, GateSource, RunResult, RunSpec, RunStore, gate_weight_id
from dgnlib.engine.selection import best_test_epoch

# At most this many runs train as one ensemble. On the CPU a run's step costs about the same from 4 to 25 runs per
# group (bench/bench_sweep.py), so small groups lose nothing there and gain: an interrupted sweep loses at most one
# group per worker, and the workers share the groups evenly. On CUDA a bigger stack would fill the device better.
MAX_GROUP_RUNS = 8


class Executor(Protocol):
    """What `run_sweep` needs of an executor: `map(fn, items)` → iterable of fn(item)."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterable[Any]: ...


@dataclass(frozen=True)
class GroupTask:
    """One ensemble to train: compatible specs, their dependencies' weights ('<relu key>@<epoch>' → state), device."""

    specs: tuple[RunSpec, ...]
    gate_weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    device: str = "auto"


def train_group(task: GroupTask, on_epoch: Callable[[int, int], None] | None = None) -> list[RunResult]:
    """Train one group as an ensemble and return its results (pure: no store, no global state)."""
    return train_ensemble(task.specs, task.gate_weights, device=task.device, on_epoch=on_epoch)


def group_specs(specs: Sequence[RunSpec], max_runs: int | None = MAX_GROUP_RUNS) -> list[tuple[RunSpec, ...]]:
    """Compatible specs together (first-seen order), each group cut into as few chunks of at most `max_runs` as
    possible, of sizes differing by at most one (None: no cut).

    The groups are a function of the specs alone (never of the workers or cores at hand): a run's float32 numbers
    depend, in the last bits, on the runs it is stacked with, so a fixed grouping keeps "same seed, same numbers".
    """
    if max_runs is not None and max_runs < 1:
        raise ValueError(f"max_runs must be a positive integer or None, got {max_runs!r}")
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group_key(), []).append(spec)
    out = []
    for members in groups.values():
        chunks = -(-len(members) // (max_runs or len(members)))
        size, extra = divmod(len(members), chunks)
        start = 0
        for c in range(chunks):
            stop = start + size + (c < extra)
            out.append(tuple(members[start:stop]))
            start = stop
    return out


def group_cost(specs: Sequence[RunSpec]) -> int:
    """Relative training cost of a group: run-epochs, a trained feature network (dnpfl) counting twice."""
    return sum(s.epochs * (2 if s.model.variant == "dnpfl" else 1) for s in specs)


PROGRESS_FILE_ENV = "DGN_PROGRESS_FILE"  # set by `dgn reproduce` for each kernel: where it reads the sweep's state
PROGRESS_FILE_EVERY_S = 0.5  # the file is rewritten at most this often (and once at the end)


class Progress:
    """One bar per sweep: runs done of total, epochs, ETA; one line per 10 % of epochs when not on a terminal.

    When DGN_PROGRESS_FILE is set (the runner sets it for each notebook's kernel, whose stderr it does not show), the
    same state is also written there as one JSON object, replaced atomically, for the runner to show on its terminal.
    """

    def __init__(self, runs: int, epochs: int, skipped: int, enabled: bool, stream=None) -> None:
        self.runs, self.epochs, self.skipped, self.enabled = runs, epochs, skipped, enabled
        self.stream = stream or sys.stderr
        self.done_runs = self.done_epochs = 0
        self.start = time.perf_counter()
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self.next_tenth = 1
        self.file = os.environ.get(PROGRESS_FILE_ENV, "").strip() or None
        self.written = 0.0
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, desc="sweep", unit="epoch", file=self.stream, leave=False)
        if enabled and not self.tty:
            print(f"sweep: {runs} runs to train ({epochs} run-epochs), {skipped} already stored", file=self.stream)
        self._publish(force=True)

    def state(self) -> dict[str, Any]:
        """Runs and run-epochs done of total, elapsed seconds, the ETA in seconds (None before the first epoch)."""
        elapsed = time.perf_counter() - self.start
        eta = elapsed * (self.epochs - self.done_epochs) / self.done_epochs if self.done_epochs else None
        return {"runs_done": self.done_runs, "runs": self.runs, "skipped": self.skipped, "epochs_done":
                self.done_epochs, "epochs": self.epochs, "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None else round(eta, 1)}

    def _publish(self, force: bool = False) -> None:
        """Rewrite the progress file (at most every PROGRESS_FILE_EVERY_S unless forced); never fails the sweep."""
        now = time.monotonic()
        if self.file is None or (not force and now - self.written < PROGRESS_FILE_EVERY_S):
            return
        self.written = now
        tmp = f"{self.file}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(self.state(), fh)
            os.replace(tmp, self.file)  # the reader sees the old state or the new one, never half of one
        except OSError:
            pass  # progress is a courtesy: a full disk or a removed folder must not stop training

    def epochs_done(self, n: int) -> None:
        """Count n more run-epochs."""
        self.done_epochs += n
        self._publish()
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"runs {self.done_runs}/{self.runs}")
        elif self.enabled and self.epochs and self.done_epochs * 10 >= self.next_tenth * self.epochs:
            self.next_tenth = self.done_epochs * 10 // self.epochs + 1
            elapsed = time.perf_counter() - self.start
            eta = elapsed * (self.epochs - self.done_epochs) / max(self.done_epochs, 1)
            print(f"sweep: {100 * self.done_epochs // self.epochs:3d}% runs {self.done_runs}/{self.runs}, "
                  f"epochs {self.done_epochs}/{self.epochs}, elapsed {elapsed:.0f} s, ETA {eta:.0f} s",
                  file=self.stream, flush=True)

    def runs_done(self, n: int, epochs_left: int) -> None:
        """Count n finished runs (and the run-epochs they skipped by stopping early or running elsewhere)."""
        self.done_runs += n
        if epochs_left:
            self.epochs_done(epochs_left)
        elif self.bar is not None:
            self.bar.set_postfix_str(f"runs {self.done_runs}/{self.runs}")
        self._publish(force=True)

    def close(self) -> None:
        """Close the bar and leave the final state in the progress file."""
        self._publish(force=True)
        if self.bar is not None:
            self.bar.close()


def _needed_weights(specs: Sequence[RunSpec]) -> dict[str, tuple[RunSpec, set[int | str]]]:
    """relu key → (its spec, the epochs whose weights flnpf runs copy; "best" for its best-test-accuracy epoch)."""
    need: dict[str, tuple[RunSpec, set[int | str]]] = {}
    for spec in specs:
        if spec.gate_source is not None:
            src = spec.gate_source
            need.setdefault(src.spec.key(), (src.spec, set()))[1].add("best" if src.select == "best" else src.epoch)
    return need


def _source_epoch(source: GateSource, result: RunResult | None) -> int | None:
    """The epoch of the relu run whose weights a flnpf run copies (for "best": read from its stored rows)."""
    if source.select != "best":
        return source.epoch
    return None if result is None else best_test_epoch(result.rows)


def _with_weight_requests(spec: RunSpec, wanted: set[int | str]) -> RunSpec:
    """`spec` asking to keep the weights that flnpf runs copy (epochs, and the best-test-accuracy checkpoint)."""
    epochs = {e for e in wanted if e != "best"}
    return spec.replace(keep_weights=tuple(sorted(set(spec.keep_weights) | epochs)),
                        keep_best=spec.keep_best or "best" in wanted)


def run_sweep(
    specs: Sequence[RunSpec],
    store: RunStore,
    *,
    executor: Executor | None = None,
    progress: bool = True,
    device: str = "auto",
    max_runs: int | None = MAX_GROUP_RUNS,
) -> dict[str, RunResult]:
    """Train every spec not yet in `store` (ensembles of compatible runs, flnpf after its relu), storing each group's
    results as soon as they are back; returns {key: RunResult} for every spec given (weights not loaded).

    With no `executor`, the environment variable DGN_SCHEDULER (set by `dgn reproduce --scheduler`) sends the groups
    to that Dask cluster (`dgnlib.engine.cluster`); unset, CPU groups train side by side in worker processes on this
    machine (`dgnlib.engine.pool`: DGN_WORKERS of them, by default one per core; a phase of one group trains in this
    process), and CUDA groups in this process. The groups of a phase start in order of decreasing cost.
    """
    if executor is None:
        from dgnlib.engine import cluster, pool  # cluster imports Dask only when DGN_SCHEDULER is set

        executor = cluster.executor_from_env() or pool.executor_for(device)
    need = _needed_weights(specs)
    by_key: dict[str, RunSpec] = {}
    for s in specs:  # the same run asked twice: one run, keeping the weights either asks for
        prev = by_key.get(s.key())
        by_key[s.key()] = s.replace(keep_weights=tuple(sorted({*(prev.keep_weights if prev else ()), *s.keep_weights})),
                                    keep_best=s.keep_best or bool(prev and prev.keep_best))
    for key, (src, _) in need.items():
        by_key.setdefault(key, src)

    def pending(spec: RunSpec) -> bool:
        key = spec.key()
        stored = store.get(key)  # reads and checks the entry: a corrupt one raises CorruptEntry, never retrains
        if stored is None:
            return True
        if stored.status == "invalid":  # it would diverge again: an invalid run keeps no weights to wait for
            return False
        wanted = need.get(key, (None, set()))[1]
        epochs = {e for e in wanted if e != "best"} | set(spec.keep_weights)
        if "best" in wanted or spec.keep_best:
            epochs.add(best_test_epoch(stored.rows))  # None (no trained epoch) has no weights: retrain
        return not all(e is not None and store.has_weights(key, e) for e in epochs)

    todo = [s for s in by_key.values() if pending(s)]
    if todo and getattr(store, "read_only", False):
        shown = ", ".join(s.key() for s in todo[:5]) + (f" and {len(todo) - 5} more" if len(todo) > 5 else "")
        raise StoreError(f"{len(todo)} runs are missing from the read-only run store {store.root} (or lack the "
                         f"weights asked for): {shown}; a read-only store never trains: restore runs/ or run "
                         "`dgn reproduce` to train them")
    first = [_with_weight_requests(s, need.get(s.key(), (None, set()))[1]) for s in todo if s.gate_source is None]
    second = [s for s in todo if s.gate_source is not None]
    bar = Progress(len(todo), sum(s.epochs for s in todo), len(by_key) - len(todo), progress)
    try:
        for phase in (first, second):
            tasks = []
            if phase is second:
                phase = _skip_invalid_sources(phase, store, bar)
            for group in group_specs(phase, max_runs):
                weights = {}
                for s in group:
                    if s.gate_source is not None:
                        wid, key = gate_weight_id(s.gate_source), s.gate_source.spec.key()
                        epoch = _source_epoch(s.gate_source, store.get(key))
                        weights[wid] = None if epoch is None else store.weights(key, epoch)
                        if weights[wid] is None:
                            raise RuntimeError(f"the relu run {wid} was not stored with the weights flnpf needs")
                tasks.append(GroupTask(group, weights, device))
            tasks.sort(key=lambda t: -group_cost(t.specs))  # longest first: the workers finish together
            _execute(tasks, store, executor, bar)
    finally:
        bar.close()
    out = {}
    for key in (s.key() for s in specs):
        result = store.get(key)
        if result is None:
            raise RuntimeError(f"run {key} is missing from the store after the sweep")
        out[key] = result
    return out


def _skip_invalid_sources(specs: list[RunSpec], store: RunStore, bar: Progress) -> list[RunSpec]:
    """Store every flnpf run whose relu source is invalid as invalid, untrained (no gates to copy), with the reason;
    return the others."""
    out = []
    for s in specs:
        source = store.get(s.gate_source.spec.key())
        if source is None or source.status == "ok":
            out.append(s)
            continue
        reason = (f"not trained: its gate source, relu run {s.gate_source.spec.key()[:12]}…, is invalid "
                  f"({source.reason or 'non-finite values'})")
        row = {m: (0 if m == "epoch" else float("nan")) for m in METRICS}  # one row, no numbers: nothing was measured
        store.put(s.key(), RunResult(s.key(), s.describe(), "invalid", [row], reason=reason))
        bar.runs_done(1, s.epochs)
    return out


def _execute(tasks: list[GroupTask], store: RunStore, executor: Executor | None, bar: Progress) -> None:
    """Run the tasks (in-process, with per-epoch progress, or through the executor) and store each group at once."""
    if not tasks:
        return
    if executor is None or (getattr(executor, "local", False) and len(tasks) == 1):
        for task in tasks:
            results = train_group(task, on_epoch=lambda epoch, active: bar.epochs_done(active) if epoch else None)
            _store(results, store, bar, counted=True)
        return
    names = {s.data.name for task in tasks for s in task.specs} & set(files.NAMES)
    if names and hasattr(executor, "check_data"):  # every worker verifies the files before any training
        executor.check_data(sorted(names))
    if getattr(executor, "local", False):  # worker processes here: per-epoch progress comes back too
        for _, results in executor.map_unordered(train_group, tasks, on_epoch=bar.epochs_done):
            _store(results, store, bar, counted=True)
        return
    if hasattr(executor, "map_unordered"):  # store each group as soon as it is back, whatever the order
        results_iter: Iterable[list[RunResult]] = (r for _, r in executor.map_unordered(train_group, tasks))
    else:
        results_iter = executor.map(train_group, tasks)
    for results in results_iter:
        _store(results, store, bar, counted=False)


def _store(results: list[RunResult], store: RunStore, bar: Progress, counted: bool) -> None:
    """Put a group's results in the store and move the bar (run-epochs not already counted per epoch)."""
    left = 0
    for result in results:
        store.put(result.key, result)
        epochs = int(result.spec["epochs"])
        left += epochs - max(len(result.rows) - 1, 0) if counted else epochs
    bar.runs_done(len(results), left)
