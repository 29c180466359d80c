"""dgnlib.engine.cluster on a real LocalCluster (2 worker processes, loopback): same bits as in-process, worker checks,
a killed worker, Ctrl-C, a wrong address. The cluster-free checks come first."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dgnlib import seeding
from dgnlib.data import files
from dgnlib.engine import cluster, sources

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
# The task functions below live in this test module, which workers cannot import: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def train_tiny(item: tuple[int, int]) -> dict:
    """A small seeded training run (the kind of work a group does), with what the process was set to."""
    seed, steps = item
    gen = seeding.generator(seed, "data")
    x = torch.randn(256, 64, generator=gen)
    y = (x[:, :8].sum(1) > 0).long()
    w1 = (torch.randn(64, 128, generator=seeding.generator(seed, "init", 1)) / 8).requires_grad_()
    w2 = (torch.randn(128, 2, generator=seeding.generator(seed, "init", 2)) / 11).requires_grad_()
    losses = []
    for _ in range(steps):  # plain gradient descent: torch.optim's first use imports torch._dynamo (seconds)
        loss = torch.nn.functional.cross_entropy(torch.relu(x @ w1) @ w2, y)
        w1.grad = w2.grad = None
        loss.backward()
        with torch.no_grad():
            w1 -= 0.5 * w1.grad
            w2 -= 0.5 * w2.grad
        losses.append(loss.item())
    return {"losses": losses, "w1": w1.detach(), "w2": w2.detach(), "threads": torch.get_num_threads(),
            "dtype": str(torch.get_default_dtype()), "dgn_threads": os.environ.get("DGN_THREADS")}


def slow_square(item: tuple[int, str, float]) -> tuple[int, int]:
    """i*i after a pause, leaving a marker '<i>-<pid>' when it starts (so a test knows which worker runs it)."""
    i, marker_dir, pause = item
    Path(marker_dir, f"{i}-{os.getpid()}").touch()
    time.sleep(pause)
    return i * i, os.getpid()


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- without a cluster


@pytest.mark.parametrize(("given", "expected"), [
    ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    (" tls://node-3.cluster:9000 ", "tls://node-3.cluster:9000"),
    ("tcp://[::1]:8786", "tcp://[::1]:8786"),
])
def test_check_address_accepts(given: str, expected: str) -> None:
    assert cluster.check_address(given) == expected


@pytest.mark.parametrize("bad", ["", "localhost", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://h:70000",
                                 "http://127.0.0.1:8786", "tcp://a b:1"])
def test_check_address_rejects_in_one_line(bad: str) -> None:
    with pytest.raises(cluster.ClusterError, match="not a Dask scheduler address") as err:
        cluster.check_address(bad)
    assert "\n" not in str(err.value)


def test_no_scheduler_imports_nothing_of_dask() -> None:
    env = {k: v for k, v in os.environ.items() if k != cluster.ENV}
    code = ("import sys; from dgnlib.engine import cluster; assert cluster.executor_from_env() is None; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fingerprint_differences_name_what_differs(tmp_path: Path) -> None:
    (tmp_path / "companion").mkdir()
    (tmp_path / "companion" / "cli.py").write_text("x = 1\n")
    (tmp_path / "train.py").write_text("y = 2\n")
    assert list(sources.source_hashes(tmp_path)) == ["train.py"]  # the tooling wing is not checked
    mine = sources.fingerprint()
    assert set(mine["files"]) >= {"engine/cluster.py", "seeding.py", "__init__.py"}
    assert sources.differences(mine, mine) == []
    theirs = dict(mine, dgnlib="9.9.9", files={**mine["files"], "seeding.py": "0" * 64, "extra.py": "1" * 64},
                  sources="x")
    del theirs["files"]["engine/cluster.py"]
    diffs = sources.differences(mine, theirs)
    assert diffs[0] == f"dgnlib {mine['dgnlib']} here, 9.9.9 there"
    assert diffs[1] == "dgnlib sources differ in engine/cluster.py (missing there), extra.py (only there), seeding.py"


@dataclasses.dataclass(frozen=True)
class Task:
    """An item that carries its device, as sweep.GroupTask does."""

    n: int
    device: str = "auto"


def test_the_executor_decides_the_device_of_auto_items_only() -> None:
    settings, expected = cluster.TaskSettings.capture(device="cpu"), sources.fingerprint()
    assert cluster.run_task(lambda task: task.device, Task(1), expected, settings) == "cpu"
    assert cluster.run_task(lambda task: task.device, Task(1, "cuda:1"), expected, settings) == "cuda:1"
    assert cluster.run_task(lambda n, device="x": (n, device), 3, expected, settings) == (3, "cpu")
    assert cluster.run_task(lambda n: n + 1, 3, expected, settings) == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_task_without_cuda_is_refused_not_run() -> None:
    settings = cluster.TaskSettings.capture(device="cuda")
    out = cluster.run_task(train_tiny, (0, 1), sources.fingerprint(), settings)
    assert isinstance(out, cluster._Refused) and "sees no CUDA device" in out.message


# ---------------------------------------------------------------- on a LocalCluster


@pytest.fixture(scope="module")
def local_cluster():
    """Two single-threaded worker processes on the loopback interface, shared by the tests below."""
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as lc:
        yield lc


@pytest.fixture()
def executor(local_cluster):
    with cluster.DaskExecutor(local_cluster.scheduler_address, timeout=10) as ex:
        yield ex


def test_wrong_address_fails_fast_in_one_line() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=f"cannot reach the Dask scheduler at {address}") as err:
        cluster.DaskExecutor(address, timeout=2)
    assert time.monotonic() - start < 6
    assert "\n" not in str(err.value)


def test_a_scheduler_without_workers_is_a_clear_error() -> None:
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as empty:
        with pytest.raises(cluster.ClusterError, match="has no worker after 1 s; start some with 'dask worker"):
            cluster.DaskExecutor(empty.scheduler_address, timeout=10, worker_timeout=1)


def test_executor_from_env_connects_once_per_address(local_cluster, monkeypatch) -> None:
    monkeypatch.setenv(cluster.ENV, local_cluster.scheduler_address.replace("tcp://", ""))
    first = cluster.executor_from_env()
    try:
        assert first is cluster.executor_from_env() and first.address == local_cluster.scheduler_address
        assert list(first.map(abs, [-1, 2, -3])) == [1, 2, 3]
    finally:
        first.close()
        cluster._EXECUTORS.clear()
    monkeypatch.setenv(cluster.ENV, "not-an-address")
    with pytest.raises(cluster.ClusterError, match="'not-an-address' is not a Dask scheduler address"):
        cluster.executor_from_env()


def test_map_gives_the_bits_of_an_in_process_run(executor) -> None:
    items = [(seed, 10) for seed in range(4)]
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(2)  # the workers start with 1 (the nanny sets OMP_NUM_THREADS=1): the client's must travel
    try:
        remote = list(executor.map(train_tiny, items))
        local = [train_tiny(item) for item in items]
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    assert executor.device == "cpu"
    for r, m in zip(remote, local, strict=True):
        assert r["threads"] == 2 and r["dtype"] == m["dtype"]
        assert r["losses"] == m["losses"]
        assert torch.equal(r["w1"], m["w1"]) and torch.equal(r["w2"], m["w2"])
    assert remote[0]["losses"] != remote[1]["losses"]  # different seeds, different runs: the comparison has teeth


def test_map_unordered_covers_every_item(executor, tmp_path: Path) -> None:
    items = [(i, str(tmp_path), 0.0) for i in range(6)]
    got = dict((i, value) for i, (value, _) in executor.map_unordered(slow_square, items))
    assert got == {i: i * i for i in range(6)}


def _patch_fingerprint(**changes) -> None:
    """On a worker: report a changed fingerprint from now on (the original kept for _restore_fingerprint)."""
    real = cluster.__dict__.setdefault("_real_fingerprint", cluster._worker_fingerprint)
    fake = dict(real(), **changes)
    cluster._worker_fingerprint = lambda: fake


def _restore_fingerprint() -> None:
    """On a worker: undo _patch_fingerprint."""
    cluster._worker_fingerprint = cluster.__dict__.pop("_real_fingerprint", cluster._worker_fingerprint)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"dgnlib": "9.9.9"}, r"dgnlib \S+ here, 9\.9\.9 there"),
    ({"sources": "x", "files": {**sources.source_hashes(), "train.py": "0" * 64}}, "sources differ in train.py"),
])
def test_worker_mismatch_is_an_error_naming_the_worker(local_cluster, changes: dict, expected: str) -> None:
    address = local_cluster.scheduler_address
    worker = sorted(local_cluster.scheduler.workers)[0]
    with distributed.Client(address, set_as_default=False) as client:
        client.run(_patch_fingerprint, workers=[worker], **changes)
        try:
            with pytest.raises(cluster.WorkerMismatchError, match=f"Dask worker {worker} differs.*{expected}"):
                cluster.DaskExecutor(address, timeout=10)
        finally:
            client.run(_restore_fingerprint, workers=[worker])
        ex = cluster.DaskExecutor(address, timeout=10)  # a worker that changes after the check: each task checks too
        client.run(_patch_fingerprint, workers=[worker], **changes)
        try:
            with pytest.raises(cluster.WorkerMismatchError, match=f"Dask worker {worker} differs.*{expected}"):
                list(ex.map(train_tiny, [(seed, 2) for seed in range(6)]))
        finally:
            client.run(_restore_fingerprint, workers=[worker])
            ex.close()


def test_cuda_asked_on_a_cpu_cluster_is_an_error(local_cluster) -> None:
    with pytest.raises(cluster.ClusterError, match="no worker .* declares a GPU resource"):
        cluster.DaskExecutor(local_cluster.scheduler_address, timeout=10, device="cuda")


def _setenv(values: dict) -> dict:
    """On a worker: set environment variables, returning their previous values (None: unset)."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return old


