"""Small synthetic data sets shared by the tests (pytest puts this folder on sys.path)."""

import torch


def two_blobs(n: int = 120, d: int = 4, shift: float = 1.0, n_train: int = 90, seed: int = 0) -> dict:
    """Two Gaussian blobs at ±shift·(1, …, 1), labels 0/1: {"train": (x, y), "test": (x, y)}, first n_train train."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.where(y[:, None] == 1, shift, -shift) + torch.randn(n, d, generator=gen)
    return {"train": (x[:n_train], y[:n_train]), "test": (x[n_train:], y[n_train:])}
