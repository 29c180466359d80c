"""The table of figures for the front page (notebook 00): claim, notebook, profile, verdict and run time per id.

Read defensively from `figures/`: the runner's MANIFEST.json first, then each figure's `<id>.json`, then the plan of
SPEC.md section 4, so that a fresh clone (no figures yet) still gets a complete table.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .runner import format_seconds

PLANNED = {  # id -> (notebook stem, claim) as planned in SPEC.md section 4, used until a figure exists
    "01": ("01_dgn_paths", "a DGN is gating × value; a ReLU net is a DGN; output = ⟨φ, v⟩; NPK = Σ ⊙ Λ"),
    "02": ("02_expected_ntk", "E[K₀] = d σ^(2(d−1)) Σ ⊙ Λ for fixed gates"),
    "03": ("03_depth_spectrum", "depth helps: the ideal Gram matrix becomes diagonal"),
    "04": ("04_depth_variance", "depth beyond a point hurts: fluctuation grows with d, shrinks with w"),
    "05": ("05_depth_training", "depth helps, then hurts, training speed"),
    "06": ("06_gate_adaptation_mnist", "gate adaptation is key for generalisation"),
    "07": ("07_npk_alignment", "gates adapt during training and the kernel aligns with the labels"),
    "08": ("08_continuous_gate_learning", "the better the gates, the better the fixed-gate network generalises"),
    "09": ("09_soft_gating", "how gate softness β trades off learning the gates"),
    "10": ("10_cifar10_conv", "the same ordering holds for convolutional networks"),
}
COLUMNS = ["id", "claim", "notebook", "profile", "verdict", "run time"]


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or {} when the file is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def figure_listing(figures: Path, notebooks: Path) -> pd.DataFrame:
    """One row per figure id (00 excluded) with the COLUMNS above; missing figures say "not yet generated"."""
    manifest = read_json(figures / "MANIFEST.json").get("figures")
    manifest = manifest if isinstance(manifest, dict) else {}
    found = {p.name[:2]: p.stem for p in Path(notebooks).glob("[0-9][0-9]_*.ipynb")}
    recorded = {p.stem for p in Path(figures).glob("[0-9][0-9].json")}
    rows = []
    for fig_id in sorted((set(PLANNED) | set(found) | set(manifest) | recorded) - {"00"}):
        entry = manifest.get(fig_id) if isinstance(manifest.get(fig_id), dict) else {}
        record = read_json(figures / f"{fig_id}.json")
        seconds = entry.get("run_seconds")
        rows.append(
            {
                "id": fig_id,
                "claim": entry.get("claim") or record.get("claim") or PLANNED.get(fig_id, ("", "—"))[1],
                "notebook": found.get(fig_id) or PLANNED.get(fig_id, (f"{fig_id}_?", ""))[0],
                "profile": entry.get("profile") or record.get("profile") or "—",
                "verdict": entry.get("verdict") or record.get("verdict") or "not yet generated",
                "run time": format_seconds(seconds if isinstance(seconds, (int, float)) else None),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown_table(listing: pd.DataFrame, notebooks: Path) -> str:
    """The listing as a Markdown table, each existing notebook linked (`<stem>.ipynb`, beside this page)."""
    found = {p.stem for p in Path(notebooks).glob("[0-9][0-9]_*.ipynb")}
    linked = listing.assign(
        notebook=[f"[{s}]({s}.ipynb)" if s in found else f"{s} (not written yet)" for s in listing["notebook"]]
    )
    lines = ["| " + " | ".join(linked.columns) + " |", "|---" * len(linked.columns) + "|"]
    for row in linked.itertuples(index=False):
        cells = [html.escape(" ".join(str(v).split()), quote=False).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
