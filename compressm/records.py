"""Run records on disk: one folder per run, bound to one identity, one writer at a time, loaded into pandas.

    runs/<profile>/<config>/seed_<seed>/               a config as packaged (the folder the book counts)
    runs/<profile>/<config>@<overrides>/seed_<seed>/   the same config with overrides, e.g. smnist_tau0.02@steps=10
        config.yaml        the run's identity: its seed and resolved config; written FIRST, checked by every writer
        checkpoint.msgpack the run state at its last evaluation, with the run's identity and code commit (while
                           unfinished; see `train.py`): a resume refuses another run's, or another commit's
        hsv.npz            HSV spectra of every block at init and every evaluation (keys from `hsv_key`)
        dynamics.npz       HSV dynamics between evaluations, if the config records them (`dynamics.arrays`)
        params.msgpack     final parameters and batch statistics (flax msgpack, no pickle)
        metrics.json       status, summary, history, reduction events, environment, and the SHA-256 of each
                           file above but the checkpoint ("files"); written LAST
        train.ipynb        the executed notebook, when the run was made through papermill (a log written
                           around the run, so no digest)
        .lock              the writer's lock (fcntl), held while a process writes the folder

Every file is written to a temporary name and renamed, and metrics.json goes last, so a folder whose
metrics.json is missing (or says "failed") is never taken for a result. Every reader checks the digests
(`verify_record`, and each loader its own file; records written before digests were kept are read unchecked): a
damaged record is a one-line `DamagedRecord` error, and `load_runs` lists it as "damaged", never counted
(`left_out_note`). A record counts in the book only if its identity is the one its folder's name gives
(`folder_identity`).
"""

import dataclasses
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import platform
import subprocess
from contextlib import contextmanager
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pandas as pd
import yaml

from compressm.configs import ModelConfig, RunConfig, from_dict, get_config, load_yaml
from compressm.errors import CompressmError, excerpt

REPO = Path(__file__).resolve().parents[1]
RUNS_ENV = "COMPRESSM_RUNS"  # the runs folder the book reads (default: runs/ in the repository)
SCHEMA_VERSION = 1
CONFIG, METRICS, CHECKPOINT, LOCK = "config.yaml", "metrics.json", "checkpoint.msgpack", ".lock"
HSVS, PARAMS, DYNAMICS, NOTEBOOK = "hsv.npz", "params.msgpack", "dynamics.npz", "train.ipynb"

# Fields added to the config after records were first written, with the value every earlier record used.
_ADDED_FIELDS = {"model": {"norm": "batch", "time_channel": False, "dropout_mask": "example"}}
_SECTIONS = {"model": ModelConfig}


def runs_root(root: Path | str | None = None) -> Path:
    """The runs folder: the argument, else $COMPRESSM_RUNS, else runs/ in the repository."""
    return Path(root or os.environ.get(RUNS_ENV) or REPO / "runs")


def hsv_key(step: int, block: int) -> str:
    """Key of a block's HSV snapshot in hsv.npz."""
    return f"step{step:07d}_block{block}"


def snapshot_steps(hsvs: dict) -> list[int]:
    """Sorted steps at which `hsvs` (keys from `hsv_key`) holds snapshots."""
    return sorted({int(key[len("step"):].split("_")[0]) for key in hsvs})


# ----------------------------------------------------------------------------------------------------------
# Identity: (resolved config, seed), and the folder it belongs in
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _packaged(name: str, profile: str) -> RunConfig | None:
    """The config `name` as packaged, scaled to `profile`; None if there is no such config or profile."""
    try:
        return get_config(name, profile)
    except CompressmError:
        return None


