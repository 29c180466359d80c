"""The reading copy: the executed notebooks as an offline Sphinx book (MyST-NB + sphinx-book-theme).

`render()` copies the executed notebooks into build/book/src, folds the parameter, set-up and plotting cells, adds
each page's provenance (`dgnlib.companion.provenance`, from MANIFEST.json), scrubs machine paths, turns "figure NN" into
cross-references, writes an index page with a contents tree, adds a local MathJax and runs Sphinx (execution off).
The book's static configuration lives in `book/conf.py`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dgnlib.companion.book_cells import (
    add_under_title,
    fold_plotting_cells,
    fold_setup_cells,
    label_figure,
    title_of,
)
from dgnlib.companion.provenance import manifest_entries, provenance_html
from dgnlib.names import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, repo_root

NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


def log(message: str) -> None:
    """Progress and notes go to stderr, like the runner's."""
    print(message, file=sys.stderr, flush=True)


def executed_notebooks(folder: Path) -> list[Path]:
    """The executed copies `NN_name.ipynb` in `folder` (no failed or hidden copies), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NOTEBOOK_NAME.match(p.name))


def local_mathjax() -> Path | None:
    """A local MathJax 2.7 folder: $DGN_MATHJAX_DIR, else the one shipped by jupyter-server-mathjax if installed."""
    candidates = [Path(os.environ["DGN_MATHJAX_DIR"])] if os.environ.get("DGN_MATHJAX_DIR") else []
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "static")
    return next((c for c in candidates if (c / "MathJax.js").is_file()), None)


# ---------------------------------------------------------------------------------------------------- machine paths

# A last line of defence after the known prefixes: absolute paths under folders that only exist on one machine.
MACHINE_PATH = re.compile(r"(?<![\w.~>/-])/(?:home|tmp|root|work|Users|private|mnt|scratch)/[^\s\"'<>)\]\\,;]*")


def machine_prefixes(root: Path) -> list[tuple[str, str]]:
    """(absolute prefix, replacement) pairs, longest first: repository → relative, the rest → a short marker."""
    pairs: dict[str, str] = {}
    for path, marker in [(Path(sys.base_prefix), "<python>"), (Path(sys.prefix), "<python>"),
                         (Path(tempfile.gettempdir()), "<tmp>"), (Path.home(), "~"), (root, ".")]:
        for variant in {str(path), os.path.realpath(path)}:
            if len(variant) > 1:
                pairs[variant.rstrip("/")] = marker
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def scrub(text: str, prefixes: Iterable[tuple[str, str]], generic: bool = True) -> str:
    """`text` without absolute machine paths: known prefixes replaced, other home/tmp-like paths cut to their name."""
    for prefix, marker in prefixes:
        pattern = re.compile(r"(?<![\w.-])" + re.escape(prefix) + r"(/|(?=[\s\"'<>)\],;:]|$))")
        if marker == ".":  # inside the repository: the relative path is exact and readable
            text = pattern.sub(lambda m: "" if m.group(1) else ".", text)
        else:
            text = pattern.sub(lambda m, mk=marker: mk + m.group(1), text)
    if generic:
        text = MACHINE_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text


def _scrub_value(value: Any, prefixes: list[tuple[str, str]]) -> Any:
    """Scrub a string or a list of strings (notebook JSON stores text either way); other values pass."""
    if isinstance(value, str):
        return scrub(value, prefixes)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [scrub(v, prefixes) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------- links

NB_LINK = re.compile(r"\[([^\]]*)\]\((?:\.{1,2}/)?(?:notebooks/|executed/)?(\d\d_[A-Za-z0-9_]+)\.ipynb(#[^)\s]*)?\)")
NB_HREF = re.compile(
    r"<a\s[^>]*href=\"(?:\.{1,2}/)?(?:notebooks/|executed/)?(\d\d_[A-Za-z0-9_]+)\.ipynb(#[^\"]*)?\"[^>]*>(.*?)</a>",
    re.S,
)
FIGURE_MENTION = re.compile(r"\b([Ff]igure) (\d\d)\b")
PROTECTED = re.compile(r"(`[^`]*`|\$[^$]*\$|\[[^\]]*\]\([^)]*\)|\{[a-z]+\}`[^`]*`)")


def relink_markdown(text: str, stems: set[str], suffix: str = ".ipynb") -> str:
    """Links to notebooks point at their pages when present; a link to a page not in this build becomes its text.

    Markdown cells and outputs keep `.ipynb` targets: MyST resolves them to the page (the book renders Markdown
    outputs as MyST, `nb_render_markdown_format`, so that tables and links work in them as in cells).
    """
    def sub(m: re.Match) -> str:
        return f"[{m.group(1)}]({m.group(2)}{suffix}{m.group(3) or ''})" if m.group(2) in stems else m.group(1)
    return NB_LINK.sub(sub, text)


def relink_html(text: str, stems: set[str]) -> str:
    """HTML outputs: the same rule as `relink_markdown`, with `.html` targets."""
    def sub(m: re.Match) -> str:
        return f'<a href="{m.group(1)}.html{m.group(2) or ""}">{m.group(3)}</a>' if m.group(1) in stems else m.group(3)
    return NB_HREF.sub(sub, text)


def cross_reference_figures(text: str, labelled: set[str]) -> str:
    """'figure NN' in prose becomes a reference to that figure when the book has it (not in headings, code, math)."""
    out, in_fence, in_math = [], False, False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or in_math or stripped.startswith(("#", "$$", "<")):  # "<": an HTML block (the provenance)
            in_math ^= stripped.count("$$") % 2 == 1
            out.append(line)
            continue
        parts = PROTECTED.split(line)
        for i in range(0, len(parts), 2):
            parts[i] = FIGURE_MENTION.sub(
                lambda m: f"{{ref}}`{m.group(1)} {m.group(2)} <fig-{m.group(2)}>`" if m.group(2) in labelled
                else m.group(0), parts[i])
        out.append("".join(parts))
        in_math ^= line.count("$$") % 2 == 1
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- notebooks

def prepare_notebook(path: Path, stems: set[str], prefixes: list[tuple[str, str]],
                     entries: dict[str, dict] | None = None) -> tuple[Any, dict]:
    """Read an executed notebook and return it ready for the book, with facts for the index (title, profile).

    `entries`: MANIFEST.json's figure entries of the run that wrote this folder; the page's own entry (same id and
    profile) gives its provenance.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    parameters = nb.metadata.get("papermill", {}).get("parameters", {})
    profile = parameters.get("profile")
    entry = (entries or {}).get(path.name[:2])
    entry = entry if entry and entry.get("profile") == profile else None  # another run's record is not this page's
    for key in ("papermill", "widgets"):  # run records hold machine paths; widget state would pull a CDN loader
        nb.metadata.pop(key, None)
    fold_setup_cells(nb)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "markdown":
            cell.source = relink_markdown(scrub(cell.source, prefixes, generic=False), stems)
            continue
        if cell.cell_type != "code":
            continue
        cell.source = scrub(cell.source, prefixes)
        for out in cell.outputs:
            if "text" in out:
                out["text"] = _scrub_value(out["text"], prefixes)
            if "traceback" in out:
                out["traceback"] = _scrub_value(out["traceback"], prefixes)
                out["evalue"] = _scrub_value(out.get("evalue", ""), prefixes)
            data = out.get("data", {})
            data.pop("application/vnd.jupyter.widget-view+json", None)
            for mime in [m for m in data if m.startswith("text/")]:
                data[mime] = _scrub_value(data[mime], prefixes)
                if mime == "text/markdown":
                    data[mime] = relink_markdown("".join(data[mime]) if isinstance(data[mime], list) else data[mime],
                                                 stems)
                elif mime == "text/html":
                    data[mime] = relink_html("".join(data[mime]) if isinstance(data[mime], list) else data[mime], stems)
    title = title_of(nb, path.stem)
    labelled = label_figure(nb, path.name[:2], title) if path.name[:2] != "00" else False
    fold_plotting_cells(nb)
    add_under_title(nb, scrub(provenance_html(entry, parameters), prefixes))
    return nb, {"title": title, "profile": profile, "labelled": labelled}


