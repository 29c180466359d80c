"""Optimiser constants (RMSprop's alpha/rho, the epsilon of RMSprop and Adam) enter a run's key only when set, so
the committed run store stays valid; set, they reach the torch optimiser."""

import json

import pytest
import torch

from dgnlib.engine.ensemble import make_optimizer
from dgnlib.engine.runs import DataSpec, ModelSpec, RunSpec, RunStore, canonical_json
from dgnlib.experiments import comparison, npk_alignment
from dgnlib.names import repo_root

DATA = DataSpec("synthetic", n_train=60, n_test=20, shape=(4,), n_classes=2, val_fraction=0.1)
MODEL = ModelSpec("fc", d_in=4, width=8, depth=3, d_out=2)


def test_committed_runs_keep_their_keys():
    # figure 06's published paper runs (Adam with PyTorch's constants), rebuilt by the library as its notebook does:
    # the keys must be those committed in runs/, or every stored run of the project would silently be orphaned
    store = RunStore(repo_root() / "runs")
    mnist = comparison.image_data("mnist", 0, 0, 0.1, 0)
    model = comparison.fc_model(784, 128, 6, 10, init="glorot", beta=4.0)
    specs = comparison.variant_specs(model, mnist, ["frnpf-ii", "frnpf-di", "flnpf", "dnpfl", "relu", "linear"],
                                     comparison.run_seeds(0, 5), optimizer="adam", lr=1e-4, batch_size=32,
                                     epochs=100, loss="ce")
    stored = set(store.keys())
    assert len(specs) == 30 and all(s.key() in stored for s in specs.values())
    key = specs["relu", comparison.run_seeds(0, 5)[0]].key()
    entry = json.loads((store.root / key[:2] / f"{key}.json").read_text())
    assert "opt_alpha" not in entry["spec"] and "opt_eps" not in entry["spec"]
    # and figure 07's new runs, which set the constants, are stored under keys that include them
    data = npk_alignment.mnist_pair(4, 7, 0, 0)
    new = npk_alignment.alignment_specs(data, 784, npk_alignment.run_seeds(0, 5), depth=6, width=100,
                                        optimizer="rmsprop", lr=1e-4, batch_size=64, epochs=50, probe_per_class=100,
                                        rmsprop_rho=0.9, opt_eps=1e-7)
    assert all(s.key() in stored for s in new.values())


def test_constants_change_key_and_group_only_when_set():
    base = RunSpec(MODEL, DATA, 0, optimizer="rmsprop")
    assert base.replace(opt_alpha=None, opt_eps=None).key() == base.key()
    assert "opt_" not in canonical_json(base)
    tuned = base.replace(opt_alpha=0.9, opt_eps=1e-7)
    assert tuned.key() != base.key() and tuned.group_key() != base.group_key()
    assert '"opt_alpha":0.9' in canonical_json(tuned)


def test_constants_are_checked_against_the_optimizer():
    with pytest.raises(ValueError, match="opt_alpha does not apply to optimizer 'adam'"):
        RunSpec(MODEL, DATA, 0, optimizer="adam", opt_alpha=0.9)
    with pytest.raises(ValueError, match="opt_eps does not apply to optimizer 'sgd'"):
        RunSpec(MODEL, DATA, 0, optimizer="sgd", opt_eps=1e-7)
    with pytest.raises(ValueError, match=r"opt_alpha must be a number in \(0, 1\)"):
        RunSpec(MODEL, DATA, 0, optimizer="rmsprop", opt_alpha=1.5)
    # figure 07's specs take the constants their optimiser has, and drop the others
    data = npk_alignment.mnist_pair(4, 7, 40, 0)
    kw = dict(depth=3, width=8, lr=1e-3, batch_size=8, epochs=1, probe_per_class=5, rmsprop_rho=0.9, opt_eps=1e-7)
    rms = npk_alignment.alignment_specs(data, 784, [1], optimizer="rmsprop", **kw)["relu", 1]
    adam = npk_alignment.alignment_specs(data, 784, [1], optimizer="adam", **kw)["relu", 1]
    sgd = npk_alignment.alignment_specs(data, 784, [1], optimizer="sgd", **kw)["relu", 1]
    assert (rms.opt_alpha, rms.opt_eps) == (0.9, 1e-7)
    assert (adam.opt_alpha, adam.opt_eps) == (None, 1e-7) and (sgd.opt_alpha, sgd.opt_eps) == (None, None)


def test_the_torch_optimiser_gets_the_constants():
    p = [torch.nn.Parameter(torch.zeros(3))]
    group = make_optimizer("rmsprop", p, 1e-3, alpha=0.9, eps=1e-7).param_groups[0]
    assert (group["alpha"], group["eps"]) == (0.9, 1e-7)
    default = make_optimizer("rmsprop", p, 1e-3).param_groups[0]
    assert (default["alpha"], default["eps"]) == (0.99, 1e-8)


def test_the_engine_trains_with_the_constants_it_is_given():
    # one step of RMSprop differs between PyTorch's constants and the reference's (eps 1e-3 makes it visible)
    data = DataSpec("synthetic", n_train=32, n_test=8, shape=(4,), n_classes=2, val_fraction=0.0)
    base = RunSpec(MODEL, data, 0, optimizer="rmsprop", lr=1e-2, batch_size=32, epochs=2)
    from dgnlib.engine.ensemble import train_ensemble

    plain, tuned = (train_ensemble([s], {}, device="cpu")[0] for s in (base, base.replace(opt_alpha=0.5, opt_eps=1e-3)))
    assert plain.rows[2]["train_loss"] != tuned.rows[2]["train_loss"]  # epoch 2 sees the first step
