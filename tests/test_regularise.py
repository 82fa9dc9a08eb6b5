"""Tests for compressm.regularise: the differentiable sum of HSVs equals the reduction's HSVs, its float64
gradient matches central finite differences, and the penalty runs inside a float32 jitted step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from compressm import reduction, regularise
from compressm.model import block_lru


def _layer(n: int, width: int, seed: int = 0) -> dict:
    """A random stable LRU layer in float64, drawn as the paper initialises (numpy: nothing compiles)."""
    rng = np.random.default_rng(seed)
    radius_sq = rng.uniform(0.9**2, 0.999**2, n)
    nu_log = np.log(-0.5 * np.log(radius_sq))
    layer = {"nu_log": nu_log, "theta_log": np.log(rng.uniform(0, 6.28, n)),
             "gamma_log": 0.5 * np.log1p(-radius_sq),
             "B_re": rng.normal(size=(n, width)) / np.sqrt(2 * width),
             "B_im": rng.normal(size=(n, width)) / np.sqrt(2 * width),
             "C_re": rng.normal(size=(width, n)) / np.sqrt(n), "C_im": rng.normal(size=(width, n)) / np.sqrt(n),
             "D": rng.normal(size=width)}
    with jax.enable_x64(True):
        return {name: jnp.asarray(x, jnp.float64) for name, x in layer.items()}


def test_nuclear_norm_is_the_sum_of_the_reductions_hsvs():
    # rtol 1e-8: the eps = 1e-9 regularisation of both Gramians raises the sum by about 7e-10 of itself here
    for n, width in ((6, 3), (24, 8)):
        layer = _layer(n, width)
        with jax.enable_x64(True):
            total = float(jax.jit(regularise.lru_nuclear_norm)(layer))
        np.testing.assert_allclose(total, reduction.lru_hsv(layer).sum(), rtol=1e-8)


def test_gradient_matches_central_finite_differences_in_float64():
    """Every entry of the gradient of the sum of HSVs of a 6-state, 3-channel layer against central differences
    with step h = 1e-6. Truncation error ~ h^2 |f'''| and rounding ~ 1e-16 |f| / h (about 1e-9 here), so
    atol 1e-6 * max |gradient| and rtol 1e-5 leave a wide margin; a wrong rule is off by O(1)."""
    layer = _layer(6, 3, seed=3)
    h = 1e-6
    with jax.enable_x64(True):
        value = jax.jit(regularise.lru_nuclear_norm)
        grad = jax.jit(jax.grad(regularise.lru_nuclear_norm))(layer)
        for name, x in layer.items():
            flat = np.asarray(x).ravel()
            numeric = np.empty_like(flat)
            for i in range(flat.size):
                step = np.zeros_like(flat)
                step[i] = h
                shifted = lambda sign: {**layer, name: jnp.asarray((flat + sign * step).reshape(x.shape))}
                numeric[i] = (float(value(shifted(1))) - float(value(shifted(-1)))) / (2 * h)
            scale = max(np.abs(np.asarray(g)).max() for g in grad.values())
            np.testing.assert_allclose(np.asarray(grad[name]).ravel(), numeric, rtol=1e-5, atol=1e-6 * scale,
                                       err_msg=name)
    assert np.all(np.asarray(grad["D"]) == 0)  # D is not part of the system the HSVs describe


def test_gradient_stays_finite_with_vanishing_and_repeated_hsvs():
    """Half of the states have no input (B = 0 rows, HSV 0, repeated) and two states coincide: the SVD's rule for
    singular values alone has no eigenvalue-gap divisions, so the gradient is finite."""
    layer = {name: np.array(x) for name, x in _layer(8, 4, seed=5).items()}
    layer["B_re"][4:] = layer["B_im"][4:] = 0.0
    for name in ("nu_log", "theta_log", "gamma_log", "B_re", "B_im"):
        layer[name][1] = layer[name][0]
    with jax.enable_x64(True):
        layer = {name: jnp.asarray(x) for name, x in layer.items()}
        grad = jax.jit(jax.grad(regularise.lru_nuclear_norm))(layer)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad.values())


def test_penalty_in_a_float32_jitted_step_is_the_float64_sum_and_gradient():
    """hankel_penalty over a two-block parameter tree (blocks of 6 and 5 states), inside jit with x64 off: the
    float32 value and gradient equal the float64 ones rounded (rtol 1e-6: one float32 rounding of each), and the
    gradient is zero outside the LRU layers."""
    as32 = lambda layer: {name: np.asarray(x, np.float32) for name, x in layer.items()}
    params = {"encoder": {"kernel": np.ones((1, 4), np.float32), "bias": np.zeros(4, np.float32)},
              "blocks_0": {"lru": as32(_layer(6, 4, seed=1))}, "blocks_1": {"lru": as32(_layer(5, 4, seed=2))}}
    value, grad = jax.jit(jax.value_and_grad(lambda p: 2.0 * regularise.hankel_penalty(p)))(params)
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grad))
    with jax.enable_x64(True):
        layers = [{name: jnp.asarray(x, jnp.float64) for name, x in block_lru(params, i).items()} for i in range(2)]
        value_and_grad = jax.jit(jax.value_and_grad(regularise.lru_nuclear_norm))
        expected_values, expected_grads = zip(*(value_and_grad(layer) for layer in layers))
        expected = sum(float(v) for v in expected_values)
    assert float(value) == pytest.approx(2 * expected, rel=1e-6)
    for i in range(2):
        for name, g in block_lru(grad, i).items():
            np.testing.assert_allclose(g, 2 * np.asarray(expected_grads[i][name]), rtol=1e-6, atol=1e-6)
    for leaf in jax.tree.leaves({k: v for k, v in grad.items() if not k.startswith("blocks_")}):
        assert np.all(np.asarray(leaf) == 0)


def test_a_regularised_run_trains_with_the_penalty_then_truncates_to_the_target_rank(tmp_path):
    """smnist_hankel_n28 shrunk (N = 12, truncation to 4 states at step 4 of 8): the history records the mean sum
    of HSVs, the truncation is a reduction event to exactly the target rank, and the fine-tune follows it."""
    from fakes import write_fake_mnist

    from compressm.data import load_dataset
    from compressm.configs import get_config
    from compressm.train import run_keys, train

    overrides = {"steps": 8, "eval_every": 4, "model.state_size": 12, "reduction.rank": 4,
                 "reduction.first_step": 4, "reduction.last_step": 4, "data_limit": 64, "batch_size": 16}
    config = get_config("smnist_hankel_n28", "smoke", overrides)
    assert config.reduction.attempt_steps() == (4,) and config.objective.hsv_weight == 3e-3
    dataset = load_dataset("smnist", write_fake_mnist(tmp_path, 300, 100), key=run_keys(0)["split"], limit=64)
    metrics = train(config, 0, dataset, progress=False).metrics
    assert [(e["step"], e["old_size"], e["new_size"]) for e in metrics["reductions"]] == [(4, 12, 4)]
    assert metrics["summary"]["final_state_sizes"] == [4] and metrics["summary"]["best_step"] >= 4
    sums = [row["train_hsv_sum"] for row in metrics["history"]]
    assert len(sums) == 2 and all(np.isfinite(sums)) and sums[0] > sums[1] > 0  # 12 states, then 4


def test_the_regularised_step_benchmark_runs_at_a_tiny_size():
    """`bench regularised_step` at H = 4, N = 4 (the paper's L = 784, batch 50): both steps and the penalty are
    timed and the record names the config's lambda; no speed is asserted."""
    from compressm import bench
    from compressm.configs import get_config

    record = bench.bench_regularised_step("smnist", 4, repeats=1, width=4)
    assert record["hsv_weight"] == get_config(bench.REGULARISED_CONFIG).objective.hsv_weight
    assert record["state_size"] == 4 and record["width"] == 4
    assert all(record[k] > 0 for k in ("median_s", "plain_s", "penalty_s", "slowdown"))
