"""The reading copy: preprocessing rules, and one real build from notebooks executed here (01 and 03, smoke sizes)."""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from dgnlib import names
from dgnlib.companion import book_cells, provenance, render
from dgnlib.companion.book_cells import LONG_CELL, plain_title
from dgnlib.names import repo_root

BUILT = ("00_index", "01_dgn_paths", "03_depth_spectrum")  # 02 is left out on purpose: a partial set
KEY = "ab12cd34ef56" + "0" * 52  # a run-store key (SHA-256 hex) for the fixture manifest
VERIFIED = {"commit": "0123456789abcdef0123", "date": "2026-12-01", "compared": ["01.csv", "01.json"], "ok": True}


# ---------------------------------------------------------------------------------------------------- unit rules

def test_scrub_makes_repository_paths_relative_and_hides_other_machine_paths(tmp_path):
    prefixes = render.machine_prefixes(repo_root())
    root = repo_root()
    text = f'out_dir = "{root}/build/tmp/smoke/01"; cache {Path.home()}/.cache/x; w = 1/(mu w); /home/ann/data.npz'
    out = render.scrub(text, prefixes)
    assert 'out_dir = "build/tmp/smoke/01"' in out
    assert str(repo_root()) not in out and "/home/ann" not in out and "data.npz" in out
    assert "1/(mu w)" in out  # prose with slashes is not a path
    assert render.scrub(str(repo_root()), prefixes) == "."


def test_links_to_missing_pages_become_text_and_present_ones_point_at_the_page():
    text = "see [figure 02](../notebooks/02_expected_ntk.ipynb) and [03](executed/03_depth_spectrum.ipynb#claim-check)"
    out = render.relink_markdown(text, {"03_depth_spectrum"})
    assert out == "see figure 02 and [03](03_depth_spectrum.ipynb#claim-check)"
    html = '<a href="notebooks/02_expected_ntk.ipynb">02</a> <a href="03_depth_spectrum.ipynb">03</a>'
    assert render.relink_html(html, {"03_depth_spectrum"}) == '02 <a href="03_depth_spectrum.html">03</a>'


def test_figure_mentions_become_references_outside_headings_code_and_math():
    text = "# Figure 03 — title\nas figure 03 shows, unlike figure 02; `figure 03` and $figure 03$\n$$\nfigure 03\n$$"
    out = render.cross_reference_figures(text, {"03"}).split("\n")
    assert out[0] == "# Figure 03 — title"
    assert out[1] == "as {ref}`figure 03 <fig-03>` shows, unlike figure 02; `figure 03` and $figure 03$"
    assert out[3] == "figure 03"


def test_parameters_injected_and_setup_cells_are_folded_and_the_rest_is_not():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Figure 99"),
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("seed = 1", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("import numpy as np\nP = params.bind('99', globals())"),
        nbformat.v4.new_markdown_cell("## Results"),
        nbformat.v4.new_code_cell("np.zeros(3)"),
    ])
    book_cells.fold_setup_cells(nb)
    assert [book_cells.FOLD in c.metadata.get("tags", []) for c in nb.cells] == [False, True, True, True, False, False]


def test_plotting_and_long_cells_are_folded_and_short_ones_are_not():
    image = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("fig, ax = plt.subplots()", outputs=[image]),
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(LONG_CELL + 1))),
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(LONG_CELL))),
        nbformat.v4.new_code_cell("print(1)", metadata={"tags": ["remove-input"]}, outputs=[image]),
    ])
    book_cells.fold_plotting_cells(nb)
    assert [c.metadata["tags"] for c in nb.cells] == [[book_cells.FOLD], [book_cells.FOLD], [], ["remove-input"]]


def test_provenance_says_verified_when_the_manifest_records_it_and_not_yet_verified_otherwise():
    entry = {"profile": "paper", "git_commit": "fedcba9876543210", "run_seconds": 200.0,
             "parameters": {"seed": 0, "out_dir": "figures"}}
    bare = provenance.provenance_html(entry)
    assert "not yet verified" in bare and "verified on" not in bare
    assert "profile <code>paper</code>" in bare and "fedcba987654" in bare and "3 min 20 s" in bare
    assert re.search(r"<details[^>]*><summary>parameters \(2\)</summary>.*seed = 0.*</details>", bare)
    assert "run-store keys read: not recorded" in bare

    done = provenance.provenance_html({**entry, "verified": VERIFIED, "runs_read": {KEY: {"result.json": "0" * 64}}})
    assert "verified on 2026-12-01 at 0123456789ab (01.csv, 01.json)" in done and "not yet verified" not in done
    runs = re.search(r"<details[^>]*><summary>run-store keys read \(1\)</summary>(.*?)</details>", done)
    assert runs and f'title="{KEY}">{KEY[:12]}</code>' in runs.group(1) and "result.json" in runs.group(1)
    keyed = provenance.provenance_html({**entry, "started": "2026-11-30T03:47:02+00:00",
                                        "verified": {**VERIFIED, "date": "2026-12-04T18:37:05+00:00"},
                                        "runs_read": {KEY: {f"{KEY}.json": "0" * 64}}})
    assert "started 2026-11-30 03:47 UTC" in keyed and "verified on 2026-12-04 at" in keyed
    assert f"({KEY[:12]}….json)" in keyed and f">{KEY}.json" not in keyed
    failed = provenance.provenance_html({**entry, "verified": {**VERIFIED, "ok": False}})
    assert "verification failed on 2026-12-01" in failed and "verified on" not in failed


