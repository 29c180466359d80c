"""Which epoch of a run counts: the reference's best-test-accuracy checkpoint, and an honest selection beside it.

The follow-up paper's reference reports, per run, the best test accuracy over epochs, and its flnpf copies the relu
run's checkpoint of best test accuracy (a save-best-only callback watching the test set): both choose the epoch on
the very examples they report, which is optimistic. With all training images used for training, an honest choice
takes no training images away: every epoch logs the test set's two fixed halves (even and odd positions,
`test_acc_a` / `test_acc_b`); the epoch is chosen on one half and the other half is reported, and the reverse, averaged.
"""

from __future__ import annotations

import math


def best_test_epoch(rows: list[dict]) -> int | None:
    """The first epoch >= 1 of highest finite test accuracy (the checkpoint a save-best-only callback keeps: it
    saves on strict improvement), or None when no trained epoch has one."""
    best, epoch = -math.inf, None
    for row in rows:
        acc = row.get("test_acc", math.nan)
        if row.get("epoch", 0) >= 1 and isinstance(acc, (int, float)) and math.isfinite(acc) and acc > best:
            best, epoch = acc, int(row["epoch"])
    return epoch
