"""A tiny repository-shaped folder for runner tests: its own dgnlib (schemas, sources), notebooks, profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dgnlib.names import repo_root

PARAMS = """profile = "paper"  # smoke | quick | paper
out_dir = ""  # where outputs go
seed = 0  # master seed
n = 3  # a count
lr = 1.0e-3  # a step size
depths = [2, 4]  # depths to try
sleep = 0.0  # seconds to sleep between writing the CSV and the rest
fail = False  # raise on purpose
die = 0  # a signal number the kernel sends itself (0: none)
"""

BODY = """import json, os, pathlib, time
out = pathlib.Path(out_dir)
(out / "{id}.csv").write_text(f"n,seed,lr\\n{{n}},{{seed}},{{lr}}\\n")
pathlib.Path(os.environ["DGN_RUN_STORE"]).mkdir(parents=True, exist_ok=True)
_mark = pathlib.Path(os.environ["DGN_RUN_STORE"]).parent / "{id}.started"
(_mark.parent / ".{id}.started.tmp").write_text(str(os.getpid()))
os.replace(_mark.parent / ".{id}.started.tmp", _mark)  # whole: a test reads the pid as soon as the file appears
time.sleep(sleep)
if die:
    os.kill(os.getpid(), die)
    time.sleep(60)
if fail:
    raise RuntimeError("boom on purpose.\\nAdvice: replace or remove it " + "x" * 700 + " END-OF-ADVICE")
(out / "{id}.png").write_bytes(b"not really a png {id}")
(out / "{id}.json").write_text(json.dumps({{"claim": "claim {id}", "verdict": "held", "profile": profile}}))
"""

SCHEMAS = '''from dgnlib.constraints import Bool, Choice, Float, Int, IntList, Schema, Str

COMMON = {"profile": Choice("smoke", "quick", "paper"), "out_dir": Str(empty=True), "seed": Int(min=0),
          "n": Int(min=1), "lr": Float(low=0, closed="neither"), "depths": IntList(min=2),
          "sleep": Float(low=0), "fail": Bool(), "die": Int(min=0)}
SCHEMAS = {"01_flaky": Schema(dict(COMMON)), "02_ok": Schema(dict(COMMON))}
'''


def write_notebook(folder: Path, stem: str) -> Path:
    """A tiny notebook with a parameters cell and a cell that writes <out_dir>/<id>.csv/.png/.json."""
    nb = new_notebook(cells=[
        new_markdown_cell(f"# {stem}"),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(BODY.format(id=stem[:2])),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


def make_repo(root: Path, smoke: str = "02_ok:\n  n: 5\n") -> Path:
    """Fill `root` with notebooks/, profiles/, dgnlib/ (schemas + a science source), README.md; return it."""
    for name in ("notebooks", "profiles", "dgnlib"):
        (root / name).mkdir(parents=True, exist_ok=True)
    write_notebook(root / "notebooks", "01_flaky")
    write_notebook(root / "notebooks", "02_ok")
    (root / "profiles" / "smoke.yaml").write_text(smoke)
    (root / "profiles" / "paper.yaml").write_text("")
    (root / "dgnlib" / "__init__.py").write_text('"""a stand-in science package"""\n')
    (root / "dgnlib" / "schemas.py").write_text(SCHEMAS)
    (root / "dgnlib" / "science.py").write_text("A = 1\n")
    (root / "dgnlib" / "data").mkdir()
    (root / "dgnlib" / "data" / "hashes.py").write_text('HASHES = {"x": {"f": "00"}}\n')
    (root / "README.md").write_text("# t\n\n<!-- figures:start -->\nold\n<!-- figures:end -->\n\nend\n")
    return root


def dgn_process(root: Path, *args: str, **kwargs) -> subprocess.Popen:
    """Start `python -m dgnlib --root <root> ...` as a real process (stderr captured)."""
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    env.pop("DGN_RUNNER", None)
    return subprocess.Popen([sys.executable, "-m", "dgnlib", "--root", str(root), *args], cwd=repo_root(), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


INDEX_BODY = """import json, os, pathlib
manifest = pathlib.Path(os.environ["DGN_RUN_STORE"]).parent.parent / "figures" / profile / "MANIFEST.json"
figures = json.loads(manifest.read_text())["figures"] if manifest.is_file() else {}
rows = [f"{k},{v['parameters']['seed']}" for k, v in sorted(figures.items()) if k != "00"]
out = pathlib.Path(out_dir)
(out / "00.csv").write_text("id,seed\\n" + "".join(r + "\\n" for r in rows))
(out / "00.json").write_text(json.dumps({"claim": None, "verdict": None, "profile": profile}))
"""


def add_index(root: Path) -> Path:
    """Add a front page `00_index` that lists (id, seed) of every figure in build/figures/<profile>/MANIFEST.json."""
    nb = new_notebook(cells=[
        new_code_cell('profile = "paper"  # a profile\nout_dir = ""  # where outputs go\nseed = 0  # master seed\n'
                      'figures_dir = ""  # a folder to list (unused here)\n', metadata={"tags": ["parameters"]}),
        new_code_cell(INDEX_BODY),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "00_index.ipynb")
    schemas = root / "dgnlib" / "schemas.py"
    schemas.write_text(schemas.read_text() + 'from dgnlib.constraints import Folder\nSCHEMAS["00_index"] = Schema({'
                       '**{k: COMMON[k] for k in ("profile", "out_dir", "seed")}, "figures_dir": Folder()})\n')
    return root
