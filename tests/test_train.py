"""End-to-end training on small settings: real MNIST smoke run, determinism, sCIFAR files, pragmatic rollback,
and resuming: a run killed at any moment and re-run with the same command ends exactly as an uninterrupted one."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_mnist
from fakes import write_fake_cifar10, write_fake_mnist

from compressm import records, train as train_module
from compressm.configs import get_config
from compressm.data import load_dataset
from compressm.experiment import run_experiment
from compressm.train import batch_indices, make_schedule, run_keys, train

REPO = Path(__file__).resolve().parents[1]


@needs_mnist
def test_smoke_run_on_real_mnist_reduces_and_writes_a_complete_record(tmp_path):
    """The issue's 'done when': smnist_tau0.02, seed 42, smoke profile, real MNIST, at least one reduction."""
    result = run_experiment("smnist_tau0.02", 42, "smoke", root=tmp_path, data_dir=SHARED_DATA, progress=False)
    out = records.run_dir(tmp_path, get_config("smnist_tau0.02", "smoke"), 42)
    assert records.is_complete(out)
    metrics = records.load_metrics(out)
    assert metrics["reductions"] and metrics["summary"]["final_state_sizes"][0] < 256
    assert metrics["summary"]["final_state_sizes"] == result.metrics["summary"]["final_state_sizes"]
    assert 0.0 <= metrics["summary"]["test_acc"] <= 1.0
    for event in metrics["reductions"]:
        hsv = records.load_hsvs(out)[event["hsv_key"]]
        assert event["new_size"] < 0.95 * event["old_size"]  # the gate
        np.testing.assert_allclose(event["error_bound"], 2 * hsv[event["new_size"]:].sum(), rtol=1e-9)
        assert event["discarded_energy"] <= 0.02 + 1e-12  # tau
    assert [row["step"] for row in metrics["history"]] == [10, 20, 30, 40]


def _tiny(name="smnist_tau0.02", **overrides):
    values = {"steps": 12, "eval_every": 4, "model.state_size": 24, "reduction.first_step": 4,
              "reduction.every_steps": 4, "reduction.last_step": 12, "data_limit": 64, "batch_size": 16}
    return get_config(name, "smoke", {**values, **overrides})


def _fake_mnist_dataset(config, seed):
    from fakes import write_fake_mnist

    root = write_fake_mnist(Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"fake-mnist-{os.getpid()}", 300, 100)
    return load_dataset("smnist", root, key=run_keys(seed)["split"], limit=config.data_limit)


def test_same_config_and_seed_give_identical_metrics():
    config = _tiny()
    dataset = _fake_mnist_dataset(config, 3)
    first, second = (train(config, 3, dataset, progress=False).metrics for _ in range(2))
    strip = lambda m: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in m["history"]]
    assert strip(first) == strip(second)
    assert first["reductions"] == second["reductions"]
    assert first["summary"]["test_acc"] == second["summary"]["test_acc"]
    other = train(config, 4, dataset, progress=False).metrics
    assert strip(other) != strip(first)


def test_scifar_pipeline_on_generated_cifar_files(tmp_path):
    root = write_fake_cifar10(tmp_path, n_train_per_batch=20, n_test=40)
    config = _tiny("scifar_tau0.10", **{"model.state_size": 16})
    assert config.model.num_blocks == 2 and config.model.width == 16  # smoke shapes of the sCIFAR recipe
    dataset = load_dataset("scifar", root, key=run_keys(0)["split"], limit=config.data_limit)
    assert dataset.train_x.shape[1:] == (1024, 3)
    result = train(config, 0, dataset, out_dir=tmp_path / "run", progress=False)
    assert records.is_complete(tmp_path / "run")
    assert len(result.metrics["summary"]["final_state_sizes"]) == 2


@pytest.fixture(scope="module")
def pragmatic():
    """A pragmatic run whose rollback tolerance below zero forces the rollback at the second attempt."""
    config = _tiny(**{"reduction.mode": "pragmatic", "reduction.rollback_tolerance": -1.0})
    dataset = _fake_mnist_dataset(config, 0)
    return config, dataset, train(config, 0, dataset, progress=False).metrics


def test_pragmatic_mode_rolls_back_when_validation_drops(pragmatic):
    """Sizes return at the rollback and stop changing."""
    result = pragmatic[2]
    sizes = [row["state_sizes"][0] for row in result["history"]]
    assert result["rollbacks"] and result["rollbacks"][0]["step"] == 8
    assert sizes[0] < 24 and sizes[1] == 24 and sizes[2] == 24  # reduced at 4, rolled back at 8, no more
    assert len(result["reductions"]) == 1


def test_warmup_cosine_schedule_of_the_scifar_recipe():
    optim = get_config("scifar_baseline").optim
    schedule = make_schedule(optim, 180_000, optim.lr)
    assert float(schedule(0)) == pytest.approx(1e-7)
    assert float(schedule(18_000)) == pytest.approx(1e-3)
    assert float(schedule(99_000)) == pytest.approx(0.5e-3, rel=1e-3)  # cosine midpoint
    assert float(schedule(180_000)) == pytest.approx(1e-7, rel=1e-2)
    ssm = make_schedule(optim, 180_000, optim.lr * optim.ssm_lr_factor)
    assert float(ssm(18_000)) == pytest.approx(0.25e-3)


# ---------------------------------------------------------------- resuming

