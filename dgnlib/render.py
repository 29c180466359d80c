"""The reading copy: executed notebooks converted to self-contained HTML, with an index of figures and verdicts."""

from __future__ import annotations

import base64
import html
import importlib.util
import os
import re
import shutil
from pathlib import Path

from dgnlib.companion.fsio import write_atomic
from dgnlib.companion.layout import EXIT_FAILED, EXIT_OK, InputError, Layout
from dgnlib.companion.manifest import read_manifest
from dgnlib.companion.reproduce import log
from dgnlib.companion.table import format_seconds
from dgnlib.report import PROFILES


def executed_notebooks(layout: Layout, profile: str) -> list[Path]:
    """The successfully executed copies of `profile` (no partial or failed copies), sorted by name."""
    folder = layout.executed(profile)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.ipynb") if not p.name.startswith(".") and not p.name.endswith(".failed.ipynb")
    )


def latest_profile(layout: Layout) -> str:
    """The profile whose executed notebooks were written last; quick when there are none."""
    stamps = {p: max((f.stat().st_mtime for f in executed_notebooks(layout, p)), default=None) for p in PROFILES}
    found = {p: t for p, t in stamps.items() if t is not None}
    return max(found, key=found.get) if found else "quick"


# Trimmed MathJax copies (jupyter-server-mathjax) ship only the STIX-Web fonts: use them, as Jupyter itself does.
LOCAL_FONTS = """MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
  imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/dgn-local.js");
"""


def local_mathjax() -> Path | None:
    """A local MathJax 2.7 folder: $DGN_MATHJAX_DIR, else the one shipped by jupyter-server-mathjax if installed."""
    candidates = [Path(os.environ["DGN_MATHJAX_DIR"])] if os.environ.get("DGN_MATHJAX_DIR") else []
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "static")
    return next((c for c in candidates if (c / "MathJax.js").is_file()), None)


def mathjax_url(folder: Path) -> str:
    """Copy a local MathJax beside the pages (once) and return its relative URL; the CDN URL when none is found."""
    source = local_mathjax()
    if source is None:
        log("note: equations load MathJax from the web; for offline equations install jupyter-server-mathjax "
            "or point DGN_MATHJAX_DIR at a MathJax 2.7 folder")
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe"
    target = folder / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target.with_name(".mathjax.tmp"), dirs_exist_ok=True)
        os.replace(target.with_name(".mathjax.tmp"), target)
    configs = ("TeX-AMS_CHTML-full", "TeX-AMS-MML_HTMLorMML-full", "TeX-AMS_HTML-full")
    config = next((c for c in configs if (target / "config" / f"{c}.js").is_file()), configs[0])
    write_atomic(target / "config" / "dgn-local.js", LOCAL_FONTS)
    return f"mathjax/MathJax.js?config={config},Safe,dgn-local"


NOTEBOOK_LINK = re.compile(r'href="(?:\.\./notebooks/|notebooks/)?(\d\d_[A-Za-z0-9_]+)\.ipynb"')


def notebook_html(layout: Layout, path: Path, mathjax: str | None = None) -> str:
    """One executed notebook as standalone HTML (output images are inline; Markdown images get embedded)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    if mathjax:
        exporter.mathjax_url = mathjax
    node = nbformat.read(path, as_version=4)
    resources = {"metadata": {"name": path.stem, "path": str(layout.notebooks)}}
    body, _ = exporter.from_notebook_node(node, resources=resources)
    # links between notebooks (the index page's table) point at their rendered pages
    return NOTEBOOK_LINK.sub(r'href="\1.html"', body)


def _thumbnail(path: Path) -> str:
    """An <img> tag with the PNG embedded as base64, or a dash when there is no such file."""
    if not path.is_file():
        return "—"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" width="200" alt="figure {html.escape(path.stem)}">'


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #ddd; padding: .5em;
text-align: left; vertical-align: top; } th { background: #f4f4f4; } .held { color: #1a7f37; }
.partly { color: #9a6700; } .not { color: #cf222e; } .muted { color: #777; font-size: .9em; }
"""


