"""Tests for compressm.data: real MNIST (when present), generated CIFAR-10 / MNIST files, and the error messages."""

import collections
import gzip
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from compressm.data import (CIFAR_MEAN, CIFAR_STD, DATASETS, check_available, download, load_dataset,
                            resolve_data_dir)
from compressm.errors import ConfigError, DataError
from conftest import SHARED_DATA, needs_mnist
from fakes import write_cifar_batch, write_fake_cifar10, write_fake_mnist

REPO = Path(__file__).resolve().parents[1]
MNIST_RAW = SHARED_DATA / "MNIST" / "raw"


def _row_counts(x: np.ndarray) -> collections.Counter:
    """How often each example (row of x) occurs, keyed by its bytes."""
    return collections.Counter(row.tobytes() for row in x)


def _block_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise socket.gaierror("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---------------------------------------------------------------- real MNIST

@pytest.fixture(scope="module")
def mnist():
    return load_dataset("smnist", SHARED_DATA, key=jax.random.key(0))


@needs_mnist
def test_mnist_shapes_dtypes_and_values(mnist):
    assert (mnist.name, mnist.seq_len, mnist.input_dim, mnist.num_classes) == ("smnist", 784, 1, 10)
    assert mnist.train_x.shape == (54000, 784, 1) and mnist.train_y.shape == (54000,)
    assert mnist.val_x.shape == (6000, 784, 1) and mnist.val_y.shape == (6000,)
    assert mnist.test_x.shape == (10000, 784, 1) and mnist.test_y.shape == (10000,)
    for x, y in [(mnist.train_x, mnist.train_y), (mnist.val_x, mnist.val_y), (mnist.test_x, mnist.test_y)]:
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() == 0.0 and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
    assert mnist.test_y[:3].tolist() == [7, 2, 1]  # the well-known first test digits


@needs_mnist
def test_mnist_pixels_are_row_major_and_scaled(mnist):
    raw = np.frombuffer((MNIST_RAW / "t10k-images-idx3-ubyte").read_bytes(), np.uint8, offset=16)
    first_image = raw[:784].reshape(28, 28)
    row, col = np.unravel_index(np.argmax(first_image), (28, 28))
    assert mnist.test_x[0, row * 28 + col, 0] == pytest.approx(first_image[row, col] / 255)
    np.testing.assert_allclose(mnist.test_x[0, :, 0], first_image.ravel() / 255, rtol=1e-6)


@needs_mnist
def test_mnist_split_is_deterministic_and_a_partition():
    import torchvision

    a = load_dataset("smnist", SHARED_DATA, key=jax.random.key(1), val_frac=0.1)
    b = load_dataset("smnist", SHARED_DATA, key=jax.random.key(1), val_frac=0.1)
    c = load_dataset("smnist", SHARED_DATA, key=jax.random.key(2), val_frac=0.1)
    np.testing.assert_array_equal(a.val_x, b.val_x)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.val_y, c.val_y)

    full = torchvision.datasets.MNIST(root=SHARED_DATA, train=True, download=False)
    full_x = full.data.numpy().reshape(60000, 784)
    # As multisets of images, train + val is exactly the training set (and so, with 54000 + 6000 rows, disjoint).
    assert _row_counts(np.rint(a.train_x[..., 0] * 255).astype(np.uint8)) + \
        _row_counts(np.rint(a.val_x[..., 0] * 255).astype(np.uint8)) == _row_counts(full_x)
    assert sorted(np.concatenate([a.train_y, a.val_y]).tolist()) == sorted(full.targets.tolist())


@needs_mnist
def test_mnist_matches_torchvision(mnist):
    import torchvision

    test = torchvision.datasets.MNIST(root=SHARED_DATA, train=False, download=False)
    np.testing.assert_array_equal(np.rint(mnist.test_x[..., 0] * 255).astype(np.uint8),
                                  test.data.numpy().reshape(10000, 784))
    np.testing.assert_array_equal(mnist.test_y, test.targets.numpy())


