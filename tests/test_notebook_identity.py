"""`make nbval` fails when a notebook identity is broken: notebook 01 run as `make nbval` runs it, broken on purpose.

The notebook is prepared with the smoke profile by `dgn prepare` (as `make nbval` does), then executed by nbval with
DGN_RUNNER set; the copy whose path sum is scaled by 1.001 must fail with IdentityError, the untouched copy must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

from dgnlib.names import repo_root

STEM = "01_dgn_paths"
EXACT = "path_sum = Phi.T @ val"
BROKEN = "path_sum = 1.001 * (Phi.T @ val)"  # 0.1 % off: far above the 1e-9 tolerance, far below anything visible


def _prepare(dest: Path) -> Path:
    """The smoke-parameterised copy of notebook 01 in dest, as `make nbval` prepares it."""
    subprocess.run([sys.executable, "-m", "dgnlib", "prepare", "--profile", "smoke", "--only", "01", "--dest",
                    str(dest)], cwd=repo_root(), check=True, capture_output=True, text=True)
    return dest / f"{STEM}.ipynb"


def _nbval(folder: Path) -> subprocess.CompletedProcess:
    """nbval on the folder with the environment of `make nbval`."""
    env = {**os.environ, "DGN_RUNNER": "nbval", "DGN_WIDGETS": "static", "DGN_RUN_STORE": str(folder / "runs"),
           "DGN_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "--nbval-cell-timeout=120", "-q", "-rf", str(folder)],
                          cwd=repo_root(), env=env, capture_output=True, text=True, timeout=240)


def test_breaking_an_identity_fails_the_notebook_run_and_the_unbroken_copy_passes(tmp_path):
    exact = _prepare(tmp_path / "exact")
    nb = nbformat.read(exact, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and EXACT in c.source]
    assert len(cells) == 1, f"notebook {STEM} must compute the path sum exactly once as {EXACT!r}"
    cells[0].source = cells[0].source.replace(EXACT, BROKEN)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    figures = tmp_path / "broken" / "figures"
    injected.source = injected.source.replace(str(exact.parent / "figures"), str(figures))
    assert str(figures) in injected.source
    (tmp_path / "broken").mkdir()
    nbformat.write(nb, tmp_path / "broken" / exact.name)

    run = _nbval(tmp_path)  # one nbval session over both copies, as `make nbval` runs every notebook
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed and all("broken" in line for line in failed), out[-3000:]
    assert "IdentityError" in out and "output = <phi_x, v>" in out, out[-3000:]
    # the failure is on record (the JSON is written before the notebook stops); the unbroken copy held
    assert '"passed": false' in (figures / "01.json").read_text()
    assert '"verdict": "held"' in (exact.parent / "figures" / "01.json").read_text()
