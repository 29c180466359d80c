"""Groups trained side by side in worker processes give the same bits as in this process; errors and deaths surface."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from dgnlib.engine import pool
from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import DataSpec, ModelSpec, RunSpec
from dgnlib.engine.sweep import MAX_GROUP_RUNS, group_specs, run_sweep

DATA = DataSpec("synthetic", n_train=200, n_test=40, shape=(12,), n_classes=3, val_fraction=0.1)
MODEL = ModelSpec("fc", d_in=12, width=16, depth=4, d_out=3, init="glorot")
VARIANTS = ("frnpf-ii", "frnpf-di", "dnpfl", "relu", "linear")


def _specs(seeds=range(4)):
    """Five variants × seeds: 20 runs, cut into three groups of at most MAX_GROUP_RUNS (8)."""
    return [RunSpec(MODEL.replace(variant=v), DATA, s, lr=1e-2, batch_size=16, epochs=3, keep_weights=(3,))
            for s in seeds for v in VARIANTS]


def _fail(item):
    if item == 0:  # only one item fails, so which worker finishes first cannot change the error raised
        raise ValueError(f"bad item {item}")
    return item


def _die(item):
    if item == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)
    return item


def _square(item, on_epoch=None):
    for epoch in range(3):
        on_epoch(epoch, item)  # epoch 0 is the initial evaluation: not counted
    return item * item


def test_groups_are_balanced_chunks_fixed_by_the_specs():
    assert [len(g) for g in group_specs(_specs(range(5)))] == [7, 6, 6, 6]  # 25 runs, at most 8 a group
    assert [len(g) for g in group_specs(_specs())] == [7, 7, 6]
    assert [len(g) for g in group_specs(_specs(), max_runs=None)] == [20]
    assert [s.seed for g in group_specs(_specs()) for s in g] == [s.seed for s in _specs()]  # order kept
    assert MAX_GROUP_RUNS == 8
    with pytest.raises(ValueError, match="max_runs"):
        group_specs(_specs(), max_runs=0)


def test_two_workers_give_the_bits_of_one_process(monkeypatch):
    monkeypatch.setenv(pool.WORKERS_ENV, "1")
    one, two = MemoryStore(), MemoryStore()
    alone = run_sweep(_specs(), one, progress=False, device="cpu")
    monkeypatch.setenv(pool.WORKERS_ENV, "2")
    assert isinstance(pool.executor_for("cpu"), pool.LocalExecutor)
    side = run_sweep(_specs(), two, progress=False, device="cpu")
    assert list(alone) == list(side)
    for key, a in alone.items():
        b = side[key]
        assert a.rows == b.rows and a.timings["threads"] == b.timings["threads"] == 1
        wa, wb = one.weights(key, 3), two.weights(key, 3)
        assert wa and wa.keys() == wb.keys()
        for name, w in wa.items():
            assert np.array_equal(w, wb[name]), name


def test_progress_comes_back_per_epoch_and_results_by_index():
    seen = []
    out = dict(pool.LocalExecutor(2).map_unordered(_square, [1, 2, 3], on_epoch=seen.append))
    assert out == {0: 1, 1: 4, 2: 9}
    assert sorted(seen) == [1, 1, 2, 2, 3, 3]
    assert list(pool.LocalExecutor(2).map(_square, [3, 1])) == [9, 1]


def test_an_error_in_a_worker_is_raised_here():
    with pytest.raises(ValueError, match="bad item 0"):
        list(pool.LocalExecutor(2).map(_fail, [0, 1]))


def test_a_killed_worker_is_a_clear_error():
    with pytest.raises(RuntimeError, match="worker process died"):
        list(pool.LocalExecutor(2).map(_die, [0, 1, 2]))


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.delenv(pool.WORKERS_ENV, raising=False)
    assert pool.workers_from_env() == pool.usable_cores()
    monkeypatch.setenv(pool.WORKERS_ENV, "1")
    assert pool.executor_for("cpu") is None
    for bad in ("0", "two", "-3"):
        monkeypatch.setenv(pool.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match="DGN_WORKERS must be a positive integer"):
            pool.workers_from_env()
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        pool.LocalExecutor(0)


PARENT = textwrap.dedent("""
    import time
    from dgnlib.engine.pool import LocalExecutor
    def nap(item):
        time.sleep(120)
    if __name__ == "__main__":
        list(LocalExecutor(2).map(nap, [0, 1]))
""")


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2:
        workers = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
        time.sleep(0.2)
    assert len(workers) == 2, "the pool did not start two workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived their parent: {[p.pid for p in alive]}"
