"""The run store checks what it reads: foreign, tampered or truncated entries and weights are refused, never used."""

import json
import shutil

import numpy as np
import pytest

from dgnlib.engine import runcheck
from dgnlib.engine.runcheck import CorruptEntry, StoreError
from dgnlib.engine.runs import SCHEMA, DataSpec, ModelSpec, RunResult, RunSpec, RunStore
from dgnlib.engine.sweep import run_sweep

DATA = DataSpec("synthetic", n_train=40, n_test=10, shape=(4,), n_classes=2, val_fraction=0.0)
MODEL = ModelSpec("fc", d_in=4, width=6, depth=3, d_out=2)


def spec(seed=0):
    return RunSpec(MODEL, DATA, seed, lr=1e-2, batch_size=16, epochs=1)


def stored(tmp_path, seed=0, weights=None):
    """A store holding one hand-made result of spec(seed) (no training needed to test reading)."""
    store = RunStore(tmp_path / "runs", read_only=False)
    s = spec(seed)
    result = RunResult(s.key(), s.describe(), "ok", [{"epoch": 0, "test_acc": 0.5 + seed / 100}],
                       weights=weights or {})
    store.put(s.key(), result)
    return store, s.key()


def test_an_entry_copied_under_another_key_is_refused_and_a_sweep_does_not_use_it(tmp_path):
    store, key0 = stored(tmp_path, 0)
    key1 = spec(1).key()
    target = store.root / key1[:2] / f"{key1}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store.root / key0[:2] / f"{key0}.json", target)
    with pytest.raises(CorruptEntry, match="key field") as err:
        store.get(key1)
    assert str(target) in str(err.value) and "delete it" in str(err.value)
    with pytest.raises(CorruptEntry):  # the sweep reads the entry, it does not only check that the file exists
        run_sweep([spec(1)], store, progress=False)
    assert json.loads(target.read_text())["key"] == key0  # refused, not overwritten behind the user's back


def test_an_entry_whose_spec_was_edited_or_whose_json_is_truncated_is_named(tmp_path):
    store, key = stored(tmp_path)
    path = store.root / key[:2] / f"{key}.json"
    obj = json.loads(path.read_text())
    obj["spec"]["lr"] = 0.5  # key field still right: only the hash of the spec shows it
    path.write_text(json.dumps(obj))
    with pytest.raises(CorruptEntry, match="hashes to"):
        store.get(key)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptEntry, match="not valid JSON") as err:
        store.get(key)
    assert err.value.path == path


def test_weights_are_checked_against_the_sha_the_entry_recorded(tmp_path):
    w = {"value.0.weight": np.arange(6.0).reshape(2, 3)}
    store, key = stored(tmp_path, weights={1: w})
    entry = json.loads((store.root / key[:2] / f"{key}.json").read_text())
    npz = store.root / key[:2] / f"{key}.e1.npz"
    assert entry["weights_sha256"] == {"1": runcheck.hashlib.sha256(npz.read_bytes()).hexdigest()}
    np.testing.assert_array_equal(store.weights(key, 1)["value.0.weight"], w["value.0.weight"])
    other, _ = stored(tmp_path / "b", weights={1: {"value.0.weight": np.ones((2, 3))}})
    shutil.copy(other.root / key[:2] / f"{key}.e1.npz", npz)  # a valid .npz, but not the one recorded
    with pytest.raises(CorruptEntry, match="SHA-256"):
        store.weights(key, 1)


def test_old_entries_without_digests_still_read_but_truncated_weights_are_named(tmp_path):
    store, key = stored(tmp_path, weights={1: {"w": np.ones(3)}})
    path = store.root / key[:2] / f"{key}.json"
    obj = json.loads(path.read_text())
    del obj["weights_sha256"]  # as written before the store recorded digests
    path.write_text(json.dumps(obj, sort_keys=True))
    before = path.read_bytes()
    assert store.weights(key, 1)["w"].tolist() == [1.0, 1.0, 1.0]
    assert path.read_bytes() == before  # reading never rewrites an existing entry
    npz = store.root / key[:2] / f"{key}.e1.npz"
    npz.write_bytes(npz.read_bytes()[:30])
    with pytest.raises(CorruptEntry, match="readable .npz"):
        store.weights(key, 1)


def test_read_only_store_refuses_writes_and_a_sweep_names_missing_runs_instead_of_training(tmp_path, monkeypatch):
    monkeypatch.setenv(runcheck.READ_ONLY_ENV, "1")
    store = RunStore(tmp_path / "runs")
    assert store.read_only
    s = spec(3)
    with pytest.raises(StoreError, match="read-only"):
        store.put(s.key(), RunResult(s.key(), s.describe(), "ok", []))
    with pytest.raises(StoreError, match=s.key()):
        run_sweep([s], store, progress=False)
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    monkeypatch.setenv(runcheck.READ_ONLY_ENV, "maybe")
    with pytest.raises(ValueError, match=runcheck.READ_ONLY_ENV):
        RunStore(tmp_path)


def test_read_log_names_each_file_read(tmp_path, monkeypatch):
    store, key = stored(tmp_path, weights={2: {"w": np.zeros(2)}})
    log = tmp_path / "reads.jsonl"
    monkeypatch.setenv(runcheck.READ_LOG_ENV, str(log))
    store.get(key)
    store.weights(key, 2)
    assert store.get(spec(9).key()) is None
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(d["key"], d["file"]) for d in lines} == {(key, f"{key}.json"), (key, f"{key}.e2.npz")}


def test_audit_names_each_bad_file(tmp_path):
    store, key = stored(tmp_path, weights={1: {"w": np.zeros(2)}})
    _, key2 = stored(tmp_path, seed=2)
    assert runcheck.audit(store.root, SCHEMA) == (2, [])
    foreign = spec(5).key()
    shutil.copy(store.root / key2[:2] / f"{key2}.json", store.root / key2[:2] / f"{foreign[:2]}x.json")
    (store.root / foreign[:2]).mkdir(exist_ok=True)
    shutil.copy(store.root / key2[:2] / f"{key2}.json", store.root / foreign[:2] / f"{foreign}.json")
    npz = store.root / key[:2] / f"{key}.e1.npz"
    npz.write_bytes(npz.read_bytes()[:-1])
    n, problems = runcheck.audit(store.root, SCHEMA)
    assert n == 3
    text = "\n".join(problems)
    assert f"{foreign}.json: its key field" in text
    assert f"{key}.e1.npz: its SHA-256 differs" in text
    assert "not a run entry's name" in text
    assert len(problems) == 3
