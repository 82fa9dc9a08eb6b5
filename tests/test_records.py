"""Tests for compressm.records: what a trained run's folder holds, that it loads back exactly, that incomplete,
failed, malformed or misplaced records are never taken for results, run identities and folder names, the writer
lock, and the pandas view of a runs folder.

Training is the slow part (JIT compiles), so the suite trains ONCE: `trained_run` below runs
`python -m compressm train` in-process on generated MNIST files and is shared with test_cli.py.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
import yaml

from compressm import records
from compressm.configs import RunConfig, from_dict, get_config
from compressm.errors import CompressmError
from compressm.train import RunResult
from fakes import write_fake_mnist

# The one training run of the suite: smoke profile, 10 steps (one evaluation with one reduction attempt, at
# step 10) and N = 64 states instead of 256 (the reduction's host-side eigendecomposition is the slow part at
# N = 256). Enough generated examples that train, val and test all hold smoke's 256 (one eval shape).
TRAIN_CONFIG = "smnist_tau0.02"
TRAIN_SEED = 3
TRAIN_SETS = ["steps=10", "model.state_size=64"]
TRAIN_OVERRIDES = {"steps": 10, "model.state_size": 64}
RECORD_FILES = {"config.yaml", "hsv.npz", "params.msgpack", "metrics.json"}
RUNS_COLUMNS = ["profile", "config", "seed", "overrides", "status", "reason", "counted", "in_place", "test_acc",
                "best_val_acc", "mean_state_size", "final_state_sizes", "steps", "train_time_s", "wall_time_s",
                "eval_time_s", "reduction_time_s", "other_cpu_s", "resumes", "recurrence", "hardware", "commit", "path",
                "authors_test_acc", "authors_stopped_step"]


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    runs: Path  # the --runs folder
    path: Path  # the record folder, runs/smoke/<config>@<overrides>/seed_<seed>
    data_dir: Path
    status: int  # exit status of cli.main
    stdout: str
    stderr: str
    result: RunResult  # what run_experiment returned to the command line
    config: RunConfig  # the config the run should have used


_TRAINED: dict[str, TrainedRun] = {}


def trained_run(tmp_path_factory) -> TrainedRun:
    """Train once per test session through `cli.main(["train", ...])`, capturing the RunResult on the way."""
    if "run" in _TRAINED:
        return _TRAINED["run"]
    from compressm import cli, experiment

    base = tmp_path_factory.mktemp("trained")
    data_dir = write_fake_mnist(base / "data", n_train=2900, n_test=300)
    runs = base / "runs"
    argv = ["train", TRAIN_CONFIG, "--seed", str(TRAIN_SEED), "--profile", "smoke", "--runs", str(runs),
            "--data-dir", str(data_dir), "--no-progress"]
    for pair in TRAIN_SETS:
        argv += ["--set", pair]
    results = []
    real_run_experiment = experiment.run_experiment

    def spy(*args, **kwargs):
        results.append(real_run_experiment(*args, **kwargs))
        return results[-1]

    out, err = io.StringIO(), io.StringIO()
    experiment.run_experiment = spy
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(argv)
    finally:
        experiment.run_experiment = real_run_experiment
    assert len(results) == 1, f"training did not return a result (status {status}, stderr {err.getvalue()!r})"
    config = get_config(TRAIN_CONFIG, "smoke", TRAIN_OVERRIDES)
    _TRAINED["run"] = TrainedRun(
        runs=runs, path=records.run_dir(runs, config, TRAIN_SEED), data_dir=data_dir, status=status,
        stdout=out.getvalue(), stderr=err.getvalue(), result=results[0], config=config,
    )
    return _TRAINED["run"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    return trained_run(tmp_path_factory)


def _assert_trees_equal(a, b, where="") -> None:
    """Nested mappings with the same keys and exactly equal arrays (dtype and shape included)."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        assert isinstance(a, Mapping) and isinstance(b, Mapping), where
        assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_trees_equal(a[key], b[key], f"{where}/{key}")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
    np.testing.assert_array_equal(a, b, err_msg=where)


def _copy_record(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def _set_identity(folder: Path, config: RunConfig, seed: int) -> None:
    """Make `folder` claim to hold run (config, seed), as a record of that run would (its metrics.json keeping the
    digest of that config.yaml)."""
    (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, **config.to_dict()}, sort_keys=False))
    if (folder / "metrics.json").is_file():
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["files"]["config.yaml"] = hashlib.sha256((folder / "config.yaml").read_bytes()).hexdigest()
        (folder / "metrics.json").write_text(json.dumps(metrics))


