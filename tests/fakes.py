"""Small generated data sets in the real on-disk formats, for tests that must not need the real data."""

import pickle
from pathlib import Path

import numpy as np

CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar_batch(path: Path, data: np.ndarray, labels, batch_label: str = "batch") -> None:
    """Write one CIFAR-10 python batch: data (n, 3072) uint8, channel-major (all R, then G, then B, each row-major)."""
    batch = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": np.asarray(data, dtype=np.uint8),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(data))],
    }
    with open(path, "wb") as f:
        pickle.dump(batch, f)


def write_fake_cifar10(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """Write random CIFAR-10 python-format files under root/cifar-10-batches-py/ and return root.

    Five training batches of n_train_per_batch images, a test batch of n_test images, and batches.meta.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {f"data_batch_{i}": n_train_per_batch for i in range(1, 6)} | {"test_batch": n_test}
    for filename, n in sizes.items():
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        write_cifar_batch(folder / filename, data, rng.integers(0, 10, size=n), batch_label=filename)
    meta = {
        b"num_cases_per_batch": n_train_per_batch,
        b"label_names": [name.encode() for name in CIFAR10_LABEL_NAMES],
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file (magic 0x0000 08 <ndim>, big-endian int32 sizes, then the bytes)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + array.tobytes())


def write_fake_mnist(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Write random MNIST idx files under root/MNIST/raw/ (torchvision's layout) and return root."""
    root = Path(root)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, size=n))
    return root


def write_fake_run(root: Path, config: str, profile: str, seed: int, *, test_acc: float = 0.9,
                   state_size: float | None = None, train_time_s: float = 100.0, status: str = "complete",
                   norm: str | None = "packaged", hardware: str = "cpu: 2-core CPU", recurrence: str = "conv",
                   steps: int | None = None, other_cpu_s: float | None = None,
                   resumes: list[int] | None = None, authors: tuple[float, int] | None = None) -> Path:
    """A run folder with config.yaml and metrics.json as the library writes them, holding the given numbers (no
    parameters or HSVs), where the library puts it (`records.run_dir`). norm: 'packaged' keeps the config's
    model.norm, None drops the key (a record written before the field existed: trained with 'batch'), else that
    value; other_cpu_s and resumes None leave those keys out (a record written before they existed); `authors`
    = (test accuracy, stop step) records the authors' model-selection outcome beside the run's own."""
    import json

    import yaml

    from compressm import records
    from compressm.configs import from_dict, get_config

    resolved = get_config(config, profile)
    values = resolved.to_dict()
    if norm is None:
        del values["model"]["norm"]
    elif norm != "packaged":
        values["model"]["norm"] = norm
    folder = records.run_dir(root, from_dict(records.upgraded_config(values)), seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    size = float(resolved.model.state_size if state_size is None else state_size)
    summary = {"test_acc": test_acc, "best_val_acc": test_acc, "best_step": 1, "state_sizes_at_best": [size],
               "final_state_sizes": [size], "mean_state_size": size, "train_time_s": train_time_s,
               "eval_time_s": 1.0, "reduction_time_s": 0.0, "wall_time_s": train_time_s + 1.0,
               "steps_done": steps or resolved.steps}
    if other_cpu_s is not None:
        summary["other_cpu_s"] = other_cpu_s
    metrics = {"schema_version": 1, "status": status, "failure": None, "config": config, "profile": profile,
               "seed": seed, "recurrence": recurrence, "summary": summary, "history": [], "reductions": [],
               "rollbacks": [], "environment": {"hardware": hardware, "commit": "0123456789abcdef"}}
    if resumes is not None:
        metrics["resumes"] = resumes
    if authors is not None:
        metrics["selection"] = {"authors": {"test_acc": authors[0], "stopped_step": authors[1]}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder
