"""Run a sweep's ensemble groups on a Dask cluster: an executor with `map(fn, groups)` semantics.

`executor_from_env()` returns None unless ``DGN_SCHEDULER`` names a scheduler, so nothing of Dask is imported on an
ordinary run (this module imports ``distributed`` only inside `DaskExecutor`). A `DaskExecutor`:

- connects before any work starts: a malformed or unreachable address, or a scheduler without workers, is a
  one-line `ClusterError` within `timeout` seconds;
- checks every worker against this client (dgnlib version, SHA-256 of the science sources, torch and numpy
  versions): a difference is a `WorkerMismatchError` naming the worker and what differs, never a wrong figure.
  Each task checks again on its worker, so a worker that joins later is held to the same rule;
- sends the client's torch settings (threads, default dtype, deterministic algorithms, float32 matmul precision)
  with each task and sets them on the worker, so a group computed there gives the same bits as in-process;
- runs groups on CUDA when the cluster has workers that declare a ``GPU`` resource (``dask worker --resources
  GPU=1``): then every group is submitted with ``resources={"GPU": 1}`` and run on ``"cuda"``, else on
  ``"cpu"``: fn(item, device=...) when fn takes a ``device`` argument, else an item with a ``device`` field set
  to "auto" (`sweep.GroupTask`) gets that field set. One sweep never mixes devices (CUDA and CPU kernels differ
  in the last bits);
- submits with `retries`: a dead worker's tasks rerun elsewhere; no worker at all for `lost_grace` s is a ClusterError.
  Results come back whole (the caller writes the store). Ctrl-C, or a caller that stops reading, cancels the rest.

Workers read data from their own environment (``DGN_DATA_DIR``, the cache) through `dgnlib.engine.tensors`, whose
loaders verify every file's hash; `DaskExecutor.check_data` verifies named data sets on every worker up front.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dgnlib.engine.sources import _mismatch_message, differences, fingerprint

ENV = "DGN_SCHEDULER"
GRACE_ENV = "DGN_WORKER_GRACE"
LOST_GRACE_S = 300.0  # a cluster without any worker this long fails the sweep: longer than a worker's restart
POLL_S = 0.2  # how often a wait wakes up, so that Ctrl-C is handled promptly whatever thread receives it
_ADDRESS = re.compile(r"^(?:(tcp|tls)://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ClusterError(RuntimeError):
    """The cluster cannot be used: malformed or unreachable address, no workers, a worker that cannot run a task."""


class WorkerMismatchError(ClusterError):
    """A worker's dgnlib (version or sources), torch or numpy differs from this client's."""


def lost_grace_from_env() -> float:
    """DGN_WORKER_GRACE in seconds (a positive number), else LOST_GRACE_S; ClusterError when malformed."""
    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return LOST_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ClusterError(f"{GRACE_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def check_address(address: str) -> str:
    """The scheduler address as ``tcp://HOST:PORT`` (a bare HOST:PORT means tcp); malformed → ClusterError."""
    match = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if not match or not 0 < int(match.group(3)) < 65536:
        raise ClusterError(
            f"{address!r} is not a Dask scheduler address: expected tcp://HOST:PORT (or tls://HOST:PORT), "
            "as printed by 'dask scheduler'"
        )
    return f"{match.group(1) or 'tcp'}://{match.group(2)}:{match.group(3)}"


# ---------------------------------------------------------------- what must be equal on client and workers


@lru_cache(maxsize=1)
def _worker_fingerprint() -> dict[str, Any]:
    """This process's fingerprint, computed once (the sources a worker imported do not change under it)."""
    return fingerprint()


# ---------------------------------------------------------------- what runs on a worker


@dataclass(frozen=True)
class TaskSettings:
    """The client's torch settings that change a result's bits, sent with each task and set on the worker."""

    threads: int
    env_threads: str | None  # DGN_THREADS: train.seed_everything reads it
    dtype: str
    deterministic: bool
    deterministic_warn_only: bool
    matmul_precision: str
    device: str = "cpu"

    @classmethod
    def capture(cls, device: str = "cpu") -> TaskSettings:
        """This process's current settings, with the device chosen for the sweep."""
        import torch

        return cls(threads=torch.get_num_threads(), env_threads=os.environ.get("DGN_THREADS"),
                   dtype=str(torch.get_default_dtype()).removeprefix("torch."),
                   deterministic=torch.are_deterministic_algorithms_enabled(),
                   deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
                   matmul_precision=torch.get_float32_matmul_precision(), device=device)

    def apply(self) -> None:
        """Set these settings in this process (a worker process runs one task at a time: --nthreads 1)."""
        import torch

        torch.set_num_threads(self.threads)
        if self.env_threads is None:
            os.environ.pop("DGN_THREADS", None)
        else:
            os.environ["DGN_THREADS"] = self.env_threads
        torch.set_default_dtype(getattr(torch, self.dtype))
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        torch.set_float32_matmul_precision(self.matmul_precision)


