"""The front page (00), the README and the one table of figures: the rule quoted, links, no reference outside."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dgnlib.companion import limits, listing, render, table
from dgnlib.names import repo_root
from dgnlib.verdict import RULE, VERDICTS

FRONT = repo_root() / "notebooks" / "00_index.ipynb"


def _markdown(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def _words(text: str) -> str:
    return " ".join(text.split())


def _outside_generated_block(text: str) -> str:
    """The README without the block the runner writes from the manifest (its rows are not hand-written)."""
    start, end = text.find(table.README_START), text.find(table.README_END)
    return text[:start] + text[end:] if 0 <= start < end else text


def test_front_page_quotes_the_verdict_rule_word_for_word_once():
    quotes = re.findall(r"(?:^> .*\n?)+", _markdown(FRONT), re.M)
    quoted = [_words(re.sub(r"^> ?", "", q, flags=re.M)) for q in quotes]
    assert quoted.count(_words(RULE)) == 1, "the front page must quote dgnlib.verdict.RULE verbatim, once"
    text = _markdown(FRONT)
    assert all(f"**{word}**" in text for word in VERDICTS)


def test_front_page_defines_phi_and_the_gate_ranges():
    text = _markdown(FRONT)
    assert "paths × inputs" in text and r"H = \Phi^\top \Phi = \Sigma \odot \Lambda" in text
    assert "(0, 1+\\varepsilon)" in text and "G \\in [0, 1]" in text
    assert "no number is quoted from it" in text


@pytest.mark.parametrize("path", [FRONT, repo_root() / "README.md", repo_root() / "CONTRIBUTING.md"],
                         ids=lambda p: p.name)
def test_no_reference_to_a_file_outside_the_repository(path):
    text = _markdown(path) if path.suffix == ".ipynb" else _outside_generated_block(path.read_text())
    assert "SPEC" not in text and "../shared" not in text and "/work/" not in text


def test_readme_describes_every_reproduce_option():
    from dgnlib.companion.cli import build_parser

    text = (repo_root() / "README.md").read_text()
    reproduce = build_parser()._subparsers._group_actions[0].choices["reproduce"]
    options = {s for a in reproduce._actions for s in a.option_strings if s.startswith("--")}
    options -= {"--help", "--progress", "--no-progress", "--no-publish"}
    assert options and all(f"`{o}" in text for o in options), sorted(o for o in options if f"`{o}" not in text)


def _row(**kw) -> table.Row:
    base = dict(id="01", claim="c", notebook="01_a", notebook_path="notebooks/01_a.ipynb", profile="paper",
                verdict="held", run_seconds={"paper": 61.0}, figure=None, executed=None)
    return table.Row(**{**base, **kw})


def test_readme_links_the_committed_executed_copy_and_the_front_page_its_sibling(tmp_path):
    rows = [_row(executed="executed/01_a.ipynb"), _row(id="02", notebook="02_b", notebook_path="notebooks/02_b.ipynb",
                                                       executed="build/executed/quick/02_b.ipynb", verdict="not held")]
    readme = table.markdown(rows, tmp_path, tmp_path, executed=True)
    assert "| 01 | c | [01_a](executed/01_a.ipynb) | held | paper | paper 1 min 01 s |" in readme
    assert "[02_b](notebooks/02_b.ipynb) | not held |" in readme  # build/ is not on a code host
    front = table.markdown(rows, tmp_path, tmp_path / "notebooks", thumbnails=False)
    assert "[01_a](01_a.ipynb)" in front and "[02_b](02_b.ipynb)" in front
    assert front.splitlines()[0] == "| id | claim | notebook | verdict | profile | run time |"


def test_figure_table_records_the_executed_copy_only_when_it_exists(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_a.ipynb").write_text("{}")
    (tmp_path / "notebooks" / "02_b.ipynb").write_text("{}")
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "01_a.ipynb").write_text("{}")
    manifest = {"figures": {"01": {"executed_notebook": "executed/01_a.ipynb", "verdict": "held"},
                            "02": {"executed_notebook": "executed/02_b.ipynb", "verdict": "invalid"}}}
    rows = {r.id: r for r in table.figure_table(manifest, tmp_path)}
    assert rows["01"].executed == "executed/01_a.ipynb" and rows["02"].executed is None
    assert rows["02"].verdict == "invalid"


def test_listing_keeps_the_executed_column(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_a.ipynb").write_text("{}")
    frame = listing.figure_listing(tmp_path / "figures", tmp_path / "notebooks")
    assert list(frame.columns) == listing.COLUMNS and frame.loc[0, "verdict"] == table.NOT_YET
    assert "[01_a](01_a.ipynb) | not yet generated | — | — |" in listing.markdown_table(frame, tmp_path / "notebooks")


def test_the_front_page_lists_the_figures_of_its_own_run(tmp_path, monkeypatch):
    monkeypatch.delenv(listing.RUN_STORE_ENV, raising=False)
    assert listing.run_figures("", "quick", tmp_path) == tmp_path / "figures"  # by hand: the published run
    (tmp_path / "build" / "figures" / "quick").mkdir(parents=True)
    (tmp_path / "build" / "figures" / "quick" / "MANIFEST.json").write_text("{}")
    assert listing.run_figures("", "quick", tmp_path) == tmp_path / "figures"  # even when quick has run
    assert listing.run_figures("elsewhere/f", "quick", tmp_path) == tmp_path / "elsewhere" / "f"
    for store, expected in [(tmp_path / "runs", tmp_path / "figures"),
                            (tmp_path / "build" / "runs" / "smoke", tmp_path / "build" / "figures" / "smoke"),
                            (tmp_path / "build" / "nbval" / "runs", tmp_path / "build" / "nbval" / "figures")]:
        monkeypatch.setenv(listing.RUN_STORE_ENV, str(store))
        assert listing.run_figures("", "smoke", tmp_path) == expected


def test_book_index_links_the_rule_or_quotes_it_and_counts_checks():
    assert "00_index.ipynb#how-a-verdict-is-decided" in render.verdict_note(["00_index", "01_a"])
    alone = render.verdict_note(["01_a"])
    assert _words(RULE) in _words(alone.replace("> ", "").replace("\n>", "\n"))
    record = {"checks": [{"name": "a", "passed": True}, {"name": "b", "passed": False}]}
    assert render.checks_summary(record) == "1 of 2 failed"
    assert render.checks_summary({"checks": [{"passed": True}]}) == "1 passed"
    assert render.checks_summary({}) is None
    assert "## How a verdict is decided" in _markdown(FRONT)  # the anchor the note links to


def test_markdown_outputs_link_to_html_pages_and_old_claim_lists_are_not_counted_as_checks():
    out = render.relink_markdown("[01_a](01_a.ipynb) [02_b](02_b.ipynb)", {"01_a"}, ".html")
    assert out == "[01_a](01_a.html) 02_b"
    assert render.checks_summary({"checks": [{"claim": "x", "held": False}]}) is None


def _record(tmp_path: Path, fig_id: str, **kw) -> None:
    (tmp_path / f"{fig_id}.json").write_text(json.dumps({"id": fig_id, "profile": "paper", "verdict": "held", **kw}))


def test_limits_are_read_from_the_records(tmp_path):

    _record(tmp_path, "10", profile="quick", verdict="inconclusive",
            numbers={"fallback": True, "dataset_used": "mnist", "image_size": 7, "n_train": 1500})
    _record(tmp_path, "09", verdict="inconclusive", parts=[
        {"name": "a", "verdict": "held", "estimate": 1.0, "interval": [0.5, 1.5], "n": 5},
        {"name": "interior beta", "verdict": "inconclusive", "estimate": 0.00118, "interval": [-0.0003, 0.0027],
         "level": 0.95, "n": 5}],
            parameters={"n_train": 0, "val_fraction": 0.1})
    text = listing.limits_markdown(tmp_path)
    assert "MNIST 7×7 fallback on 1\u202f500 training images, under the `quick` profile" in text
    assert '"interior beta": inconclusive; estimate +0.00118, 95 % interval [-0.0003, +0.0027] over 5 seeds' in text
    assert '"a"' not in text  # a held part is no limit
    assert "Figure 09 trains on 54\u202f000 MNIST images and holds 6\u202f000 out" in text
    rows = table.figure_table({}, tmp_path, tmp_path)
    assert {r.id: r.note for r in rows} == {"09": "", "10": "MNIST 7×7 fallback"}
    assert "| quick; MNIST 7×7 fallback |" in table.markdown(rows, tmp_path, tmp_path)
    _record(tmp_path, "10", profile="quick", numbers={"fallback": False})
    assert "fallback" not in listing.limits_markdown(tmp_path)


def test_protocol_deviations_follow_the_records_parameters(tmp_path):
    """A figure on the reference protocol lists no deviation; each parameter off it names its own line."""
    on = {"06": {"n_train": 0, "val_fraction": 0.0, "optimizers": ["adam", "sgd"], "opt_eps": 1e-7,
                 "dnpfl_feature": "relu", "flnpf_gates": "best", "variants": ["relu", "dnpfl"]},
          "07": {"optimizer": "rmsprop", "rmsprop_rho": 0.9, "opt_eps": 1e-7},
          "09": {"n_train": 0, "val_fraction": 0.0, "optimizer": "adam", "opt_eps": 1e-7, "dnpfl_feature": "relu"}}
    for fig_id, params in on.items():
        _record(tmp_path, fig_id, parameters=params)
    deviations = [lim for lim in limits.limitations(tmp_path) if lim.kind == "deviation"]
    assert [lim.fig_id for lim in deviations] == ["07"]  # only the fixed one: ε inside or outside the square root
    off = {"06": {**on["06"], "optimizers": ["adam"], "dnpfl_feature": "gated", "flnpf_gates": "epoch",
                  "val_fraction": 0.1},
           "07": {"optimizer": "rmsprop"},  # an old record: PyTorch's defaults
           "09": {**on["09"], "opt_eps": 1e-8}}
    for fig_id, params in off.items():
        _record(tmp_path, fig_id, parameters=params)
    text = limits.markdown(limits.limitations(tmp_path))
    assert "Figure 06 trains on 54\u202f000 MNIST images and holds 6\u202f000 out" in text
    assert "Figure 06 runs the Adam column" in text
    assert "In figure 06, `dnpfl`'s feature network passes q·gate" in text
    assert "In figure 06, `flnpf` copies the gates of the relu run after its last epoch" in text
    assert "Figures 07 and 09 train RMSprop" not in text  # grouped by optimiser and ε
    assert "Figure 07 trains RMSprop with ε = 1e-8 (PyTorch's default)" in text
    assert "Figure 09 trains Adam with ε = 1e-8 (PyTorch's default)" in text
    assert "Figure 07 trains RMSprop with the smoothing constant ρ = 0.99 (PyTorch's default α)" in text


def test_readme_links_its_limits_section_from_its_top_third_and_holds_the_published_list():
    text = (repo_root() / "README.md").read_text()
    lines = text.splitlines()
    link = next(i for i, ln in enumerate(lines) if "(#what-this-companion-could-not-do)" in ln)
    assert link < len(lines) / 3
    start, end = text.find(table.LIMITS_START), text.find(table.LIMITS_END)
    from dgnlib.companion import limits

    assert 0 < start < end and limits.markdown(limits.limitations(repo_root() / "figures")) in text[start:end]


def test_follow_up_block_is_read_from_figure_06s_record(tmp_path):
    """The table beside the follow-up's: its differences and its summary follow the record (known answers)."""
    assert "no table on the reference's metric" in table.follow_up_markdown(tmp_path)  # no record at all
    numbers = {"train_images": 60000,
               "reference_table": {"adam": {"relu": 0.9850, "flnpf": 0.9782}},
               "reference_table_std": {"adam": {"relu": 0.001, "flnpf": 0.002}}}
    _record(tmp_path, "06", numbers=numbers)
    text = table.follow_up_markdown(tmp_path)
    assert "| `relu` | 98.50 ± 0.10 | 98.14 ± 0.07 | +0.36 |" in text
    assert "| `flnpf` | 97.82 ± 0.20 | 97.82 ± 0.02 | 0.00 |" in text
    assert "1 of 2 cells lie within 0.3 points" in text and "largest difference is +0.36 points (Adam, `relu`)" in text
    assert "60\u202f000 training images" in text


def test_readme_holds_the_published_follow_up_table():
    text = (repo_root() / "README.md").read_text()
    start, end = text.find(table.FOLLOW_UP_START), text.find(table.FOLLOW_UP_END)
    assert 0 < start < end and table.follow_up_markdown(repo_root() / "figures") in text[start:end]
