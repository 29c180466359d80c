"""The runner shows the sweeps' progress on its terminal and leaves no machine path in what it writes."""

from __future__ import annotations

import io
import json
import re
import textwrap

import nbformat
from companion_fixture import dgn_process, make_repo, write_notebook
from nbformat.v4 import new_code_cell

from dgnlib.companion.progress import SweepTail, describe
from dgnlib.names import repo_root

SWEEP = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(repo_root())!r})  # the real dgnlib, not this test repository's stand-in
    import os
    from dgnlib.engine.runs import DataSpec, ModelSpec, RunSpec, RunStore
    from dgnlib.engine.sweep import run_sweep
    data = DataSpec("synthetic", n_train=200, n_test=20, shape=(4,), n_classes=2, val_fraction=0.1)
    model = ModelSpec("fc", d_in=4, width=8, depth=3, d_out=2)
    specs = [RunSpec(model, data, 0, lr=lr, batch_size=8, epochs=6) for lr in (1e-2, 2e-2, 3e-2)]
    run_sweep(specs, RunStore(os.environ["DGN_RUN_STORE"]), device="cpu")
    print("run store:", RunStore(os.environ["DGN_RUN_STORE"]).root)
""")


def test_a_real_sweep_prints_its_progress_on_the_runners_terminal_and_no_machine_path_is_kept(tmp_path):
    repo = make_repo(tmp_path / "repo")
    path = write_notebook(repo / "notebooks", "03_sweep")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(2, new_code_cell(SWEEP))
    nbformat.write(nb, path)
    schemas = repo / "dgnlib" / "schemas.py"
    schemas.write_text(schemas.read_text() + 'SCHEMAS["03_sweep"] = Schema(dict(COMMON))\n')
    proc = dgn_process(repo, "reproduce", "--profile", "smoke", "--only", "03", "--workers", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("03_sweep sweep:")]
    assert lines, err
    assert re.search(r"runs 3/3, epochs 18/18 \(100 %\), elapsed [\d.]+ s, ETA 0\.0 s", lines[-1]), lines
    executed = (repo / "build" / "executed" / "smoke" / "03_sweep.ipynb").read_text()
    record = json.loads(executed)["metadata"]["papermill"]
    assert record["input_path"] == "notebooks/03_sweep.ipynb"
    assert not record["parameters"]["out_dir"].startswith("/")
    for folder in ("build/executed/smoke", "build/figures/smoke"):
        for file in (repo / folder).iterdir():
            assert str(tmp_path) not in file.read_text(errors="replace"), file


def test_off_a_terminal_lines_are_periodic_and_the_last_state_is_always_shown(tmp_path):
    out = io.StringIO()
    tail = SweepTail(tty=False, stream=out, every_s=3600)
    file = tmp_path / "p.json"
    tail.watch("06_x", file)
    tail.poll()  # no file yet: nothing
    state = {"runs_done": 0, "runs": 4, "skipped": 1, "epochs_done": 10, "epochs": 40, "elapsed_s": 5.0, "eta_s": 15.0}
    file.write_text(json.dumps(state))
    tail.poll()
    file.write_text(json.dumps({**state, "epochs_done": 20}))
    tail.poll()  # within every_s: held back
    file.write_text(json.dumps({**state, "runs_done": 4, "epochs_done": 40, "eta_s": 0.0}))
    tail.forget("06_x")
    assert out.getvalue().splitlines() == [
        "06_x sweep: runs 0/4, 1 already stored, epochs 10/40 (25 %), elapsed 5.0 s, ETA 15 s",
        "06_x sweep: runs 4/4, 1 already stored, epochs 40/40 (100 %), elapsed 5.0 s, ETA 0.0 s"]


def test_on_a_terminal_the_bar_is_updated_in_place(tmp_path):
    out = io.StringIO()
    tail = SweepTail(tty=True, stream=out)
    file = tmp_path / "p.json"
    tail.watch("06_x", file)
    for done in (5, 10):
        file.write_text(json.dumps({"runs_done": 1, "runs": 4, "epochs_done": done, "epochs": 20, "elapsed_s": 2.0,
                                    "eta_s": 6.0}))
        tail.poll()
    tail.forget("06_x")
    text = out.getvalue()
    assert "\r" in text and "\n06_x" not in text and "10/20" in text and "runs 1/4" in text
    assert "ETA" in describe("a", {"epochs": 3, "epochs_done": 0, "eta_s": None})


def test_the_committed_executed_copy_names_where_its_files_were_published_not_the_private_run_folder(tmp_path):
    repo = make_repo(tmp_path / "repo")
    path = repo / "notebooks" / "02_ok.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell("print('wrote to', out_dir)"))
    nbformat.write(nb, path)
    proc = dgn_process(repo, "reproduce", "--profile", "smoke", "--only", "02")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    text = (repo / "build" / "executed" / "smoke" / "02_ok.ipynb").read_text()
    assert "build/tmp" not in text  # the private run folder is gone from every string of the copy
    copy = json.loads(text)
    record = copy["metadata"]["papermill"]
    assert record["output_path"] == "build/executed/smoke/02_ok.ipynb"
    assert record["parameters"]["out_dir"] == "build/figures/smoke"
    injected = [c for c in copy["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert 'out_dir = "build/figures/smoke"\n' in "".join(injected[0]["source"])
    printed = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for o in copy["cells"][-1]["outputs"])
    assert printed.strip() == "wrote to build/figures/smoke"
    assert (repo / "build" / "figures" / "smoke" / "02.csv").is_file()
