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
    """Whether a file of the package (path relative to the package folder) is science, i.e. not tooling."""
    return Path(relative).parts[0] not in TOOLING


def title(text: str, profile: str) -> str:
    """A figure title that names the profile when it is not the paper profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if profile == "paper":
        return text
    return f"{text}\n[{profile} profile, not the paper profile: the notebook names what differs]"