def _flat(values: dict, prefix: str = "") -> dict:
    """{'model': {'width': 8}} -> {'model.width': 8}."""
    out = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def run_name(config: RunConfig) -> str:
    """'smnist_tau0.02' for a packaged config, else 'smnist_tau0.02@steps=10,reduction.tau=0.5' (the keys
    that differ from the packaged config, sorted; a hash replaces the list where it would be too long)."""
    packaged = _packaged(config.name, config.profile)
    if packaged == config:
        return config.name
    base = _flat(packaged.to_dict()) if packaged else {}
    changed = sorted((k, v) for k, v in _flat(config.to_dict()).items() if k not in base or base[k] != v)
    slug = ",".join(f"{key}={value}" for key, value in changed)
    if len(slug) > 120 or not packaged:
        slug = f"{slug[:80]}~{hashlib.sha256(slug.encode()).hexdigest()[:10]}"
    return f"{config.name}@{slug}"


def describe(config: RunConfig, seed: int) -> str:
    """'smnist_tau0.02@steps=10 seed 3 (smoke profile)': a run's identity in words."""
    return f"{run_name(config)} seed {seed} ({config.profile} profile)"


def run_dir(root: Path | str, config: RunConfig, seed: int) -> Path:
    """The record folder of a run: root/<profile>/<run_name(config)>/seed_<seed>."""
    return Path(root) / config.profile / run_name(config) / f"seed_{seed}"


def folder_identity(path: Path | str) -> tuple[RunConfig, int] | None:
    """The (config, seed) that a folder named <profile>/<config>/seed_<seed> stands for; None for other names."""
    path = Path(path)
    seed = path.name.removeprefix("seed_")
    if not seed.isdigit() or path.name != f"seed_{int(seed)}" or len(path.parts) < 3:
        return None
    config = _packaged(path.parent.name, path.parent.parent.name)
    return (config, int(seed)) if config else None


def upgraded_config(values: dict) -> dict:
    """A stored config dict in today's layout: a field added since it was written gets the value older runs
    used (`_ADDED_FIELDS`; e.g. records without model.norm were trained with batch statistics)."""
    values = dict(values)
    for section, added in _ADDED_FIELDS.items():
        known = {f.name for f in dataclasses.fields(_SECTIONS[section])}
        values[section] = {**{k: v for k, v in added.items() if k in known}, **(values.get(section) or {})}
    return values


