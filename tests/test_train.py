"""End-to-end training on small settings: real MNIST smoke run, determinism, sCIFAR files, pragmatic rollback."""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_mnist
from fakes import write_fake_cifar10

from compressm import records
from compressm.configs import get_config
from compressm.data import load_dataset
from compressm.experiment import run_experiment
from compressm.train import make_schedule, run_keys, train



@needs_mnist
def test_smoke_run_on_real_mnist_reduces_and_writes_a_complete_record(tmp_path):
    """The issue's 'done when': smnist_tau0.02, seed 42, smoke profile, real MNIST, at least one reduction."""
    result = run_experiment("smnist_tau0.02", 42, "smoke", root=tmp_path, data_dir=SHARED_DATA, progress=False)
    out = records.run_dir(tmp_path, "smoke", "smnist_tau0.02", 42)
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


def test_pragmatic_mode_rolls_back_when_validation_drops():
    """A rollback tolerance below zero forces the rollback at the second attempt: sizes return and stop."""
    config = _tiny(**{"reduction.mode": "pragmatic", "reduction.rollback_tolerance": -1.0})
    result = train(config, 0, _fake_mnist_dataset(config, 0), progress=False).metrics
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
