"""The differential check against the authors' run path: the parameter mapping, the comparison and tolerance
logic, the Adam scale it reads, our dropout masks, and (with a checkout of theirs) the command end to end."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from compressm import authors_check as ac
from compressm.cli import main
from compressm.configs import ModelConfig, OptimConfig
from compressm.errors import CompressmError
from compressm.model import LRUClassifier
from compressm.train import make_optimizer
from tests.conftest import SHARED_DATA, needs_mnist

H, N, K = 3, 4, 5  # width, state size, classes of the small models here


def _authors_arrays(rng) -> dict:
    """Arrays named and shaped as the authors' LRU classifier exports them (1 block, input [t, x])."""
    names = {"linear_encoder.weight": (H, 2), "linear_encoder.bias": (H,), "linear_layer.weight": (K, H),
             "linear_layer.bias": (K,), "blocks.0.lru.nu_log": (N,), "blocks.0.lru.theta_log": (N,),
             "blocks.0.lru.gamma_log": (N,), "blocks.0.lru.B_re": (N, H), "blocks.0.lru.B_im": (N, H),
             "blocks.0.lru.C_re": (H, N), "blocks.0.lru.C_im": (H, N), "blocks.0.lru.D": (H,),
             "blocks.0.glu.w1.weight": (H, H), "blocks.0.glu.w1.bias": (H,), "blocks.0.glu.w2.weight": (H, H),
             "blocks.0.glu.w2.bias": (H,), "blocks.0.norm.mean": (H,), "blocks.0.norm.var": (H,)}
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in names.items()}
    return {**arrays, "blocks.0.norm.first_time": False}


def _our_model(dropout=0.0) -> LRUClassifier:
    return LRUClassifier((N,), 1, K, ModelConfig(width=H, state_size=N, dropout=dropout, recurrence="scan"))


def test_mapping_fills_our_tree_with_their_values():
    theirs = _authors_arrays(np.random.default_rng(0))
    params, stats = ac.ours_from_authors(theirs)
    ours = _our_model().init({"params": jax.random.PRNGKey(0)}, jnp.zeros((2, 6, 1)), train=False)
    shapes = lambda tree: jax.tree.map(np.shape, tree)
    assert shapes(params) == shapes(ours["params"]) and shapes(stats) == shapes(ours["batch_stats"])
    # Dense weights (out, in) become kernels (in, out); their time column is our first kernel row
    np.testing.assert_array_equal(params["encoder"]["kernel"], theirs["linear_encoder.weight"].T)
    np.testing.assert_array_equal(params["encoder"]["kernel"][0], theirs["linear_encoder.weight"][:, 0])
    np.testing.assert_array_equal(params["blocks_0"]["glu"]["w2"]["kernel"], theirs["blocks.0.glu.w2.weight"].T)
    np.testing.assert_array_equal(params["head"]["kernel"], theirs["linear_layer.weight"].T)
    np.testing.assert_array_equal(params["blocks_0"]["lru"]["C_im"], theirs["blocks.0.lru.C_im"])
    np.testing.assert_array_equal(stats["blocks_0"]["norm"]["var"], theirs["blocks.0.norm.var"])
    assert bool(stats["blocks_0"]["norm"]["started"])  # their first_time False: statistics already running
    assert not ac.ours_from_authors({**theirs, "blocks.0.norm.first_time": True})[1]["blocks_0"]["norm"]["started"]


def test_compare_measures_and_judges_differences():
    theirs = {"a": np.array([1.0, -2.0, 0.0]), "b": np.array([[10.0]])}
    same = ac.compare(theirs, theirs, 1e-4, 1e-5)
    assert same["passed"] and same["max_abs"] == 0.0 and same["max_rel"] == 0.0 and same["widened"] == []
    near = ac.compare({"a": np.array([1.0, -2.0, 5e-6]), "b": np.array([[10.0005]])}, theirs, 1e-4, 1e-5)
    assert near["passed"]  # 5e-6 <= atol at 0; 5e-4 <= 1e-5 + 1e-4 * 10
    assert near["max_abs"] == pytest.approx(5e-4) and near["max_rel"] == pytest.approx(5e-5) and near["worst"] == "b"
    far = ac.compare({"a": np.array([1.0, -2.0003, 0.0]), "b": np.array([[10.0]])}, theirs, 1e-4, 1e-5)
    assert not far["passed"] and far["max_abs"] == pytest.approx(3e-4) and far["worst"] == "a"
    assert far["max_rel"] == pytest.approx(1.5e-4)


def test_slack_widens_single_entries_only():
    theirs = np.array([1.0, 1.0])
    ours = np.array([1.0 + 5e-4, 1.0 + 5e-4])
    one = ac.compare(ours, theirs, 1e-4, 1e-5, slack=np.array([1e-3, 0.0]))
    assert not one["passed"] and [w["entry"] for w in one["widened"]] == ["[0]"]  # the second has no allowance
    both = ac.compare(ours, theirs, 1e-4, 1e-5, slack=np.array([1e-3, 1e-3]))
    assert both["passed"] and [w["entry"] for w in both["widened"]] == ["[0]", "[1]"]
    assert both["widened"][0]["allowed"] == pytest.approx(1e-5 + 1e-4 + 1e-3)


def test_compare_reads_scalars_and_booleans():
    stats = {"mean": np.zeros(2), "started": np.array(True)}
    assert ac.compare(stats, stats, 0.0, 0.0)["passed"]
    other = ac.compare({**stats, "started": np.array(False)}, stats, 0.0, 0.0)
    assert not other["passed"] and other["max_abs"] == 1.0 and other["worst"] == "started"


