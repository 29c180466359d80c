"""The fault suite: real processes and real signals against the runner (dead kernels, timeouts, ordering, locks)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from companion_fixture import add_index, dgn_process, make_repo

from dgnlib.names import repo_root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with two tiny notebooks (01_flaky, 02_ok)."""
    return make_repo(tmp_path / "repo")


def run(root: Path, *args: str, timeout: float = 60) -> tuple[int, str, float]:
    """Run `dgn` to the end: (exit status, stderr, seconds)."""
    start = time.monotonic()
    process = dgn_process(root, *args)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err, time.monotonic() - start


def test_a_kernel_killed_by_a_signal_ends_the_run_with_exit_1_naming_it(repo):
    status, err, seconds = run(repo, "reproduce", "--profile", "smoke", "--only", "02", "--set", "02.die=9")
    assert status == 1, err
    assert seconds < 60
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "02_ok" in failed[0] and "SIGKILL" in failed[0], err
    assert "Traceback" not in err


def test_a_notebook_over_its_timeout_is_stopped_and_reported(repo):
    status, err, seconds = run(repo, "reproduce", "--profile", "smoke", "--only", "02", "--set", "02.sleep=120",
                               "--timeout", "2")
    assert status == 1 and "longer than 2 s" in err and "--timeout" in err, err
    assert seconds < 45
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--timeout", "-1")
    assert status == 2 and err.count("\n") == 1 and "--timeout" in err, err


def test_with_jobs_the_front_page_runs_last_and_lists_this_runs_results(repo):
    add_index(repo)
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--set", "seed=1")
    assert status == 0, err
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--jobs", "3", "--set", "seed=2",
                         "--set", "01.sleep=2.0", "--set", "02.sleep=2.0")
    assert status == 0, err
    order = [line.split()[1] for line in err.splitlines() if line.startswith("executed")]
    assert order[-1] == "00_index" and sorted(order[:2]) == ["01_flaky", "02_ok"], err
    rows = (repo / "build" / "figures" / "smoke" / "00.csv").read_text().splitlines()
    assert rows == ["id,seed", "01,2", "02,2"]


def one_line_refusal(root: Path, *args: str, env: dict | None = None, fresh: bool = True) -> str:
    """Run `dgn` expecting exit 2 and a single line on stderr; return that line (`fresh`: check that nothing ran)."""
    import os
    import subprocess
    import sys


    full = {**os.environ, "PYTHONPATH": str(repo_root()), **(env or {})}
    full.pop("DGN_RUNNER", None)
    done = subprocess.run([sys.executable, "-m", "dgnlib", *args], cwd=repo_root(), env=full, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    if fresh and root != repo_root():
        assert not list((root / "build").glob("figures/*/MANIFEST.json"))  # nothing ran
    return lines[0]


@pytest.mark.parametrize(("env", "needle"), [
    ({"DGN_THREADS": "abc"}, "DGN_THREADS must be a positive integer"),
    ({"DGN_THREADS": "0"}, "DGN_THREADS must be a positive integer"),
    ({"DGN_WORKERS": "-2"}, "DGN_WORKERS must be a positive integer"),
    ({"DGN_DATA_DIR": "/no/such/data/folder"}, "DGN_DATA_DIR='/no/such/data/folder' does not exist"),
])
def test_bad_environment_variables_are_refused_up_front(repo, env, needle):
    assert needle in one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke", env=env)


def test_bad_values_are_refused_up_front(repo, tmp_path):
    base = ("--root", str(repo), "reproduce", "--profile", "smoke")

    # the real schemas (the fixture's are its own): nothing runs, the plan is refused
    real = one_line_refusal(repo_root(), "reproduce", "--profile", "smoke", "--only", "01", "--set", f"seed={2**64}")
    assert "'seed' must be an integer in [0, 18446744073709551615]" in real
    assert "alias" in one_line_refusal(repo, *base, "--set", "depths=[&a 2, *a]")
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1]"] + ["*a"] * 40) + "]"
    assert "alias" in one_line_refusal(repo, *base, "--set", f"depths={bomb}")
    (repo / "profiles" / "latin1.yaml").write_bytes(b"02_ok:\n  n: 5 # \xe9t\xe9\n")
    assert "not UTF-8" in one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "latin1")
    missing = tmp_path / "nowhere"
    assert f"--root {missing}: no such folder" in one_line_refusal(repo, "--root", str(missing), "reproduce")