# ---------------------------------------------------------------- a trained record

def test_trained_record_holds_its_files_and_is_complete(trained):
    assert trained.status == 0, trained.stderr
    # a run with overrides never lands in the config's own folder
    run_name = f"{TRAIN_CONFIG}@model.state_size=64,steps=10"
    assert trained.path == trained.runs / "smoke" / run_name / f"seed_{TRAIN_SEED}"
    names = {p.name for p in trained.path.iterdir()}
    assert names == RECORD_FILES | {".lock"}, f"temporary files or a checkpoint left behind: {names}"
    assert records.is_complete(trained.path)
    assert records.is_complete(str(trained.path))


def test_metrics_record_status_summary_and_environment(trained):
    m = records.load_metrics(trained.path)
    assert m["status"] == "complete" and m["failure"] is None
    assert m["schema_version"] == records.SCHEMA_VERSION == 1
    assert (m["config"], m["profile"], m["seed"]) == (TRAIN_CONFIG, "smoke", TRAIN_SEED)
    assert m["recurrence"] in ("scan", "associative", "conv")

    env = m["environment"]
    assert env["backend"] == jax.default_backend()
    assert env["versions"]["jax"] == jax.__version__ and env["versions"]["numpy"] == np.__version__
    assert set(env["versions"]) >= {"jax", "flax", "optax", "numpy"}
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", env["commit"]), env["commit"]
    assert env["hardware"].startswith(f"{env['backend']}: ")

    s = m["summary"]
    assert set(s) >= {"test_acc", "best_val_acc", "best_step", "state_sizes_at_best", "final_state_sizes",
                      "mean_state_size", "train_time_s", "eval_time_s", "reduction_time_s", "wall_time_s",
                      "steps_done", "other_cpu_s"}
    assert 0 <= s["other_cpu_s"] <= 2 * os.cpu_count() * s["wall_time_s"]
    assert s["steps_done"] == 10 and s["best_step"] == 10
    assert 0.0 <= s["test_acc"] <= 1.0 and 0.0 <= s["best_val_acc"] <= 1.0
    assert s["mean_state_size"] == float(np.mean(s["final_state_sizes"]))
    assert all(s[k] >= 0 for k in ("train_time_s", "eval_time_s", "reduction_time_s", "wall_time_s"))

    # one evaluation (step 10), at which the tau = 0.02 attempt shrank the single block from 64 states
    assert [row["step"] for row in m["history"]] == [10]
    assert m["history"][-1]["state_sizes"] == s["final_state_sizes"]
    assert [(e["step"], e["block"], e["old_size"]) for e in m["reductions"]] == [(10, 0, 64)]
    event = m["reductions"][0]
    assert [event["new_size"]] == s["final_state_sizes"] and 1 <= event["new_size"] < 64
    assert 0.0 < event["discarded_energy"] <= 0.02
    assert m["rollbacks"] == []


def test_metrics_on_disk_equal_the_returned_metrics(trained):
    on_disk = records.load_metrics(trained.path)
    returned = json.loads(json.dumps(trained.result.metrics, default=lambda v: np.asarray(v).tolist()))
    assert {k: on_disk[k] for k in returned} == returned
    assert set(on_disk) == set(returned) | {"schema_version", "environment", "files"}
    assert on_disk["resumes"] == []


def test_hsvs_load_back_keyed_by_step_and_block(trained):
    hsvs = records.load_hsvs(trained.path)
    assert set(hsvs) == {"step0000000_block0", "step0000010_block0"}  # at init and at the evaluation
    assert set(hsvs) == set(trained.result.hsvs)
    for key, values in hsvs.items():
        assert re.fullmatch(r"step\d{7}_block\d+", key)
        assert values.shape == (64,)  # the snapshot is taken before the reduction
        assert np.all(np.isfinite(values)) and np.all(values >= 0) and values[0] > 0
        assert np.all(np.diff(values) <= 0), f"{key} is not sorted descending"
        np.testing.assert_array_equal(values, np.asarray(trained.result.hsvs[key]))
    assert records.load_metrics(trained.path)["reductions"][0]["hsv_key"] in hsvs


def test_variables_round_trip_exactly(trained):
    loaded = records.load_variables(trained.path)
    assert set(loaded) == {"params", "batch_stats"}
    _assert_trees_equal(loaded, jax.device_get(trained.result.variables))
    final_size = records.load_metrics(trained.path)["summary"]["final_state_sizes"][0]
    assert loaded["params"]["blocks_0"]["lru"]["nu_log"].shape == (final_size,)