# ---------------------------------------------------------------------------------------------------- the book

def _cell_text(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value if value not in (None, "") else "—").replace("|", "\\|").replace("\n", " ")


def figure_record(figures_dir: Path | None, fig_id: str) -> dict:
    """The figure's own JSON record (claim, verdict, profile) when the run that made the page wrote one."""
    path = figures_dir / f"{fig_id}.json" if figures_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def checks_summary(record: dict) -> str | None:
    """'3 passed' or '1 of 3 failed' from a figure record's identity and sanity checks (None when it lists none)."""
    # only `verdict.conclude`'s checks (with "passed"); older records listed claim checks ("held") there
    checks = [c for c in record.get("checks") or [] if isinstance(c, dict) and "passed" in c]
    if not checks:
        return None
    failed = sum(not c.get("passed") for c in checks)
    return f"{failed} of {len(checks)} failed" if failed else f"{len(checks)} passed"


FRONT_PAGE = "00_index"
RULE_ANCHOR = "how-a-verdict-is-decided"  # the front page's heading that states the verdict rule


def verdict_note(stems: Iterable[str]) -> str:
    """How to read the verdict column: a link to the front page's statement of the rule, else the rule quoted."""
    if FRONT_PAGE in set(stems):
        return (f"A verdict is one of *held*, *not held*, *inconclusive* or *invalid*; the "
                f"[front page]({FRONT_PAGE}.ipynb#{RULE_ANCHOR}) states the rule that decides it. The checks "
                "column counts each figure's identity and sanity checks, kept apart from its claim.")
    from dgnlib.verdict import RULE

    quoted = "\n".join(f"> {line}" if line else ">" for line in RULE.splitlines())
    return ("A verdict is one of *held*, *not held*, *inconclusive* or *invalid*, decided by this rule (from "
            f"`dgnlib.verdict`):\n\n{quoted}\n\nThe checks column counts each figure's identity and sanity "
            "checks, kept apart from its claim: a failed one stops its notebook.")