def _same_run(resumed: dict, uninterrupted: dict) -> None:
    """Equal histories (but wall-clock times), reductions, rollbacks and summary accuracies and sizes, exactly."""
    strip = lambda m: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in m["history"]]
    assert strip(resumed) == strip(uninterrupted)
    for key in ("reductions", "rollbacks"):
        assert resumed[key] == uninterrupted[key]
    for key in ("test_acc", "best_val_acc", "best_step", "state_sizes_at_best", "final_state_sizes", "steps_done"):
        assert resumed["summary"][key] == uninterrupted["summary"][key], key


def test_batch_order_depends_on_the_step_alone():
    key = run_keys(0)["batches"]
    endless = batch_indices(50, 16, key)  # 3 batches per epoch
    first = [next(endless) for _ in range(8)]
    for step in (1, 3, 4, 7):
        np.testing.assert_array_equal(next(batch_indices(50, 16, key, first_step=step)), first[step - 1])


def test_pragmatic_run_interrupted_between_evaluations_resumes_exactly(tmp_path, monkeypatch, pragmatic):
    """The checkpoint at step 4 holds the model to roll back to: the resumed run rolls back at step 8 as the
    uninterrupted run does (interrupted in-process here; the subprocess test below kills for real)."""
    config, dataset, uninterrupted = pragmatic
    real_step, calls = train_module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # at step 6: after the checkpoint of step 4, before the rollback at 8
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, 0, dataset, out_dir=tmp_path / "run", progress=False)
    assert records.record_state(tmp_path / "run") == "unfinished"
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(config, 0, dataset, out_dir=tmp_path / "run", progress=False).metrics
    assert resumed["resumes"] == [4] and resumed["rollbacks"] == uninterrupted["rollbacks"] != []
    _same_run(resumed, uninterrupted)
    assert not (tmp_path / "run" / records.CHECKPOINT).exists()  # deleted once the record is complete


def test_a_run_killed_at_several_moments_ends_as_an_uninterrupted_one(tmp_path):
    """SIGKILL (tests/kill_at.py) just after a reduction, half-way through a checkpoint write, and half-way
    through writing the record; each time the same command is run again, and the last one finishes the run.
    Subprocesses share a compilation cache, so only the first compiles."""
    data_dir = write_fake_mnist(tmp_path / "data", n_train=300, n_test=100)
    sets = {"steps": 12, "eval_every": 4, "model.state_size": 24, "reduction.mode": "fixed", "reduction.first_step": 4,
            "reduction.every_steps": 4, "reduction.last_step": 12, "data_limit": 64, "batch_size": 16}
    command = ["train", "smnist_tau0.02", "--seed", "0", "--profile", "smoke", "--data-dir", str(data_dir),
               "--no-progress", *[a for key, value in sets.items() for a in ("--set", f"{key}={value}")]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

    def run(runs: Path, moment: str | None = None) -> int:
        prefix = [str(REPO / "tests" / "kill_at.py"), moment, "--"] if moment else ["-m", "compressm"]
        proc = subprocess.run([sys.executable, *prefix, *command, "--runs", str(runs)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, -9), proc.stderr
        return proc.returncode

    assert run(tmp_path / "once") == 0
    folder = records.run_dir(tmp_path / "killed", get_config("smnist_tau0.02", "smoke", sets), 0)
    for moment, files in [("after_reduction:2", {"config.yaml", "checkpoint.msgpack"}),  # at step 8: resumes at 4
                          ("checkpoint_write:2", {"config.yaml", "checkpoint.msgpack"}),  # 8 written, 12 half
                          ("record_write", {"config.yaml", "checkpoint.msgpack", "hsv.npz"})]:  # at the end
        assert run(tmp_path / "killed", moment) == -9
        assert files <= {p.name for p in folder.iterdir()} and records.record_state(folder) == "unfinished"
    assert run(tmp_path / "killed") == 0
    resumed = records.load_metrics(folder)
    uninterrupted = records.load_metrics(records.run_dir(tmp_path / "once", get_config("smnist_tau0.02", "smoke",
                                                                                        sets), 0))
    assert resumed["resumes"] == [4, 8, 12] and uninterrupted["resumes"] == []
    assert [e["step"] for e in resumed["reductions"]] == [4, 8, 12]
    _same_run(resumed, uninterrupted)
    assert {p.name for p in folder.iterdir()} == {"config.yaml", "hsv.npz", "params.msgpack", "metrics.json", ".lock"}
    uninterrupted_dir = records.run_dir(tmp_path / "once", get_config("smnist_tau0.02", "smoke", sets), 0)
    assert (folder / "params.msgpack").read_bytes() == (uninterrupted_dir / "params.msgpack").read_bytes()
    np.testing.assert_equal(records.load_hsvs(folder), records.load_hsvs(uninterrupted_dir))


def test_a_seed_pairs_runs_of_different_configurations():
    """What the book's paired intervals rely on: for one seed, every configuration starts from the same
    parameters outside the LRU (its data order and dropout keys come from `run_keys(seed)` alone)."""
    import jax

    from compressm.train import initial_state, make_optimizer

    full, small = _tiny("smnist_baseline"), _tiny("smnist_scratch_n28", **{"model.state_size": 7})
    dataset = _fake_mnist_dataset(full, 11)
    params = [initial_state(c, dataset, make_optimizer(c.optim, c.steps), run_keys(11)["init"]).train.params
              for c in (full, small)]
    outside = lambda p: jax.tree.leaves({**p, "blocks_0": {k: v for k, v in p["blocks_0"].items() if k != "lru"}})
    for a, b in zip(*map(outside, params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p["blocks_0"]["lru"]["nu_log"].shape for p in params] == [(24,), (7,)]