def test_a_missing_folder_parameter_is_refused_up_front(repo):
    add_index(repo)
    line = one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke", "--set",
                            "00.figures_dir=no/such")
    assert "'figures_dir' names no folder" in line and "does not exist" in line


def test_a_run_store_that_cannot_be_written_is_refused_before_anything_trains(repo):
    store = repo / "build" / "runs" / "smoke"
    store.parent.mkdir(parents=True)
    store.write_text("")  # a file where the run store's folder belongs
    line = one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke")
    assert "build/runs/smoke" in line and "is not a folder" in line
    store.unlink()
    (store / "ab").mkdir(parents=True)
    (store / "ab").chmod(0o555)
    try:
        if os.access(store / "ab", os.W_OK):
            return  # root may write anywhere: the permission case cannot be staged here
        line = one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke")
        assert "build/runs/smoke/ab" in line and "cannot write" in line
    finally:
        (store / "ab").chmod(0o755)


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Wait until `path` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_lock_holds_when_its_file_is_removed(repo):
    first = dgn_process(repo, "reproduce", "--profile", "smoke", "--only", "02", "--set", "02.sleep=4.0")
    wait_for(repo / "build" / "runs" / "02.started")
    (repo / "build" / "reproduce.lock").unlink()
    second, err2, _ = run(repo, "reproduce", "--profile", "smoke", "--only", "01")
    assert second == 2 and f"pid {first.pid}" in err2 and "reproduce.lock was removed" in err2, err2
    assert err2.count("\n") == 1
    _, err1 = first.communicate(timeout=60)
    assert first.returncode == 0 and "executed 02_ok" in err1, err1  # its private folder was left alone
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--only", "01")
    assert status == 0, err  # the holder is gone: the next run goes ahead


def test_a_lock_path_that_is_a_folder_is_one_clear_line(repo):
    (repo / "build" / "reproduce.lock").mkdir(parents=True)
    line = one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke")
    assert "build/reproduce.lock" in line and "is a folder" in line and "remove it" in line


DISK_FULL_ON_01 = """
import errno, os, sys
from dgnlib.companion import manifest
real = manifest.move_atomic
def full_for_01(src, dst):
    if os.path.basename(str(dst)).startswith("01"):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))
    real(src, dst)
manifest.move_atomic = full_for_01
from dgnlib.companion.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_during_a_commit_is_a_clear_failure_and_keep_going_goes_on(repo):
    import subprocess
    import sys


    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    env.pop("DGN_RUNNER", None)
    done = subprocess.run([sys.executable, "-c", DISK_FULL_ON_01, "--root", str(repo), "reproduce", "--profile",
                           "smoke", "--keep-going"], cwd=repo_root(), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [failed] = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert "01_flaky" in failed and "No space left on device" in failed and "rerun" in failed
    assert "executed 02_ok" in done.stderr
    status, err, _ = run(repo, "reproduce", "--profile", "smoke")
    assert status == 0 and "repaired: finished the commit of 01 (smoke)" in err, err
    assert "cached   01_flaky" in err and "cached   02_ok" in err


def test_a_truncated_executed_copy_is_not_kept_as_the_failed_copy(repo):
    # the notebook fails after the kernel is killed; a stale, truncated copy is what papermill left
    failed = repo / "build" / "executed" / "smoke" / "02_ok.failed.ipynb"
    failed.parent.mkdir(parents=True)
    failed.write_text('{"cells": [')  # an earlier run's copy, cut short by a full disk
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--only", "02", "--set", "02.die=9")
    assert status == 1, err
    if failed.exists():
        json.loads(failed.read_text())  # whatever is presented as the executed copy is a whole notebook
        assert "executed copy: build/executed/smoke/02_ok.failed.ipynb" in err
    else:
        assert "executed copy: none" in err


def test_complete_notebook_tells_a_truncated_copy_from_a_whole_one(tmp_path):
    from dgnlib.companion.fsio import complete_notebook

    whole = tmp_path / "a.ipynb"
    whole.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    cut = tmp_path / "b.ipynb"
    cut.write_bytes(whole.read_bytes()[:20])
    assert complete_notebook(whole) and not complete_notebook(cut) and not complete_notebook(tmp_path / "none")


SIGTERM_IN_COMMIT = """
import os, signal, sys
from dgnlib.companion import manifest
real = manifest.move_atomic
def move_and_term(src, dst):
    if os.path.basename(str(dst)) == "02.csv":
        os.kill(os.getpid(), signal.SIGTERM)  # held back until the commit completes
    real(src, dst)
