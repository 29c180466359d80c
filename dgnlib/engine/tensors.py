"""Data as tensors: subsets, transforms, the splits a run sees (`materialise` of a `DataSpec`).

The files themselves (where they are looked for, how they are fetched and verified) are `dgnlib.data.files`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping

import numpy as np
import torch

from dgnlib.data.files import (
    NAMES,
    SPLITS,
    DataError,
    load,
)
from dgnlib.engine.runs import DataSpec
from dgnlib.seeding import derive_seed


def flatten_scale(
    images: np.ndarray, standardize: bool = False, stats: tuple[float, float] | None = None
) -> np.ndarray:
    """Images as float32 (N, D) in [0, 1]; standardised by `stats` (mean, std) or the array's own if asked."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    if standardize or stats is not None:
        mean, std = stats if stats is not None else (float(x.mean()), float(x.std()))
        x = (x - np.float32(mean)) / np.float32(max(std, 1e-12))
    return x


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) as float32 (N, C, H, W) in [0, 1], as torch convolutions want."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as a float32 tensor, labels as int64 (integer labels) or float32 (real labels)."""
    y = np.asarray(y)
    ty = torch.as_tensor(y, dtype=torch.int64 if np.issubdtype(y.dtype, np.integer) else torch.float32)
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), ty


def balanced_subset(x: np.ndarray, y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """`per_class` examples drawn without replacement from each class, shuffled, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if per_class < 1 or len(classes) == 0:
        raise ValueError(f"balanced_subset: per_class={per_class} on {len(classes)} classes; need >= 1 of each")
    if counts.min() < per_class:
        short = {int(c): int(n) for c, n in zip(classes, counts, strict=True) if n < per_class}
        raise ValueError(f"balanced_subset: {per_class} per class asked; classes with fewer: {short}")
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


def binary_pair(x, y, neg: int = 4, pos: int = 7):
    """The examples of classes `neg` and `pos` with float32 labels -1 / +1 (numpy arrays or torch tensors)."""
    mask = (y == neg) | (y == pos)
    if isinstance(y, torch.Tensor):
        return x[mask], torch.where(y[mask] == pos, 1.0, -1.0).to(torch.float32)
    return x[mask], np.where(y[mask] == pos, 1.0, -1.0).astype(np.float32)


def standardize_channels(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Standardise every split per input channel (dim 1) with the training split's mean and std; labels kept."""
    x = splits["train"][0]
    dims = tuple(d for d in range(x.dim()) if d != 1)
    mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return {k: ((xs - mean) / std, ys) for k, (xs, ys) in splits.items()}


def load_classification(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    flatten: bool = True,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train": (x, y), "test": (x, y)} tensors: x float32 in [0,1], (N, D) or (N, C, H, W); y int64.

    `n_train` / `n_test` draw class-balanced subsets (a multiple of 10), seeded by derive_seed(seed, "subset", split).
    """
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = load(name, split, root)
        if n is not None:
            if n % 10:
                raise ValueError(f"n_{split}={n} must be a multiple of the 10 classes for a balanced subset")
            x, y = balanced_subset(x, y, n // 10, derive_seed(seed, "subset", split))
        out[split] = to_tensors(flatten_scale(x) if flatten else to_channels_first(x), y)
    return out


def train_val_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices of n examples: a random `val_fraction` (at least 1) held out, from `seed`."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 else 0
    return perm[n_val:], perm[:n_val]


def digest(splits: Mapping[str, tuple]) -> str:
    """SHA-256 of in-memory splits (names, shapes, dtypes and bytes of every array): the identity of inline data."""
    h = hashlib.sha256()
    for name in sorted(splits):
        for a in splits[name]:
            arr = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def inline(splits: Mapping[str, tuple], val_fraction: float = 0.1) -> DataSpec:
    """A DataSpec for tensors in memory ({"train": (x, y), "test"?: ..., "val"?: ...}), named by their digest."""
    if "train" not in splits:
        raise ValueError("data must be a mapping with a 'train' entry (x, y) and optional 'val' and 'test' entries")
    arrays = {k: (torch.as_tensor(v[0]), torch.as_tensor(v[1])) for k, v in splits.items()}
    return DataSpec("inline", n_train=len(arrays["train"][0]), n_test=len(arrays["test"][0]) if "test" in arrays
                    else None, val_fraction=val_fraction, digest=digest(arrays), arrays=arrays)


def synthetic(spec: DataSpec) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Gaussian classes: class means N(0, I) of `spec.shape`, inputs mean + N(0, I); seeded by spec.subset_seed."""
    if not spec.shape or not spec.n_train or spec.n_classes < 2:
        raise ValueError(f"synthetic data needs a shape, n_train >= 1 and n_classes >= 2, got {spec}")
    rng = np.random.default_rng(derive_seed(spec.subset_seed, "synthetic", "means"))
    means = rng.standard_normal((spec.n_classes, *spec.shape)).astype(np.float32)
    out = {}
    for split, n in (("train", spec.n_train), ("test", spec.n_test or 0)):
        rng = np.random.default_rng(derive_seed(spec.subset_seed, "synthetic", split))
        y = rng.integers(0, spec.n_classes, n)
        x = means[y] + rng.standard_normal((n, *spec.shape)).astype(np.float32)
        if n:
            out[split] = to_tensors(x, y)
    return out


def materialise(spec: DataSpec, root: str | os.PathLike | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The tensors a DataSpec names ({"train", "test"?, "val"?}), deterministically: same spec, same tensors."""
    if spec.name == "inline":
        return dict(spec.arrays)
    if spec.name == "synthetic":
        splits = synthetic(spec)
    elif spec.binary_pair is not None:
        neg, pos = spec.binary_pair
        full = load_classification(spec.name, seed=spec.subset_seed, root=root, flatten=spec.flatten)
        splits = {k: binary_pair(*v, neg=neg, pos=pos) for k, v in full.items()}
        for split, n in (("train", spec.n_train), ("test", spec.n_test)):
            if n:
                x, y = splits[split]
                x, y = balanced_subset(x.numpy(), y.numpy(), n // 2, derive_seed(spec.subset_seed, "subset", split))
                splits[split] = (torch.as_tensor(x), torch.as_tensor(y))
    else:
        splits = load_classification(spec.name, n_train=spec.n_train, n_test=spec.n_test, seed=spec.subset_seed,
                                     root=root, flatten=spec.flatten)
    return standardize_channels(splits) if spec.standardize == "channels" else splits


def main(argv: list[str] | None = None) -> int:
    """`python -m dgnlib.engine.tensors NAME...`: fetch, verify and summarise data sets."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dgnlib.engine.tensors", description=main.__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(NAMES)} (default mnist)")
    names = parser.parse_args(argv).names or ["mnist"]
    if unknown := [n for n in names if n not in NAMES]:
        parser.error(f"unknown data set {', '.join(unknown)}: expected one of {', '.join(NAMES)}")
    try:
        for name in names:
            for split in SPLITS:
                x, y = load(name, split)
                counts = np.bincount(y).tolist()
                print(f"{name} {split}: images {x.shape} {x.dtype}, labels {y.shape}, counts {counts}")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
