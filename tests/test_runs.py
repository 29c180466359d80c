"""Run specs hash stably; the store writes atomically; a killed sweep resumes and skips the runs it finished."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dgnlib.engine.memstore import MemoryStore
from dgnlib.engine.runs import DataSpec, GateSource, ModelSpec, RunResult, RunSpec, RunStore, default_store
from dgnlib.engine.sweep import group_specs, run_sweep

DATA = DataSpec("synthetic", n_train=60, n_test=20, shape=(4,), n_classes=2, val_fraction=0.1)
MODEL = ModelSpec("fc", d_in=4, width=8, depth=3, d_out=2)


def spec(variant="relu", seed=0, **kw):
    return RunSpec(MODEL.replace(variant=variant), DATA, seed, lr=1e-2, batch_size=16, epochs=2, **kw)


def test_keys_are_stable_and_change_with_what_changes_the_numbers():
    # a literal: the key must not change between versions unless the computation changes (then bump runs.SCHEMA)
    assert spec().key() == "23f53b66b67d57947ab0524b914a1d5c947f3bc0f374256028c76a1299d89034"
    assert spec(keep_weights=(1,)).key() == spec().key()  # what to keep is not what is computed
    keys = {spec().key(), spec(seed=1).key(), spec("dnpfl").key(), spec().replace(lr=1e-3).key(),
            RunSpec(MODEL.replace(beta=2.0), DATA, 0).key(), RunSpec(MODEL, DATA.__class__("synthetic", n_train=61,
            n_test=20, shape=(4,), n_classes=2), 0).key()}
    assert len(keys) == 6
    flnpf = spec("flnpf", gate_source=GateSource(spec(), 1))
    assert flnpf.key() != spec("flnpf", gate_source=GateSource(spec(), 2)).key()
    assert spec().group_key() == spec("dnpfl", seed=3).group_key() == flnpf.group_key()
    assert spec().group_key() != spec().replace(lr=1e-3).group_key()


def test_spec_validation_errors():
    with pytest.raises(ValueError, match="gate_source"):
        spec("flnpf")
    with pytest.raises(ValueError, match="gate_source"):
        spec("relu", gate_source=GateSource(spec(), 1))
    with pytest.raises(ValueError, match="relu run"):
        spec("flnpf", gate_source=GateSource(spec("dnpfl"), 1))
    with pytest.raises(ValueError, match="optimizer"):
        spec().replace(optimizer="lbfgs")
    with pytest.raises(ValueError, match="keep_weights"):
        spec(keep_weights=(5,))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        RunStore("/nonexistent").get("../etc/passwd")


def test_store_round_trip_atomic_files_and_nan(tmp_path):
    store = RunStore(tmp_path)
    rows = [{"epoch": 0, "train_loss": 1.0, "val_acc": float("nan")}]
    result = RunResult(spec().key(), spec().describe(), "ok", rows, weights={2: {"value.0.weight": np.ones((2, 3))}})
    assert store.get(result.key) is None
    store.put(result.key, result)
    back = store.get(result.key)
    assert back.rows[0]["train_loss"] == 1.0 and np.isnan(back.rows[0]["val_acc"]) and back.status == "ok"
    assert store.has_weights(result.key, 2) and not store.has_weights(result.key, 1)
    np.testing.assert_array_equal(store.weights(result.key, 2)["value.0.weight"], np.ones((2, 3)))
    assert store.keys() == [result.key]
    in_flight = tmp_path / result.key[:2] / f".{result.key}.json.abc123.tmp.json"  # what atomic.write_via makes
    in_flight.write_text("{")
    assert store.keys() == [result.key]  # a write in flight is not a stored run
    in_flight.unlink()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left behind
    json.loads((tmp_path / result.key[:2] / f"{result.key}.json").read_text())  # strict JSON (no NaN)
    with pytest.raises(ValueError, match="differs"):
        store.put(spec(seed=9).key(), result)


def test_default_store_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DGN_RUN_STORE", str(tmp_path))
    assert default_store("smoke").root == tmp_path
    monkeypatch.delenv("DGN_RUN_STORE")
    assert default_store("smoke").root.parts[-3:] == ("build", "runs", "smoke")
    with pytest.raises(ValueError, match="plain name"):
        default_store("../x")


def test_sweep_skips_stored_runs_and_trains_flnpf_after_its_relu(tmp_path):
    store = RunStore(tmp_path)
    relu = spec("relu")
    specs = [spec("flnpf", gate_source=GateSource(relu, 2)), spec("frnpf-ii"), spec("dnpfl", seed=1)]
    first = run_sweep(specs, store, progress=False, device="cpu")
    assert set(first) == {s.key() for s in specs}
    assert relu.key() in store and store.has_weights(relu.key(), 2)  # the dependency, trained with its weights
    assert (first[specs[0].key()].history()["gates_changed"] == 0).all()
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")}
    calls = []

    class Counting:
        def map(self, fn, items):
            items = list(items)
            calls.append(items)
            return map(fn, items)

    again = run_sweep(specs, store, executor=Counting(), progress=False)
    assert calls == [] and {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.json")} == stamps
    assert [again[k].rows for k in again] == [first[k].rows for k in first]
    # a new seed through an executor: only the missing runs travel, as pure tasks
    more = specs + [spec("frnpf-ii", seed=5)]
    run_sweep(more, store, executor=Counting(), progress=False, device="cpu")
    assert [[s.seed for s in t.specs] for batch in calls for t in batch] == [[5]]


def test_group_specs_puts_compatible_runs_together():
    specs = [spec("relu"), spec("dnpfl", seed=1), spec().replace(lr=1e-3), spec("linear", seed=2)]
    assert [len(g) for g in group_specs(specs)] == [3, 1]
    assert [len(g) for g in group_specs(specs, max_runs=2)] == [2, 1, 1]


SCRIPT = textwrap.dedent("""
    import sys
    from dgnlib.engine.runs import DataSpec, ModelSpec, RunSpec, RunStore
    from dgnlib.engine.sweep import run_sweep
    data = DataSpec("synthetic", n_train=400, n_test=20, shape=(4,), n_classes=2, val_fraction=0.1)
    model = ModelSpec("fc", d_in=4, width=8, depth=3, d_out=2)
    # distinct learning rates: four groups, trained and stored one after another
    specs = [RunSpec(model, data, 0, lr=lr, batch_size=8, epochs=int(sys.argv[2])) for lr in (1e-2, 2e-2, 3e-2, 4e-2)]
    run_sweep(specs, RunStore(sys.argv[1]), progress=True, device="cpu")
""")


def test_a_sweep_killed_midway_resumes_and_skips_the_runs_it_finished(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", SCRIPT, str(tmp_path), "4"]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    store = RunStore(tmp_path)  # its keys() skip a write in flight (or one cut by the kill): not an entry
    while time.time() < deadline and len(store.keys()) < 1:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = store.keys()
    assert 1 <= len(done) < 4, "the sweep should have been killed after storing some of its runs"
    assert all(store.get(k).status == "ok" for k in done)  # every entry that exists is complete
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / k[:2] / f"{k}.json" for k in done)}
    rerun = subprocess.run(args, env=env, stderr=subprocess.PIPE, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{4 - len(done)} runs to train" in rerun.stderr and f"{len(done)} already stored" in rerun.stderr
    assert len(store.keys()) == 4
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished runs were not retrained


def test_memory_store_is_what_experiments_use_by_default():
    store = MemoryStore()
    run_sweep([spec()], store, progress=False, device="cpu")
    assert store.keys() == [spec().key()] and store.get(spec().key()).status == "ok"


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    from dgnlib.atomic import write_atomic, write_via

    target = tmp_path / "x.json"
    write_atomic(target, "old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_via(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]