manifest.move_atomic = move_and_term
from dgnlib.companion.cli import main
from dgnlib.names import repo_root
sys.exit(main(sys.argv[1:]))
"""


def test_the_log_after_sigterm_says_a_completed_commit_was_kept(repo):
    import subprocess
    import sys


    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    env.pop("DGN_RUNNER", None)
    done = subprocess.run([sys.executable, "-c", SIGTERM_IN_COMMIT, "--root", str(repo), "reproduce", "--profile",
                           "smoke", "--only", "02"], cwd=repo_root(), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 143, done.stderr
    assert "committed 02_ok before stopping: its results are kept" in done.stderr
    assert "nothing of it is kept" not in done.stderr
    manifest = json.loads((repo / "build" / "figures" / "smoke" / "MANIFEST.json").read_text())
    assert set(manifest["figures"]) == {"02"}


def test_a_wrongly_typed_manifest_field_is_one_clear_line(repo):
    status, err, _ = run(repo, "reproduce", "--profile", "smoke", "--only", "02")
    assert status == 0, err
    path = repo / "build" / "figures" / "smoke" / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    manifest["figures"]["02"]["run_seconds_by_profile"] = [1.5]
    path.write_text(json.dumps(manifest))
    line = one_line_refusal(repo, "--root", str(repo), "reproduce", "--profile", "smoke", "--only", "02", fresh=False)
    assert "MANIFEST.json: figure '02': field 'run_seconds_by_profile' must be a mapping" in line
    assert "got list" in line and "left unchanged" in line


def test_prepare_refuses_to_overwrite_tracked_notebooks(tmp_path):

    before = {p: p.read_bytes() for p in (repo_root() / "notebooks").glob("*.ipynb")}
    line = one_line_refusal(repo_root(), "prepare", "--profile", "smoke", "--only", "01", "--dest", "notebooks")
    assert "--dest notebooks" in line and "overwrite" in line
    line = one_line_refusal(repo_root(), "prepare", "--profile", "smoke", "--only", "01", "--dest", "dgnlib")
    assert "tracked by git" in line
    assert before == {p: p.read_bytes() for p in (repo_root() / "notebooks").glob("*.ipynb")}


def test_editor_leftovers_are_no_science_sources(tmp_path):
    from dgnlib.companion import cache
    from dgnlib.engine import sources

    package = tmp_path / "dgnlib"
    (package / "companion").mkdir(parents=True)
    (package / "models.py").write_text("A = 1\n")
    (package / "companion" / "cli.py").write_text("B = 1\n")
    before = cache.source_hashes(package)
    assert set(before) == {"models.py"} and sources.source_hashes(package) == before
    (package / ".ipynb_checkpoints").mkdir()
    (package / ".ipynb_checkpoints" / "models-checkpoint.py").write_text("A = 2\n")
    (package / ".#models.py").symlink_to("user@host.1234:1700000000")  # Emacs's lock: a dangling link
    (package / "models.py~").write_text("A = 0\n")
    assert cache.source_hashes(package) == before and sources.source_hashes(package) == before
    (package / "sub").mkdir()
    (package / "sub" / "x.py").write_text("C = 1\n")
    assert "sub/x.py" in cache.source_hashes(package)  # a real new module still counts
