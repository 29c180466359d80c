"""The one table of figures, built from a manifest: rendered to the README, the front page and the HTML book."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgnlib.atomic import write_atomic
from dgnlib.companion import limits
from dgnlib.companion.fsio import read_json
from dgnlib.experiments import reference_table

README_START = "<!-- figures:start -->"
README_END = "<!-- figures:end -->"
LIMITS_START = "<!-- limits:start -->"
LIMITS_END = "<!-- limits:end -->"
FOLLOW_UP_START = "<!-- follow-up:start -->"
FOLLOW_UP_END = "<!-- follow-up:end -->"
FOLLOW_UP_CRITERION = 0.3  # points: a cell "reproduces" the follow-up's when it is this close (stated, not tuned)
NOT_YET = "not yet generated"


@dataclass(frozen=True)
class Row:
    """One figure: id, claim (from its JSON), notebook, verdict and profile of the recorded run, run times, image."""

    id: str
    claim: str
    notebook: str  # stem, e.g. 03_depth_spectrum
    notebook_path: str  # relative to the repository root
    profile: str
    verdict: str
    run_seconds: dict[str, float]  # profile -> seconds of its last run
    figure: str | None  # the PNG, relative to the repository root, when there is one
    executed: str | None = None  # the executed copy of the recorded run, relative to the root, when it exists
    note: str = ""  # what ran where it is not what the claim names, e.g. "MNIST 7×7 fallback" (from the record)


def format_seconds(seconds: float | None) -> str:
    """12 s, 3 min 20 s, 1 h 02 min; — when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds) // 60
    if minutes < 60:
        return f"{minutes} min {round(seconds) % 60:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def figure_table(manifest: Any, root: Path, figures: Path | None = None) -> list[Row]:
    """One row per notebook and per recorded figure (00 excluded), from a manifest's content (read tolerantly).

    `manifest` is the parsed MANIFEST.json (a dict) or None; claims and verdicts not in it come from each
    figure's `<id>.json` in `figures` (default <root>/figures); notebooks without a figure say so.
    """
    figures = Path(figures) if figures is not None else Path(root) / "figures"
    entries = manifest.get("figures") if isinstance(manifest, dict) else None
    entries = {k: v for k, v in (entries or {}).items() if isinstance(v, dict)}
    notebooks = {p.name[:2]: p for p in (Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    recorded = {p.stem for p in figures.glob("[0-9][0-9].json")}
    rows = []
    for fig_id in sorted((set(entries) | set(notebooks) | recorded) - {"00"}):
        entry = entries.get(fig_id, {})
        record = read_json(figures / f"{fig_id}.json")
        record = record if isinstance(record, dict) else {}
        path = notebooks.get(fig_id)
        seconds = entry.get("run_seconds_by_profile", {})
        png = figures / f"{fig_id}.png"
        executed = Path(root) / str(entry.get("executed_notebook") or "-")
        rows.append(Row(
            id=fig_id,
            claim=str(entry.get("claim") or record.get("claim") or "—"),
            notebook=path.stem if path else Path(str(entry.get("notebook", f"{fig_id}_?"))).stem,
            notebook_path=_rel(path, root) if path else str(entry.get("notebook", "")),
            profile=str(entry.get("profile") or record.get("profile") or "—"),
            verdict=str(entry.get("verdict") or record.get("verdict") or NOT_YET),
            run_seconds={k: v for k, v in seconds.items() if isinstance(v, (int, float))} if isinstance(seconds, dict)
            else {},
            figure=_rel(png, root) if png.is_file() else None,
            executed=_rel(executed, root) if entry.get("executed_notebook") and executed.is_file() else None,
            note=limits.fallback_note(record) or "",
        ))
    return rows


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def _cell(text: Any) -> str:
    """Text safe for one Markdown table cell."""
    text = " ".join(str(text).split()) if text not in (None, "") else "—"
    return html.escape(text, quote=False).replace("|", "\\|")


def shown_notebook(row: Row, executed: bool) -> str:
    """The notebook a row links to: its executed copy (outputs visible on a code host) when asked and committed
    (not under build/, which git ignores), else the notebook itself."""
    if executed and row.executed and not row.executed.startswith("build/"):
        return row.executed
    return row.notebook_path


def markdown(rows: list[Row], root: Path, base: Path, *, thumbnails: bool = True, executed: bool = False) -> str:
    """The table in Markdown, links relative to the folder `base` (README: the root; front page: notebooks/).

    With `executed`, a figure's notebook link goes to its committed executed copy when there is one.
    """
    def link(rel: str) -> str:
        return Path(os.path.relpath(Path(root) / rel, base)).as_posix()

    head = ["id", "claim", "notebook", "verdict", "profile", "run time"] + (["figure"] if thumbnails else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        target = shown_notebook(row, executed)
        notebook = f"[{row.notebook}]({link(target)})" if target else _cell(row.notebook)
        times = "; ".join(f"{p} {format_seconds(s)}" for p, s in sorted(row.run_seconds.items())) or "—"
        profile = f"{row.profile}; {row.note}" if row.note else row.profile
        cells = [row.id, _cell(row.claim), notebook, _cell(row.verdict), _cell(profile), times]
        if thumbnails:
            cells.append(f'<img src="{link(row.figure)}" width="160">' if row.figure else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _replace_block(text: str, start_marker: str, end_marker: str, body: str) -> str:
    """`text` with the block between the two markers replaced by `body` (unchanged when a marker is missing)."""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        return text
    return f"{text[:start]}{start_marker}\n{body}\n{text[end:]}"


def _points(diff: float) -> str:
    """A difference in points, signed, two decimals; — for NaN (no such cell); 0.00 never shows a sign."""
    if diff != diff:
        return "—"
    return "0.00" if round(diff, 2) == 0 else f"{diff:+.2f}"


def _images(n: Any) -> str:
    """60000 as '60 000' (narrow no-break space); '?' when unknown."""
    return f"{n:,}".replace(",", "\u202f") if isinstance(n, int) else "?"


def follow_up_markdown(figures: Path) -> str:
    """Figure 06's FC-MNIST table on the reference's metric beside the follow-up paper's published one (Markdown),
    read from `figures`/06.json; a sentence instead when the record has no such table."""
    path = Path(figures) / "06.json"
    record = read_json(path) if path.is_file() else None
    numbers = record.get("numbers") if isinstance(record, dict) else None
    try:
        frame = reference_table.beside_follow_up(numbers)  # type: ignore[arg-type]
    except (KeyError, TypeError, AttributeError):
        return "Figure 06's published record holds no table on the reference's metric yet."
    opts = list(dict.fromkeys(frame.index.get_level_values("optimiser")))
    names = {"adam": "Adam", "sgd": "SGD"}
    head = ["variant"] + [f"{names.get(o, o)}: {c}" for o in opts for c in ("here", "follow-up", "difference")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(mean: float, std: float) -> str:
        return "—" if mean != mean else f"{mean:.2f} ± {std:.2f}"  # NaN: no such cell

    for variant in dict.fromkeys(frame.index.get_level_values("variant")):
        cells = [f"`{variant}`"]
        for o in opts:
            r = frame.loc[(o, variant)] if (o, variant) in frame.index else None
            if r is None:
                cells += ["—"] * 3
                continue
            diff = r["difference (points)"]
            cells += [cell(r["this companion (%)"], r["± (this)"]), cell(r["follow-up paper (%)"], r["± (follow-up)"]),
                      _points(diff)]
        lines.append("| " + " | ".join(cells) + " |")
    diffs = frame["difference (points)"].dropna()
    if diffs.empty:
        return "\n".join(lines)
    worst = diffs.abs().idxmax()
    within = int((diffs.abs() <= FOLLOW_UP_CRITERION).sum())
    summary = (f"Test accuracy in %, mean ± standard deviation over seeds of each run's best test accuracy over its "
               f"epochs (the follow-up's metric, which chooses the epoch on the test set: optimistic), "
               f"{_images(numbers.get('train_images'))} training images; the follow-up has no `linear` cell. "
               f"{within} of {len(diffs)} cells lie within {FOLLOW_UP_CRITERION} points of the follow-up's; the "
               f"largest difference is {_points(diffs[worst])} points ({names.get(worst[0], worst[0])}, `{worst[1]}`). "
               f"The follow-up's numbers: {reference_table.FOLLOW_UP_FC_MNIST['source']}.")
    return "\n".join(lines) + "\n\n" + summary


def update_readme(readme: Path, rows: list[Row], root: Path) -> bool:
    """Replace the README's generated blocks (the table, the limits of the published run); True when it changed."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    note = ("<!-- generated by `dgn reproduce` from figures/MANIFEST.json: do not edit by hand; notebook links go "
            "to the executed copies in executed/ when they exist -->")
    new = _replace_block(text, README_START, README_END,
                         f"{note}\n\n{markdown(rows, root, readme.parent, executed=True)}")
    limits_note = "<!-- generated by `dgn reproduce` from the records in figures/: do not edit by hand -->"
    new = _replace_block(new, LIMITS_START, LIMITS_END,
                         f"{limits_note}\n\n{limits.markdown(limits.limitations(Path(root) / 'figures'))}\n")
    follow_note = "<!-- generated by `dgn reproduce` from figures/06.json: do not edit by hand -->"
    new = _replace_block(new, FOLLOW_UP_START, FOLLOW_UP_END,
                         f"{follow_note}\n\n{follow_up_markdown(Path(root) / 'figures')}\n")
    if new == text:
        return False
    write_atomic(readme, new)
    return True
