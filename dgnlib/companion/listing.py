"""The table of figures on the front page (notebook 00): `dgnlib.companion.table` rows as a DataFrame and Markdown.

Claims, verdicts and run times come from the manifest and each figure's `<id>.json`, never from a list kept here;
a notebook without a figure yet is listed as "not yet generated".
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from dgnlib.companion import limits, table
from dgnlib.companion.fsio import read_json
from dgnlib.companion.layout import Layout

COLUMNS = [f.name for f in fields(table.Row)]
RUN_STORE_ENV = "DGN_RUN_STORE"  # set by the runner (and `make nbval`): the run store of the run in progress


def run_figures(figures_dir: str, profile: str, root: Path | None = None) -> Path:
    """The folder whose figures the front page lists: `figures_dir` when given (relative to the root), else the
    figures of the run this page belongs to.

    Under the runner the run store (DGN_RUN_STORE) names the run: runs/ → figures/, build/runs/<profile>/ →
    build/figures/<profile>/, any other <folder>/runs → <folder>/figures. Run by hand (Jupyter): the published
    figures/, the results a reader opens the front page for (`figures_dir` names another run's folder).
    """
    layout = Layout.at(root)
    if figures_dir:
        path = Path(figures_dir)
        return path if path.is_absolute() else layout.root / path
    store = os.environ.get(RUN_STORE_ENV, "").strip()
    if store:
        store_path = Path(store).resolve()
        for dest in (layout.destination(profile, publish=True), layout.destination(profile, publish=False)):
            if dest.runs.resolve() == store_path:
                return dest.figures
        if store_path.name == "runs":
            return store_path.parent / "figures"
    return layout.figures


def profiles_read(listing: pd.DataFrame) -> str:
    """Which profile each listed figure comes from, e.g. 'paper (01–09), quick (10)'."""
    groups: dict[str, list[str]] = {}
    for fig_id, profile in zip(listing["id"], listing["profile"]):
        groups.setdefault(str(profile), []).append(str(fig_id))

    def ids(items: list[str]) -> str:
        return f"{items[0]}–{items[-1]}" if len(items) > 2 else ", ".join(items)
    return ", ".join(f"{p} ({ids(v)})" for p, v in groups.items())


def limits_markdown(figures: Path) -> str:
    """The 'What this companion could not do' lists of the run whose records are in `figures`."""
    return limits.markdown(limits.limitations(Path(figures)))


def figure_listing(figures: Path, notebooks: Path) -> pd.DataFrame:
    """One row per figure id (00 excluded), built from `figures`/MANIFEST.json and the figures' JSON records."""
    root = Path(notebooks).resolve().parent
    rows = table.figure_table(read_json(Path(figures) / "MANIFEST.json"), root, Path(figures))
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def markdown_table(listing: pd.DataFrame, notebooks: Path) -> str:
    """The listing as Markdown, notebook links relative to the notebooks folder (where the front page lives).

    The links name the sibling notebook (`NN_name.ipynb`), so that they also work in a folder of executed copies.
    """
    rows = [table.Row(**record) for record in listing.to_dict("records")]
    return table.markdown(rows, Path(notebooks).resolve().parent, Path(notebooks).resolve(), thumbnails=False)
