"""The fault suite: real processes and real signals against the runner (dead kernels, timeouts, ordering, locks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from companion_fixture import add_index, dgn_process, make_repo


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