def test_config_round_trips_and_the_folder_holds_the_run_identity(trained):
    loaded = records.load_config(trained.path)
    assert loaded == trained.config.to_dict()
    assert from_dict(loaded) == trained.config
    assert (loaded["steps"], loaded["model"]["state_size"], loaded["profile"]) == (10, 64, "smoke")
    assert yaml.safe_load((trained.path / "config.yaml").read_text())["seed"] == TRAIN_SEED
    assert records.stored_identity(trained.path) == (trained.config, TRAIN_SEED)


# ---------------------------------------------------------------- incomplete and failed folders

def test_folder_without_metrics_is_not_complete_and_not_loaded(trained, tmp_path):
    killed = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / "seed_100")
    (killed / "metrics.json").unlink()
    (killed / ".metrics.json.tmp-123").write_text('{"schema_version": 1, "status": "compl')  # cut mid-write
    assert not records.is_complete(killed) and records.record_state(killed) == "new"
    assert records.load_runs(tmp_path).empty

    complete = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / "seed_101")
    runs = records.load_runs(tmp_path)
    assert runs["path"].tolist() == [str(complete)]
    assert not runs["counted"].any()  # its identity (overrides, seed 3) is not its folder's


def test_unfinished_run_is_listed_never_counted(trained, tmp_path):
    folder = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / f"seed_{TRAIN_SEED}")
    _set_identity(folder, get_config(TRAIN_CONFIG, "smoke"), TRAIN_SEED)
    (folder / "metrics.json").unlink()
    records.save_checkpoint(folder, get_config(TRAIN_CONFIG, "smoke"), TRAIN_SEED, {"step": 20, "history": []})
    assert records.record_state(folder) == "unfinished" and not records.is_complete(folder)
    row = records.load_runs(tmp_path).iloc[0]
    assert (row["status"], row["counted"], row["steps"], row["overrides"]) == ("unfinished", False, 20, "")
    assert math.isnan(row["test_acc"])


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ("[]", "is not a run record"),
    ("null", "is not a run record"),
    ('{"schema_version": 1}', "is not a run record"),
    ('{"schema_version": 1, "status": "complete"}', "is not a run record"),
    ('{"schema_version": 1, "status": "complete", "summary": {}}', "is not a run record"),
    ('{"schema_version": 99, "status": "complete", "summary": {}}', "schema version 99, expected 1"),
])
def test_malformed_metrics_are_one_line_errors_for_every_reader(tmp_path, content, fragment):
    folder = tmp_path / "smoke" / "smnist_baseline" / "seed_1"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(content)
    for read in (records.is_complete, records.record_state, records.load_metrics,
                 lambda _: records.load_runs(tmp_path)):
        with pytest.raises(CompressmError, match=re.escape(fragment)) as info:
            read(folder)
        assert "\n" not in str(info.value) and str(folder / "metrics.json") in str(info.value)
    assert not records.is_complete(tmp_path / "missing")


def test_failed_record_is_not_complete_but_is_listed(tmp_path):
    config = get_config("smnist_baseline", "smoke")
    path = records.run_dir(tmp_path, config, 7)
    records.save_failure(path, config, 7, "ValueError: boom")
    assert {p.name for p in path.iterdir()} == {"metrics.json", "config.yaml", ".lock"}
    m = records.load_metrics(path)
    assert m["status"] == "failed" and m["failure"] == {"step": None, "reason": "ValueError: boom"}
    assert (m["config"], m["profile"], m["seed"], m["schema_version"]) == ("smnist_baseline", "smoke", 7, 1)
    assert m["summary"]["test_acc"] is None and m["summary"]["steps_done"] == 0  # NaN is stored as null
    assert not records.is_complete(path)
    runs = records.load_runs(tmp_path)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["status"], row["config"], row["seed"], row["steps"]) == ("failed", "smnist_baseline", 7, 0)
    assert math.isnan(row["test_acc"]) and not row["counted"]


# ---------------------------------------------------------------- load_runs

