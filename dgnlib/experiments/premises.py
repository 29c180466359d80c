"""Premises of a claim part: what must be true of the runs for the part to say anything about the claim.

A comparison of generalisation between variants, or of how much their gates moved, presumes that the networks were
trained: with a learning rate too small to train, two untrained networks can differ "significantly" (one pair of
figure 06 was held between networks at 8–10 % accuracy, and figure 07's gate part at 0.006 % of gates changed).
`require_learnt` makes such a part *inconclusive*, not *not held*: the run did not test the claim, it neither
supports nor refutes it. A network has learnt when its final test accuracy exceeds chance by at least
`LEARNT_MARGIN` of the way from chance to 100 % (10 classes: 55 %; two classes: 75 %).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from dgnlib.verdict import Part

LEARNT_MARGIN = 0.5


def learnt_threshold(chance: float, margin: float = LEARNT_MARGIN) -> float:
    """The test accuracy a trained network must reach: chance + margin · (1 − chance)."""
    if not (0 <= chance < 1 and 0 < margin <= 1):
        raise ValueError(f"chance must lie in [0, 1) and margin in (0, 1], got {chance!r} and {margin!r}")
    return chance + margin * (1 - chance)


def not_learnt(accuracy: Mapping[str, Mapping | Sequence], chance: float,
               margin: float = LEARNT_MARGIN) -> dict[str, list[str]]:
    """{network: [seeds whose final test accuracy is below `learnt_threshold`]} for every network with such a seed;
    accuracy maps a network's name to {seed: accuracy} (or a sequence). Non-finite values are left to the part's
    own `invalid` rule."""
    bar = learnt_threshold(chance, margin)
    out = {}
    for name, values in accuracy.items():
        items = values.items() if isinstance(values, Mapping) else enumerate(values)
        low = [str(k) for k, v in items if math.isfinite(float(v)) and float(v) < bar]
        if low:
            out[name] = low
    return out


def require_learnt(part: Part, accuracy: Mapping[str, Mapping | Sequence], chance: float,
                   margin: float = LEARNT_MARGIN) -> Part:
    """`part`, made inconclusive when a network it compares has not learnt (see the module docstring); the
    threshold and the untrained runs are recorded in its numbers. An invalid part stays invalid."""
    bar, low = learnt_threshold(chance, margin), not_learnt(accuracy, chance, margin)
    numbers = {**part.numbers, "learnt_threshold": bar, "not_learnt": low}
    if not low or part.verdict == "invalid":
        return dataclasses.replace(part, numbers=numbers)
    why = "; ".join(f"{name} seeds {seeds}" for name, seeds in low.items())
    return dataclasses.replace(
        part, verdict="inconclusive", numbers=numbers,
        detail=f"not trained (test accuracy below {100 * bar:.0f} %, chance {100 * chance:.0f} %): {why}; "
               f"the comparison says nothing about the claim; {part.detail}")
