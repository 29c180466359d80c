"""How many threads torch may use for a computation that is made of many small operations.

Torch's intra-op threads (2 on a 2-core machine) synchronise at every operation. On matrices of a few hundred rows
that costs more than it gives, and when other processes share the cores a thread that waits for a descheduled
partner spins: measured on 2 shared cores (load ≈ 10), figure 05's sweep of three runs took 0.65 s on one thread
against 46 s on two, and figure 07's smoke training 4.3 s against 36 s.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREADS_ENV = "DGN_THREADS"  # torch threads per notebook or training process (default 1)


def positive_int_env(name: str, default: int, what: str) -> int:
    """Environment variable `name` as a positive integer (`default` when unset); ValueError naming `what` otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be a positive integer ({what}), got {raw!r}")
    return n


def threads_from_env() -> int:
    """DGN_THREADS as a positive integer (1 when unset); ValueError with a one-line reason otherwise."""
    return positive_int_env(THREADS_ENV, 1, "torch threads per notebook")


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with torch on one intra-op thread, then restore the previous count (also on error)."""
    import torch  # here: the runner imports this module to check DGN_THREADS without importing torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
