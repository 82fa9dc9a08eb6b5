"""Tests for the command line (compressm.cli.main, in-process): bad input is exit status 2 and one `error:` line,
a diverging run is exit status 1 with a failed record, and `train` / `configs` print what they promise."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compressm import records
from compressm.cli import main
from compressm.configs import PROFILES, config_names, get_config
from conftest import SHARED_DATA, needs_mnist
from fakes import write_fake_mnist
from test_records import TRAIN_CONFIG, TRAIN_SEED, trained_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Never write into the repository's runs/ folder, whatever a test forgets to pass."""
    monkeypatch.setenv("COMPRESSM_RUNS", str(tmp_path / "default-runs"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"), n_train=300, n_test=100)


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got {err!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------- bad input: exit status 2, one line

@pytest.mark.parametrize("args, fragments", [
    (["smnist_tua0.02"], ["unknown config 'smnist_tua0.02'", "did you mean 'smnist_tau0.02'"]),
    (["smnist_tau0.02", "--set", "reduction.tua=0.1"], ["'reduction.tua'", "did you mean 'tau'"]),
    (["smnist_tau0.02", "--set", "stpes=10"], ["'stpes'", "did you mean 'steps'"]),
    (["smnist_tau0.02", "--set", "reduction.tau=1.5"], ["reduction.tau must be in [0, 1), got 1.5"]),
    (["smnist_tau0.02", "--set", "steps=0"], ["steps must be a positive", "got 0"]),
    (["smnist_tau0.02", "--set", "steps=-3"], ["steps must be a positive", "got -3"]),
    (["smnist_tau0.02", "--set", "dataset=cifar"], ["unknown dataset 'cifar'", "scifar"]),
    (["smnist_tau0.02", "--set", "reduction.mode=tolerence"], ["'tolerence'", "'tolerance'"]),
    (["smnist_tau0.02", "--set", "optim.lr=abc"], ["optim"]),
    (["smnist_tau0.02", "--set", "steps"], ["--set expects KEY=VALUE", "'steps'"]),
    (["smnist_tau0.02", "--set", "=3"], ["--set expects KEY=VALUE"]),
    (["smnist_tau0.02", "--set", "steps=[1,"], ["--set value '[1,' is not a number, word or YAML value"]),
    (["smnist_tau0.02", "--set", "steps=[1, 2]"], ["steps = [1, 2] should be of type int"]),
    (["smnist_tau0.02", "--set", "eval_batch_size=0"], ["eval_batch_size must be positive, got 0"]),
    (["smnist_tau0.02", "--set", "eval_batch_size=-5"], ["eval_batch_size must be positive, got -5"]),
    (["smnist_tau0.02", "--set", "val_frac=0"], ["val_frac must be in (0, 1)", "validation split"]),
    (["smnist_tau0.02", "--set", "data_limit=0"], ["data_limit must be a positive number"]),
    (["smnist_tau0.02", "--profile", "gpu"], ["unknown profile 'gpu'"]),
    (["scifar_tau0.10", "--profile", "cpu"], ["no budget for scifar", "--profile paper"]),
])
def test_bad_config_input_is_status_2_and_one_line(capsys, tmp_path, args, fragments):
    runs = tmp_path / "runs"
    status, out, err = run(capsys, "train", *args, "--seed", "0", "--runs", str(runs),
                           "--data-dir", str(tmp_path / "data"), "--no-progress")
    assert status == 2
    assert out == ""
    assert_one_error_line(err, *fragments)
    assert not runs.exists()  # rejected before any folder is made


def test_missing_data_folder_says_how_to_download(capsys, tmp_path):
    data_dir = tmp_path / "nonexistent"
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke",
                           "--runs", str(tmp_path / "runs"), "--data-dir", str(data_dir), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, "smnist data not found", "python -m compressm download smnist",
                          f"--data-dir {data_dir}")
    assert not data_dir.exists()


def test_unwritable_output_folder(capsys, tmp_path, fake_data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out_dir = blocker / "run"
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke",
                           "--out", str(out_dir), "--data-dir", str(fake_data), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, f"output folder {out_dir} is not writable", "--out")
    assert blocker.is_file()


@pytest.mark.parametrize("data", ["fake", pytest.param("real", marks=needs_mnist)])
def test_batch_larger_than_the_data(capsys, tmp_path, fake_data, data):
    data_dir = fake_data if data == "fake" else SHARED_DATA
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke",
                           "--set", "batch_size=100000", "--out", str(tmp_path / "run"),
                           "--data-dir", str(data_dir), "--no-progress")
    assert status == 2 and out == ""
    # smoke keeps 256 examples per split
    assert_one_error_line(err, "batch_size 100000 is larger than the training set (256 examples)")
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- configs

def _check_configs_listing(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == "configs: " + " ".join(config_names())
    assert set(lines[0].removeprefix("configs: ").split()) >= {"smnist_tau0.02", "scifar_baseline"}
    assert [line.split(":")[0] for line in lines[1:]] == [f"profile {name}" for name in PROFILES]
    assert [line.split(":")[0] for line in lines[1:]] == ["profile paper", "profile cpu", "profile smoke"]


def test_configs_lists_configs_and_profiles(capsys):
    status, out, err = run(capsys, "configs")
    assert status == 0 and err == ""
    _check_configs_listing(out)


def test_python_dash_m_configs():
    proc = subprocess.run([sys.executable, "-m", "compressm", "configs"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check_configs_listing(proc.stdout)


# ---------------------------------------------------------------- training

def test_train_smoke_writes_a_complete_record_and_prints_a_summary(trained):
    assert trained.status == 0
    assert trained.stderr == ""  # --no-progress
    lines = trained.stdout.splitlines()
    assert len(lines) == 1
    match = re.fullmatch(r"test accuracy (\d\.\d{4}) at best validation; state sizes \[(\d+)\]; (\d+) s", lines[0])
    assert match, lines[0]
    path = trained.path
    assert records.is_complete(path)
    summary = records.load_metrics(path)["summary"]
    assert float(match[1]) == round(summary["test_acc"], 4)
    assert [int(match[2])] == summary["final_state_sizes"]
    assert int(match[3]) == round(summary["wall_time_s"])


def test_diverging_loss_is_status_1_and_a_failed_record(capsys, tmp_path, fake_data):
    runs = tmp_path / "runs"
    # "1.0e+30", not "1e30": --set values are YAML 1.1, where 1e30 is a string
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke",
                           "--set", "steps=10", "--set", "eval_every=5", "--set", "model.state_size=64",
                           "--set", "optim.lr=1.0e+30", "--runs", str(runs), "--data-dir", str(fake_data),
                           "--no-progress")
    config = get_config("smnist_tau0.02", "smoke",
                        {"steps": 10, "eval_every": 5, "model.state_size": 64, "optim.lr": 1.0e30})
    path = records.run_dir(runs, config, 0)
    assert status == 1, err
    assert out == ""
    metrics = records.load_metrics(path)
    assert metrics["status"] == "failed"
    step = metrics["failure"]["step"]
    assert isinstance(step, int) and 1 <= step <= 5  # found at the first check, step 5 at the latest
    line = assert_one_error_line(err, f"at step {step}", str(path), "lower optim.lr")
    assert re.search(r"loss became (nan|-?inf) at step", line)
    assert metrics["failure"]["reason"] in line
    assert not records.is_complete(path)
    assert metrics["summary"]["steps_done"] == 0 and metrics["history"] == []
    runs_table = records.load_runs(runs)
    assert runs_table["status"].tolist() == ["failed"] and runs_table["seed"].tolist() == [0]
    assert json.loads((path / "metrics.json").read_text())["schema_version"] == records.SCHEMA_VERSION


# ---------------------------------------------------------------- more bad input (the hostile cases)

@pytest.mark.parametrize("seed", ["4294967296", "-1", str(2**64)])
def test_seed_outside_32_bits_is_status_2(capsys, tmp_path, seed):
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", seed, "--profile", "smoke",
                           "--runs", str(tmp_path / "runs"), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, "seed must be an integer from 0 to 4294967295", seed)
    assert not (tmp_path / "runs").exists()


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "smnist_tau0.02", "--seed", "abc"])
    assert info.value.code == 2
    assert_one_error_line(capsys.readouterr().err, "argument --seed: invalid int value: 'abc'")


