"""How many threads torch may use for a computation that is made of many small operations.

Torch's intra-op threads (2 on a 2-core machine) synchronise at every operation. On matrices of a few hundred rows
that costs more than it gives, and when other processes share the cores a thread that waits for a descheduled
partner spins: measured on 2 shared cores (load ≈ 10), figure 05's sweep of three runs took 0.65 s on one thread
against 46 s on two, and figure 07's smoke training 4.3 s against 36 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with torch on one intra-op thread, then restore the previous count (also on error)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
