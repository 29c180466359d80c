"""Writers for what every notebook leaves behind: figure (PNG, PDF), table (CSV) and claim verdict (JSON)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROFILES = ("smoke", "quick", "paper")


def repo_root() -> Path:
    """The repository root (the folder holding `dgnlib/`), whatever the working directory."""
    return Path(__file__).resolve().parent.parent


def output_dir(out_dir: str | os.PathLike = "figures") -> Path:
    """`out_dir` resolved against the repository root when relative, created if missing."""
    path = Path(out_dir)
    if not path.is_absolute():
        path = repo_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def title(text: str, profile: str) -> str:
    """A figure title that names the profile when it is not the paper profile."""
    check_profile(profile)
    if profile == "paper":
        return text
    return f"{text}\n[{profile} profile, not the paper profile: the notebook names what differs]"


def check_profile(profile: str) -> None:
    """Raise ValueError unless `profile` is one of smoke, quick, paper."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")


def _atomic_write(target: Path, write) -> Path:
    """Call write(tmp_path) then rename the temporary file onto `target` (same folder, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; figures are for everyone to read
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def save_figure(fig, fig_id: str, out_dir: str | os.PathLike = "figures", dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as `<out_dir>/<fig_id>.png` and `.pdf`; returns the two paths."""
    folder = output_dir(out_dir)
    paths = []
    for ext in ("png", "pdf"):
        # PDFs carry a creation date by default; drop it so the same numbers give the same file.
        meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
        paths.append(
            _atomic_write(
                folder / f"{fig_id}.{ext}",
                lambda tmp, ext=ext, meta=meta: fig.savefig(
                    tmp, format=ext, dpi=dpi, bbox_inches="tight", metadata=meta
                ),
            )
        )
    return paths


def save_table(df: pd.DataFrame, fig_id: str, out_dir: str | os.PathLike = "figures") -> Path:
    """Save the numbers behind a figure as `<out_dir>/<fig_id>.csv` (no index column)."""
    folder = output_dir(out_dir)
    return _atomic_write(folder / f"{fig_id}.csv", lambda tmp: df.to_csv(tmp, index=False))


def _plain(value: Any) -> Any:
    """Convert numpy / torch scalars and arrays to JSON-friendly Python values (NaN becomes None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    return str(value)


def check(claim: str, held: bool, detail: str = "", **numbers: Any) -> dict:
    """One row of a claim check: the claim, whether it held on this run, a short detail and the key numbers."""
    return {"claim": claim, "held": bool(held), "detail": detail, **numbers}


def verdict_of(checks: Sequence[Mapping]) -> str:
    """'held' when every check held, 'not held' when none did, 'partly held' otherwise."""
    held = [bool(c["held"]) for c in checks]
    if not held:
        raise ValueError("a claim check needs at least one check")
    return "held" if all(held) else ("not held" if not any(held) else "partly held")


def save_verdict(
    fig_id: str,
    claim: str,
    checks: Sequence[Mapping],
    *,
    profile: str,
    parameters: Mapping[str, Any],
    numbers: Mapping[str, Any] | None = None,
    out_dir: str | os.PathLike = "figures",
) -> dict:
    """Write `<out_dir>/<fig_id>.json` with the claim, the profile, the parameters, key numbers and the verdict."""
    check_profile(profile)
    record = {
        "id": fig_id,
        "claim": claim,
        "profile": profile,
        "verdict": verdict_of(checks),
        "checks": list(checks),
        "numbers": dict(numbers or {}),
        "parameters": dict(parameters),
    }
    record = _plain(record)
    folder = output_dir(out_dir)
    text = json.dumps(record, indent=2, sort_keys=False) + "\n"
    _atomic_write(folder / f"{fig_id}.json", lambda tmp: Path(tmp).write_text(text))
    return record


def checks_table(checks: Sequence[Mapping]) -> pd.DataFrame:
    """The checks as a small table for display at the end of a notebook."""
    rows = [{"claim": c["claim"], "held": "yes" if c["held"] else "NO", "detail": c.get("detail", "")} for c in checks]
    return pd.DataFrame(rows)
