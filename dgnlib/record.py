"""The record of a figure: `conclude` writes its png/pdf/csv/json atomically and fails on a broken identity.

Imported into `dgnlib.verdict` (notebooks call `verdict.conclude`); kept apart so that each module stays small.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dgnlib.atomic import write_via
from dgnlib.names import repo_root
from dgnlib.verdict import Check, IdentityError, Part, _plain, combine


def _folder(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir)
    path = path if path.is_absolute() else repo_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def conclude(
    fig_id: str,
    claim: str,
    parts: Sequence[Part],
    checks: Sequence[Check] = (),
    *,
    params: Mapping[str, Any] | Any,
    numbers: Mapping[str, Any] | None = None,
    fig: Any = None,
    table: pd.DataFrame | None = None,
    out_dir: str | os.PathLike,
    profile: str | None = None,
    dpi: int = 150,
) -> dict:
    """Write `<id>.png`, `.pdf` (fig), `.csv` (table) and `.json` into out_dir, each atomically, the JSON last.

    JSON: id, claim, profile, verdict (`combine(parts)`; with no parts, the claim is its identities: held when every
    check passed), parts, checks (identity and sanity, apart from the claim), numbers, parameters. `params` is a
    mapping or an object with `as_dict()`; profile defaults to params["profile"]. Returns the record, then raises
    `IdentityError` if any check failed, after writing it, so that the failure is on record and the notebook fails.
    """
    parameters = dict(params.as_dict() if hasattr(params, "as_dict") else params)
    profile = parameters.get("profile") if profile is None else profile
    if not isinstance(profile, str) or not profile:
        raise ValueError(f"conclude needs the profile name (a non-empty string), got {profile!r}")
    parts, checks = list(parts), list(checks)
    if not all(isinstance(p, Part) for p in parts) or not all(isinstance(c, Check) for c in checks):
        raise TypeError("parts must be verdict.Part objects and checks verdict.Check objects")
    failed = [c for c in checks if not c.passed]
    if parts:
        verdict = combine(parts)
    elif checks:
        verdict = "not held" if failed else "held"
    else:
        raise ValueError("conclude needs at least one claim part or one check")
    folder = _folder(out_dir)
    if fig is not None:
        for ext in ("png", "pdf"):
            # PDFs carry a creation date and PNGs the software version by default: drop both so that the same
            # numbers give the same bytes.
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
            write_via(folder / f"{fig_id}.{ext}", lambda tmp, ext=ext, meta=meta: fig.savefig(
                tmp, format=ext, dpi=dpi, bbox_inches="tight", metadata=meta))
    if table is not None:
        write_via(folder / f"{fig_id}.csv", lambda tmp: table.to_csv(tmp, index=False))
    record = _plain({
        "id": fig_id,
        "claim": claim,
        "profile": profile,
        "verdict": verdict,
        "parts": [p.to_dict() for p in parts],
        "checks": [c.to_dict() for c in checks],
        "numbers": dict(numbers or {}),
        "parameters": parameters,
    })
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_via(folder / f"{fig_id}.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    if failed:
        names = "; ".join(f"{c.kind} check '{c.name}' failed: {c.detail}" for c in failed)
        raise IdentityError(f"figure {fig_id}: {names} (record written to {folder / f'{fig_id}.json'})")
    return record


def parts_table(parts: Sequence[Part], checks: Sequence[Check] = ()) -> pd.DataFrame:
    """Parts and checks as one small table for the end of a notebook: what, verdict, estimate, interval, n, detail."""
    rows = [{"what": f"claim: {p.name}", "verdict": p.verdict, "estimate": p.estimate,
             "interval": None if p.interval is None else f"[{p.interval[0]:.3g}, {p.interval[1]:.3g}]",
             "n": p.n, "detail": p.detail} for p in parts]
    rows += [{"what": f"{c.kind}: {c.name}", "verdict": "passed" if c.passed else "FAILED", "estimate": None,
              "interval": None, "n": None, "detail": c.detail} for c in checks]
    return pd.DataFrame(rows)
