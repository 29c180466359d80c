"""Figure 10: DGN variants in convolutional networks (VCONV, GCONV): data, sweeps, fit requirement, claim parts.

The claim "learnt/adapting gates beat fixed random gates" is decided per architecture and per pair (learnt variant
L, fixed-random variant R) by `verdict.paired` on the validation-selected test accuracy, paired by seed. Comparing
models that have not fit their training data says little about generalisation, so each architecture's parts count
only when every compared run reached the stated final training accuracy (`fit_threshold`); otherwise they are
`inconclusive` (a part that is `invalid` stays invalid).

Downsampling (`downsample`) averages non-overlapping f×f blocks of every image before anything else: it cuts the cost
of every convolution by f² and, for GCONV, makes the small receptive field of a few 3×3 layers cover a larger part
of the image. Downsampled data are passed to the engine in memory (`data.inline`), named by their digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dgnlib import verdict
from dgnlib.engine import tensors as datamod
from dgnlib.engine.runs import DataSpec, ModelSpec, RunStore
from dgnlib.engine.sweep import Executor
from dgnlib.experiments.comparison import final_accuracy, train_variants, variant_specs
from dgnlib.experiments.gatestats import gate_dependence

ARCHITECTURES = {"vconv": "flatten", "gconv": "gap"}  # architecture → ConvDGN pooling
LEARNT = ("relu", "flnpf", "dnpfl")
RANDOM = ("frnpf-ii", "frnpf-di")
FROZEN = ("frnpf-ii", "frnpf-di", "flnpf")


def downsample(splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], factor: int) -> dict:
    """Every split's images (N, C, H, W) averaged over non-overlapping factor×factor blocks; labels kept."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"downsample factor must be an integer >= 1, got {factor!r}")
    out = {}
    for name, (x, y) in splits.items():
        if x.dim() != 4:
            raise ValueError(f"downsample needs images (N, C, H, W), got shape {tuple(x.shape)} in split {name!r}")
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"images of {x.shape[2]}×{x.shape[3]} cannot be cut into {factor}×{factor} blocks")
        out[name] = (torch.nn.functional.avg_pool2d(x, factor) if factor > 1 else x, y)
    return out


