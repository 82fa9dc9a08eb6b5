"""Sequence-classification data sets: sequential MNIST ("smnist") and sequential CIFAR-10 ("scifar").

Both are read with numpy from torchvision's on-disk layout under a data folder:

    <data_dir>/MNIST/raw/{train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte  (or .gz)
    <data_dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch

Only `download` imports torchvision (and so torch); loading never does.
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
import pickle
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from compressm.errors import ConfigError, DataError

DATASETS = ("smnist", "scifar")

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
_LAYOUT = {"smnist": "MNIST/raw/", "scifar": "cifar-10-batches-py/"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A sequence-classification data set held in memory as numpy arrays.

    x arrays are (n, seq_len, input_dim) float32, y arrays are (n,) int32 class labels.
    """

    name: str
    seq_len: int
    input_dim: int
    num_classes: int
    train_x: np.ndarray = field(repr=False)
    train_y: np.ndarray = field(repr=False)
    val_x: np.ndarray = field(repr=False)
    val_y: np.ndarray = field(repr=False)
    test_x: np.ndarray = field(repr=False)
    test_y: np.ndarray = field(repr=False)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The data folder: the argument if given, else $COMPRESSM_DATA, else ./data."""
    if data_dir is None:
        data_dir = os.environ.get("COMPRESSM_DATA") or "data"
    return Path(data_dir).expanduser()


def load_dataset(name: str, data_dir, *, key: jax.Array, val_frac: float = 0.1,
                 limit: int | None = None) -> Dataset:
    """Load `name` from `data_dir` (torchvision's layout) as sequences.

    The training set is split with perm = jax.random.permutation(key, n_train): the first
    round(val_frac * n_train) indices of perm go to val, the rest (in perm order) to train.
    `limit`, if given, keeps only the first `limit` examples of train (after the split), val and test each.
    """
    _check_name(name)
    if not 0 <= val_frac < 1:
        raise ConfigError(f"val_frac must be in [0, 1), got {val_frac}; use e.g. 0.1")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of examples or None, got {limit}")
    data_dir = resolve_data_dir(data_dir)
    if name == "smnist":
        train_x, train_y, test_x, test_y = _load_mnist(data_dir)
    else:
        train_x, train_y, test_x, test_y = _load_cifar10(data_dir)

    perm = np.asarray(jax.random.permutation(key, len(train_x)))
    n_val = round(val_frac * len(train_x))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    arrays = (train_x[train_idx], train_y[train_idx], train_x[val_idx], train_y[val_idx], test_x, test_y)
    if limit is not None:
        arrays = tuple(a[:limit] for a in arrays)
    return Dataset(name, train_x.shape[1], train_x.shape[2], 10, *arrays)


def check_available(name: str, data_dir) -> None:
    """DataError (saying how to download) unless every file of data set `name` is in `data_dir`; reads nothing."""
    _check_name(name)
    data_dir = resolve_data_dir(data_dir)
    if name == "smnist":
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"):
            _mnist_file(data_dir, stem)
        return
    for path in _cifar_files(data_dir):
        if not path.is_file():
            raise _missing("scifar", data_dir, path)


def download(name: str, data_dir) -> Path:
    """Download the data set through torchvision (MNIST / CIFAR10, download=True) into data_dir; returns data_dir.

    Files already in place are not downloaded again.
    """
    _check_name(name)
    data_dir = resolve_data_dir(data_dir)
    target = data_dir / _LAYOUT[name]
    try:
        import torchvision
    except ImportError:
        message = (f"downloading {name} needs torchvision, which is not installed; install it "
                   f"(pip install torchvision) or copy the files in torchvision's layout to {target}")
        raise DataError(message) from None
    dataset_class = torchvision.datasets.MNIST if name == "smnist" else torchvision.datasets.CIFAR10
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            dataset_class(root=data_dir, train=train, download=True)
    except (OSError, RuntimeError) as e:
        reason = " ".join(str(e).split())
        message = (f"could not download {name} into {data_dir} ({reason}); download it on a machine with a network "
                   f"({_download_command(name, data_dir)}) and copy its {_LAYOUT[name]} folder to {target}")
        raise DataError(message) from e
    return data_dir


def _check_name(name: str) -> None:
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown dataset {name!r}: known data sets are {', '.join(DATASETS)}{hint}")


def _download_command(name: str, data_dir: Path) -> str:
    return f"python -m compressm download {name} --data-dir {shlex.quote(str(data_dir))}"


def _missing(name: str, data_dir: Path, path: Path) -> DataError:
    return DataError(f"{name} data not found: {path} does not exist (expected torchvision's layout under "
                     f"{data_dir / _LAYOUT[name]}); download it with: {_download_command(name, data_dir)}")


def _corrupt(name: str, data_dir: Path, path: Path, why: str) -> DataError:
    return DataError(f"corrupt {name} file {path} ({why}); delete it and re-download with: "
                     f"{_download_command(name, data_dir)}")


def _load_mnist(data_dir: Path) -> tuple[np.ndarray, ...]:
    """(train_x (60000, 784, 1), train_y, test_x (10000, 784, 1), test_y), pixels in [0, 1] row-major."""
    out = []
    for split in ("train", "t10k"):
        images_path = _mnist_file(data_dir, f"{split}-images-idx3-ubyte")
        labels_path = _mnist_file(data_dir, f"{split}-labels-idx1-ubyte")
        images = _read_idx(images_path, 2051, (28, 28), data_dir)
        labels = _read_idx(labels_path, 2049, (), data_dir)
        if len(labels) != len(images) or labels.max(initial=0) > 9:
            raise _corrupt("smnist", data_dir, labels_path, f"expected {len(images)} labels in 0..9")
        out += [images.reshape(-1, 784, 1).astype(np.float32) / 255, labels.astype(np.int32)]
    return tuple(out)


def _mnist_file(data_dir: Path, stem: str) -> Path:
    """The uncompressed idx file if present, else the .gz beside it."""
    path = data_dir / "MNIST" / "raw" / stem
    if path.is_file():
        return path
    if path.with_name(stem + ".gz").is_file():
        return path.with_name(stem + ".gz")
    raise _missing("smnist", data_dir, path)


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...], data_dir: Path) -> np.ndarray:
    """An idx file as a (n, *item_shape) uint8 array, after checking its header against the data."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt("smnist", data_dir, path, f"not a valid gzip file: {e}") from None
    header = 4 + 4 * (1 + len(item_shape))
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise _corrupt("smnist", data_dir, path, f"not an idx file with magic number {magic}")
    dims = tuple(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
    if dims[1:] != item_shape:
        raise _corrupt("smnist", data_dir, path, f"items of shape {dims[1:]}, expected {item_shape}")
    if len(raw) - header != math.prod(dims):
        raise _corrupt("smnist", data_dir, path, f"{len(raw) - header} data bytes, header says {math.prod(dims)}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _cifar_files(data_dir: Path) -> list[Path]:
    """The five training batches, then the test batch."""
    folder = data_dir / "cifar-10-batches-py"
    return [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]


def _load_cifar10(data_dir: Path) -> tuple[np.ndarray, ...]:
    """(train_x (50000, 1024, 3), train_y, test_x (10000, 1024, 3), test_y), normalised per channel."""
    *train_files, test_file = _cifar_files(data_dir)
    train = [_read_cifar_batch(path, data_dir) for path in train_files]
    test_x, test_y = _read_cifar_batch(test_file, data_dir)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return _cifar_sequences(train_x), train_y, _cifar_sequences(test_x), test_y


# What a CIFAR-10 python batch may name besides dicts, lists, bytes and ints: numpy's array reconstruction
# (Python 2's numpy.core is numpy._core since numpy 2; protocol 5 pickles rebuild arrays with _frombuffer),
# and _codecs.encode, with which Python 3 writes bytes in protocol 2.
_CIFAR_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
    (f"{core}.{module}", name) for core in ("numpy.core", "numpy._core")
    for module, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR batch holds; any other global is an UnpicklingError."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no CIFAR-10 batch holds")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _read_cifar_batch(path: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch: data (n, 3072) uint8 channel-major, labels (n,) int32.

    Read with a restricted unpickler (`_CIFAR_GLOBALS`): a planted pickle that names anything else (a
    function to call, a class to build) is refused before it runs.
    """
    if not path.is_file():
        raise _missing("scifar", data_dir, path)
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], np.asarray(batch[b"labels"], dtype=np.int64)
    except pickle.UnpicklingError as e:
        raise _corrupt("scifar", data_dir, path, f"refused to unpickle it: {e}") from None
    except Exception as e:  # unpickling a damaged file can raise almost anything
        raise _corrupt("scifar", data_dir, path, f"cannot read the pickled batch: {type(e).__name__}") from None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise _corrupt("scifar", data_dir, path, "b'data' is not a uint8 array of shape (n, 3072)")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise _corrupt("scifar", data_dir, path, f"expected {len(data)} labels in 0..9")
    return data, labels.astype(np.int32)


def _cifar_sequences(data: np.ndarray) -> np.ndarray:
    """(n, 3072) uint8 channel-major -> (n, 1024, 3) float32, normalised per channel, pixels row-major."""
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255
    return ((images - CIFAR_MEAN) / CIFAR_STD).reshape(-1, 1024, 3)
