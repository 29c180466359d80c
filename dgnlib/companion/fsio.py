"""Files and signals: atomic write, move and read, hashes, the checkout lock, and signals held during a commit."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dgnlib.atomic import file_mode, write_atomic, write_via

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the runner: it stops cleanly and exits 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest(obj: Any) -> str:
    """SHA-256 of a JSON-serialisable object in canonical form."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def move_atomic(src: Path, dst: Path) -> None:
    """Move a file onto `dst` atomically (through a copy beside `dst` when they are on different file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(src, file_mode())
    try:
        os.replace(src, dst)
    except OSError:  # another file system: an atomic copy, then the source goes
        write_via(dst, lambda tmp: shutil.copyfile(src, tmp))
        Path(src).unlink()


def read_json(path: Path) -> Any:
    """The JSON value in `path`, or None when the file is missing or unreadable (for caches: a miss)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def complete_notebook(path: Path) -> bool:
    """Whether `path` holds a whole notebook (a full disk can leave a truncated one)."""
    try:
        node = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(node, dict) and isinstance(node.get("cells"), list)


def probe_writable(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (or where it would be created), or None when they can."""
    target = Path(folder)
    while not target.exists():
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".dgn-probe-")
    except OSError as exc:
        return f"cannot write in {target} ({exc.strerror})"
    os.close(fd)
    os.unlink(tmp)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Signals


def _raise_interrupted(signum: int) -> None:
    raise Interrupted(signum)


def signals_raise() -> contextlib.AbstractContextManager[None]:
    """While the block runs, SIGINT and SIGTERM raise Interrupted in the main thread (restored afterwards)."""
    return signals_call(_raise_interrupted)


@contextlib.contextmanager
def signals_call(callback: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call `callback(signum)` (main thread; restored afterwards).

    Used while kernels run: raising inside papermill's event loop would leave it hanging, so the callback stops
    the kernels instead and the caller raises Interrupted once execution has returned.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: callback(signum)) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (a commit); raise Interrupted for the first one after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            raise Interrupted(caught[0])


# ---------------------------------------------------------------------------------------------------------------
# The checkout lock


class LockBusy(Exception):
    """Another process holds the lock; `pid` is the one it recorded (None if unknown)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class CheckoutLock:
    """An exclusive advisory lock on one file (flock), holding the owner's pid; freed by the kernel on any exit.

    The lock is taken on the file the path names when the lock is granted: a file removed or replaced while we
    waited is locked again, so two runs never both believe they hold it. A file removed while a run holds it is
    covered by `hold_folder`: each run also locks a mark in its private folder, which a second run checks.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> None:
        """Take the lock; raise LockBusy naming the holder's pid unless `wait`, which blocks until it is free.

        OSError (e.g. IsADirectoryError when the path is a folder) propagates for the caller to word.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                text = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                raise LockBusy(int(text) if text.isdigit() else None) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file we locked was removed or replaced meanwhile: lock the one there now
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Free the lock (the file stays; its content is only a hint)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


OWNER_MARK = ".owner"  # in a run's private folder: locked (flock) by the run for as long as it lives


def hold_folder(folder: Path) -> int:
    """Create `folder` and lock its owner mark for this process (pid written in it); returns the open descriptor."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / OWNER_MARK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def folder_holder(folder: Path) -> int | None:
    """The pid of the live process holding `folder`'s owner mark (0 if it wrote none), or None when nobody does."""
    try:
        fd = os.open(folder / OWNER_MARK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)
    return None
