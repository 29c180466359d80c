"""Where the runner reads and writes: the checkout's folders, and where one profile's run goes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dgnlib.names import repo_root

# a notebook's wall-clock limit: far above the slowest paper-profile figure on 2 CPU cores (figure 06, 2 h 32 min)
DEFAULT_TIMEOUT_S = 24 * 3600.0
PUBLISHED_PROFILE = "paper"  # the profile whose runs are published (committed) without --publish
INDEX_ID = "00"  # the front page: it lists the other figures, so it runs last and is never served from the cache


class InputError(Exception):
    """Bad input or a state the runner must not touch (profile, parameter, selection, lock, manifest): exit 2."""


@dataclass(frozen=True)
class Destination:
    """Where one run's results go: published (figures/, executed/, runs/) or build/…/<profile>/."""

    name: str  # "published" or the profile name
    published: bool
    figures: Path
    executed: Path
    runs: Path
    cache: Path
    journal: Path  # the commit journals are <stem>--<figure id>.json beside it (see manifest.journal_path)

    @property
    def manifest(self) -> Path:
        """<figures>/MANIFEST.json."""
        return self.figures / "MANIFEST.json"


@dataclass(frozen=True)
class Layout:
    """The checkout's folders; every path derives from `root` unless given."""

    root: Path
    notebooks: Path
    profiles: Path
    figures: Path
    build: Path
    readme: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> Layout:
        """The standard layout under `root` (default: this checkout)."""
        base = Path(root).resolve() if root is not None else repo_root()
        return cls(root=base, notebooks=base / "notebooks", profiles=base / "profiles", figures=base / "figures",
                   build=base / "build", readme=base / "README.md")

    def rel(self, path: Path | str) -> str:
        """`path` relative to the root when inside it (POSIX separators), else absolute."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def profile_names(self) -> list[str]:
        """The profiles available: the names of profiles/*.yaml."""
        return sorted(p.stem for p in self.profiles.glob("*.yaml")) if self.profiles.is_dir() else []

    def profile_file(self, profile: str) -> Path:
        """profiles/<profile>.yaml."""
        return self.profiles / f"{profile}.yaml"

    def destination(self, profile: str, publish: bool) -> Destination:
        """Where a run of `profile` goes: the published folders when `publish`, else build/<kind>/<profile>/."""
        if publish:
            return Destination("published", True, self.figures, self.root / "executed", self.root / "runs",
                               self.build / "cache" / "published", self.build / "commit" / "published.json")
        return Destination(profile, False, self.build / "figures" / profile, self.build / "executed" / profile,
                           self.build / "runs" / profile, self.build / "cache" / profile,
                           self.build / "commit" / f"{profile}.json")

    def executed(self, profile: str) -> Path:
        """The executed notebooks of a profile's latest run: executed/ for the published profile, else build/."""
        return self.root / "executed" if profile == PUBLISHED_PROFILE else self.build / "executed" / profile

    def failed_copies(self, profile: str) -> Path:
        """Where the executed copy of a failed notebook goes (never a committed folder)."""
        return self.build / "executed" / profile

    @property
    def tmp(self) -> Path:
        """build/tmp: one private folder per run below it."""
        return self.build / "tmp"

    @property
    def commits(self) -> Path:
        """build/commit: the commit journals."""
        return self.build / "commit"

    @property
    def lock(self) -> Path:
        """build/reproduce.lock: one `reproduce` per checkout at a time."""
        return self.build / "reproduce.lock"
