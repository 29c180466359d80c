"""`dgn verify` on a tiny published checkout: figures that read a real run store, re-derived read-only and compared.

The fixture trains two tiny runs once, publishes figures 06 and 08 (a CSV, a JSON and a PNG each, made from those
runs by `figlib.make`, the same function the notebooks call) with a MANIFEST, and commits it all to git.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbformat import write
from nbformat.v4 import new_code_cell, new_notebook

from dgnlib.companion.cli import main
from dgnlib.companion.fsio import sha256_file
from dgnlib.engine import runcheck

FIGLIB = '''"""What the fixture's notebooks compute: a sweep of two tiny runs, their accuracies as CSV and JSON."""
import json
from pathlib import Path

from dgnlib.engine import runs, sweep

DATA = runs.DataSpec("synthetic", n_train=32, n_test=8, shape=(4,), n_classes=2, val_fraction=0.0)
MODEL = runs.ModelSpec("fc", d_in=4, width=6, depth=3, d_out=2)
SPECS = [runs.RunSpec(MODEL, DATA, s, lr=1e-2, batch_size=16, epochs=1) for s in (0, 1)]


def make(fig_id, out_dir, scale):
    results = sweep.run_sweep(SPECS, runs.default_store("paper"), progress=False)
    accs = [results[s.key()].final["test_acc"] for s in SPECS]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{fig_id}.csv").write_text("seed,test_acc\\n" + "".join(f"{s.seed},{a!r}\\n" for s, a in zip(SPECS, accs)))
    (out / f"{fig_id}.json").write_text(json.dumps({"id": fig_id, "numbers": {"acc": accs, "scale": scale}}))
    (out / f"{fig_id}.png").write_bytes(f"png of {fig_id} at {scale}".encode())
