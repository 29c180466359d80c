"""Which files are science sources: the one rule shared by the runner's cache and the Dask fingerprint.

A science source is a `.py` file that Python could import as a module of `dgnlib`: every folder on its path and its
own name are identifiers, and it lies outside the tooling wing (`companion/`). Editor leftovers are therefore never
sources: Jupyter's `.ipynb_checkpoints/models-checkpoint.py`, Emacs's lock link `.#models.py`, `models.py~`, `#x.py#`.
"""

from __future__ import annotations

from pathlib import Path

TOOLING = ("companion",)  # subpackages of the tooling wing: never imported by a figure, so not a source


def is_science_source(rel: Path) -> bool:
    """Whether a path relative to the package is a science source (see the module docstring)."""
    parts = rel.parts
    if not parts or parts[0] in TOOLING or rel.suffix != ".py":
        return False
    return all(p.isidentifier() for p in (*parts[:-1], rel.stem))


def science_sources(package: Path) -> list[Path]:
    """The science sources of a package folder, sorted; only regular files (a dangling link is no source)."""
    package = Path(package)
    return sorted(p for p in package.rglob("*.py")
                  if is_science_source(p.relative_to(package)) and p.is_file())
