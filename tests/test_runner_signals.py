"""The runner under real signals and concurrency: subprocesses, os.kill, two runs at once, a SIGKILL mid-commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from companion_fixture import dgn_process, make_repo

from dgnlib.companion.fsio import sha256_file
from dgnlib.names import repo_root


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Wait until `path` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def consistent(folder: Path) -> dict:
    """The manifest's figures, after checking every listed output exists with the recorded hash."""
    figures = json.loads((folder / "MANIFEST.json").read_text())["figures"]
    for entry in figures.values():
        for name, sha in entry["outputs"].items():
            assert sha256_file(folder / name) == sha, name
    listed = {n for e in figures.values() for n in e["outputs"]} | {"MANIFEST.json"}
    assert {p.name for p in folder.iterdir()} == listed  # nothing partial, nothing unlisted
    return figures


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout whose notebook 02 sleeps long enough to be caught running."""
    return make_repo(tmp_path, smoke="02_ok:\n  n: 5\n  sleep: 30.0\n")


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_a_notebook_runs(repo, signum, status):
    first = dgn_process(repo, "reproduce", "--profile", "smoke")
    wait_for(repo / "build" / "runs" / "02.started")  # 01 is committed, 02 sleeps in its kernel
    kernel = int((repo / "build" / "runs" / "02.started").read_text())
    os.kill(first.pid, signum)
    _, err = first.communicate(timeout=60)
    assert first.returncode == status, err
    lines = [ln for ln in err.splitlines() if ln.startswith(("interrupted", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("interrupted (SIG"), err
    assert "Traceback" not in err and "Error" not in err.replace("RuntimeError", "")
    assert not alive(kernel)
    assert not list((repo / "build" / "tmp").iterdir())  # private folders, connection file included, are gone
    assert not list(repo.rglob("kernel-*.json"))
    figures = consistent(repo / "build" / "figures" / "smoke")
    assert set(figures) == {"01"}
    assert not (repo / "build" / "executed" / "smoke" / "02_ok.ipynb").exists()
    (repo / "profiles" / "smoke.yaml").write_text("02_ok:\n  n: 5\n  sleep: 0.0\n")
    again = dgn_process(repo, "reproduce", "--profile", "smoke")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "cached   01_flaky" in err and "running  02_ok" in err and "1 executed, 1 cached" in err
    assert set(consistent(repo / "build" / "figures" / "smoke")) == {"01", "02"}


def test_sigterm_before_any_notebook_runs(repo):
    first = dgn_process(repo, "reproduce", "--profile", "smoke")
    wait_for(repo / "build" / "reproduce.lock")
    os.kill(first.pid, signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 143 and "Traceback" not in err, err
    assert not (repo / "build" / "tmp").exists() or not list((repo / "build" / "tmp").iterdir())
    folder = repo / "build" / "figures" / "smoke"
    if (folder / "MANIFEST.json").exists():
        consistent(folder)
    else:
        assert not folder.exists() or not list(folder.iterdir())


def test_two_runs_at_once_one_exits_2_naming_the_other(repo):
    (repo / "profiles" / "smoke.yaml").write_text("02_ok:\n  n: 5\n")
    first = dgn_process(repo, "reproduce", "--profile", "smoke", "--set", "02.sleep=3.0")
    wait_for(repo / "build" / "runs" / "01.started")
    second = dgn_process(repo, "reproduce", "--profile", "smoke", "--set", "seed=1")
    _, err2 = second.communicate(timeout=60)
    assert second.returncode == 2 and f"pid {first.pid}" in err2 and "--wait" in err2, err2
    waiting = dgn_process(repo, "reproduce", "--profile", "smoke", "--set", "seed=2", "--wait")
    _, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    _, err3 = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and f"waiting for the `dgn reproduce` of pid {first.pid}" in err3, err3
    figures = consistent(repo / "build" / "figures" / "smoke")
    assert {e["parameters"]["seed"] for e in figures.values()} == {2}
    for fig_id in ("01", "02"):
        assert (repo / "build" / "figures" / "smoke" / f"{fig_id}.csv").read_text().endswith(",2,0.001\n")


KILL_MID_COMMIT = """
import os, signal, sys
from dgnlib.companion import manifest
moved = []
real = manifest.move_atomic
def move_then_die(src, dst):
    real(src, dst)
    moved.append(dst)
    if len(moved) == 2:  # two of 02's files are in place, the rest, the manifest and the cache entry are not
        os.kill(os.getpid(), signal.SIGKILL)
manifest.move_atomic = move_then_die
from dgnlib.companion.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_commit_is_repaired_by_the_next_run(repo):
    (repo / "profiles" / "smoke.yaml").write_text("02_ok:\n  n: 5\n")
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    env.pop("DGN_RUNNER", None)
    done = subprocess.run([sys.executable, "-c", KILL_MID_COMMIT, "--root", str(repo), "reproduce", "--profile",
                           "smoke", "--only", "02"], cwd=repo_root(), env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (repo / "build" / "commit" / "smoke--02.json").is_file()  # the journal says a commit was cut short
    again = dgn_process(repo, "reproduce", "--profile", "smoke")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "repaired: finished the commit of 02 (smoke)" in err and "cached   02_ok" in err and "running  01" in err
    assert set(consistent(repo / "build" / "figures" / "smoke")) == {"01", "02"}
    assert not (repo / "build" / "commit" / "smoke.json").exists() and not list((repo / "build" / "tmp").iterdir())