def test_load_runs_reads_each_record_not_its_folder_name(trained, tmp_path):
    own = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / f"seed_{TRAIN_SEED}")
    renamed = _copy_record(trained.path, tmp_path / "paper" / "smnist_baseline" / "seed_999")
    counted = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / "seed_5")
    _set_identity(counted, get_config(TRAIN_CONFIG, "smoke"), 5)  # as a run of the packaged config would hold
    failed = records.run_dir(tmp_path, get_config("smnist_tau0.01", "cpu"), 5)
    records.save_failure(failed, get_config("smnist_tau0.01", "cpu"), 5, "killed")
    (tmp_path / "smoke" / "notes.txt").write_text("not a run")  # ignored: not <profile>/<config>/seed_*

    runs = records.load_runs(tmp_path)
    assert list(runs.columns) == RUNS_COLUMNS
    assert len(runs) == 4
    by_path = runs.set_index("path")
    summary = records.load_metrics(trained.path)["summary"]
    for folder in (own, renamed):
        row = by_path.loc[str(folder)]
        # profile, config, seed and overrides come from the record, not from the folder's name; neither counts
        assert (row["profile"], row["config"], row["seed"], row["status"], row["counted"]) == \
            ("smoke", TRAIN_CONFIG, TRAIN_SEED, "complete", False)
        assert row["overrides"] == "model.state_size=64,steps=10"
        assert row["test_acc"] == summary["test_acc"] and row["mean_state_size"] == summary["mean_state_size"]
        assert row["final_state_sizes"] == summary["final_state_sizes"] and row["steps"] == 10
        assert row["other_cpu_s"] == summary["other_cpu_s"] and row["resumes"] == []
    row = by_path.loc[str(counted)]
    assert (row["config"], row["seed"], row["overrides"], row["counted"]) == (TRAIN_CONFIG, 5, "", True)
    row = by_path.loc[str(failed)]
    assert (row["profile"], row["config"], row["seed"], row["status"]) == ("cpu", "smnist_tau0.01", 5, "failed")
    for column in ("test_acc", "best_val_acc", "mean_state_size", "wall_time_s"):
        assert pd.api.types.is_float_dtype(runs[column]), column
    assert pd.api.types.is_integer_dtype(runs["seed"]) and pd.api.types.is_integer_dtype(runs["steps"])
    assert runs["counted"].tolist().count(True) == 1
    # in place: the folder is where the library writes the run its record describes
    assert by_path["in_place"].to_dict() == {str(own): False, str(renamed): False, str(counted): True,
                                            str(failed): True}


def test_load_runs_of_an_empty_folder_has_the_columns(tmp_path):
    runs = records.load_runs(tmp_path)
    assert runs.empty and list(runs.columns) == RUNS_COLUMNS
    assert records.load_runs(tmp_path / "does-not-exist").empty


def test_load_runs_refuses_another_schema_version(trained, tmp_path):
    copy = _copy_record(trained.path, tmp_path / "smoke" / TRAIN_CONFIG / "seed_1")
    metrics = records.load_metrics(copy)
    metrics["schema_version"] = 99
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(CompressmError, match="schema version 99"):
        records.load_runs(tmp_path)


# ---------------------------------------------------------------- run identity and folders

def test_run_dir_of_a_packaged_config_and_of_overrides():
    config = get_config("smnist_tau0.02", "cpu")
    assert records.run_dir("runs", config, 42) == Path("runs/cpu/smnist_tau0.02/seed_42")
    overridden = get_config("smnist_tau0.02", "cpu", {"reduction.tau": 0.5, "steps": 100})
    assert records.run_dir("runs", overridden, 42) == \
        Path("runs/cpu/smnist_tau0.02@reduction.tau=0.5,steps=100/seed_42")
    assert records.run_name(get_config("smnist_tau0.02", "cpu", {"steps": 10_000})) == "smnist_tau0.02"  # no change
    many = get_config("smnist_tau0.02", "cpu", {f"optim.{k}": 0.123456789 for k in ("lr", "init_lr", "final_lr")}
                      | {"model.dropout": 0.123456789, "reduction.gate": 0.923456789, "reduction.fraction": 0.12345})
    name = records.run_name(many)
    assert len(name) < 140 and name.startswith("smnist_tau0.02@") and re.search(r"~[0-9a-f]{10}$", name)
    assert records.describe(overridden, 42) == "smnist_tau0.02@reduction.tau=0.5,steps=100 seed 42 (cpu profile)"


def test_folder_identity_comes_from_the_folder_name_only_for_packaged_configs():
    assert records.folder_identity("runs/cpu/smnist_tau0.02/seed_42") == (get_config("smnist_tau0.02", "cpu"), 42)
    for path in ("runs/cpu/smnist_tau0.02@steps=1/seed_42", "runs/cpu/smnist_tau0.02/seed_042", "x/run",
                 "runs/cpu/no_such_config/seed_1", "runs/gpu/smnist_tau0.02/seed_1", "runs/cpu/scifar_tau0.10/seed_1"):
        assert records.folder_identity(path) is None, path


