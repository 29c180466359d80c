"""Figure 10's helpers, and its CIFAR-10 path on a tiny CIFAR-format data set built here (fake hashes registered)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dgnlib.data import files
from dgnlib.data import hashes as data_hashes
from dgnlib.engine import runs
from dgnlib.experiments import comparison, conv_gates

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def fake_cifar(folder: Path, per_batch: int = 20) -> dict[str, str]:
    """Write cifar-10-batches-py/{data_batch_1..5,test_batch} (pickled dicts, labels cycling 0..9) under folder;
    return their SHA-256 by the names the loader checks. Images: a class-dependent mean plus noise, so a net can
    learn something."""
    hashes = {}
    (folder / files.CIFAR_DIR).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(BATCHES):
        rng = np.random.default_rng(k)
        labels = np.arange(per_batch) % 10
        images = np.clip(rng.normal(60 + 15 * labels[:, None], 40, (per_batch, 3072)), 0, 255).astype(np.uint8)
        blob = pickle.dumps({b"data": images, b"labels": labels.tolist()})
        (folder / files.CIFAR_DIR / name).write_bytes(blob)
        hashes[f"{files.CIFAR_DIR}/{name}"] = hashlib.sha256(blob).hexdigest()
    return hashes


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """A tiny CIFAR-10 in DGN_DATA_DIR whose hashes are the known ones; empty cache; no downloads."""
    hashes = fake_cifar(tmp_path / "data")
    monkeypatch.setitem(data_hashes.HASHES, "cifar10", {**hashes, files.CIFAR_TAR: "0" * 64})
    monkeypatch.setenv("DGN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DGN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DGN_OFFLINE", "1")
    return tmp_path


def test_downsample_averages_blocks_and_checks_its_input():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = conv_gates.downsample({"train": (x, torch.tensor([0]))}, 2)["train"][0]
    assert torch.equal(out, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    with pytest.raises(ValueError, match="3×3"):
        conv_gates.downsample({"train": (x, torch.tensor([0]))}, 3)
    with pytest.raises(ValueError, match="integer"):
        conv_gates.downsample({"train": (x, torch.tensor([0]))}, 0)


def per_seed(acc_l: list[float], acc_r: list[float], train: float = 1.0) -> pd.DataFrame:
    rows = [{"architecture": "vconv", "variant": v, "seed": s, "val_selected_test_acc": a, "final_train_acc": train,
             "status": "ok"} for v, accs in (("relu", acc_l), ("frnpf-ii", acc_r)) for s, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_claim_parts_are_paired_and_need_the_fit_threshold():
    seeds = [0, 1, 2, 3]
    good = per_seed([0.9, 0.91, 0.92, 0.905], [0.8, 0.805, 0.81, 0.79])
    [part] = conv_gates.claim_parts(good, "vconv", ["relu", "frnpf-ii"], seeds, fit_threshold=0.95)
    assert part.verdict == "held" and part.name == "VCONV: relu > frnpf-ii"
    unfit = per_seed([0.9, 0.91, 0.92, 0.905], [0.8, 0.805, 0.81, 0.79], train=0.5)
    [part] = conv_gates.claim_parts(unfit, "vconv", ["relu", "frnpf-ii"], seeds, fit_threshold=0.95)
    assert part.verdict == "inconclusive" and "fit threshold" in part.detail
    worse = per_seed([0.8, 0.805, 0.81, 0.79], [0.9, 0.91, 0.92, 0.905])
    assert conv_gates.claim_parts(worse, "vconv", ["relu", "frnpf-ii"], seeds, fit_threshold=0.95)[0].verdict == \
        "not held"
    diverged = good.copy()
    diverged.loc[0, "status"] = "invalid"
    assert conv_gates.claim_parts(diverged, "vconv", ["relu", "frnpf-ii"], seeds, fit_threshold=0.95)[0].verdict == \
        "invalid"
    assert conv_gates.claim_parts(good, "vconv", ["relu", "frnpf-ii"], seeds[:2], fit_threshold=0.0)[0].verdict == \
        "inconclusive"


def test_cifar_path_loader_and_a_tiny_conv_sweep(cifar):
    assert files.available("cifar10")
    images, info = conv_gates.conv_data("cifar10", n_train=None, n_test=None, seed=0, val_fraction=0.1,
                                       standardize=True, factor=4)
    assert info == {"in_channels": 3, "image_size": 8, "n_train": 100, "n_test": 20, "downsample": 4}
    assert images.name == "inline"
    full, info_full = conv_gates.conv_data("cifar10", n_train=50, n_test=10, seed=0, val_fraction=0.1,
                                          standardize=True)
    assert full.name == "cifar10" and info_full["image_size"] == 32 and info_full["n_train"] == 50
    seeds = comparison.run_seeds(0, 2)
    models = {a: conv_gates.conv_model(a, info, [2, 3], [4], beta=4.0, init="glorot") for a in ("vconv", "gconv")}
    train = {a: dict(optimizer="adam", lr=1e-2, batch_size=16, epochs=2) for a in models}
    store = runs.RunStore(cifar / "runs")
    variants = ["relu", "frnpf-ii", "frnpf-di", "flnpf", "dnpfl"]
    history = conv_gates.conv_sweep(models, images, variants, seeds, train, store=store, progress=False)
    per = conv_gates.per_seed_table(history)
    assert len(per) == 2 * 5 * 2 and set(per["status"]) == {"ok"}
    frozen = history[history["variant"].isin(conv_gates.FROZEN)]
    assert (frozen["gates_changed"] == 0).all()
    table = conv_gates.accuracy_table(per)
    assert len(table) == 10 and (table["seeds"] == 2).all()
    dep = conv_gates.frozen_gate_dependence(models, images, variants, seeds, train,
                                           conv_gates.reference_inputs(images, 50), store)
    assert set(dep["variant"]) == {"frnpf-ii", "frnpf-di", "flnpf"}
    assert dep["input_share"].between(0, 1).all() and (dep["always_on"] + dep["always_off"] <= 1).all()
    parts = conv_gates.claim_parts(per, "gconv", variants, seeds, fit_threshold=0.0)
    assert len(parts) == 6 and {p.verdict for p in parts} == {"inconclusive"}  # 2 seeds: never decided


SITECUSTOMIZE = """import json, os
from dgnlib.data import files as datafiles
datafiles.HASHES["cifar10"] = json.loads(os.environ["DGN_TEST_CIFAR_HASHES"])
"""

SMOKE = """10_cifar10_conv:
  dataset: cifar10
  variants: [relu, frnpf-ii, flnpf, dnpfl]
  architectures: [vconv, gconv]
  channels: [2, 3]
  dense: [4]
  downsample: 4
  n_seeds: 3
  epochs_vconv: 1
  epochs_gconv: 1
  fit_threshold: 0.9
"""


def test_notebook_10_runs_on_the_tiny_cifar(cifar, tmp_path, monkeypatch):
    """The notebook itself, through the runner, on the fake CIFAR-10: its kernel gets the fake hashes at start-up
    (a sitecustomize module on PYTHONPATH), the data from DGN_DATA_DIR."""
    import json

    from dgnlib.companion.cli import main

    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "profiles").mkdir()
    source = Path(__file__).resolve().parent.parent / "notebooks" / "10_cifar10_conv.ipynb"
    (root / "notebooks" / source.name).write_bytes(source.read_bytes())
    (root / "profiles" / "smoke.yaml").write_text(SMOKE)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("DGN_TEST_CIFAR_HASHES", json.dumps(data_hashes.HASHES["cifar10"]))
    assert main(["--root", str(root), "reproduce", "--profile", "smoke", "--only", "10", "--force"]) == 0
    result = json.loads((root / "build" / "figures" / "smoke" / "10.json").read_text())
    assert result["numbers"]["dataset_used"] == "cifar10" and result["numbers"]["image_size"] == 8
    assert result["verdict"] == "inconclusive"  # 1 epoch: no run reaches the 90 % fit threshold
    assert {c["passed"] for c in result["checks"]} == {True}
