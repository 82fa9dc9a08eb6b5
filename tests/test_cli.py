"""Tests for the command line (compressm.cli.main, in-process): bad input is exit status 2 and one `error:` line,
a diverging run is exit status 1 with a failed record, and `train` / `configs` print what they promise."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compressm import records
from compressm.cli import main
from compressm.configs import PROFILES, config_names
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
    path = records.run_dir(trained.runs, "smoke", TRAIN_CONFIG, TRAIN_SEED)
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
    path = records.run_dir(runs, "smoke", "smnist_tau0.02", 0)
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
