"""Where the repository is, and figure titles that name a non-paper profile. (Figures, tables and verdicts are
written by `dgnlib.verdict.conclude`.)"""

from __future__ import annotations

from pathlib import Path

PROFILES = ("smoke", "quick", "paper")


def repo_root() -> Path:
    """The repository root (the folder holding `dgnlib/`), whatever the working directory."""
    return Path(__file__).resolve().parent.parent


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