def conv_data(
    dataset: str,
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    val_fraction: float,
    standardize: bool,
    factor: int = 1,
) -> tuple[DataSpec, dict]:
    """The DataSpec of figure 10's images and a summary (shape, sizes). factor 1: the named, verified data set,
    materialised by the engine; factor > 1: downsampled images, standardised per channel after downsampling (if
    asked) and given to the engine in memory."""
    spec = DataSpec(dataset, n_train=n_train, n_test=n_test, val_fraction=val_fraction, subset_seed=seed,
                    flatten=False, standardize="channels" if standardize else "none")
    if factor == 1:
        splits = datamod.materialise(spec)
    else:
        raw = datamod.materialise(dataclasses.replace(spec, standardize="none"))
        splits = downsample(raw, factor)
        if standardize:
            splits = datamod.standardize_channels(splits)
        spec = datamod.inline(splits, val_fraction)
    x_train, x_test = splits["train"][0], splits["test"][0]
    info = {"in_channels": int(x_train.shape[1]), "image_size": int(x_train.shape[2]),
            "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]), "downsample": factor}
    return spec, info


def conv_model(arch: str, info: Mapping, channels: Sequence[int], dense: Sequence[int], *, beta: float,
               init: str, n_classes: int = 10) -> ModelSpec:
    """The ModelSpec of VCONV ("vconv": flatten) or GCONV ("gconv": global average pooling) for these images."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ModelSpec("conv", beta=beta, init=init, in_channels=info["in_channels"], image_size=info["image_size"],
                     channels=tuple(channels), dense=tuple(dense), d_out=n_classes, pooling=ARCHITECTURES[arch])


def conv_sweep(
    models: Mapping[str, ModelSpec],
    data: DataSpec,
    variants: Sequence[str],
    seeds: Sequence[int],
    train: Mapping[str, Mapping],
    *,
    store: RunStore,
    executor: Executor | None = None,
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Every variant for every seed on every architecture (one `comparison.train_variants` sweep each);
    train[arch] holds that architecture's optimiser, lr, batch_size, epochs. One row per (architecture, variant,
    seed, epoch) with the engine's metrics and the run's status."""
    frames = []
    for arch, model in models.items():
        h = train_variants(model, data, variants, seeds, store=store, executor=executor, device=device,
                           progress=progress, **train[arch])
        frames.append(h.assign(architecture=arch))
    return pd.concat(frames, ignore_index=True)


def per_seed_table(history: pd.DataFrame) -> pd.DataFrame:
    """Per (architecture, variant, seed): `comparison.final_accuracy`'s columns and the run's status."""
    frames = []
    for arch, h in history.groupby("architecture", sort=False):
        status = h.groupby(["variant", "seed"])["status"].first().rename("status").reset_index()
        frames.append(final_accuracy(h).merge(status, on=["variant", "seed"]).assign(architecture=arch))
    return pd.concat(frames, ignore_index=True)


def fit_status(per_seed: pd.DataFrame, arch: str, variants: Sequence[str], threshold: float) -> tuple[bool, str]:
    """(every compared run of `arch` reached final train accuracy ≥ threshold, a sentence naming those that did not)."""
    rows = per_seed[(per_seed["architecture"] == arch) & per_seed["variant"].isin(variants)]
    short = rows[~(rows["final_train_acc"] >= threshold)]
    if short.empty:
        low = rows["final_train_acc"].min()
        return True, f"every compared run fits its training data (lowest final train accuracy {100 * low:.1f} %)"
    worst = short.groupby("variant")["final_train_acc"].min()
    names = ", ".join(f"{v} (lowest {100 * a:.1f} %)" for v, a in worst.items())
    return False, (f"{len(short)} of {len(rows)} compared runs stay below the fit threshold of "
                   f"{100 * threshold:.1f} % final train accuracy: {names}")


def claim_parts(
    per_seed: pd.DataFrame,
    arch: str,
    variants: Sequence[str],
    seeds: Sequence[int],
    *,
    fit_threshold: float,
    metric: str = "val_selected_test_acc",
    min_seeds: int = 3,
) -> list[verdict.Part]:
    """One part per (learnt L, fixed-random R) pair present: "L > R" paired by seed on `metric`; all inconclusive
    (unless invalid) when some compared run of the architecture did not reach `fit_threshold`."""
    learnt = [v for v in variants if v in LEARNT]
    random = [v for v in variants if v in RANDOM]
    rows = per_seed[per_seed["architecture"] == arch].set_index(["variant", "seed"])
    fitted, why = fit_status(per_seed, arch, learnt + random, fit_threshold)
    parts = []
    for a in learnt:
        for b in random:
            va = [float(rows.loc[(a, s), metric]) for s in seeds]
            vb = [float(rows.loc[(b, s), metric]) for s in seeds]
            bad = [rows.loc[(a, s), "status"] != "ok" or rows.loc[(b, s), "status"] != "ok" for s in seeds]
            part = verdict.paired(va, vb, seeds, name=f"{arch.upper()}: {a} > {b}", side="greater",
                                  min_seeds=min_seeds, invalid=bad)
            if not fitted and part.verdict != "invalid":
                part = dataclasses.replace(part, verdict="inconclusive",
                                           detail=f"not decided: {why}; {part.detail}")
            parts.append(part)
    return parts


@torch.no_grad()
def frozen_gate_dependence(
    models: Mapping[str, ModelSpec],
    data: DataSpec,
    variants: Sequence[str],
    seeds: Sequence[int],
    train: Mapping[str, Mapping],
    x: torch.Tensor,
    store: RunStore,
) -> pd.DataFrame:
    """`gatestats.gate_dependence` of each frozen feature network (frnpf-ii, frnpf-di: at their initialisation;
    flnpf: the final weights of the relu run it copies, read from the store; left out where that run is invalid),
    averaged over seeds.

    One row per (architecture, variant, layer): units, always_on, always_off, on_fraction, input_share.
    """
    frames = []
    frozen = [v for v in variants if v in FROZEN]
    for arch, model in models.items():
        opts = {k: v for k, v in train[arch].items()
                if k in ("optimizer", "lr", "batch_size", "epochs", "loss", "opt_eps")}  # the relu runs' keys
        specs = variant_specs(model, data, frozen, seeds, **opts)
        for (variant, seed), spec in specs.items():
            if variant == "flnpf":
                src = spec.gate_source
                weights = store.weights(src.spec.key(), src.epoch)
                source = store.get(src.spec.key())
                if weights is None and source is not None and source.status == "invalid":
                    continue  # the relu run diverged: no learnt gates to measure (its flnpf run is invalid too)
                if weights is None:
                    raise RuntimeError(f"the relu run that flnpf copies ({src.spec.key()[:12]}…) has no stored "
                                       f"weights after epoch {src.epoch}: run the sweep first")
                net = src.spec.model.build(0)
                net.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
            else:
                net = spec.model.build(spec.init_seed())
            frames.append(gate_dependence(net, x).assign(architecture=arch, variant=variant, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["architecture", "variant", "layer", "units", "always_on", "always_off",
                                     "on_fraction", "input_share"])
    table = pd.concat(frames, ignore_index=True)
    cols = ["units", "always_on", "always_off", "on_fraction", "input_share"]
    return table.groupby(["architecture", "variant", "layer"], sort=False)[cols].mean().reset_index()


def reference_inputs(data: DataSpec, n: int = 500) -> torch.Tensor:
    """The first n training images of the data (the inputs on which gate input-dependence is measured)."""
    x = datamod.materialise(data)["train"][0]
    return x[:n]


def accuracy_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (architecture, variant): mean and std over seeds of final train, validation-selected and best-epoch test
    accuracy, and the number of seeds."""
    cols = ["final_train_acc", "val_selected_test_acc", "best_epoch_test_acc", "final_gates_changed"]
    g = per_seed.groupby(["architecture", "variant"], sort=False)[cols]
    stats = g.agg(["mean", "std"])
    stats.columns = [f"{a}_{b}" for a, b in stats.columns]
    stats["seeds"] = g.size()
    stats["invalid_runs"] = per_seed.assign(bad=per_seed["status"] != "ok").groupby(
        ["architecture", "variant"], sort=False)["bad"].sum()
    return stats.reset_index()


def flags(per_seed: pd.DataFrame) -> np.ndarray:
    """True for every run whose status is not ok."""
    return (per_seed["status"] != "ok").to_numpy()