def _read_yaml(file: Path) -> dict:
    try:
        values = load_yaml(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CompressmError(f"{file} is not valid YAML ({type(error).__name__}); delete that run folder") from None
    if not isinstance(values, dict):
        raise CompressmError(f"{file} is not a run config; delete that run folder")
    return values


def stored_identity(path: Path | str) -> tuple[RunConfig, int] | None:
    """The (config, seed) recorded in a run folder's config.yaml; None if it has none.

    Records written before the seed was stored beside the config take it from their metrics.json.
    """
    path = Path(path)
    if not (path / CONFIG).is_file():
        return None
    values = _read_yaml(path / CONFIG)
    if "seed" not in values and not (path / METRICS).is_file():
        raise CompressmError(f"{path / CONFIG} names no seed and the folder holds no record (an older library's"
                             " run that never finished); delete that folder and re-run")
    seed = values.pop("seed") if "seed" in values else load_metrics(path)["seed"]
    try:
        return from_dict(upgraded_config(values)), seed
    except CompressmError as error:
        raise CompressmError(f"{path / CONFIG} does not load ({error}); it was edited or written by another"
                             " version of the library") from None


def load_config(path: Path | str) -> dict:
    """The resolved config of a run, as a dict (in today's layout, see `upgraded_config`)."""
    return stored_identity(path)[0].to_dict()


def _writer_identity(path: Path) -> tuple[RunConfig, int] | None:
    """The stored identity of a folder about to be written; a one-line CompressmError if it is neither new, nor
    empty, nor a run folder (one with a run's config.yaml; a lock, an executed notebook and temporary files may
    come before it)."""
    not_a_run = lambda why: CompressmError(f"{path} is not a run folder ({why}); changed nothing: choose another"
                                           " --out, a new or empty folder")
    others = [p.name for p in path.iterdir() if p.name not in (LOCK, NOTEBOOK) and ".tmp-" not in p.name] \
        if path.is_dir() else []
    if others and not (path / CONFIG).is_file():
        raise not_a_run(f"it holds {excerpt(sorted(others))} and no {CONFIG}")
    try:
        return stored_identity(path)
    except CompressmError:
        if folder_identity(path.resolve()):
            raise  # a folder of the runs tree whose config.yaml is damaged: its error says to delete it
        raise not_a_run(f"its {CONFIG} is not a run's") from None


def check_identity(path: Path | str, config: RunConfig, seed: int) -> None:
    """Raise a one-line CompressmError unless run folder `path` may hold the run (config, seed): it is new, empty
    or a run folder; its name, with links resolved, does not stand for another run; and it holds no other run."""
    path = Path(path)
    for claim, what in ((folder_identity(path.resolve()), "is the folder of"), (_writer_identity(path), "holds")):
        if claim is not None and claim != (config, seed):
            raise CompressmError(f"{path} {what} {describe(*claim)}, not {describe(config, seed)}; changed nothing."
                                 f" This run's own folder is <runs>/{config.profile}/{run_name(config)}/seed_{seed}"
                                 " (the default when --out is left out)")


def _unwritable(path: Path, error: OSError, option: str) -> CompressmError:
    return CompressmError(f"output folder {path} is not writable ({error.strerror}); choose another with {option}")


def make_folder(path: Path | str, option: str) -> Path:
    """Folder `path`, made with its parents if missing; a one-line CompressmError saying to choose another with
    `option` (the command-line option that named it) if it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(path, error, option) from None
    return path


@contextmanager
def locked(path: Path | str, option: str = "--out"):
    """Hold the exclusive writer lock of run folder `path` (created if needed) for the `with` block.

    fcntl.flock on path/.lock: released when the block ends or the process dies. A second writer gets a
    one-line CompressmError at once instead of waiting; an unwritable folder one that says to choose another
    with `option`.
    """
    path = make_folder(path, option)
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _unwritable(path, error, option) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CompressmError(f"{path} is being written by another process (pid {holder}); wait for it to"
                                 " finish, or stop it and re-run the same command to resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


@contextmanager
def claimed(path: Path | str, config: RunConfig, seed: int):
    """Run folder `path` held for writing run (config, seed): locked, its identity checked (and written if new),
    a failed record and temporary files of earlier attempts removed. Yields the folder."""
    with locked(path) as path:
        check_identity(path, config, seed)
        if not (path / CONFIG).is_file():
            _atomic_write(path / CONFIG, yaml.safe_dump({"seed": seed, **config.to_dict()}, sort_keys=False).encode())
        if record_state(path) == "failed":
            (path / METRICS).unlink()
        for leftover in path.glob(".*.tmp-*"):
            leftover.unlink()
        yield path


class DamagedRecord(CompressmError):
    """A record file that is missing, unreadable, or not the one its metrics.json keeps the digest of; or an
    unreadable checkpoint."""


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (one-line error if it fails)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CompressmError(f"could not write {path} ({error.strerror}); free space or fix permissions, then"
                             " re-run the same command (it resumes from the last checkpoint)") from None


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


@functools.cache
def _git_commit() -> str:
    """$COMPRESSM_COMMIT if set (copies without this tree's .git), else the library's commit (+dirty if compressm/
    has changes), else 'unknown'. Read once per process, when it first imports this module: the commit of the
    code the process runs, even if the checkout moves on while a long run trains."""
    if os.environ.get("COMPRESSM_COMMIT"):
        return os.environ["COMPRESSM_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "compressm"], cwd=REPO, capture_output=True,
                               text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


_git_commit()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process, threads and finished
    child processes included), or None where /proc/stat is missing (not Linux)."""
    try:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    except (OSError, ValueError):
        return None
    own = os.times()
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), sum(own[:4])


class OtherLoad:
    """What else ran: `seconds()` is the CPU time that other processes used since this object was made (a
    papermill driver waiting on its kernel counts, at next to nothing); NaN where it cannot be measured."""

    def __init__(self):
        self._start = _cpu_seconds()

    def seconds(self) -> float:
        end = _cpu_seconds()
        if self._start is None or end is None:
            return math.nan
        return max(0.0, (end[0] - self._start[0]) - (end[1] - self._start[1]))


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


EMPTY_SUMMARY = {  # the summary of metrics.json, as a run that measured nothing has it
    "test_acc": float("nan"), "best_val_acc": float("nan"), "best_step": 0, "state_sizes_at_best": [],
    "final_state_sizes": [], "mean_state_size": float("nan"), "train_time_s": float("nan"),
    "eval_time_s": float("nan"), "reduction_time_s": float("nan"), "wall_time_s": float("nan"), "steps_done": 0,
}


def metrics_record(config: RunConfig, seed: int, *, status: str, failure: dict | None = None,
                   recurrence: str | None = None, summary: dict | None = None, history=(), reductions=(),
                   rollbacks=(), resumes=(), commits=(), teacher: dict | None = None,
                   selection: dict | None = None) -> dict:
    """The content of metrics.json (saving adds schema version and environment): the one place its layout is built.

    `summary` has the keys of EMPTY_SUMMARY; `resumes` lists the steps from which the run was resumed and
    `commits` the library commit of each segment (the start, then each resume); `teacher`
    is a distillation run's teacher (`distill.identity_of`: config, profile, seed, parameter digest, commit);
    `selection` is each model-selection rule's outcome (`selection.py`; the summary repeats the config's rule).
    """
    return {"status": status, "failure": failure, "config": config.name, "profile": config.profile, "seed": seed,
            "recurrence": recurrence, "summary": {**EMPTY_SUMMARY, **(summary or {})}, "history": list(history),
            "reductions": list(reductions), "rollbacks": list(rollbacks), "resumes": list(resumes), "commits": list(commits),
            "teacher": teacher, "selection": selection}


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_run(path: Path | str, metrics: dict, hsvs: dict, variables: dict, dynamics: dict | None = None) -> None:
    """Write a run's record files into its claimed folder (dynamics.npz only if `dynamics` holds arrays);
    metrics.json (with schema version, environment and the SHA-256 of every other file, config.yaml included)
    goes last. The checkpoint of a complete run is then deleted: the record holds all it had that a reader needs,
    and a complete run is never resumed. A failed run keeps it, for a re-run to resume from."""
    path = Path(path)
    files = {HSVS: _npz(hsvs), **({DYNAMICS: _npz(dynamics)} if dynamics else {}),
             PARAMS: flax.serialization.msgpack_serialize(jax.device_get(variables))}
    for name, data in files.items():
        _atomic_write(path / name, data)
    digests = {name: _sha256(data) for name, data in files.items()}
    _write_metrics(path, {**metrics, "files": {CONFIG: _sha256((path / CONFIG).read_bytes()), **digests}})
    if metrics["status"] == "complete":
        (path / CHECKPOINT).unlink(missing_ok=True)


def _write_metrics(path: Path, metrics: dict) -> None:
    record = {"schema_version": SCHEMA_VERSION, **metrics, "environment": environment()}
    _atomic_write(Path(path) / METRICS, json.dumps(_plain(record), indent=1, allow_nan=False).encode())


def save_failure(path: Path | str, config: RunConfig, seed: int, reason: str) -> None:
    """Record a run that failed before it could write its own record (e.g. its notebook's kernel died).

    Takes the folder's lock; a complete record or another run's folder is left alone (CompressmError).
    """
    with claimed(path, config, seed) as path:
        if record_state(path) != "complete":
            _write_metrics(path, metrics_record(config, seed, status="failed",
                                                failure={"step": None, "reason": reason}))


def library_commit() -> str:
    """The library commit this process runs (`_git_commit`), as a record names it."""
    return _git_commit()


def checkpoint_identity(config: RunConfig, seed: int) -> dict:
    """What a checkpoint carries to be resumed by its own run only: the run in words, the SHA-256 of its resolved
    config, its seed, and the library commit that saved it."""
    config_sha256 = _sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    return {"run": describe(config, seed), "config_sha256": config_sha256, "seed": seed, "commit": _git_commit()}


def save_checkpoint(path: Path | str, config: RunConfig, seed: int, state: dict) -> None:
    """Write run (config, seed)'s state (a pytree of arrays and plain values) as the folder's checkpoint, with
    its `checkpoint_identity`, atomically."""
    state = {**jax.device_get(state), "identity": checkpoint_identity(config, seed)}
    _atomic_write(Path(path) / CHECKPOINT, flax.serialization.msgpack_serialize(state))


def _read_checkpoint(path: Path) -> dict | None:
    """The checkpoint of folder `path` as saved, or None if it has none; DamagedRecord if it is unreadable."""
    file = path / CHECKPOINT
    if not file.is_file():
        return None
    try:
        saved = flax.serialization.msgpack_restore(file.read_bytes())
    except Exception as error:  # msgpack raises several types on a damaged file
        raise DamagedRecord(f"{file} is unreadable ({type(error).__name__}); delete it to start the run over") \
            from None
    if not (isinstance(saved, dict) and isinstance(saved.get("step"), int)):
        raise DamagedRecord(f"{file} holds no run state; delete it to start the run over")
    return saved


def load_checkpoint(path: Path | str, config: RunConfig, seed: int) -> dict | None:
    """The state that `save_checkpoint` wrote for run (config, seed), or None if the folder has none.

    A one-line CompressmError if it is unreadable, carries no identity (not this library's, or from before
    checkpoints carried one), or was saved by another run (another config or seed). A checkpoint of another
    commit is resumed (a long run outlives the code that began it); the run records the commit of each segment
    (`train.RunState.commits`), since a resume on other code is exact only up to that code's rounding.
    """
    saved = _read_checkpoint(Path(path))
    if saved is None:
        return None
    file, found, expected = Path(path) / CHECKPOINT, saved.pop("identity", None), checkpoint_identity(config, seed)
    if not isinstance(found, dict):
        raise CompressmError(f"{file} carries no run identity (an older library's checkpoint, or not this"
                             " library's); delete it to start the run over")
    if [found.get(key) for key in ("config_sha256", "seed")] != [expected[key] for key in ("config_sha256", "seed")]:
        raise CompressmError(f"{file} is the checkpoint of another run ({excerpt(found.get('run'))}), not of"
                             f" {expected['run']}; delete it to start this run over")
    return saved


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
def load_metrics(path: Path | str) -> dict:
    """The metrics.json of a run folder; a one-line CompressmError if it is not a record of this schema."""
    file = Path(path) / METRICS
    try:
        record = json.loads(file.read_text())
    except ValueError:
        raise CompressmError(f"{file} is not valid JSON; delete that run folder and re-run it") from None
    if isinstance(record, dict) and "schema_version" in record and record["schema_version"] != SCHEMA_VERSION:
        raise CompressmError(f"{file} has schema version {record['schema_version']}, expected {SCHEMA_VERSION};"
                             " load it with the matching library version, or delete that run folder and re-run it")
    if not (isinstance(record, dict) and record.get("status") in ("complete", "failed")
            and isinstance(record.get("summary"), dict) and set(EMPTY_SUMMARY) <= set(record["summary"])
            and "schema_version" in record):
        raise CompressmError(f"{file} is not a run record (no status, summary or schema version); delete that run"
                             " folder and re-run it")
    return record


def record_state(path: Path | str) -> str:
    """'complete' or 'failed' (metrics.json says so), 'unfinished' (a checkpoint and no record yet), or 'new'."""
    path = Path(path)
    if (path / METRICS).is_file():
        return load_metrics(path)["status"]
    return "unfinished" if (path / CHECKPOINT).is_file() else "new"


def is_complete(path: Path | str) -> bool:
    """Whether a run folder holds a finished, successful run."""
    return record_state(path) == "complete"


def _damaged(file: Path, why: str) -> DamagedRecord:
    return DamagedRecord(f"{file} {why}: the record in {file.parent} is damaged and never counted; delete that"
                         " folder and re-run the run to make it anew")


def _digests(path: Path) -> dict[str, str]:
    """{file name: SHA-256} that a record's metrics.json keeps; {} for a record from before they were kept."""
    if not (path / METRICS).is_file():
        return {}
    return load_metrics(path).get("files") or {}


def _record_bytes(path: Path, name: str, digests: dict[str, str]) -> bytes:
    """The bytes of record file `name`, checked against its digest in `digests` (if there)."""
    file = path / name
    try:
        data = file.read_bytes()
    except OSError as error:
        raise _damaged(file, f"cannot be read ({error.strerror})") from None
    if name in digests and _sha256(data) != digests[name]:
        raise _damaged(file, "is not the file the record was written with (its SHA-256 differs)")
    return data


def verify_record(path: Path | str) -> None:
    """DamagedRecord (one line naming the file and the fix) unless every file whose SHA-256 the record's
    metrics.json keeps is there, unchanged. Records written before digests were kept pass unchecked."""
    path = Path(path)
    digests = _digests(path)
    for name in digests:
        _record_bytes(path, name, digests)


def _load(path: Path | str, name: str, parse):
    """parse(bytes) of record file `name` of run folder `path`, checked against its digest; DamagedRecord if it
    differs or does not parse (also for a record without digests)."""
    path = Path(path)
    data = _record_bytes(path, name, _digests(path))
    try:
        return parse(data)
    except Exception as error:  # zipfile, numpy and msgpack raise many types on a damaged file
        raise _damaged(path / name, f"is unreadable ({type(error).__name__})") from None


def _npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def load_hsvs(path: Path | str) -> dict[str, np.ndarray]:
    """HSV snapshots of a run, {'step0005000_block0': (N,) array, ...}; DamagedRecord if hsv.npz is damaged."""
    return _load(path, HSVS, _npz_arrays)


def load_dynamics(path: Path | str) -> dict[str, np.ndarray]:
    """The HSV dynamics of a run (`dynamics.arrays`: step, hsv, bound_step, bound_interval, match); {} if it
    recorded none; DamagedRecord if dynamics.npz is damaged (or gone, where metrics.json names it)."""
    path = Path(path)
    if not (path / DYNAMICS).is_file() and DYNAMICS not in _digests(path):
        return {}
    return _load(path, DYNAMICS, _npz_arrays)


def load_variables(path: Path | str) -> dict:
    """Final {'params', 'batch_stats'} of a run, as nested dicts of numpy arrays; DamagedRecord if params.msgpack
    is damaged."""
    return _load(path, PARAMS, flax.serialization.msgpack_restore)


RUNS_COLUMNS = ["profile", "config", "seed", "overrides", "status", "reason", "counted", "in_place", "test_acc",
                "best_val_acc", "mean_state_size", "final_state_sizes", "steps", "train_time_s", "wall_time_s",
                "eval_time_s", "reduction_time_s", "other_cpu_s", "resumes", "recurrence", "hardware", "commit", "path",
                "authors_test_acc", "authors_stopped_step"]


def _run_row(folder: Path) -> dict | None:
    """One row of `load_runs` for a run folder, or None if it holds nothing yet."""
    state = record_state(folder)
    if state == "new":
        return None
    metrics = load_metrics(folder) if state in ("complete", "failed") else None
    reason, steps = "", 0
    try:
        if state == "complete":
            verify_record(folder)
        if state == "unfinished":
            steps = _read_checkpoint(folder)["step"]
    except DamagedRecord as error:
        state, reason = "damaged", str(error)
    identity = None if metrics and reason else stored_identity(folder)  # a damaged config.yaml: metrics.json's
    if identity:
        (config, seed), overrides = identity, run_name(identity[0]).partition("@")[2]
        profile, name = config.profile, config.name
    else:  # a damaged record, or a failed record written without its config
        profile, name, seed, overrides = metrics["profile"], metrics["config"], metrics["seed"], None
    summary = metrics["summary"] if metrics else {**EMPTY_SUMMARY, "steps_done": steps}
    environment = metrics["environment"] if metrics else {"hardware": None, "commit": None}
    return {"profile": profile, "config": name, "seed": seed, "overrides": overrides, "status": state,
            "reason": reason,
            "counted": state == "complete" and identity is not None and identity == folder_identity(folder),
            "in_place": identity is not None and folder == run_dir(folder.parents[2], *identity),
            **{k: summary[k] for k in ("test_acc", "best_val_acc", "mean_state_size", "final_state_sizes",
                                       "train_time_s", "wall_time_s", "eval_time_s", "reduction_time_s")},
            "other_cpu_s": summary.get("other_cpu_s", math.nan),  # `OtherLoad`; records before it: not measured
            "resumes": metrics.get("resumes") if metrics else [],  # None: a record from before they were kept
            "steps": summary["steps_done"], "recurrence": metrics["recurrence"] if metrics else None,
            "hardware": environment["hardware"], "commit": environment["commit"], "path": str(folder),
            **_authors_outcome(metrics)}


def _authors_outcome(metrics: dict | None) -> dict:
    """The authors' model-selection rule's test accuracy and stop step (`selection.py`) as a record keeps them;
    NaN for records made before runs recorded both rules."""
    authors = ((metrics or {}).get("selection") or {}).get("authors") or {}
    return {"authors_test_acc": authors.get("test_acc", math.nan),
            "authors_stopped_step": authors.get("stopped_step", math.nan)}


def left_out_note(runs: pd.DataFrame) -> str:
    """One line for a results page naming each damaged record of `load_runs` (left out of every table) and why;
    '' if there is none."""
    damaged = runs[runs.status == "damaged"]
    return "".join(f"Left out: {row.config} seed {row.seed} ({row.profile} profile), damaged: {row.reason}. "
                   for row in damaged.itertuples()).strip()


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per run folder root/<profile>/<config or config@overrides>/seed_<seed>/ holding a record or a checkpoint.

    Columns: RUNS_COLUMNS. `status` is complete, failed, unfinished, or damaged (a file differs from its digest,
    or the checkpoint is unreadable: `reason` says which, and `left_out_note` says it on a page); `counted` is True
    only for a complete record whose identity is its folder's (the packaged config, that seed): aggregate those,
    list the others apart. `overrides` is '' for a packaged config, else the overridden keys (see `run_name`);
    `in_place` says that the folder is the one `run_dir` gives for the stored identity (a variant in its own
    @-folder is). `authors_test_acc` and `authors_stopped_step` are the outcome of the authors' model selection,
    which every run records beside its own (NaN for older records).
    """
    rows = [_run_row(folder) for folder in sorted(Path(root).glob("*/*/seed_*")) if folder.is_dir()]
    numeric = ["test_acc", "best_val_acc", "mean_state_size", "train_time_s", "wall_time_s", "eval_time_s",
               "reduction_time_s", "authors_test_acc", "authors_stopped_step"]
    frame = pd.DataFrame([row for row in rows if row], columns=RUNS_COLUMNS)
    return frame.astype({column: float for column in numeric} | {"counted": bool, "in_place": bool})  # null -> NaN