@pytest.mark.parametrize("args, fragments", [
    (["reproduce", "--config", "smnist_baseline", "--seeds", "1", "--jobs", "0", "--no-book"],
     ["jobs must be at least 1, got 0"]),
    (["reproduce", "--config", "smnist_baseline", "--seeds", "-4", "--no-book"], ["seed must be an integer"]),
    (["reproduce", "--config", "smnist_basline", "--seeds", "1", "--no-book"], ["unknown config 'smnist_basline'"]),
    (["bench", "--only", "train_stpe"], ["no benchmark named 'train_stpe'", "train_step"]),
    (["bench", "--repeats", "0"], ["--repeats must be at least 1"]),
    # today "in no paper table": the name is looked up in the tables before it is checked
    (["reproduce", "--config", "smnist_tau002", "--no-book"], ["unknown config 'smnist_tau002'", "'smnist_tau0.02'"]),
])
def test_bad_reproduce_and_bench_input_is_status_2(capsys, tmp_path, args, fragments):
    status, out, err = run(capsys, *args, *(["--runs", str(tmp_path / "runs")] if args[0] == "reproduce" else []))
    assert status == 2 and out == ""
    assert_one_error_line(err, *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_file_where_a_folder_is_due_is_one_error_line(capsys, tmp_path, fake_data):
    """Today FileExistsError (reproduce --job-dir <a file>) and NotADirectoryError (bench --out <file>/x)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, out, err = run(capsys, "reproduce", "--config", "smnist_baseline", "--seeds", "1", "--profile", "smoke",
                           "--runs", str(tmp_path / "runs"), "--data-dir", str(fake_data), "--no-book",
                           "--executor", "submitit-local", "--gpus", "0", "--job-dir", str(blocker))
    assert status == 2 and out == ""
    assert_one_error_line(err, f"job folder {blocker} cannot be made (File exists); choose another --job-dir")
    status, out, err = run(capsys, "bench", "--only", "train_step", "--out", str(blocker / "x"))
    assert status == 2 and out == ""
    assert_one_error_line(err, f"output folder {blocker / 'x'} is not writable (Not a directory); choose another"
                               " with --out")
    assert blocker.read_text() == ""


def test_reproduce_stops_on_missing_data_before_any_run(capsys, tmp_path):
    status, out, err = run(capsys, "reproduce", "--config", "smnist_baseline", "--seeds", "1", "2", "--profile",
                           "smoke", "--runs", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "none"),
                           "--no-book")
    assert status == 2 and out == ""
    assert_one_error_line(err, "smnist data not found", "python -m compressm download smnist")
    assert not (tmp_path / "runs").exists()  # no "failed" records for runs that never started


def test_reproduce_refuses_a_folder_holding_another_run(capsys, tmp_path, trained, fake_data):
    runs = tmp_path / "runs"
    squatter = runs / "smoke" / TRAIN_CONFIG / f"seed_{TRAIN_SEED}"
    shutil.copytree(trained.path, squatter)  # a tau run with overrides, moved into the config's own folder
    before = {p.name: p.read_bytes() for p in squatter.iterdir()}
    status, out, err = run(capsys, "reproduce", "--config", TRAIN_CONFIG, "--seeds", str(TRAIN_SEED), "--profile",
                           "smoke", "--runs", str(runs), "--data-dir", str(fake_data), "--no-book")
    assert status == 2 and out == ""
    assert_one_error_line(err, f"holds {TRAIN_CONFIG}@model.state_size=64,steps=10 seed {TRAIN_SEED}",
                          f"not {TRAIN_CONFIG} seed {TRAIN_SEED}")
    assert {p.name: p.read_bytes() for p in squatter.iterdir()} == before
    runs_table = records.load_runs(runs)
    assert runs_table.status.tolist() == ["complete"] and not runs_table.counted.any()  # never in a table


# ---------------------------------------------------------------- identity and one writer

def _train_argv(trained, *extra) -> list[str]:
    argv = ["train", TRAIN_CONFIG, "--seed", str(TRAIN_SEED), "--profile", "smoke", "--runs", str(trained.runs),
            "--data-dir", str(trained.data_dir), "--no-progress"]
    for pair in ("steps=10", "model.state_size=64"):
        argv += ["--set", pair]
    return argv + list(extra)


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_the_same_command_on_a_complete_run_changes_nothing(capsys, trained):
    before = _snapshot(trained.path)
    status, out, err = run(capsys, *_train_argv(trained))
    assert status == 0 and err == ""
    assert out.startswith("already complete, nothing done: test accuracy ")
    assert _snapshot(trained.path) == before


@pytest.mark.parametrize("argv, fragments", [
    (["--set", "reduction.tau=0.5"], ["holds smnist_tau0.02@model.state_size=64,steps=10 seed 3",
                                      "not smnist_tau0.02@model.state_size=64,reduction.tau=0.5,steps=10 seed 3"]),
    (["--seed", "4"], ["holds smnist_tau0.02@model.state_size=64,steps=10 seed 3", "seed 4 (smoke profile)"]),
])
def test_another_run_aimed_at_a_folder_is_status_2_and_changes_nothing(capsys, trained, argv, fragments):
    before = _snapshot(trained.path)
    status, out, err = run(capsys, *_train_argv(trained, "--out", str(trained.path), *argv))
    assert status == 2 and out == ""
    assert_one_error_line(err, *fragments, "changed nothing")
    assert _snapshot(trained.path) == before


def test_another_config_sent_into_a_folder_is_status_2(capsys, tmp_path, trained):
    before = _snapshot(trained.path)
    status, out, err = run(capsys, "train", "smnist_baseline", "--seed", str(TRAIN_SEED), "--profile", "smoke",
                           "--set", "steps=10", "--set", "model.state_size=64", "--out", str(trained.path),
                           "--data-dir", str(trained.data_dir), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, "holds smnist_tau0.02@", "not smnist_baseline@model.state_size=64,steps=10 seed 3")
    assert _snapshot(trained.path) == before


def test_overrides_never_land_in_a_configs_own_folder(capsys, tmp_path):
    own = tmp_path / "runs" / "smoke" / "smnist_tau0.02" / "seed_3"
    status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "3", "--profile", "smoke",
                           "--set", "reduction.tau=0.5", "--out", str(own), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, f"{own} is the folder of smnist_tau0.02 seed 3",
                          "smoke/smnist_tau0.02@reduction.tau=0.5/seed_3")
    assert not own.exists()


def test_a_second_writer_is_status_2(capsys, tmp_path, fake_data):
    folder = tmp_path / "run"
    with records.locked(folder):  # another process, as far as the folder's lock can tell
        status, out, err = run(capsys, "train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke",
                               "--out", str(folder), "--data-dir", str(fake_data), "--no-progress")
    assert status == 2 and out == ""
    assert_one_error_line(err, f"{folder} is being written by another process")
    assert {p.name for p in folder.iterdir()} == {".lock"}


def test_a_failing_save_is_one_line_and_the_same_command_finishes_the_run(capsys, monkeypatch, tmp_path, trained):
    real = os.replace

    def disk_full(source, target):
        if Path(target).name == "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(source, target)

    argv = _train_argv(trained, "--out", str(tmp_path / "run"))
    monkeypatch.setattr(os, "replace", disk_full)
    status, out, err = run(capsys, *argv)
    monkeypatch.setattr(os, "replace", real)
    assert status == 2 and out == ""
    assert_one_error_line(err, "could not write", "No space left on device", "re-run the same command")
    assert records.record_state(tmp_path / "run") == "unfinished"
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp-" in p.name]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    metrics, reference = records.load_metrics(tmp_path / "run"), records.load_metrics(trained.path)
    assert metrics["resumes"] == [10]  # the checkpoint of the last step: only the record was left to write
    strip = lambda m: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in m["history"]]
    assert strip(metrics) == strip(reference) and metrics["reductions"] == reference["reductions"]
    assert metrics["summary"]["test_acc"] == reference["summary"]["test_acc"]


def test_nan_at_a_reduction_step_is_a_failed_record_not_a_linalg_error(capsys, tmp_path, fake_data):
    runs = tmp_path / "runs"
    sets = ["steps=2", "eval_every=1", "reduction.first_step=1", "reduction.every_steps=1", "reduction.last_step=2",
            "model.state_size=64", "optim.lr=1.0e+30"]
    argv = ["train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke", "--runs", str(runs),
            "--data-dir", str(fake_data), "--no-progress"]
    status, out, err = run(capsys, *argv, *[a for pair in sets for a in ("--set", pair)])
    assert status == 1 and out == ""
    line = assert_one_error_line(err, "at step 1", "recorded as failed")
    assert re.search(r"parameters became non-finite|cannot be reduced", line)
    (folder,) = (runs / "smoke").iterdir()
    metrics = records.load_metrics(folder / "seed_0")
    assert metrics["status"] == "failed" and metrics["failure"]["step"] == 1