@dataclass(frozen=True)
class _Refused:
    """A task that would not run on its worker: returned, not raised, so that Dask does not retry it."""

    message: str
    mismatch: bool = False


def _worker_address() -> str:
    """The address of the worker running this task (or 'this process' outside a worker)."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "this process"


def run_task(fn: Callable[..., Any], item: Any, expected: dict[str, Any], settings: TaskSettings) -> Any:
    """On a worker: check it against the client's fingerprint, set the client's torch settings, return fn(item)."""
    diffs = differences(expected, _worker_fingerprint())
    if diffs:
        return _Refused(_mismatch_message(_worker_address(), diffs), mismatch=True)
    if settings.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return _Refused(f"Dask worker {_worker_address()} declares a GPU resource but its torch sees no CUDA "
                            f"device (torch {torch.__version__}); install a CUDA build there or drop --resources")
    settings.apply()
    if _accepts_device(fn):
        return fn(item, device=settings.device)
    if _device_field(item) == "auto":  # e.g. sweep.GroupTask: "auto" leaves the choice to whoever runs it
        item = dataclasses.replace(item, device=settings.device)
    return fn(item)


def _report() -> dict[str, Any]:
    """On a worker (through client.run): its fingerprint."""
    return _worker_fingerprint()


def _verify_data(names: list[str]) -> str | None:
    """On a worker (through client.run): load both splits of each data set through the verifying loaders."""
    from dgnlib.data import files

    for name in names:
        for split in files.SPLITS:
            try:
                files.load(name, split)
            except (files.DataError, ValueError, OSError) as err:
                return f"{name} {split}: {' '.join(str(err).split())}"
    return None


# ---------------------------------------------------------------- the client side


def _device_field(item: Any) -> str | None:
    """The value of a dataclass item's `device` field (None: the item has none)."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        if any(f.name == "device" for f in dataclasses.fields(item)):
            return item.device
    return None