def test_check_data_names_the_worker_and_the_corrupt_file(executor, local_cluster, tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03 not MNIST")
    worker = sorted(local_cluster.scheduler.workers)[1]
    old = executor.client.run(_setenv, {"DGN_DATA_DIR": str(tmp_path), "DGN_OFFLINE": "1"}, workers=[worker])
    try:
        with pytest.raises(cluster.ClusterError, match=f"Dask worker {worker} cannot load verified data: mnist "
                                                       "train: .*train-images-idx3-ubyte"):
            executor.check_data(["mnist"])
    finally:
        executor.client.run(_setenv, old[worker], workers=[worker])
    if files.available("mnist"):  # the real files, where this machine has them: every worker verifies them
        executor.check_data(["mnist"])


def test_ctrl_c_cancels_the_outstanding_tasks(executor, tmp_path: Path) -> None:
    items = [(i, str(tmp_path), 2.0) for i in range(6)]
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        list(executor.map(slow_square, items))
    timer.join()
    deadline = time.monotonic() + 10
    while executor.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert executor.client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
    assert len(list(tmp_path.iterdir())) < len(items)  # cancelled before all had started


# ---------------------------------------------------------------- the sweep engine on the cluster


def _smoke_specs() -> list:
    """A small sweep of every kind of run: relu, fixed random gates, soft gates, and flnpf after its relu."""
    sweep_runs = pytest.importorskip("dgnlib.engine.runs")
    pytest.importorskip("dgnlib.engine.sweep")
    from dgnlib.experiments.comparison import variant_specs

    model = sweep_runs.ModelSpec("fc", d_in=20, width=16, depth=3, d_out=4)
    data_spec = sweep_runs.DataSpec("synthetic", n_train=100, n_test=40, shape=(20,), n_classes=4)
    specs = variant_specs(model, data_spec, ("relu", "frnpf-ii", "dnpfl", "flnpf"), (0, 1), epochs=2,
                          batch_size=30, lr=1e-3)
    return list(specs.values())


def _entries(root: Path) -> dict[str, dict]:
    """The run store's entries as JSON, without the timings (the only part that may differ between two runs)."""
    out = {}
    for path in sorted(root.rglob("*.json")):
        entry = json.loads(path.read_text())
        entry.pop("timings", None)
        out[str(path.relative_to(root))] = entry
    return out


def _weights(root: Path) -> dict[str, bytes]:
    """Every other file of the store (kept weights), byte for byte."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".json"}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    """The smoke sweep run in this process: the reference store."""
    specs = _smoke_specs()  # skips when the sweep engine is not there
    from dgnlib.engine.runs import RunStore
    from dgnlib.engine.sweep import run_sweep

    root = tmp_path_factory.mktemp("local-store")
    run_sweep(specs, RunStore(root), progress=False, max_runs=2)
    return root


def test_a_sweep_on_the_cluster_stores_the_same_entries_as_in_process(executor, local_sweep, tmp_path) -> None:
    """The engine's groups on the workers, one worker killed while busy: every entry as in-process, bit for bit."""
    from dgnlib.engine.runs import RunStore
    from dgnlib.engine.sweep import run_sweep

    pids = executor.client.run(os.getpid)
    killed = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            busy = [w for w, keys in executor.client.processing().items() if keys]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    results = run_sweep(_smoke_specs(), RunStore(tmp_path), executor=executor, progress=False, max_runs=2)
    killer.join()
    assert killed, "no worker was busy: the test did not kill anything"
    assert len(results) == 8 and {r.status for r in results.values()} == {"ok"}
    local = _entries(local_sweep)
    assert len(local) >= 8 and _entries(tmp_path) == local
    assert _weights(tmp_path) == _weights(local_sweep)


def test_a_worker_killed_mid_task_has_its_task_rerun(executor, tmp_path: Path) -> None:
    pids = executor.client.run(os.getpid)
    victim = sorted(pids.values())[0]
    items = [(i, str(tmp_path), 1.0) for i in range(6)]
    results = executor.map(slow_square, items)
    deadline = time.monotonic() + 30
    while not (started := [p.name for p in tmp_path.iterdir() if p.name.endswith(f"-{victim}")]):
        assert time.monotonic() < deadline, "the victim worker never started a task"
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    got = list(results)
    assert [value for value, _ in got] == [i * i for i, _, _ in items]
    killed = int(started[0].split("-")[0])
    assert got[killed][1] != victim  # the task the dead worker was running came back from another process


def test_a_cluster_that_loses_every_worker_fails_after_the_grace_period(tmp_path: Path) -> None:
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as local:
        with cluster.DaskExecutor(local.scheduler_address, lost_grace=2.0) as executor:
            [pid] = executor.client.run(os.getpid).values()
            results = executor.map_unordered(slow_square, [(0, str(tmp_path), 600.0)])
            deadline = time.monotonic() + 30
            while not list(tmp_path.iterdir()):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.05)
            local.scale(0)  # every worker goes, as when a batch job reaches its walltime
            os.kill(pid, signal.SIGKILL)
            start = time.monotonic()
            with pytest.raises(cluster.ClusterError, match="has been gone for more than 2 s"):
                list(results)
            assert time.monotonic() - start < 30


def test_the_grace_period_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(cluster.GRACE_ENV, "12.5")
    assert cluster.lost_grace_from_env() == 12.5
    monkeypatch.setenv(cluster.GRACE_ENV, "soon")
    with pytest.raises(cluster.ClusterError, match="DGN_WORKER_GRACE must be a positive number"):
        cluster.lost_grace_from_env()
