"""The reading copy's cell rules: page titles, folded set-up and plotting cells, the labelled figure of each page."""

from __future__ import annotations

import re
from typing import Any

from nbformat.v4 import new_markdown_cell

HIDDEN_SETUP_TAGS = ("parameters", "injected-parameters")
FOLD = "hide-input"  # MyST-NB folds the source behind a "show code" toggle and keeps the outputs
HIDING_TAGS = {FOLD, "remove-input", "remove-cell", "hide-cell"}
LONG_CELL = 12  # code cells longer than this many lines are folded: the reader follows the prose and the outputs
FIGURE_WIDTH = "100%"  # the labelled figure fills the text column (the plots are 1 200–1 600 px wide)
MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)", re.S)


def plain_title(text: str) -> str:
    """`text` with its math ($…$, \\(…\\)) as plain Unicode, for places no one typesets (the browser's tab title)."""
    from pylatexenc.latex2text import LatexNodes2Text

    convert = LatexNodes2Text(math_mode="text").latex_to_text
    return MATH.sub(lambda m: convert(next(g for g in m.groups() if g is not None)).strip(), text)


def title_of(nb: Any, fallback: str) -> str:
    """The notebook's first Markdown heading, else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def add_under_title(nb: Any, block: str) -> None:
    """Put `block` (e.g. the provenance) under the page's title (its first heading), else at the top of the page."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.split("\n")
            at = next((i for i, line in enumerate(lines) if line.startswith("#")), None)
            if at is not None:
                cell.source = "\n".join([*lines[:at + 1], "", block, "", *lines[at + 1:]])
                return
    nb.cells.insert(0, new_markdown_cell(block))


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
        if cell.cell_type == "code" and not set(_tags(cell)) & HIDING_TAGS:
            _tags(cell).append(FOLD)


def _images(cell: Any) -> int:
    """How many images (PNG or SVG) the cell's outputs show."""
    return sum("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}) for o in cell.outputs)


def fold_plotting_cells(nb: Any, long_cell: int = LONG_CELL) -> None:
    """Fold the code of cells that draw a figure and of long cells (more than `long_cell` lines); outputs stay."""
    for cell in nb.cells:
        if cell.cell_type != "code" or set(_tags(cell)) & HIDING_TAGS:
            continue
        if _images(cell) or len(cell.source.splitlines()) > long_cell:
            _tags(cell).append(FOLD)


def label_figure(nb: Any, fig_id: str, caption: str) -> bool:
    """Turn the cell that shows the notebook's figure into a labelled figure `fig-NN`; False when there is none.

    The figure is the one the claim check records: the `fig=NAME` given to `conclude`/`save_figure`, shown by the last
    cell before it that assigns NAME (not, e.g., an explorer's static picture shown in between). Without such a call,
    the last cell that saves a figure, else the last that shows one image.
    """
    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [c for c in code if _images(c) == 1]
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
    options = cell.metadata.setdefault("mystnb", {})
    options["figure"] = {"name": f"fig-{fig_id}", "caption": caption}
    options["image"] = {"width": FIGURE_WIDTH, "classes": "dgn-figure"}
    return True