def _accepts_device(fn: Callable[..., Any]) -> bool:
    """True when fn can be called as fn(item, device=...)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "device" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) or p.kind == p.VAR_KEYWORD
               for p in params)


class DaskExecutor:
    """Runs fn over groups on the Dask scheduler at `address`; results come back here in order (see the module)."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = 5.0,
        worker_timeout: float = 60.0,
        retries: int = 2,
        device: str = "auto",
        lost_grace: float | None = None,
    ) -> None:
        """Connect, wait for a worker and check every worker; any failure is a one-line ClusterError.

        `lost_grace`: seconds without any worker before a wait fails (default DGN_WORKER_GRACE, else LOST_GRACE_S)."""
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.address = check_address(address)
        self.retries, self.worker_timeout = retries, worker_timeout
        self.lost_grace = lost_grace_from_env() if lost_grace is None else lost_grace
        self._gone_since, self._checked_at = None, 0.0  # first seen without any worker; last looked
        from distributed import Client

        try:
            self.client = Client(self.address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise ClusterError(
                f"cannot reach the Dask scheduler at {self.address} ({reason}); start one with "
                f"'dask scheduler' or correct --scheduler / {ENV}"
            ) from None
        self.expected = fingerprint()
        try:
            self.ready()
            self.device = self._choose_device(device)
        except BaseException:
            self.client.close()
            raise

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r}, device={self.device!r})"

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect from the scheduler (its tasks from this client are released)."""
        self.client.close()

    def _gpu_workers(self) -> list[str]:
        """The workers that declare a GPU resource."""
        try:
            info = self.client.scheduler_info(n_workers=-1)  # newer releases list only 5 workers unless asked
        except TypeError:
            info = self.client.scheduler_info()
        workers = info["workers"]
        return [w for w, info in workers.items() if (info.get("resources") or {}).get("GPU", 0) > 0]

    def _choose_device(self, device: str) -> str:
        """'cuda' when asked, or on 'auto' when some worker declares a GPU; else 'cpu'."""
        gpus = self._gpu_workers()
        if device == "cuda" and not gpus:
            raise ClusterError(f"device='cuda' asked but no worker of {self.address} declares a GPU resource "
                               "(start them with 'dask worker ... --resources GPU=1')")
        return "cuda" if device == "cuda" or (device == "auto" and gpus) else "cpu"

    def ready(self) -> None:
        """Wait (worker_timeout at most) for a worker, then check every worker: ClusterError if none, or a mismatch."""
        try:
            self.client.wait_for_workers(1, timeout=self.worker_timeout)
        except (OSError, TimeoutError):
            raise ClusterError(
                f"the Dask scheduler at {self.address} has no worker after {self.worker_timeout:g} s; start some "
                f"with 'dask worker {self.address} --nthreads 1'"
            ) from None
        self.check_workers()

    def check_workers(self) -> None:
        """Compare every connected worker's fingerprint with this client's; the first mismatch is an error."""
        for worker, theirs in sorted(self.client.run(_report).items()):
            diffs = differences(self.expected, theirs)
            if diffs:
                raise WorkerMismatchError(_mismatch_message(worker, diffs))

    def check_data(self, names: Iterable[str]) -> None:
        """Load and verify the named data sets (`engine.tensors` names) on every worker; a failure names the worker."""
        names = sorted(set(names))
        for worker, problem in sorted(self.client.run(_verify_data, names).items()):
            if problem:
                raise ClusterError(f"Dask worker {worker} cannot load verified data: {problem}")

    def _submit(self, fn: Callable[..., Any], items: Iterable[Any]) -> list[Any]:
        """One task per item, keyed uniquely per call, with this client's settings."""
        items = list(items)
        if self.device != "cpu" and not _accepts_device(fn) and any(_device_field(i) != "auto" for i in items):
            raise ClusterError(f"groups would run on {self.device}, but {getattr(fn, '__name__', fn)!r} takes no "
                               "device= argument and its items carry no device field set to 'auto'")
        settings = TaskSettings.capture(self.device)
        resources = {"GPU": 1} if self.device == "cuda" else None
        name = getattr(fn, "__name__", "task")
        tag = uuid.uuid4().hex[:12]
        return [self.client.submit(run_task, fn, item, self.expected, settings, key=f"dgn-{name}-{tag}-{i}",
                                   retries=self.retries, resources=resources, pure=False)
                for i, item in enumerate(items)]

    def _result(self, future: Any) -> Any:
        """The future's value, waiting in short slices (Ctrl-C stays prompt); a refused task is an error here."""
        from distributed import TimeoutError as DaskTimeout

        while True:
            try:
                value = future.result(timeout=POLL_S)
                break
            except DaskTimeout:
                if future.done():  # finished meanwhile, or the task itself raised a TimeoutError
                    value = future.result()
                    break
                self._watch_workers()
        if isinstance(value, _Refused):
            raise (WorkerMismatchError if value.mismatch else ClusterError)(value.message)
        return value

    def _watch_workers(self) -> None:
        """ClusterError once the cluster has had no worker for `lost_grace` s (retries cover one dead worker only)."""
        now = time.monotonic()
        if now - self._checked_at < 1.0:
            return
        self._checked_at = now
        try:
            workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        except (OSError, TimeoutError):
            workers = {}  # the scheduler itself is unreachable: as good as no worker
        if workers:
            self._gone_since = None
            return
        self._gone_since = now if self._gone_since is None else self._gone_since
        if now - self._gone_since > self.lost_grace:
            raise ClusterError(
                f"every worker of the Dask scheduler at {self.address} has been gone for more than "
                f"{self.lost_grace:g} s (a batch job past its walltime?): start workers and rerun; finished runs are "
                f"in the run store (the grace period is {GRACE_ENV}, in seconds)")

    def _completed(self, futures: list[Any]) -> Iterator[Any]:
        """The futures as they finish, polled in short slices so that lost workers and Ctrl-C are noticed."""
        pending = list(futures)
        while pending:
            done = [f for f in pending if f.done()]
            if not done:
                self._watch_workers()
                time.sleep(POLL_S)
                continue
            for future in done:
                pending.remove(future)
                yield future

    def _drain(self, futures: list[Any], order: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """Yield (index, value) in `order`; on any exit before the end (error, Ctrl-C, close) cancel what is left."""
        try:
            for i, future in order:
                yield i, self._result(future)
        finally:
            left = [f for f in futures if not f.done()]
            if left:
                self.client.cancel(left)

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        """fn(item) for each item, computed on the cluster, yielded in the items' order (like the builtin map)."""
        futures = self._submit(fn, items)
        return (value for _, value in self._drain(futures, iter(enumerate(futures))))

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """(index, fn(item)) pairs in the order the tasks finish, so a caller can store each result at once."""
        futures = self._submit(fn, items)
        index = {f.key: i for i, f in enumerate(futures)}
        return self._drain(futures, ((index[f.key], f) for f in self._completed(futures)))


_EXECUTORS: dict[str, DaskExecutor] = {}


def executor_from_env(**kwargs: Any) -> DaskExecutor | None:
    """None unless DGN_SCHEDULER is set; else a connected, checked DaskExecutor, reused for the same address."""
    address = os.environ.get(ENV, "").strip()
    if not address:
        return None
    address = check_address(address)
    cached = _EXECUTORS.get(address)
    if cached is not None and cached.client.status == "running":
        cached.ready()  # workers may have come and gone since the last sweep
        return cached
    _EXECUTORS[address] = DaskExecutor(address, **kwargs)
    return _EXECUTORS[address]