'''

PARAMS = 'profile = "paper"  # profile\nout_dir = ""  # where outputs go\nseed = 0  # seed\nscale = 1.0  # a number\n'
IDS = {"06": "06_gates", "08": "08_stages"}


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    (root / "notebooks").mkdir()
    (root / "figlib.py").write_text(FIGLIB)
    (root / ".gitignore").write_text("build/\n__pycache__/\n")
    for fig_id, stem in IDS.items():
        nb = new_notebook(cells=[new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
                                 new_code_cell(f'import figlib\nfiglib.make("{fig_id}", out_dir, scale)')])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        write(nb, root / "notebooks" / f"{stem}.ipynb")
    sys.path.insert(0, str(root))
    mp = pytest.MonkeyPatch()
    mp.setenv("DGN_RUN_STORE", str(root / "runs"))
    try:
        import figlib

        figures = {"00": {"id": "00", "notebook": "notebooks/00_index.ipynb", "outputs": {}}}
        for fig_id in IDS:
            figlib.make(fig_id, root / "figures", 2.5)
        keys = [s.key() for s in figlib.SPECS]
        for fig_id, stem in IDS.items():
            figures[fig_id] = {
                "id": fig_id, "notebook": f"notebooks/{stem}.ipynb", "profile": "paper",
                "parameters": {"profile": "paper", "seed": 0, "scale": 2.5, "out_dir": "figures"},
                "outputs": {p.name: sha256_file(p) for p in sorted((root / "figures").glob(f"{fig_id}.*"))},
                "runs_read": {k: {p.name: sha256_file(p) for p in runcheck.entry_files(root / "runs", k)}
                              for k in keys},
            }
    finally:
        mp.undo()
        sys.path.remove(str(root))
        sys.modules.pop("figlib", None)
    (root / "figures" / "MANIFEST.json").write_text(json.dumps({"figures": figures}, indent=2) + "\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "published")
    return root, keys


@pytest.fixture
def repo(published, tmp_path):
    root, keys = published
    copy = tmp_path / "repo"
    shutil.copytree(root, copy)
    return copy, keys


def verify(root, capsys, *args):
    rc = main(["--root", str(root), "verify", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_a_sound_checkout_verifies_leaves_git_clean_and_records(repo, capsys):
    root, keys = repo
    rc, out = verify(root, capsys)
    assert rc == 0, out
    assert "00 skipped: the front page" in out
    assert "06 ok" in out and "08 ok" in out and "06.csv, 06.json, 06.png identical" in out and "read 2 runs" in out
    assert "runs/: 2 entries checked" in out
    assert git(root, "status", "--porcelain") == ""  # nothing written, not even build/verify (ignored or gone)
    before = json.loads((root / "figures" / "MANIFEST.json").read_text())
    rc, out = verify(root, capsys, "--record", "--only", "06")
    assert rc == 0, out
    after = json.loads((root / "figures" / "MANIFEST.json").read_text())
    entry = after["figures"]["06"]
    assert entry["verified"]["commit"] == git(root, "rev-parse", "HEAD").strip()
    assert entry["verified"]["ok"] is True and entry["verified"]["compared"] == ["06.csv", "06.json", "06.png"]
    assert entry["runs_read"] == before["figures"]["06"]["runs_read"]  # what it read, file by file
    assert set(entry["runs_read"]) == set(keys)
    del entry["verified"]
    assert after == before  # nothing else changed
    assert git(root, "status", "--porcelain").strip() == "M figures/MANIFEST.json"


def test_one_digit_changed_in_a_csv_is_a_mismatch_naming_figure_row_and_column(repo, capsys):
    root, _ = repo
    path = root / "figures" / "06.csv"
    lines = path.read_text().splitlines()
    last = lines[2][-1]
    lines[2] = lines[2][:-1] + ("1" if last != "1" else "2")
    path.write_text("\n".join(lines) + "\n")
    rc, out = verify(root, capsys, "--only", "06")
    assert rc == 1, out
    assert "06 MISMATCH" in out and "06.csv row 2, column test_acc: published" in out
    assert "verify FAILED" in out


def test_one_value_changed_in_a_json_is_a_mismatch_naming_the_json_path(repo, capsys):
    root, _ = repo
    path = root / "figures" / "08.json"
    obj = json.loads(path.read_text())
    obj["numbers"]["scale"] = 2.6
    path.write_text(json.dumps(obj))
    rc, out = verify(root, capsys, "--only", "08")
    assert rc == 1, out
    assert "08 MISMATCH" in out and "08.json $.numbers.scale: published 2.6, now 2.5" in out


def test_one_byte_changed_in_a_run_the_figure_reads_names_the_figure_and_the_run(repo, capsys):
    root, keys = repo
    path = root / "runs" / keys[1][:2] / f"{keys[1]}.json"
    text = path.read_text()
    i = text.index('"test_acc": ') + len('"test_acc": ') + 2  # a digit of a stored metric: the JSON stays valid
    path.write_text(text[:i] + ("7" if text[i] != "7" else "3") + text[i + 1:])
    rc, out = verify(root, capsys, "--only", "06")
    assert rc == 1, out
    assert "06 MISMATCH" in out and f"run {keys[1]}" in out and "changed since the figure was verified" in out


def test_an_entry_under_a_foreign_key_is_named_and_fails_the_figure(repo, capsys):
    root, keys = repo
    src, dst = (root / "runs" / k[:2] / f"{k}.json" for k in keys)
    shutil.copy(src, dst)
    rc, out = verify(root, capsys, "--only", "08")
    assert rc == 1, out
    assert f"BAD {dst}: its key field" in out
    assert "08 MISMATCH" in out and "CorruptEntry" in out


def test_a_missing_run_fails_naming_its_key_and_is_never_trained(repo, capsys):
    root, keys = repo
    path = root / "runs" / keys[0][:2] / f"{keys[0]}.json"
    path.unlink()
    rc, out = verify(root, capsys, "--only", "06")
    assert rc == 1, out
    assert "06 MISMATCH" in out and keys[0] in out and "read-only" in out
    assert not path.exists()  # failed, not trained
    assert git(root, "status", "--porcelain").strip() == f"D runs/{keys[0][:2]}/{keys[0]}.json"


@pytest.mark.parametrize("args, message", [
    (["--only", "42"], "42 not in the published manifest"),
    (["--only", ","], "no id"),
    (["--only", "08", "--quick"], "none of these is in the quick set"),
])
def test_bad_selection_exits_2(repo, capsys, monkeypatch, args, message):
    from dgnlib.companion import verify as verify_module

    monkeypatch.setattr(verify_module, "QUICK", ("06",))
    rc, out = verify(repo[0], capsys, *args)
    assert rc == 2 and message in out


def test_missing_manifest_missing_root_and_record_on_a_dirty_checkout_exit_2(repo, capsys, tmp_path):
    root, _ = repo
    rc, out = verify(tmp_path / "nowhere", capsys)
    assert rc == 2 and "no such folder" in out
    (root / "notes.txt").write_text("uncommitted")
    rc, out = verify(root, capsys, "--record")
    assert rc == 2 and "clean git checkout" in out
    (root / "figures" / "MANIFEST.json").unlink()
    rc, out = verify(root, capsys)
    assert rc == 2 and "MANIFEST.json is missing" in out
    assert not (root / "build" / "verify").exists()


def test_stale_verified_is_dropped_when_the_runner_republishes(tmp_path):
    from dgnlib.companion.layout import Layout
    from dgnlib.companion.manifest import Manifest, Staged, commit

    layout = Layout.at(tmp_path)
    dest = layout.destination("paper", publish=True)
    dest.figures.mkdir(parents=True)
    old = {"id": "06", "outputs": {}, "verified": {"commit": "abc", "ok": True}, "runs_read": {"k": {}}}
    Manifest(dest.manifest, {"06": old}, {}).write()
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "06.csv").write_text("x\n")
    entry = {"id": "06", "outputs": {"06.csv": sha256_file(folder / "06.csv")}, **{"verified": old["verified"]}}
    commit(layout, dest, Staged("06", folder, folder / "none.ipynb", dest.executed / "06.ipynb", entry,
                                dest.cache / "06.json", {}))
    published = Manifest.read(dest.manifest, layout).figures["06"]
    assert "verified" not in published and "runs_read" not in published
    assert published["outputs"] == entry["outputs"]


def test_sigterm_stops_verify_at_once_and_leaves_no_scratch(repo):
    root, _ = repo
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "dgnlib", "--root", str(root), "verify", "--only", "06"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("runs/: 2 entries checked")  # the kernel is starting now
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)  # papermill would wait forever on the killed kernel
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 143, err
    assert "interrupted" in err
    assert not (root / "build" / "verify").exists() or not any((root / "build" / "verify").iterdir())
