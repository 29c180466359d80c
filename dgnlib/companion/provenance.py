"""Each book page's provenance: where its figure came from, read from the figure's entry in MANIFEST.json.

Profile, commit, run time, parameters (folded), the run-store keys the figure read (folded) and the verification
status written by `dgn verify --record` (`verified`, `runs_read`). Rendered as one HTML block that `dgn render` puts
under the page's title; HTML, not Markdown, so that `<details>` folds it and nothing in it is read as math.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

KEY_CHARS = 12  # a run-store key shortened for the page (the full key is in the tooltip)


def manifest_entries(figures_dir: Path | None) -> dict[str, dict]:
    """The `figures` entries of `figures_dir`/MANIFEST.json by figure id; empty when it is absent or unreadable."""
    path = figures_dir / "MANIFEST.json" if figures_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        figures = json.loads(path.read_text()).get("figures")
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in figures.items() if isinstance(v, dict)} if isinstance(figures, dict) else {}


def _duration(seconds: Any) -> str | None:
    """'12.1 s', '3 min 20 s' or '2 h 05 min' (None when not a number)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _when(stamp: Any, time_of_day: bool = True) -> str:
    """An ISO timestamp as '2026-11-30 03:47 UTC' (or its date alone); anything else as it is."""
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if not time_of_day:
        return moment.strftime("%Y-%m-%d")
    utc = " UTC" if moment.utcoffset() == timedelta(0) else ""
    return moment.strftime("%Y-%m-%d %H:%M") + utc


def _value(value: Any) -> str:
    """A parameter value as its JSON (strings quoted, so that '' shows)."""
    return json.dumps(value, ensure_ascii=False)


def verification(entry: dict) -> str:
    """'verified on <date> at <commit> (<files>)', 'verification failed on …' or 'not yet verified'."""
    verified = entry.get("verified")
    if not isinstance(verified, dict):
        return "not yet verified"
    files = ", ".join(str(f) for f in verified.get("compared") or []) or "no files"
    date, commit = _when(verified.get("date", "?"), time_of_day=False), str(verified.get("commit", "?"))[:KEY_CHARS]
    when = f"on {date} at {commit} ({files})"
    return f"verified {when}" if verified.get("ok") is True else f"verification failed {when}"


def _files(key: str, files: Any) -> str:
    """The files read of one run, their names shortened like the key they repeat."""
    names = sorted(map(str, files)) if isinstance(files, dict) else []
    return ", ".join(name.replace(key, key[:KEY_CHARS] + "…") for name in names)


def _folded(summary: str, rows: list[str], css: str) -> str:
    return f'<details class="{css}"><summary>{escape(summary)}</summary><ul>{"".join(rows)}</ul></details>'


def provenance_html(entry: dict | None, fallback_parameters: dict | None = None) -> str:
    """The provenance block of one page from its figure's MANIFEST entry (None: no record of this run)."""
    lines, folds = [], []
    if entry:
        commit = str(entry.get("git_commit") or "unknown")[:KEY_CHARS]
        dirty = " (with uncommitted changes)" if entry.get("git_dirty") else ""
        lines.append(f"profile <code>{escape(str(entry.get('profile', '?')))}</code>, commit "
                     f"<code>{escape(commit)}</code>{dirty}")
        ran = _duration(entry.get("run_seconds"))
        if ran:
            started = f", started {escape(_when(entry['started']))}" if entry.get("started") else ""
            lines.append(f"notebook run time {ran}{started}")
        lines.append(escape(verification(entry)))
        parameters = entry.get("parameters") if isinstance(entry.get("parameters"), dict) else {}
        runs = entry.get("runs_read")
        if isinstance(runs, dict) and runs:
            rows = [f'<li><code title="{escape(str(key))}">{escape(str(key)[:KEY_CHARS])}</code> '
                    f'({escape(_files(str(key), files))})</li>' for key, files in sorted(runs.items())]
            folds.append(_folded(f"run-store keys read ({len(runs)})", rows, "dgn-runs"))
        else:
            lines.append("run-store keys read: none" if isinstance(runs, dict) else
                         "run-store keys read: not recorded (recorded when the figure is verified)")
    else:
        lines.append("no run record for this page in MANIFEST.json (it was not made by <code>dgn reproduce</code>)")
        parameters = fallback_parameters or {}
    if parameters:
        rows = [f"<li><code>{escape(str(k))} = {escape(_value(v))}</code></li>" for k, v in parameters.items()]
        folds.insert(0, _folded(f"parameters ({len(parameters)})", rows, "dgn-parameters"))
    body = "<br>".join(lines)
    return f'<div class="dgn-provenance"><p><strong>Provenance.</strong> {body}</p>{"".join(folds)}</div>'
