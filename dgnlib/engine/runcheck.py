"""What the run store trusts, and how it can be audited: entry checks, the read-only mode and the read log.

An entry (`<root>/<key[:2]>/<key>.json`) is used only when its JSON parses, its `key` field is its file's key and
its stored spec hashes to that key (`spec_key`); a weights file (`<key>.e<epoch>.npz`) only when its entry is valid,
it loads, and its SHA-256 matches the one the entry recorded (entries written since the store recorded them:
`weights_sha256`; older entries have none and their weights are only checked to load). Anything else raises
`CorruptEntry` naming the path and the reason: a corrupt entry is refused, never silently retrained over, because
it may hide a bug or a tampered result, and deleting the file (the message says so) is a deliberate act.

Two environment variables serve `dgn verify`: `DGN_RUN_STORE_READ_ONLY=1` makes every store refuse to write (and a
sweep with runs missing fails naming them instead of training them), and `DGN_RUN_READ_LOG=<file>` makes a store
append one JSON line per entry or weights file it reads, so that verify knows which runs a figure reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

READ_ONLY_ENV = "DGN_RUN_STORE_READ_ONLY"
READ_LOG_ENV = "DGN_RUN_READ_LOG"
HEX = set("0123456789abcdef")


class StoreError(RuntimeError):
    """The run store cannot give what was asked (a corrupt entry, a write to a read-only store, runs missing)."""


class CorruptEntry(StoreError):
    """A store file that must not be used: `path` and `reason` say which and why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"run store entry {self.path}: {reason}; it is not used: restore it (e.g. `git checkout -- "
                         f"{self.path.name}` in its folder) or delete it and its .e*.npz files to retrain that run")


def read_only_from_env() -> bool:
    """True when DGN_RUN_STORE_READ_ONLY asks for a read-only store ("1", "true", "yes"; "", "0" mean no)."""
    value = os.environ.get(READ_ONLY_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{READ_ONLY_ENV}={value!r}: expected 1 (read-only) or 0")


def is_key(text: str) -> bool:
    """True for 64 lowercase hex digits (a RunSpec key)."""
    return len(text) == 64 and set(text) <= HEX


def spec_key(spec: Any, schema: int) -> str:
    """The key a stored (canonical) spec dict hashes to: what `RunSpec.key()` computes for the spec it came from."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f'{{"schema":{schema},"spec":{canonical}}}'.encode()).hexdigest()


def parse_entry(path: Path, data: bytes, key: str, schema: int) -> dict[str, Any]:
    """The entry's JSON object, after checking that it parses and belongs to `key`; CorruptEntry otherwise."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptEntry(path, f"not valid JSON ({exc}): truncated or damaged") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("rows"), list) or not isinstance(obj.get("spec"), dict):
        raise CorruptEntry(path, "not a run entry (expected an object with key, spec, status and rows)")
    if obj.get("key") != key:
        raise CorruptEntry(path, f"its key field {str(obj.get('key'))[:16]}… is not its file's key {key[:16]}…: "
                                 "another run's result stored under this key")
    try:
        actual = spec_key(obj["spec"], schema)
    except ValueError as exc:
        raise CorruptEntry(path, f"its spec cannot be hashed ({exc})") from None
    if actual != key:
        raise CorruptEntry(path, f"its stored spec hashes to {actual[:16]}…, not to its key {key[:16]}…: the spec "
                                 "was changed, or the entry belongs to another run")
    digests = obj.get("weights_sha256", {})
    if not isinstance(digests, dict):
        raise CorruptEntry(path, "its weights_sha256 field is not an object")
    return obj


def load_weights(path: Path, data: bytes, expected: str | None) -> dict[str, np.ndarray]:
    """The arrays of a weights file, after checking its SHA-256 (when the entry recorded one) and that it loads."""
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CorruptEntry(path, "its SHA-256 differs from the one its entry recorded: changed or truncated")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptEntry(path, f"not a readable .npz ({type(exc).__name__}: {exc})") from None


def log_read(path: Path, key: str) -> None:
    """Append {"key", "file"} to the read log named by DGN_RUN_READ_LOG, when set (one short line: O_APPEND)."""
    log = os.environ.get(READ_LOG_ENV, "").strip()
    if not log:
        return
    line = json.dumps({"key": key, "file": Path(path).name}) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def entry_files(root: Path, key: str) -> list[Path]:
    """The files of run `key` in a store folder: its JSON entry and its weights, sorted (missing ones left out)."""
    folder = Path(root) / key[:2]
    return sorted(p for p in [folder / f"{key}.json", *folder.glob(f"{key}.e*.npz")] if p.is_file())


def audit(root: Path, schema: int) -> tuple[int, list[str]]:
    """Check every file of a store folder: (number of entries, problems as 'path: reason' lines)."""
    root = Path(root)
    problems: list[str] = []
    entries = 0
    digests: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("??/*.json")):
        if path.name.startswith("."):
            continue  # a write in flight (or one a kill left): never an entry
        key = path.stem
        if not is_key(key) or path.parent.name != key[:2]:
            problems.append(f"{path}: not a run entry's name (<key[:2]>/<64 hex digits>.json)")
            continue
        entries += 1
        try:
            digests[key] = parse_entry(path, path.read_bytes(), key, schema).get("weights_sha256", {})
        except CorruptEntry as exc:
            problems.append(f"{path}: {exc.reason}")
    for path in sorted(root.glob("??/*.npz")):
        key, _, epoch = path.name.removesuffix(".npz").partition(".e")
        if path.name.startswith("."):
            continue
        if not is_key(key) or not epoch.isdigit():
            problems.append(f"{path}: not a weights file's name (<key>.e<epoch>.npz)")
            continue
        if key not in digests:
            problems.append(f"{path}: weights without a valid entry {key[:16]}….json")
            continue
        try:
            load_weights(path, path.read_bytes(), digests[key].get(epoch))
        except CorruptEntry as exc:
            problems.append(f"{path}: {exc.reason}")
    return entries, problems
