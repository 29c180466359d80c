"""Atomic file writes, the one implementation every part of the companion uses (science and tooling alike).

A file is written to a temporary name in its own folder, flushed to disk, given the mode a new file would get under
the current umask, and renamed onto its target: a reader sees the old file or the whole new one, never a part, and
an interrupted write (Ctrl-C, SIGTERM, SIGKILL, a full disk) leaves at most a hidden temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_mode() -> int:
    """The mode a new file gets under the current umask (temporary files are created 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_via(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call write(tmp_path) for a temporary file beside `path`, flush it to disk, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` atomically."""
    payload = data.encode() if isinstance(data, str) else data
    return write_via(path, lambda tmp: Path(tmp).write_bytes(payload))