def test_a_title_with_math_becomes_plain_text():
    title = r"Figure 02 — the expected NTK is $d\,\sigma^{2(d-1)}\,\Sigma\odot\Lambda$ and \(K_0\)"
    assert plain_title(title) == "Figure 02 — the expected NTK is d σ^2(d-1) Σ⊙Λ and K_0"


def _display_math_blocks_apart_from_prose(source: str) -> list[str]:
    """Lines opening or closing a $$ block that share their paragraph with prose (MyST reads those as inline)."""
    lines, bad, i = source.split("\n"), [], 0
    while i < len(lines):
        if "$$" not in lines[i]:
            i += 1
            continue
        start = i
        if lines[i].strip() == "$$" or lines[i].count("$$") == 1:
            i += 1
            while i < len(lines) and "$$" not in lines[i]:
                i += 1
        if not lines[start].lstrip().startswith("$$") or (start > 0 and lines[start - 1].strip()) or (
                i + 1 < len(lines) and lines[i + 1].strip()):
            bad.append(lines[start])
        i += 1
    return bad


@pytest.mark.parametrize("path", sorted((repo_root() / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_display_math_stands_in_its_own_paragraph(path):
    nb = json.loads(path.read_text())
    bad = [ln for c in nb["cells"] if c["cell_type"] == "markdown" for ln in
           _display_math_blocks_apart_from_prose("".join(c["source"]))]
    assert not bad, f"{path.name}: put a blank line before and after these $$ blocks: {bad}"


def test_render_without_executed_notebooks_says_where_to_look(tmp_path, capsys):
    assert render.render(repo_root(), source=tmp_path) == names.EXIT_BAD_INPUT
    assert "nothing to render" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- a real build

@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Execute 01 and 03 with their smoke parameters into a temp folder, then build the reading copy from them."""
    papermill = pytest.importorskip("papermill")
    work = tmp_path_factory.mktemp("book")
    executed = work / "executed"
    executed.mkdir()
    smoke = yaml.safe_load((repo_root() / "profiles" / "smoke.yaml").read_text())
    for stem in (*BUILT[1:], BUILT[0]):
        params = {**(smoke.get(stem) or {}), "profile": "smoke", "out_dir": str(work / "figures")}
        if stem == "00_index":  # the front page lists the figures of this build (run after them)
            params["figures_dir"] = str(work / "figures")
        papermill.execute_notebook(str(repo_root() / "notebooks" / f"{stem}.ipynb"), str(executed / f"{stem}.ipynb"),
                                   parameters=params, kernel_name="python3", progress_bar=False, cwd=str(repo_root()))
    copy = executed / "03_depth_spectrum.ipynb"  # a title with math, as pages 02 and 04 have
    copy.write_text(copy.read_text().replace("# Figure 03 — Depth helps", "# Figure 03 — Depth helps ($K_0$)", 1))
    entry = {"profile": "smoke", "git_commit": "fedcba9876543210", "run_seconds": 4.2, "parameters": {"seed": 0}}
    (work / "figures" / "MANIFEST.json").write_text(json.dumps({"figures": {
        "01": {**entry, "verified": VERIFIED, "runs_read": {KEY: {"result.json": "0" * 64}}}, "03": entry}}))
    dest = work / "html"
    assert render.render(repo_root(), dest=dest, source=executed) == names.EXIT_OK
    return {"html": dest, "work": work}


def _pages(html: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in html.glob("*.html") if p.stem not in {"genindex", "search"}}


def test_every_page_links_to_the_index_and_its_neighbours(book):
    pages = _pages(book["html"])
    assert set(pages) == {"index", *BUILT}
    order = ["index", *BUILT]
    for k, stem in enumerate(order):
        page = pages[stem]
        assert 'href="index.html"' in page or (stem == "index" and 'class="navbar-brand logo" href="#"' in page), stem
        if k > 0:
            assert re.search(rf'class="left-prev"\s+href="{order[k - 1]}.html"', page), stem
        if k + 1 < len(order):
            assert re.search(rf'class="right-next"\s+href="{order[k + 1]}.html"', page), stem
        assert 'href="search.html"' in page or "search-button" in page, stem


def test_a_partial_set_does_not_link_to_missing_pages(book):
    pages = _pages(book["html"])
    assert not any("02_expected_ntk.html" in page for page in pages.values())
    assert "02_expected_ntk" in pages["index"]  # listed as not in this reading copy


def test_figures_are_labelled_and_cross_referenced(book):
    pages = _pages(book["html"])
    assert 'id="fig-03"' in pages["03_depth_spectrum"]
    assert 'href="03_depth_spectrum.html#fig-03"' in pages["index"]


def test_no_page_loads_a_script_or_stylesheet_from_the_web(book):
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    for stem, page in _pages(book["html"]).items():
        assert not remote.search(page), f"{stem}: {remote.search(page).group(0)}"


def test_math_is_typeset_by_the_local_mathjax(book):
    html = book["html"]
    static = html / "_static" / "mathjax"
    assert (static / "MathJax.js").is_file()
    page = _pages(html)["03_depth_spectrum"]
    assert re.search(r'<script[^>]*src="_static/mathjax/MathJax\.js(\?v=\w+)?"', page)
    config = re.search(r'<script type="text/x-mathjax-config">MathJax\.Hub\.Config\((.*?)\)</script>', page).group(1)
    for name in json.loads(config)["config"]:
        assert (static / "config" / name).is_file(), name
    assert (static / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    assert page.count('class="math notranslate') >= 5


def test_no_page_holds_an_absolute_machine_path(book):
    needles = {str(repo_root()), str(book["work"]), str(Path.home()) + "/", sys.prefix}
    files = [*book["html"].glob("*.html"), book["html"] / "searchindex.js"]
    for path in files:
        text = path.read_text()
        found = [n for n in needles if n in text] + render.MACHINE_PATH.findall(text)
        assert not found, f"{path.name}: {found[:3]}"


def test_setup_cells_are_folded_in_the_pages(book):
    page = _pages(book["html"])["03_depth_spectrum"]
    for tag in ("tag_parameters", "tag_injected-parameters"):
        assert re.search(rf'<div class="cell {tag} tag_hide-input docutils container"', page), tag
    assert page.count('<details class="admonition hide above-input"') >= 3  # + the set-up cell


def test_the_front_pages_tables_are_html_tables_not_raw_markdown(book):
    page = _pages(book["html"])["00_index"]
    assert page.count("<table") >= 2  # the variants (a cell) and the figures (an output)
    assert not re.search(r"\|\s*id\s*\|\s*claim\s*\|", page), "a Markdown table was left as text"
    assert "What this companion could not do" in page


def test_the_caption_sits_on_the_figure_the_claim_check_records_not_on_the_explorer(book):
    page = _pages(book["html"])["03_depth_spectrum"]
    figure = re.search(r'<figure[^>]*id="fig-03".*?</figure>', page, re.S)
    assert figure, "no labelled figure on page 03"
    nb = nbformat.read(book["work"] / "executed" / "03_depth_spectrum.ipynb", as_version=4)
    explorer = next(c for c in nb.cells if c.cell_type == "code" and "spectrum_explorer" in c.source)
    labelled = next(c for c in nb.cells if c.cell_type == "code" and "fig = plt.figure" in c.source)
    nb_copy = nbformat.from_dict(nb)
    book_cells.label_figure(nb_copy, "03", "t")
    marked = [c for c in nb_copy.cells if c.get("metadata", {}).get("mystnb")]
    assert [c.source for c in marked] == [labelled.source] and explorer.source not in figure.group(0)


def test_each_page_shows_its_provenance_from_the_manifest_beside_the_executed_copies(book):
    pages = _pages(book["html"])
    for stem in ("01_dgn_paths", "03_depth_spectrum"):
        block = re.search(r'<div class="dgn-provenance">(.*?)</div>', pages[stem], re.S)
        assert block and "profile <code>smoke</code>" in block.group(1) and "fedcba987654" in block.group(1), stem
        assert re.search(r"<details[^>]*><summary>parameters \(1\)</summary>", block.group(1)), stem
    assert "verified on 2026-12-01 at 0123456789ab (01.csv, 01.json)" in pages["01_dgn_paths"]
    assert KEY[:12] in pages["01_dgn_paths"]
    assert "not yet verified" in pages["03_depth_spectrum"] and "verified on" not in pages["03_depth_spectrum"]
    # the front page has no entry in the fixture manifest: its provenance says so and lists papermill's parameters
    assert "no run record for this page" in pages["00_index"]


def test_tab_titles_hold_no_latex(book):
    pages = _pages(book["html"])
    titles = {stem: re.search(r"<title>(.*?)</title>", page, re.S).group(1) for stem, page in pages.items()}
    assert titles["03_depth_spectrum"].startswith("Figure 03 — Depth helps (K_0)")
    assert not [s for s, title in titles.items() if "$" in title or "\\(" in title]


def test_the_cells_that_draw_the_figure_are_folded(book):
    page = _pages(book["html"])["03_depth_spectrum"]
    cell = re.search(r'<div class="cell ([^"]*)"[^>]*>(?:(?!<div class="cell ).)*?id="fig-03"', page, re.S)
    assert cell and "tag_hide-input" in cell.group(1)


def test_the_figure_fills_the_text_column(book):
    page = _pages(book["html"])["03_depth_spectrum"]
    figure = re.search(r'<figure[^>]*id="fig-03".*?</figure>', page, re.S).group(0)
    assert re.search(r'<img[^>]*class="dgn-figure"[^>]*style="width: 100%;?"', figure)
    assert re.search(r'<link[^>]*href="_static/dgn\.css(\?v=\w+)?"', page)
    assert "img.dgn-figure { width: 100%" in (book["html"] / "_static" / "dgn.css").read_text()
