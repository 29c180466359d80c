"""The table of figures on the front page (notebook 00): `dgnlib.companion.table` rows as a DataFrame and Markdown.

Claims, verdicts and run times come from the manifest and each figure's `<id>.json`, never from a list kept here;
a notebook without a figure yet is listed as "not yet generated".
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from dgnlib.companion import table
from dgnlib.companion.fsio import read_json

COLUMNS = [f.name for f in fields(table.Row)]


def figure_listing(figures: Path, notebooks: Path) -> pd.DataFrame:
    """One row per figure id (00 excluded), built from `figures`/MANIFEST.json and the figures' JSON records."""
    root = Path(notebooks).resolve().parent
    rows = table.figure_table(read_json(Path(figures) / "MANIFEST.json"), root, Path(figures))
    return pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)


def markdown_table(listing: pd.DataFrame, notebooks: Path) -> str:
    """The listing as Markdown, notebook links relative to the notebooks folder (where the front page lives)."""
    rows = [table.Row(**record) for record in listing.to_dict("records")]
    return table.markdown(rows, Path(notebooks).resolve().parent, Path(notebooks).resolve(), thumbnails=False)
