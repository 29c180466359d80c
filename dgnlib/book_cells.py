"""The reading copy's cell rules: page titles, folded set-up cells, the labelled figure of each page."""

from __future__ import annotations

import re
from typing import Any

HIDDEN_SETUP_TAGS = ("parameters", "injected-parameters")
FOLD = "hide-input"  # MyST-NB folds the source behind a "show code" toggle and keeps the outputs


def title_of(nb: Any, fallback: str) -> str:
    """The notebook's first Markdown heading, else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def _tags(cell: Any) -> list[str]:
    return cell.metadata.setdefault("tags", [])


def fold_setup_cells(nb: Any) -> None:
    """Fold the parameters, papermill's injected parameters and the set-up code up to the next Markdown cell."""
    marked = [i for i, c in enumerate(nb.cells) if set(_tags(c)) & set(HIDDEN_SETUP_TAGS)]
    if not marked:
        return
    for i in range(marked[0], len(nb.cells)):
        cell = nb.cells[i]
        if cell.cell_type == "markdown" and i > marked[-1]:
            break
        if cell.cell_type == "code" and not set(_tags(cell)) & {FOLD, "remove-input", "remove-cell", "hide-cell"}:
            _tags(cell).append(FOLD)


def label_figure(nb: Any, fig_id: str, caption: str) -> bool:
    """Turn the cell that shows the notebook's figure into a labelled figure `fig-NN`; False when there is none.

    The figure is the one the claim check records: the `fig=NAME` given to `conclude`/`save_figure`, shown by the last
    cell before it that assigns NAME (not, e.g., an explorer's static picture shown in between). Without such a call,
    the last cell that saves a figure, else the last that shows one image.
    """
    def images(cell: Any) -> int:
        return sum("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in cell.outputs)

    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [c for c in code if images(c) == 1]
    cell = None
    for k, c in enumerate(code):
        m = re.search(r"(?:conclude|save_figure)\((?:.|\n)*?\bfig=([A-Za-z_]\w*)", c.source)
        if m:
            assigns = re.compile(rf"(?m)^\s*\(?\s*{m.group(1)}\b[^=\n]*=(?!=)")
            found = [d for d in code[:k + 1] if d in shown and assigns.search(d.source)]
            cell = found[-1] if found else cell
    if cell is None:
        saving = [c for c in shown if re.search(r"save_figure\(|conclude\(|savefig\(", c.source)]
        cell = (saving or shown or [None])[-1]
    if cell is None:
        return False
    cell.metadata.setdefault("mystnb", {})["figure"] = {"name": f"fig-{fig_id}", "caption": caption}
    return True