@needs_mnist
def test_download_finds_existing_mnist_without_network(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST_RAW.iterdir():
        (raw / f.name).symlink_to(f)
    _block_network(monkeypatch)
    assert download("smnist", tmp_path) == tmp_path
    assert load_dataset("smnist", tmp_path, key=jax.random.key(0), limit=5).test_y.tolist() == [7, 2, 1, 0, 4]


# ---------------------------------------------------------------- generated files

def test_scifar_shapes_split_and_limit(tmp_path):
    write_fake_cifar10(tmp_path, n_train_per_batch=20, n_test=15)
    ds = load_dataset("scifar", tmp_path, key=jax.random.key(0), val_frac=0.1)
    assert (ds.name, ds.seq_len, ds.input_dim, ds.num_classes) == ("scifar", 1024, 3, 10)
    assert ds.train_x.shape == (90, 1024, 3) and ds.val_x.shape == (10, 1024, 3) and ds.test_x.shape == (15, 1024, 3)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    lo, hi = -CIFAR_MEAN / CIFAR_STD, (1 - CIFAR_MEAN) / CIFAR_STD
    assert np.all(ds.train_x >= lo - 1e-6) and np.all(ds.train_x <= hi + 1e-6)

    small = load_dataset("scifar", tmp_path, key=jax.random.key(0), val_frac=0.1, limit=4)
    assert len(small.train_x) == len(small.val_x) == len(small.test_x) == 4
    np.testing.assert_array_equal(small.val_x, ds.val_x[:4])


def test_scifar_normalisation_and_pixel_order(tmp_path):
    write_fake_cifar10(tmp_path)
    image = np.zeros((3, 32, 32), np.uint8)  # channel-major, as in the real files
    image[0, 0, 1] = 255  # red at row 0, column 1
    image[1, 2, 0] = 51  # green at row 2, column 0
    image[2, 31, 31] = 255  # blue at the last pixel
    write_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", image.reshape(1, 3072), [3])
    ds = load_dataset("scifar", tmp_path, key=jax.random.key(0))
    x = ds.test_x[0]
    assert ds.test_y.tolist() == [3]
    assert x[0, 0] == pytest.approx(-0.4914 / 0.2023)  # value 0 in channel 0
    assert x[1, 0] == pytest.approx((1 - 0.4914) / 0.2023)  # pixel (0, 1) is step 1
    assert x[2 * 32, 1] == pytest.approx((0.2 - 0.4822) / 0.1994)  # pixel (2, 0) is step 64
    assert x[1023, 2] == pytest.approx((1 - 0.4465) / 0.2010)
    assert x[1023, 0] == pytest.approx(-0.4914 / 0.2023)


def test_fake_mnist_loads_from_gz(tmp_path):
    write_fake_mnist(tmp_path, n_train=30, n_test=7)
    raw = tmp_path / "MNIST" / "raw"
    plain = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(plain))
    (raw / "t10k-images-idx3-ubyte").unlink()
    ds = load_dataset("smnist", tmp_path, key=jax.random.key(0), val_frac=0.2)
    assert ds.train_x.shape == (24, 784, 1) and ds.val_x.shape == (6, 784, 1) and ds.test_x.shape == (7, 784, 1)
    np.testing.assert_array_equal(ds.test_x[..., 0] * 255, np.frombuffer(plain, np.uint8, offset=16).reshape(7, 784))


def test_val_frac_zero_gives_empty_val(tmp_path):
    write_fake_mnist(tmp_path, n_train=10)
    ds = load_dataset("smnist", tmp_path, key=jax.random.key(0), val_frac=0.0)
    assert ds.train_x.shape == (10, 784, 1) and ds.val_x.shape == (0, 784, 1) and ds.val_y.shape == (0,)


def test_loading_does_not_import_torch(tmp_path):
    write_fake_cifar10(tmp_path)
    code = ("import sys, jax; from compressm.data import load_dataset; "
            f"load_dataset('scifar', {str(tmp_path)!r}, key=jax.random.key(0)); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("name", DATASETS)
def test_missing_folder_names_download_command(tmp_path, name):
    with pytest.raises(DataError) as err:
        load_dataset(name, tmp_path / "nowhere", key=jax.random.key(0))
    message = str(err.value)
    assert "\n" not in message
    assert f"python -m compressm download {name} --data-dir {tmp_path / 'nowhere'}" in message
    assert str(tmp_path / "nowhere") in message


@pytest.mark.parametrize("damage", ["truncate", "magic"])
def test_corrupt_idx_file(tmp_path, damage):
    write_fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:1000] if damage == "truncate" else b"\x00\x00\x08\x01" + data[4:])
    with pytest.raises(DataError, match="corrupt") as err:
        load_dataset("smnist", tmp_path, key=jax.random.key(0))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "delete it" in message
    assert "python -m compressm download smnist --data-dir" in message


def test_corrupt_cifar_batch(tmp_path):
    write_fake_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="corrupt") as err:
        load_dataset("scifar", tmp_path, key=jax.random.key(0))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


class _Planted:
    """A pickle that runs a shell command when loaded with pickle.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["data", "batch"])
def test_planted_cifar_pickle_is_refused_before_it_runs(tmp_path, where):
    write_fake_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    marker = tmp_path / "pwned"
    payload = {b"data": _Planted(marker), b"labels": [0]} if where == "data" else _Planted(marker)
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError) as err:
        load_dataset("scifar", tmp_path, key=jax.random.key(0))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "refused to unpickle it: it names posix.system, which no CIFAR-10 batch holds" in message
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cifar_batches_of_every_pickle_protocol_load(tmp_path, protocol):
    write_fake_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    assert load_dataset("scifar", tmp_path, key=jax.random.key(0)).test_x.shape == (20, 1024, 3)


@pytest.mark.parametrize("name", DATASETS)
def test_check_available_names_the_first_missing_file(tmp_path, name):
    (write_fake_mnist if name == "smnist" else write_fake_cifar10)(tmp_path)
    check_available(name, tmp_path)
    missing = (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte" if name == "smnist"
               else tmp_path / "cifar-10-batches-py" / "test_batch")
    missing.unlink()
    with pytest.raises(DataError, match=f"{missing} does not exist"):
        check_available(name, tmp_path)


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'smnist'") as err:
        load_dataset("smnsit", "data", key=jax.random.key(0))
    assert "smnist, scifar" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'scifar'"):
        download("cifar", "data")


@pytest.mark.parametrize("val_frac", [1.0, -0.1, float("nan")])
def test_bad_val_frac(tmp_path, val_frac):
    with pytest.raises(ConfigError, match=r"val_frac must be in \[0, 1\)"):
        load_dataset("smnist", tmp_path, key=jax.random.key(0), val_frac=val_frac)


@pytest.mark.parametrize("name", DATASETS)
def test_download_without_network_is_one_line_data_error(tmp_path, monkeypatch, name):
    _block_network(monkeypatch)
    with pytest.raises(DataError, match="could not download") as err:
        download(name, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "machine with a network" in message
    assert f"python -m compressm download {name} --data-dir {tmp_path}" in message


# ---------------------------------------------------------------- resolve_data_dir

def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESSM_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("COMPRESSM_DATA")
    assert resolve_data_dir(None) == Path("data")