def index_markdown(pages: dict[str, dict], missing: list[str], source_label: str, figures_dir: Path | None) -> str:
    """The root page: what the companion is, one row per page (figure link, verdict, checks, profile), the contents."""
    rows = []
    for stem, facts in pages.items():
        fig_id = stem[:2]
        record = figure_record(figures_dir, fig_id)
        same_run = record.get("profile") == facts["profile"]
        figure = f"{{ref}}`figure {fig_id} <fig-{fig_id}>`" if facts["labelled"] else "—"
        rows.append(f"| {fig_id} | [{_cell_text(facts['title'])}]({stem}.ipynb) | {figure} | "
                    f"{_cell_text(record.get('verdict') if same_run else None)} | "
                    f"{_cell_text(checks_summary(record) if same_run else None)} | {_cell_text(facts['profile'])} |")
    absent = ("\n\nNot in this reading copy (no executed notebook): " + ", ".join(f"`{m}`" for m in missing) + "."
              if missing else "")
    toctree = "\n".join(pages)
    return f"""# Deep Gated Networks: the annotated figures

A reproducible companion to C. Lakshminarayanan and A. V. Singh, *Deep Gated Networks: A framework to understand
training and generalisation in deep learning* (arXiv:2002.03996, 2020). Each page below is one executed notebook: it
states the claim it tests, derives what it computes, shows the figure and ends with a verdict: whether the claim held
on that run. No number here is the paper's own.

These pages show the notebooks as executed in `{source_label}`; the verdict and checks columns repeat each figure's
record when it comes from the same run.

| id | page | figure | verdict | checks | profile |
|---|---|---|---|---|---|
{os.linesep.join(rows)}{absent}

{verdict_note(pages)}

```{{toctree}}
:hidden:
:maxdepth: 1

{toctree}
```
"""


def book_config(root: Path) -> Path:
    """The book's Sphinx folder: `book/` of the repository rendered, else the one beside this dgnlib's sources."""
    return next((p for p in (root / "book", repo_root() / "book") if (p / "conf.py").is_file()), root / "book")


def source_folder(root: Path, profile: str | None, source: str | os.PathLike | None) -> Path:
    """Where the executed notebooks are: `source`, else build/executed/<profile>, else the committed executed/."""
    if source is not None:
        path = Path(source)
        return path if path.is_absolute() else root / path
    return root / "build" / "executed" / profile if profile else root / "executed"


