"""Run records on disk: one folder per run, written atomically, and loaded back into pandas.

    runs/<profile>/<config>/seed_<seed>/
        config.yaml      the resolved RunConfig
        hsv.npz          HSV spectra of every block at init and every evaluation (keys step<7 digits>_block<i>)
        params.msgpack   final parameters and batch statistics (flax msgpack, no pickle)
        metrics.json     status, summary, history, reduction events, environment; written LAST
        train.ipynb      the executed notebook, when the run was made through papermill

Every file is written to a temporary name and renamed, and metrics.json goes last, so a folder whose
metrics.json is missing (or says "failed") is never taken for a result.
"""

import io
import json
import os
import platform
import subprocess
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pandas as pd
import yaml

from compressm.configs import RunConfig
from compressm.errors import CompressmError

SCHEMA_VERSION = 1
METRICS = "metrics.json"


def run_dir(root: Path | str, profile: str, config_name: str, seed: int) -> Path:
    """The record folder of one run: root/profile/config/seed_<seed>."""
    return Path(root) / profile / config_name / f"seed_{seed}"


def prepare_run_dir(path: Path | str) -> Path:
    """Create the folder if needed and check it is writable (one-line CompressmError if not)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CompressmError(f"output folder {path} is not writable ({error.strerror}); choose another with --out")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _plain(value):
    """JSON-ready copy: numpy/jax scalars and arrays to Python, NaN and infinities to null (strict JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _git_commit() -> str:
    """$COMPRESSM_COMMIT if set (copies without this tree's .git), else the library's commit (+dirty if compressm/
    has changes), else 'unknown'."""
    if os.environ.get("COMPRESSM_COMMIT"):
        return os.environ["COMPRESSM_COMMIT"]
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "compressm"], cwd=root, capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Hardware, package versions and library commit, for a record."""
    import flax
    import optax

    device = jax.devices()[0]
    backend = jax.default_backend()
    return {
        "backend": backend,
        "device": device.device_kind if backend != "cpu" else f"{_cpu_name()} ({os.cpu_count()} cores)",
        "hardware": f"{backend}: " + (device.device_kind if backend != "cpu" else f"{os.cpu_count()}-core CPU"),
        "python": platform.python_version(),
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
                     "numpy": np.__version__},
        "commit": _git_commit(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # e.g. single-threaded runs under reproduce --jobs 2
        "matmul_precision": str(jax.config.jax_default_matmul_precision or "default"),
    }


def save_run(out_dir: Path, config: RunConfig, metrics: dict, hsvs: dict, variables: dict) -> None:
    """Write a run's record files; metrics.json (with schema version and environment) goes last."""
    out_dir = Path(out_dir)
    (out_dir / METRICS).unlink(missing_ok=True)  # never pair an old metrics.json with new files
    _atomic_write(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    buffer = io.BytesIO()
    np.savez(buffer, **hsvs)
    _atomic_write(out_dir / "hsv.npz", buffer.getvalue())
    _atomic_write(out_dir / "params.msgpack", flax.serialization.msgpack_serialize(jax.device_get(variables)))
    _write_metrics(out_dir, metrics)


def _write_metrics(out_dir: Path, metrics: dict) -> None:
    """metrics.json with schema version and environment: the file that marks a record as written."""
    record = {"schema_version": SCHEMA_VERSION, **metrics, "environment": environment()}
    _atomic_write(Path(out_dir) / METRICS, json.dumps(_plain(record), indent=1, allow_nan=False).encode())


def save_failure(out_dir: Path, config: RunConfig, seed: int, reason: str) -> None:
    """Record a run that failed before it could write its own record (e.g. its notebook raised)."""
    summary = dict.fromkeys(["test_acc", "best_val_acc", "mean_state_size", "train_time_s", "eval_time_s",
                             "reduction_time_s", "wall_time_s"], float("nan"))
    summary.update(best_step=0, steps_done=0, state_sizes_at_best=[], final_state_sizes=[])
    metrics = {"status": "failed", "failure": {"step": None, "reason": reason}, "config": config.name,
               "profile": config.profile, "seed": seed, "recurrence": None, "summary": summary,
               "history": [], "reductions": [], "rollbacks": []}
    _write_metrics(out_dir, metrics)


def load_metrics(path: Path | str) -> dict:
    """The metrics.json of a run folder."""
    return json.loads((Path(path) / METRICS).read_text())


def is_complete(path: Path | str) -> bool:
    """Whether a run folder holds a finished, successful run."""
    try:
        return load_metrics(path)["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def load_hsvs(path: Path | str) -> dict[str, np.ndarray]:
    """HSV snapshots of a run, {'step0005000_block0': (N,) array, ...}."""
    with np.load(Path(path) / "hsv.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_variables(path: Path | str) -> dict:
    """Final {'params', 'batch_stats'} of a run, as nested dicts of numpy arrays."""
    return flax.serialization.msgpack_restore((Path(path) / "params.msgpack").read_bytes())


def load_config(path: Path | str) -> dict:
    """The resolved config of a run, as a dict."""
    return yaml.safe_load((Path(path) / "config.yaml").read_text())


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per run folder under root/<profile>/<config>/seed_<seed>/ that has a metrics.json.

    Columns: profile, config, seed, status, test_acc, best_val_acc, mean_state_size, final_state_sizes, steps,
    train_time_s, wall_time_s, eval_time_s, reduction_time_s, recurrence, hardware, commit, path.
    Failed runs are included (status 'failed'); filter on status before aggregating.
    """
    rows = []
    for path in sorted(Path(root).glob(f"*/*/seed_*/{METRICS}")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            raise CompressmError(f"{path} is not valid JSON; delete that run folder and re-run it") from None
        if record.get("schema_version") != SCHEMA_VERSION:
            raise CompressmError(f"{path} has schema version {record.get('schema_version')}, expected "
                                 f"{SCHEMA_VERSION}; re-run it or load it with the matching library version")
        summary = record["summary"]
        rows.append({
            "profile": record["profile"], "config": record["config"], "seed": record["seed"],
            "status": record["status"], "test_acc": summary["test_acc"], "best_val_acc": summary["best_val_acc"],
            "mean_state_size": summary["mean_state_size"], "final_state_sizes": summary["final_state_sizes"],
            "steps": summary["steps_done"], "train_time_s": summary["train_time_s"],
            "wall_time_s": summary["wall_time_s"], "eval_time_s": summary["eval_time_s"],
            "reduction_time_s": summary["reduction_time_s"], "recurrence": record["recurrence"],
            "hardware": record["environment"]["hardware"], "commit": record["environment"]["commit"],
            "path": str(path.parent),
        })
    columns = ["profile", "config", "seed", "status", "test_acc", "best_val_acc", "mean_state_size",
               "final_state_sizes", "steps", "train_time_s", "wall_time_s", "eval_time_s", "reduction_time_s",
               "recurrence", "hardware", "commit", "path"]
    numeric = ["test_acc", "best_val_acc", "mean_state_size", "train_time_s", "wall_time_s", "eval_time_s",
               "reduction_time_s"]
    return pd.DataFrame(rows, columns=columns).astype({column: float for column in numeric})  # null -> NaN
