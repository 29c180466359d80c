"""Sphinx configuration of the reading copy (plain Sphinx + MyST-NB + sphinx-book-theme).

`dgn render` copies this folder into build/book/src together with the prepared notebooks, a generated index.md and a
local MathJax under _static/mathjax, then runs Sphinx on it. Nothing here executes a notebook or loads from the web.
"""

project = "Deep Gated Networks: a reproducible companion"
author = "The DGN companion authors"
copyright = "The DGN companion authors"  # noqa: A001 (Sphinx reads this name)
html_title = "Deep Gated Networks: the annotated figures"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The notebooks were executed by the runner: render their stored outputs, never run them.
nb_execution_mode = "off"
nb_output_stderr = "remove"  # warnings and progress bars are noise in a reading copy
# myst-nb would load RequireJS and the widget manager from a CDN on pages with widget state; the runner's
# copies hold none (explorers fall back to static figures), and nothing may load from the web.
nb_ipywidgets_js = {}
nb_merge_streams = True
# Markdown outputs (the front page's tables) are parsed like Markdown cells: plain CommonMark has no tables
nb_render_markdown_format = "myst"

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True
myst_update_mathjax = False  # its settings are for MathJax 3; the MathJax 2 ones are below

# Equations: MathJax 2.7 from the jupyter-server-mathjax package, copied into _static/mathjax by `dgn render`.
# Sphinx refuses query strings on local assets, so the configuration is given in-page instead of `?config=`.
mathjax_path = "mathjax/MathJax.js"
mathjax2_config = {
    "config": ["TeX-AMS-MML_HTMLorMML-full.js", "Safe.js"],
    # MyST-NB marks notebook pages tex2jax_ignore and the math elements `math`: typeset only those (and outputs)
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "ignoreClass": "tex2jax_ignore|mathjax_ignore",
                "processClass": "tex2jax_process|mathjax_process|math|output_area"},
    # the trimmed copy ships only the STIX-Web web fonts (as Jupyter uses them): no image fonts, no local fonts
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None,
                 "linebreaks": {"automatic": True}},  # long display equations wrap instead of overflowing
    "menuSettings": {"zoom": "None"},
    "showMathMenu": False,
}

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]  # dgn.css (the figures' width, the provenance); `dgn render` adds the local MathJax
html_css_files = ["dgn.css"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_repository_button": False,
    "use_fullscreen_button": False,
    "show_prev_next": True,
    "navigation_with_keys": False,
}

suppress_warnings = ["mystnb.unknown_mime_type"]


def plain_tab_title(app, pagename, templatename, context, doctree):  # noqa: ANN001, ANN201, ARG001 (Sphinx's event)
    """The browser's tab title without LaTeX: the page title's math as plain Unicode (no one typesets a tab)."""
    from dgnlib.companion.book_cells import plain_title

    if context.get("title"):
        context["title"] = plain_title(context["title"])


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's extension hook)
    """Load MathJax on every page (page titles with math appear in every sidebar); plain tab titles."""
    app.set_html_assets_policy("always")
    app.connect("html-page-context", plain_tab_title)