def figures_folder(root: Path, folder: Path) -> Path | None:
    """The figures written by the run whose notebooks are in `folder`.

    executed/ → figures/, build/executed/<profile> → build/figures/<profile>; another folder → the `figures` folder
    beside it when that holds a MANIFEST.json (e.g. FROM=<another checkout>/executed), else None.
    """
    if folder == root / "executed":
        return root / "figures"
    if folder.parent == root / "build" / "executed":
        return root / "build" / "figures" / folder.name
    beside = folder.parent / "figures"
    return beside if (beside / "MANIFEST.json").is_file() else None


def _clear_output(dest: Path, default: Path) -> None:
    """Empty the output folder; refuse a non-empty folder that is not an earlier reading copy."""
    if dest.exists() and any(dest.iterdir()):
        if dest != default and not (dest / ".buildinfo").is_file():
            raise FileExistsError(f"{dest} is not empty and holds no earlier reading copy: choose another --dest")
        shutil.rmtree(dest)


def build_book(root: Path, notebooks: list[Path], work: Path, dest: Path, source_label: str,
               figures_dir: Path | None) -> int:
    """Prepare the Sphinx source in `work` and build the HTML into `dest`; returns Sphinx's exit status."""
    import nbformat

    mathjax = local_mathjax()
    if mathjax is None:
        raise FileNotFoundError("no local MathJax: install jupyter-server-mathjax (`make setup` does) or point "
                                "DGN_MATHJAX_DIR at a MathJax 2.7 folder; the reading copy never loads it from the web")
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(book_config(root), src)
    shutil.copytree(mathjax, src / "_static" / "mathjax")
    prefixes = machine_prefixes(root)
    stems = {p.stem for p in notebooks}
    prepared, pages = {}, {}
    entries = manifest_entries(figures_dir)
    for path in notebooks:
        prepared[path.stem], pages[path.stem] = prepare_notebook(path, stems, prefixes, entries)
    labelled = {stem[:2] for stem, facts in pages.items() if facts["labelled"]}
    for stem, nb in prepared.items():
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = cross_reference_figures(cell.source, labelled)
        nbformat.write(nb, src / f"{stem}.ipynb")
    known = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    missing = [s for s in known if s not in stems]
    (src / "index.md").write_text(index_markdown(pages, missing, source_label, figures_dir))
    _clear_output(dest, root / "build" / "html")
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-d", str(work / "doctrees"), str(src),
               str(dest)]
    return subprocess.run(command, cwd=work, check=False).returncode


def render(layout: Any = None, profile: str | None = None, dest: str | os.PathLike | None = None, *,
           source: str | os.PathLike | None = None) -> int:
    """`dgn render`: build the reading copy of the executed notebooks into build/html (or `dest`); exit status."""
    # a runner Layout (anything with a .root folder), a path, or None for this repository
    root = Path(layout) if isinstance(layout, (str, os.PathLike)) else Path(getattr(layout, "root", None) or
                                                                              repo_root())
    folder = source_folder(root, profile, source)
    notebooks = executed_notebooks(folder)
    label = os.path.relpath(folder, root) if folder.is_relative_to(root) else folder.name
    if not notebooks:
        others = sorted(os.path.relpath(p, root) for p in (root / "build" / "executed").glob("*")
                        if executed_notebooks(p))
        hint = f"; executed notebooks exist in: {', '.join(others)} (dgn render --from FOLDER)" if others else ""
        log(f"nothing to render: no executed notebooks NN_name.ipynb in {label}{hint}")
        return EXIT_BAD_INPUT if source is not None or profile is not None else EXIT_FAILED
    out = root / "build" / "html" if dest is None else (Path(dest) if Path(dest).is_absolute() else root / dest)
    start = time.perf_counter()
    try:
        status = build_book(root, notebooks, root / "build" / "book", out, label, figures_folder(root, folder))
    except (FileNotFoundError, FileExistsError) as exc:
        log(f"error: {exc}")
        return EXIT_BAD_INPUT
    shown = os.path.relpath(out, root) if out.is_relative_to(root) else str(out)
    if status != 0:
        log(f"sphinx failed (exit status {status}); the reading copy in {shown} is incomplete")
        return EXIT_FAILED
    log(f"reading copy of {len(notebooks)} notebooks from {label} in {time.perf_counter() - start:.1f} s: "
        f"{shown}/index.html")
    return EXIT_OK