def test_compare_fails_on_other_shapes_or_paths():
    assert not ac.compare(np.zeros(3), np.zeros(4), 1.0, 1.0)["passed"]
    assert "shapes differ" in ac.compare({"a": np.zeros(2)}, {"b": np.zeros(2)}, 1.0, 1.0)["note"]


def test_adam_root_v_is_the_bias_corrected_gradient_scale():
    params = {"lru": {"nu_log": jnp.zeros(3)}, "glu": {"kernel": jnp.zeros((2, 2))}}  # an SSM group and the rest
    grads = {"lru": {"nu_log": jnp.array([1e-9, -2.0, 3e-4])}, "glu": {"kernel": jnp.array([[0.5, -1e-8], [0, 1]])}}
    optimizer = make_optimizer(OptimConfig(lr=4e-4), 10)
    _, state = optimizer.update(grads, optimizer.init(params), params)
    root_v = ac.adam_root_v(state, 1)  # after one step v_hat = g^2
    np.testing.assert_allclose(root_v["lru"]["nu_log"], np.abs(grads["lru"]["nu_log"]), rtol=1e-6)
    np.testing.assert_allclose(root_v["glu"]["kernel"], np.abs(grads["glu"]["kernel"]), rtol=1e-6)


def test_drawn_masks_depend_on_the_key_alone():
    """_our_masks draws the masks once, with other parameters than training has: that needs this."""
    model, x = _our_model(dropout=0.5), jnp.ones((4, 6, 1))
    first, second = (model.init({"params": jax.random.PRNGKey(seed)}, x, train=False) for seed in (0, 1))
    key = jax.random.PRNGKey(7)
    masks = ac.drawn_masks(model, first, x, key)
    assert len(masks) == 2 and all(m.shape == (H, 1, 6) for m in masks)  # two calls, one mask for the batch
    assert not np.array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(np.stack(masks), np.stack(ac.drawn_masks(model, second, 2 * x, key)))
    assert not np.array_equal(np.stack(masks), np.stack(ac.drawn_masks(model, first, x, jax.random.PRNGKey(8))))


def test_a_folder_without_the_run_path_is_refused(tmp_path, capsys):
    with pytest.raises(CompressmError, match="release/v1.0.0.*git clone"):
        ac.check_checkout(tmp_path)
    assert main(["check-authors", "--authors", str(tmp_path), "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "models/LRU.py" in err and err.count("\n") == 1
    for name in ac.RUN_PATH:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert ac.check_checkout(tmp_path) == tmp_path.resolve()


def test_tables_and_summary_read_the_record():
    good = {"phase": "dropout off", "item": "loss at every step", "tolerance_reason": "rounding",
            **ac.compare(np.ones(2), np.ones(2), 1e-5, 1e-6)}
    bad = {"phase": "reduction", "item": "reduced sizes", "tolerance_reason": "exact", "ours": [28], "theirs": [27],
           **ac.compare(np.array([28]), np.array([27]), 0.0, 0.0)}
    record = {"comparisons": [good, bad], "passed": False, "runtime_s": 12.0,
              "authors": {"commit": "8814b12836fb", "branch": "release/v1.0.0"},
              "departures": [{"departure": "d", "reason": "r", "where": "w"}],
              "environment": {"commit": "30ce2f9acab7+dirty", "device": "a CPU", "versions": {"jax": "0.10"}},
              "settings": {"steps": 20, "batch_size": 50, "dropout": 0.1, "dropout_scale": 1.1, "tau": 0.02,
                           "state_size": 256}}
    table = ac.comparison_table(record)
    assert list(table.agrees) == ["yes", "NO"] and list(table.tolerance) == ["rtol 1e-05, atol 1e-06", "exact"]
    assert list(ac.departure_table(record).columns) == ["departure", "reason", "where"]
    provenance = dict(ac.provenance_table(record).values)
    assert provenance["library commit"] == "30ce2f9aca with uncommitted changes"
    assert provenance["reduction"] == "tau 0.02: N = 256 to [28] (ours), [27] (theirs)"
    lines = ac.summary_lines(record)
    assert lines[1].startswith("FAIL reduction") and "DISAGREES" in lines[-1] and "8814b12836" in lines[-1]


def _authors_checkout() -> Path | None:
    """$COMPRESSM_AUTHORS if it is a checkout of the authors' code (the check takes minutes: opt in)."""
    candidate = os.environ.get("COMPRESSM_AUTHORS")
    return Path(candidate) if candidate and (Path(candidate) / "run_experiment.py").is_file() else None


@pytest.mark.slow
@needs_mnist
@pytest.mark.skipif(_authors_checkout() is None, reason="no checkout of the authors' code: set COMPRESSM_AUTHORS")
def test_the_command_agrees_with_the_authors_run_path(tmp_path, capsys):
    assert main(["check-authors", "--authors", str(_authors_checkout()), "--runs", str(tmp_path),
                 "--data-dir", str(SHARED_DATA)]) == 0
    record = json.loads((tmp_path / ac.RECORD).read_text())
    assert record["passed"] and record["authors"]["commit"] != "unknown"
    assert {c["phase"] for c in record["comparisons"]} == {"inputs", "dropout off", "shared mask", "reduction"}
    assert "agrees with the authors' run path" in capsys.readouterr().out
