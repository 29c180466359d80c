"""The companion's vocabulary, in one place: variants, optimisers, losses, profiles, exit codes, where things are.

Torch-free (the runner and the notebook cache read it without importing the science), and it imports nothing from
`dgnlib`: every other module may import it.
"""

from __future__ import annotations

from pathlib import Path

VARIANTS = ("relu", "frnpf-ii", "frnpf-di", "flnpf", "dnpfl", "linear")  # the DGN variants (follow-up paper's names)
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("ce", "mse")
PROFILES = ("smoke", "quick", "paper")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # bad input (profile, parameter, selection, lock, ...): nothing was run

PACKAGE = Path(__file__).resolve().parent
# The tooling wing, as paths inside the package: its sources never enter a figure's cache key nor the Dask
# fingerprint, and no science module imports it. Everything else in the package is science.
TOOLING = ("companion", "__main__.py")


def repo_root() -> Path:
    """The repository root (the folder holding `dgnlib/`), whatever the working directory."""
    return PACKAGE.parent


def is_science(relative: str | Path) -> bool:
    """Whether a path relative to the package is a science source: a `.py` file outside the tooling that Python
    could import as a module of `dgnlib` (every folder on its path and its own name are identifiers), so that editor
    leftovers are never sources: `.ipynb_checkpoints/models-checkpoint.py`, `.#models.py`, `models.py~`, `#x.py#`."""
    rel = Path(relative)
    parts = rel.parts
    if not parts or parts[0] in TOOLING or rel.suffix != ".py":
        return False
    return all(p.isidentifier() for p in (*parts[:-1], rel.stem))


def title(text: str, profile: str) -> str:
    """A figure title that names the profile when it is not the paper profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if profile == "paper":
        return text
    return f"{text}\n[{profile} profile, not the paper profile: the notebook names what differs]"


def shown_path(path: str | Path) -> str:
    """`path` as a notebook prints it: relative to the repository root when inside it (no machine path), else as is."""
    try:
        return Path(path).resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)
