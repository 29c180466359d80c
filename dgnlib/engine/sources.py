"""The science sources of a package folder (one rule for the runner's cache and the Dask fingerprint), and the
fingerprint that must match between a Dask client and its workers.

What counts as a science source is declared once, in `dgnlib.names` (`TOOLING`, `is_science`): a `.py` file outside
the tooling that Python could import as a module of `dgnlib`, so editor leftovers are never sources.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from dgnlib.names import PACKAGE, is_science


def science_sources(package: Path) -> list[Path]:
    """The science sources of a package folder, sorted; only regular files (a dangling link is no source)."""
    package = Path(package)
    return sorted(p for p in package.rglob("*.py")
                  if is_science(p.relative_to(package)) and p.is_file())


# ---------------------------------------------------------------- what must be equal on a Dask client and its workers


def source_hashes(root: Path = PACKAGE) -> dict[str, str]:
    """SHA-256 of each science module's source, keyed by its path inside the package (the tooling wing left out)."""
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in science_sources(root)}


def fingerprint() -> dict[str, Any]:
    """What must match between client and worker: dgnlib version and sources, torch and numpy versions."""
    import numpy
    import torch

    from dgnlib import __version__

    files = source_hashes()
    digest = hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in files.items()).encode()).hexdigest()
    return {"dgnlib": __version__, "sources": digest, "files": files, "torch": torch.__version__,
            "numpy": numpy.__version__}


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when they match)."""
    out = [f"{name} {mine[name]} here, {theirs.get(name)} there"
           for name in ("dgnlib", "torch", "numpy") if mine[name] != theirs.get(name)]
    if mine["sources"] != theirs.get("sources"):
        a, b = mine["files"], theirs.get("files", {})
        changed = [f for f in sorted(a.keys() | b.keys()) if a.get(f) != b.get(f)]
        named = ", ".join(f + ("" if f in b else " (missing there)") + ("" if f in a else " (only there)")
                          for f in changed[:8])
        out.append(f"dgnlib sources differ in {named}" + (f" and {len(changed) - 8} more" if len(changed) > 8 else ""))
    return out


def _mismatch_message(worker: str, diffs: list[str]) -> str:
    """One line: which worker differs from this client, and how."""
    return (f"Dask worker {worker} differs from this client: {'; '.join(diffs)}. Give every worker the same "
            "environment and dgnlib checkout as the client")
