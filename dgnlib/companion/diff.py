"""The first difference between a published output file and its re-derived copy, said in the file's own terms."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

_MISSING = object()


def _show(value: Any) -> str:
    """A value as JSON text, cut to a readable length."""
    text = "(absent)" if value is _MISSING else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _relative(a: Any, b: Any) -> str:
    """' (relative difference r)' for two differing finite numbers, so that a reader sees last-bit noise as such."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not numbers or not max(abs(a), abs(b)) < float("inf"):
        return ""
    return f" (relative difference {abs(a - b) / max(abs(a), abs(b)):.1e})"


def first_json_difference(a: Any, b: Any, path: str = "$") -> tuple[str, Any, Any] | None:
    """(JSON path, value in a, value in b) of the first difference in document order, or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_json_difference(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            found = first_json_difference(a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING,
                                          f"{path}[{i}]")
            if found:
                return found
        return None
    if type(a) is not type(b) or a != b:
        return path, a, b
    return None


def first_csv_difference(a: str, b: str) -> str | None:
    """'row N, column C: published X, now Y' for the first differing cell (rows count from 1 after the header)."""
    ra, rb = list(csv.reader(io.StringIO(a))), list(csv.reader(io.StringIO(b)))
    if not ra or not rb or ra[0] != rb[0]:
        return f"header: published {_show(ra[0] if ra else [])}, now {_show(rb[0] if rb else [])}"
    header = ra[0]
    for n in range(1, max(len(ra), len(rb))):
        row_a = ra[n] if n < len(ra) else None
        row_b = rb[n] if n < len(rb) else None
        if row_a is None or row_b is None:
            return f"row {n}: published {'(absent)' if row_a is None else 'present'}, now " \
                   f"{'(absent)' if row_b is None else 'present'} ({len(ra) - 1} vs {len(rb) - 1} rows)"
        for c in range(max(len(row_a), len(row_b))):
            va = row_a[c] if c < len(row_a) else "(absent)"
            vb = row_b[c] if c < len(row_b) else "(absent)"
            if va != vb:
                column = header[c] if c < len(header) else f"#{c + 1}"
                try:
                    rel = _relative(float(va), float(vb))
                except ValueError:
                    rel = ""
                return f"row {n}, column {column}: published {va}, now {vb}{rel}"
    return None


def describe_difference(name: str, published: bytes, derived: bytes) -> str | None:
    """None when the bytes are equal; else the first difference (JSON path / CSV cell) or where the bytes part."""
    if published == derived:
        return None
    suffix = Path(name).suffix
    try:
        if suffix == ".json":
            found = first_json_difference(json.loads(published), json.loads(derived))
            if found:
                where, a, b = found
                return f"{name} {where}: published {_show(a)}, now {_show(b)}{_relative(a, b)}"
            return f"{name}: same JSON values, different bytes (formatting)"
        if suffix == ".csv":
            found = first_csv_difference(published.decode(), derived.decode())
            return f"{name} {found}" if found else f"{name}: same cells, different bytes (quoting or line ends)"
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{name}: cannot be parsed ({exc})"
    offset = next((i for i, (x, y) in enumerate(zip(published, derived)) if x != y), min(len(published), len(derived)))
    return f"{name}: bytes differ from offset {offset} ({len(published)} vs {len(derived)} bytes)"
