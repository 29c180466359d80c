"""The front page's table of figures: complete on a fresh clone, filled from the manifest, robust to bad files."""

import json

from dgnlib.listing import PLANNED, figure_listing, markdown_table


def test_empty_figures_folder_lists_every_planned_figure_as_not_generated(tmp_path):
    listing = figure_listing(tmp_path / "figures", tmp_path / "notebooks")
    assert listing["id"].tolist() == sorted(PLANNED)
    assert set(listing["verdict"]) == {"not yet generated"}
    assert "not written yet" in markdown_table(listing, tmp_path / "notebooks")


def test_manifest_and_records_fill_the_rows_and_corrupt_files_are_ignored(tmp_path):
    figures, notebooks = tmp_path / "figures", tmp_path / "notebooks"
    figures.mkdir()
    notebooks.mkdir()
    (notebooks / "03_depth_spectrum.ipynb").write_text("{}")
    manifest = {
        "figures": {
            "03": {"claim": "depth | helps", "verdict": "held", "profile": "quick", "run_seconds": 9.6},
            "04": "garbage",
        }
    }
    (figures / "MANIFEST.json").write_text(json.dumps(manifest))
    (figures / "05.json").write_text(json.dumps({"verdict": "partly held", "profile": "smoke"}))
    (figures / "06.json").write_text("{not json")
    rows = figure_listing(figures, notebooks).set_index("id")
    assert rows.loc["03", ["verdict", "profile", "run time"]].tolist() == ["held", "quick", "9.6 s"]
    assert rows.loc["04", "verdict"] == "not yet generated"
    assert rows.loc["05", ["verdict", "profile"]].tolist() == ["partly held", "smoke"]
    assert rows.loc["06", "verdict"] == "not yet generated"
    table = markdown_table(rows.reset_index(), notebooks)
    assert "[03_depth_spectrum](03_depth_spectrum.ipynb)" in table and "depth \\| helps" in table