def test_claimed_writes_the_identity_and_refuses_another_run(tmp_path):
    config = get_config("smnist_tau0.02", "smoke")
    folder = records.run_dir(tmp_path, config, 3)
    with records.claimed(folder, config, 3):
        assert yaml.safe_load((folder / "config.yaml").read_text()) == {"seed": 3, **config.to_dict()}
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    others = [(get_config("smnist_tau0.02", "smoke", {"reduction.tau": 0.5}), 3), (config, 4),
              (get_config("smnist_baseline", "smoke"), 3)]
    for other, seed in others:
        fragment = "is the folder of smnist_tau0.02 seed 3"
        with pytest.raises(CompressmError) as info:
            with records.claimed(folder, other, seed):
                pass
        message = str(info.value)
        assert "\n" not in message and fragment in message and records.describe(other, seed) in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing changed

    elsewhere = tmp_path / "mine"  # a folder whose name says nothing: the stored identity decides
    with records.claimed(elsewhere, config, 3):
        pass
    with pytest.raises(CompressmError, match="holds smnist_tau0.02 seed 3 .smoke profile., not smnist_baseline"):
        records.check_identity(elsewhere, get_config("smnist_baseline", "smoke"), 3)


def test_claimed_clears_a_failed_record_and_temporary_files(tmp_path):
    config = get_config("smnist_baseline", "smoke")
    folder = records.run_dir(tmp_path, config, 1)
    records.save_failure(folder, config, 1, "boom")
    (folder / ".checkpoint.msgpack.tmp-99999").write_bytes(b"half")
    with records.claimed(folder, config, 1):
        assert {p.name for p in folder.iterdir()} == {"config.yaml", ".lock"}


def test_one_writer_per_folder(tmp_path):
    folder = tmp_path / "run"
    with records.locked(folder):
        with pytest.raises(CompressmError) as info:
            with records.locked(folder):
                pass
        assert f"(pid {os.getpid()})" in str(info.value) and "being written by another process" in str(info.value)
    with records.locked(folder):  # released at the end of the block
        pass


def test_a_folder_under_a_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for target in (blocker / "seed_0", blocker):
        with pytest.raises(CompressmError) as info:
            with records.locked(target):
                pass
        message = str(info.value)
        assert "\n" not in message and "not writable" in message and str(target) in message
    assert blocker.is_file() and blocker.read_text() == ""


def test_records_without_a_stored_seed_or_newer_fields_keep_their_identity(trained, tmp_path):
    """Records made before the seed was stored beside the config take it from metrics.json; fields added to the
    config since take the value those records were made with (`records.upgraded_config`)."""
    folder = _copy_record(trained.path, tmp_path / "old")
    values = yaml.safe_load((folder / "config.yaml").read_text())
    del values["seed"]
    (folder / "config.yaml").write_text(yaml.safe_dump(values))
    assert records.stored_identity(folder) == (trained.config, TRAIN_SEED)
    (folder / "metrics.json").unlink()  # an older library's run killed before its record
    with pytest.raises(CompressmError, match="names no seed and the folder holds no record"):
        records.stored_identity(folder)
    assert records.upgraded_config({"name": "x"})["model"] == {"norm": "batch", "time_channel": False,
                                                               "dropout_mask": "example"}


def test_other_load_counts_a_busy_process_beside_this_one_but_not_this_one():
    machine_before, mine = records._cpu_seconds()[0], records.OtherLoad()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # busy time of the machine, but this process's own
        pass
    assert records._cpu_seconds()[0] - machine_before - mine.seconds() >= 0.25
    busy = records.OtherLoad()
    other = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.6\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        time.sleep(1.5)
        assert 0.5 <= busy.seconds() <= 1.5 * os.cpu_count()
    finally:
        other.kill()
        other.wait()


def test_checkpoint_round_trip_and_a_damaged_one(tmp_path):
    config = get_config("smnist_baseline", "smoke")
    state = {"step": 7, "arrays": {"a": np.arange(3, dtype=np.float32)}, "rows": [{"x": 1.5, "y": None}]}
    records.save_checkpoint(tmp_path, config, 1, state)
    loaded = records.load_checkpoint(tmp_path, config, 1)
    assert set(loaded) == set(state) and loaded["step"] == 7 and loaded["rows"] == [{"x": 1.5, "y": None}]
    _assert_trees_equal(loaded["arrays"], state["arrays"])
    assert records.load_checkpoint(tmp_path / "none", config, 1) is None
    (tmp_path / "checkpoint.msgpack").write_bytes(b"\x93garbage")
    with pytest.raises(CompressmError, match="unreadable.*delete it to start the run over"):
        records.load_checkpoint(tmp_path, config, 1)
