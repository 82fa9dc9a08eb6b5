"""Tests for compressm.experiment: the training notebook's parameter check and `reproduce` when a run's notebook
fails or its kernel dies (no training: these notebooks stop before it)."""

import re
from pathlib import Path

import nbformat
import pytest
from fakes import write_fake_mnist

from compressm import records
from compressm.configs import get_config
from compressm.errors import ConfigError
from compressm.experiment import TRAIN_NOTEBOOK, _plan, check_parameters, reproduce


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"), n_train=300, n_test=100)


def test_check_parameters_names_an_unknown_or_mistyped_parameter():
    before = {"__name__", "names_before"}
    declared = {"__annotations__": {"config": str, "seed": int, "progress": bool}, "config": "x", "seed": 1,
                "progress": True, "_i3": "history", "pd": pytest, "check_parameters": check_parameters}
    check_parameters({**declared, **dict.fromkeys(before)}, before)
    with pytest.raises(ConfigError, match=re.escape("unknown notebook parameter 'sed' (did you mean 'seed'?); the"
                                                    " parameters are config, seed, progress")):
        check_parameters({**declared, "sed": 7}, before)
    with pytest.raises(ConfigError, match="notebook parameter seed = '7' should be of type int"):
        check_parameters({**declared, "seed": "7"}, before)
    with pytest.raises(ConfigError, match="notebook parameter seed = True should be of type int"):
        check_parameters({**declared, "seed": True}, before)


@pytest.mark.parametrize("name", ["_config", "__seed", "_i3x"])
def test_check_parameters_names_an_injected_underscore_parameter(name):
    """Today `-p _config ...` escapes the check (every underscore name was taken for IPython's history), and the
    notebook trains its defaults; IPython's own names (_, __, _i3, _3, _ih) still pass."""
    history = dict.fromkeys(["_", "__", "___", "_i", "_ii", "_i3", "_3", "_ih", "_oh", "_dh"], "history")
    namespace = {"__annotations__": {"config": str}, "config": "x", **history}
    check_parameters(namespace, set())
    with pytest.raises(ConfigError, match=re.escape(f"unknown notebook parameter '{name}'")):
        check_parameters({**namespace, name: "smnist_tau0.01"}, set())


def test_a_papermill_parameter_typo_fails_the_notebook_naming_it(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(TRAIN_NOTEBOOK), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={"config": "smnist_baseline", "sed": 7, "out_dir": str(tmp_path / "run")},
                            progress_bar=False, cwd=str(TRAIN_NOTEBOOK.parent))
    assert info.value.ename == "ConfigError"
    assert "unknown notebook parameter 'sed' (did you mean 'seed'?)" in info.value.evalue
    assert not (tmp_path / "run").exists()  # stopped before any run


def _dying_notebook(path: Path) -> Path:
    """A notebook whose kernel dies, as one killed for memory does."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    parameters = nbformat.v4.new_code_cell("config = seed = profile = out_dir = data_dir = None")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")]
    nbformat.write(nb, path)
    return path


def test_reproduce_survives_a_dead_kernel_and_lists_unfinished_runs(tmp_path, fake_data, capfd):
    config = get_config("smnist_baseline", "smoke")
    unfinished = records.run_dir(tmp_path / "runs", config, 2)
    with records.claimed(unfinished, config, 2):
        records.save_checkpoint(unfinished, config, 2, {"step": 20})
    outcome = reproduce(["smnist_baseline"], seeds=(1, 2, 1), profile="smoke", root=tmp_path / "runs",
                        data_dir=fake_data, notebook=_dying_notebook(tmp_path / "die.ipynb"), build=False)
    assert outcome[["seed", "before", "status"]].values.tolist() == [[1, "new", "failed"], [2, "unfinished", "failed"]]
    assert outcome.reason.str.contains("DeadKernelError").all()
    printed = capfd.readouterr()  # capfd: the kernels' own stderr too
    assert "resuming 1 unfinished run(s): smnist_baseline seed 2" in printed.out
    assert "without encryption" not in printed.err  # the kernel's warning would break the progress bar
    for seed, row in zip((1, 2), outcome.itertuples()):
        folder = Path(row.path)
        assert records.stored_identity(folder) == (config, seed)
        assert records.load_metrics(folder)["status"] == "failed"
        assert (folder / "train.ipynb").is_file()
    assert records.load_checkpoint(unfinished, config, 2) == {"step": 20}  # kept for the next attempt to resume from


def test_reproduce_plans_seed_by_seed(tmp_path):
    """Every config of a seed before the next seed: a long campaign stays balanced wherever it stops."""
    data = write_fake_mnist(tmp_path / "data", 100, 20)
    plan = _plan(["smnist_baseline", "smnist_tau0.02"], [42, 8], "paper", tmp_path / "runs", data)
    assert [(name, seed) for name, seed, *_ in plan] == [("smnist_baseline", 42), ("smnist_tau0.02", 42),
                                                         ("smnist_baseline", 8), ("smnist_tau0.02", 8)]