def _verdict_class(verdict: str | None) -> str:
    """CSS class for a verdict."""
    return {"held": "held", "partly held": "partly", "not held": "not"}.get(verdict or "", "muted")


def index_html(layout: Layout, profile: str, pages: dict[str, str], manifest: dict) -> str:
    """The front page: every figure with its claim, verdict, profile and run time, linked to its notebook."""
    figures = manifest.get("figures", {})
    ids = sorted(set(pages) | set(figures))
    rows = []
    for fig_id in ids:
        entry = figures.get(fig_id, {})
        stem = pages.get(fig_id) or Path(entry.get("notebook", fig_id)).stem
        link = f'<a href="{html.escape(stem)}.html">{html.escape(stem)}</a>' if fig_id in pages else (
            f'{html.escape(stem)} <span class="muted">(no executed copy for this profile)</span>')
        verdict = entry.get("verdict")
        seconds = entry.get("run_seconds_by_profile", {}).get(entry.get("profile"))
        png = layout.figures / f"{fig_id}.png"
        thumb = _thumbnail(png) if f"{fig_id}.png" in entry.get("outputs", {}) else "—"
        rows.append(
            f"<tr><td>{fig_id}</td><td>{link}</td><td>{html.escape(entry.get('claim') or '—')}</td>"
            f'<td class="{_verdict_class(verdict)}">{html.escape(verdict or "—")}</td>'
            f"<td>{html.escape(entry.get('profile', '—'))}</td><td>{format_seconds(seconds)}</td><td>{thumb}</td></tr>"
        )
    front = pages.get("00")
    intro = f'<p>Start with the front page: <a href="{front}.html">{front}</a>.</p>' if front else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Deep Gated Networks: the annotated figures</title>
<style>{_STYLE}</style></head><body>
<h1>Deep Gated Networks: the annotated figures</h1>
<p>A reproducible companion to Lakshminarayanan &amp; Singh, <em>Deep Gated Networks: A framework to understand
training and generalisation in deep learning</em> (arXiv 2002.03996). Each notebook below tests one claim and
records whether it held on its run; the verdicts come from <code>figures/MANIFEST.json</code>.</p>
{intro}
<p class="muted">Notebooks executed with the <strong>{html.escape(profile)}</strong> profile
(<code>dgn reproduce --profile {html.escape(profile)}</code>). Verdicts and run times are those of the last run
of each figure. Figures are embedded in the pages, which open offline.</p>
<table><thead><tr><th>id</th><th>notebook</th><th>claim</th><th>verdict</th><th>profile</th><th>run time</th>
<th>figure</th></tr></thead><tbody>
{os.linesep.join(rows)}
</tbody></table></body></html>
"""


def render(layout: Layout | None = None, profile: str | None = None, dest: str | os.PathLike | None = None) -> int:
    """`dgn render`: convert the executed notebooks of a profile to HTML and write the index page."""
    layout = layout or Layout.at()
    if profile is not None and profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    profile = profile or latest_profile(layout)
    folder = layout.build / "html" if dest is None else (Path(dest) if Path(dest).is_absolute() else layout.root / dest)
    notebooks = executed_notebooks(layout, profile)
    if not notebooks:
        log(f"nothing to render: no executed notebooks in {layout.rel(layout.executed(profile))}; "
            f"run `dgn reproduce --profile {profile}` first")
        return EXIT_FAILED
    pages = {}
    folder.mkdir(parents=True, exist_ok=True)
    mathjax = mathjax_url(folder)
    for path in notebooks:
        write_atomic(folder / f"{path.stem}.html", notebook_html(layout, path, mathjax))
        pages[path.name[:2]] = path.stem
        log(f"rendered {layout.rel(folder / (path.stem + '.html'))}")
    failed = sorted(layout.executed(profile).glob("*.failed.ipynb"))
    for path in failed:
        log(f"note: {layout.rel(path)} failed on its last run; a reading copy, if any, shows its last successful run")
    index = folder / "index.html"
    write_atomic(index, index_html(layout, profile, pages, read_manifest(layout)))
    log(f"index: {layout.rel(index)}")
    return EXIT_OK
