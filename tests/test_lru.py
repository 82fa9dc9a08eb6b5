"""The LRU recurrences: every implementation against the sequential scan, outputs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MODEL_RTOL, ON_CPU

from compressm import lru
from compressm.errors import CompressmError, InvalidSystem


def lru_params(key, n, h, r_min=0.9, r_max=0.999):
    return lru.init_params(key, n, h, r_min, r_max, max_phase=6.28)


def output_and_grads(recurrence, params, u):
    def loss(params):
        y = jax.vmap(lambda seq: lru.apply_lru(recurrence, *lru.system_from(params), seq))(u)
        return jnp.sum(jnp.sin(y)), y

    (_, y), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return y, grads


def rel_err(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


CASES = {  # name: (N, H, L, r_min, r_max)
    "smnist-like": (32, 8, 784, 0.9, 0.999),
    "near unit circle": (16, 4, 2048, 0.9999, 0.99999),
    "long sequence": (8, 2, 4096, 0.9, 0.999),
    "wide": (24, 48, 256, 0.9, 0.999),
}


@pytest.mark.parametrize("recurrence", ["associative", "conv"])
@pytest.mark.parametrize("case", CASES)
def test_recurrences_match_sequential_scan_in_float64(recurrence, case):
    """Exactness of the algorithms: outputs and every gradient agree to 1e-5 relative (observed ~1e-12)."""
    n, h, length, r_min, r_max = CASES[case]
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: x.astype(jnp.float64), lru_params(jax.random.PRNGKey(0), n, h, r_min, r_max))
        u = jax.random.normal(jax.random.PRNGKey(1), (2, length, h), jnp.float64)
        y_ref, g_ref = output_and_grads("scan", params, u)
        y, g = output_and_grads(recurrence, params, u)
        assert rel_err(y, y_ref) < 1e-5
        for name in params:
            assert rel_err(g[name], g_ref[name]) < 1e-5, name


@pytest.mark.parametrize("n", [13, 64, 256])
@pytest.mark.parametrize("recurrence", ["associative", "conv"])
def test_recurrences_match_sequential_scan_in_float32(recurrence, n):
    """Training precision (sMNIST shapes, full and compressed N): float32 rounding differs by route; outputs and
    every gradient agree to 1e-5 relative on CPU (observed < 4e-6; on a GPU the readout products run in TF32
    by default: MODEL_RTOL)."""
    params = lru_params(jax.random.PRNGKey(2), n, 8)
    u = jax.random.normal(jax.random.PRNGKey(3), (4, 784, 8))
    y_ref, g_ref = output_and_grads("scan", params, u)
    y, g = output_and_grads(recurrence, params, u)
    tol = 1e-5 if ON_CPU else MODEL_RTOL
    assert rel_err(y, y_ref) < tol
    for name in params:
        assert rel_err(g[name], g_ref[name]) < tol, name


def test_geometric_powers_are_accurate():
    """lambda^t from the two prefix-product tables against float64 powers, |lambda| up to 0.99999: float32 error
    below 3e-5 (observed 2.2e-5; the layer's outputs and gradients still agree with the scan to 1e-5)."""
    params = lru_params(jax.random.PRNGKey(8), 256, 2, r_min=0.999, r_max=0.99999)
    lambdas = lru.lambdas_from(params["nu_log"], params["theta_log"])
    re, im = lru.geometric_powers(lambdas, 784)
    exact = np.asarray(lambdas, np.complex128)[None, :] ** np.arange(784)[:, None]
    assert np.abs(np.asarray(re) + 1j * np.asarray(im) - exact).max() < 3e-5


def test_streaming_step_matches_scan():
    params = lru_params(jax.random.PRNGKey(4), 12, 3)
    system = lru.system_from(params)
    u = jax.random.normal(jax.random.PRNGKey(5), (50, 3))
    x, ys = jnp.zeros(12, jnp.complex64), []
    for u_t in u:
        x, y_t = lru.lru_step(*system, x, u_t)
        ys.append(y_t)
    tol = 1e-5 if ON_CPU else MODEL_RTOL  # on a GPU the products run in TF32 by default
    np.testing.assert_allclose(jnp.stack(ys), lru.apply_lru("scan", *system, u), rtol=tol, atol=tol)


def test_kernel_is_the_impulse_response():
    params = lru_params(jax.random.PRNGKey(6), 10, 3)
    lambdas, B, C, D = lru.system_from(params)
    u = jnp.zeros((20, 3)).at[0, 1].set(1.0)  # impulse on channel 1
    y = lru.apply_lru("scan", lambdas, B, C, D, u)
    K = lru.lru_kernel(lambdas, B, C, 20)
    tol = 1e-5 if ON_CPU else MODEL_RTOL  # the scan's products run in TF32 on a GPU by default
    np.testing.assert_allclose(y[1:, :], K[1:, :, 1], rtol=tol, atol=tol / 10)
    np.testing.assert_allclose(y[0], K[0, :, 1] + D * u[0], rtol=tol, atol=tol / 10)


def test_initialisation_follows_the_paper():
    n = 4096
    params = lru_params(jax.random.PRNGKey(7), n, 2, r_min=0.9, r_max=0.999)
    lambdas = lru.lambdas_from(params["nu_log"], params["theta_log"])
    radius2 = np.abs(np.asarray(lambdas)) ** 2
    assert radius2.min() >= 0.9**2 - 1e-6 and radius2.max() <= 0.999**2 + 1e-6
    assert abs(radius2.mean() - (0.9**2 + 0.999**2) / 2) < 0.005  # uniform in |lambda|^2
    phase = np.exp(np.asarray(params["theta_log"]))
    assert phase.min() >= 0 and phase.max() <= 6.28 and abs(phase.mean() - 3.14) < 0.1
    np.testing.assert_allclose(np.exp(np.asarray(params["gamma_log"])), np.sqrt(1 - radius2), rtol=1e-4)


def test_choose_recurrence_rule():
    assert lru.choose_recurrence("cpu", width=8) == "conv"  # sMNIST
    assert lru.choose_recurrence("cpu", width=lru.CONV_MAX_WIDTH) == "conv"
    assert lru.choose_recurrence("cpu", width=512) == "scan"  # sCIFAR
    assert lru.choose_recurrence("gpu", width=8) == "associative"
    assert lru.choose_recurrence("gpu", width=512) == "associative"


@pytest.mark.parametrize("case, fragment", [
    ("outside", r"\|lambda\| spans \[0.9\d*, 1.2\d*\]"),  # today clamped silently to |lambda| < 1
    ("circle", r"\|lambda\| spans \[0.9\d*, 0.99999999999999989\]"),  # lambda = -1 as nu_log = -inf gives it
    ("zero", r"\|lambda\| spans \[0, "),
    ("nan", "lambda, B, C or D has NaN or infinite entries"),
])
def test_params_from_system_refuses_modes_it_cannot_represent(case, fragment):
    lambdas, B, C, D = (np.asarray(M) for M in lru.system_from(lru_params(jax.random.PRNGKey(0), 4, 2)))
    lambdas = lambdas.astype(np.complex128)
    lambdas[1] = {"outside": 1.2, "circle": -(1 - 2**-53), "zero": 0.0, "nan": np.nan}[case]
    with pytest.raises(InvalidSystem, match=fragment) as info:
        lru.params_from_system(lambdas, B, C, D)
    assert "lru.STABILITY_EPS" in str(info.value) or case == "nan"
    assert isinstance(info.value, CompressmError)  # one error line on the command line, not a traceback
