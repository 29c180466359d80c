"""One seeding policy: every random stream is derived from (master seed, keys) by `derive_seed`.

Library code never touches a global RNG: it takes a seed, derives the seeds of its sub-streams from it with keys that
name what they are for (`derive_seed(seed, "minibatch", run)`), and builds explicit generators (`generator`). This is
the same idea as splitting a random key per use: two streams with different keys are independent, and the same
(master, keys) always gives the same stream.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

Key = int | str


def _key_int(key: Key) -> int:
    """A non-negative integer for a key: ints as themselves, strings through a stable hash (not Python's hash())."""
    if isinstance(key, bool) or not isinstance(key, (int, np.integer, str)):
        raise TypeError(f"seed keys must be integers or strings, got {key!r} ({type(key).__name__})")
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    if key < 0:
        raise ValueError(f"integer seed keys must be >= 0, got {key}")
    return int(key)


def derive_seed(master: int, *keys: Key) -> int:
    """A seed in [0, 2³¹) from a master seed and keys (numpy SeedSequence); same inputs, same seed, on any machine."""
    return int(np.random.SeedSequence([_key_int(master), *map(_key_int, keys)]).generate_state(1)[0] >> 1)


def generator(master: int, *keys: Key, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with `derive_seed(master, *keys)`."""
    return torch.Generator(device=device).manual_seed(derive_seed(master, *keys))


def numpy_rng(master: int, *keys: Key) -> np.random.Generator:
    """A numpy generator seeded with `derive_seed(master, *keys)`."""
    return np.random.default_rng(derive_seed(master, *keys))


def run_seeds(master: int, n: int, *keys: Key) -> list[int]:
    """The seeds of n independent runs of a sweep: derive_seed(master, *keys, k) for k < n (a prefix is stable)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of seeds must be an integer >= 1, got {n!r}")
    return [derive_seed(master, *keys, k) for k in range(n)]
