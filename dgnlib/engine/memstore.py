"""`MemoryStore`: a run store in memory, what experiments use when no store is given (nothing persists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dgnlib.engine.runs import RunResult, RunStore


class MemoryStore(RunStore):
    """A run store in memory (nothing persists): what experiments use when no store is given."""

    def __init__(self) -> None:
        self.root = Path("<memory>")
        self.read_only = False
        self._runs: dict[str, RunResult] = {}
        self._weights: dict[tuple[str, int], dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs)"

    def get(self, key: str) -> RunResult | None:
        """The stored result of run `key`, or None."""
        return self._runs.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._runs

    def put(self, key: str, result: RunResult) -> None:
        """Keep a finished run (and its kept weights)."""
        for epoch, state in result.weights.items():
            self.put_weights(key, epoch, state)
        self._runs[key] = RunResult.from_json(result.to_json())

    def put_weights(self, key: str, epoch: int, state: dict[str, np.ndarray]) -> None:
        """Keep one epoch's weights of run `key`."""
        self._weights[key, int(epoch)] = {k: np.array(v) for k, v in state.items()}

    def weights(self, key: str, epoch: int) -> dict[str, np.ndarray] | None:
        """Run `key`'s weights after `epoch`, or None."""
        return self._weights.get((key, int(epoch)))

    def has_weights(self, key: str, epoch: int) -> bool:
        """True when run `key`'s weights after `epoch` are kept."""
        return (key, int(epoch)) in self._weights

    def keys(self) -> list[str]:
        """Keys of every kept run."""
        return sorted(self._runs)
