"""HSV dynamics: the Hankel operator H and its eigenvalues, the Weyl bound on random parameter perturbations,
tracking by eigenvector overlap, the recorder, and the recorder inside training (checkpointed, exact on resume)."""

import jax
import numpy as np
import pytest

from compressm import dynamics, lru, records, reduction, train as train_module
from compressm.configs import DynamicsConfig, get_config
from compressm.data import load_dataset
from compressm.errors import ConfigError
from compressm.train import run_keys, train

N, H = 12, 3


def _layer(seed: int, n: int = N) -> dict:
    return lru.init_params(jax.random.PRNGKey(seed), n, H, r_min=0.5, r_max=0.99, max_phase=6.28)


def _perturbed(params: dict, seed: int, scale: float) -> dict:
    """Every parameter moved by scale * N(0, 1), as a (large) gradient step would."""
    keys = jax.random.split(jax.random.PRNGKey(seed), len(params))
    return {name: x + scale * jax.random.normal(k, x.shape) for k, (name, x) in zip(keys, sorted(params.items()))}


def test_the_eigenvalues_of_H_are_the_hsvs():
    params = _layer(0)
    op = dynamics.lru_hankel_operator(params)
    np.testing.assert_allclose(op.H, np.conj(op.H).T, atol=1e-12)  # Hermitian
    np.testing.assert_allclose(np.linalg.eigvalsh(op.H)[::-1], op.hsv, rtol=0, atol=1e-10 * op.hsv[0])
    # rtol 1e-9 of sigma_max: both routes are square-root factorisations in float64
    np.testing.assert_allclose(op.hsv, reduction.lru_hsv(params), rtol=0, atol=1e-9 * op.hsv[0])
    np.testing.assert_allclose((op.U * op.hsv) @ np.conj(op.U).T, op.H, atol=1e-10 * op.hsv[0])


def test_H_squared_is_P_half_Q_P_half():
    with jax.enable_x64(True):
        lambdas, B, C, _ = lru.system_from(jax.tree.map(lambda x: x.astype(np.float64), _layer(1)))
        P, Q = (np.asarray(M) for M in reduction.gramians(lambdas, B, C))
        Hm = np.asarray(dynamics.hankel_operator(P, Q).H)
        P_half = np.asarray(dynamics.psd_sqrt(P))
    np.testing.assert_allclose(P_half @ P_half, P, atol=1e-10 * np.abs(P).max())
    target = P_half @ Q @ P_half
    np.testing.assert_allclose(Hm @ Hm, target, atol=1e-9 * np.abs(target).max())


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 0.3])
@pytest.mark.parametrize("seed", range(4))
def test_no_hsv_moves_farther_than_the_weyl_bound(seed, scale):
    """Lemma 3.1 on random perturbations, small to large: |sigma_k(after) - sigma_k(before)| <= ||dH||_2 for every
    k (sorted HSVs), up to float64 rounding of the eigensolver (1e-12 sigma_max)."""
    before = dynamics.lru_hankel_operator(_layer(seed))
    after = dynamics.lru_hankel_operator(_perturbed(_layer(seed), 100 + seed, scale))
    bound = dynamics.weyl_bound(before.H, after.H)
    moved = np.abs(after.hsv - before.hsv)
    assert bound > 0 and np.all(moved <= bound + 1e-12 * before.hsv[0])
    assert moved.max() >= 0.1 * bound  # the bound is not vacuous here


def test_weyl_bound_of_the_real_output_system_too():
    before = dynamics.lru_hankel_operator(_layer(5), system="real")
    after = dynamics.lru_hankel_operator(_perturbed(_layer(5), 7, 1e-2), system="real")
    assert before.H.shape == (2 * N, 2 * N)
    assert np.all(np.abs(after.hsv - before.hsv) <= dynamics.weyl_bound(before.H, after.H) + 1e-12 * before.hsv[0])


def test_stable_pairs_and_bottom_energy():
    hsv = np.array([10.0, 6.0, 5.5, 1.0])
    np.testing.assert_array_equal(dynamics.stable_pairs(hsv, 0.5), [True, False, True])
    assert dynamics.bottom_energy(hsv, 1) == pytest.approx(1.0 / 22.5)
    np.testing.assert_allclose(dynamics.bottom_energy(np.stack([hsv, hsv]), 2), [6.5 / 22.5] * 2)


def test_matching_by_eigenvectors_finds_a_permutation_and_ignores_phases():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.normal(size=(6, 6)) + 1j * rng.normal(size=(6, 6)))
    perm = np.array([2, 0, 1, 5, 3, 4])
    U_next = U[:, perm] * np.exp(1j * np.arange(6))  # columns reordered, each with its own phase
    match = dynamics.match_states(U, U_next)  # column i of U is column match[i] of U_next
    np.testing.assert_array_equal(match, np.argsort(perm))


def test_track_follows_two_crossing_states():
    """Two states swap places in the descending order at t = 2: the tracked lines keep their identity."""
    hsv = np.array([[3.0, 1.0], [2.5, 1.5], [2.2, 1.8], [2.6, 1.4]])
    match = np.array([[0, 1], [0, 1], [0, 1], [1, 0]])  # at t = 3 the state that was first is second
    np.testing.assert_array_equal(dynamics.track(hsv, match), [[3.0, 1.0], [2.5, 1.5], [2.2, 1.8], [1.4, 2.6]])


def test_due_steps_are_the_records_and_the_step_before_each():
    config = DynamicsConfig(every_steps=5, last_step=12)
    assert [s for s in range(20) if dynamics.is_due(config, s)] == [0, 4, 5, 9, 10]
    assert not any(dynamics.is_due(DynamicsConfig(), s) for s in range(5))


def _classifier(params: dict) -> dict:
    return {"blocks_0": {"lru": params}}


def test_observe_records_hsvs_bounds_and_matches():
    config = DynamicsConfig(every_steps=2, last_step=4)
    layers = [_perturbed(_layer(0), s, 1e-3 * s) for s in range(5)]
    trace = {}
    for step, params in enumerate(layers):
        if dynamics.is_due(config, step):
            trace = dynamics.observe(trace, _classifier(params), step, config)
    out = dynamics.arrays(trace)
    assert list(out) == list(dynamics.TRACE_ARRAYS)
    np.testing.assert_array_equal(out["step"], [0, 2, 4])
    assert out["hsv"].shape == (3, 1, N) and out["match"].shape == (3, 1, N)
    assert np.isnan(out["bound_step"][0, 0]) and np.isnan(out["bound_interval"][0, 0])
    ops = [dynamics.lru_hankel_operator(p) for p in layers]
    assert out["bound_step"][2, 0] == dynamics.weyl_bound(ops[3].H, ops[4].H)
    assert out["bound_interval"][2, 0] == dynamics.weyl_bound(ops[2].H, ops[4].H)
    np.testing.assert_array_equal(out["hsv"][1, 0], ops[2].hsv)
    assert dynamics.arrays({}) == {}


# ---------------------------------------------------------------- inside training

def _tiny_dynamics(**overrides):
    values = {"steps": 12, "eval_every": 4, "model.state_size": 16, "data_limit": 64, "batch_size": 16,
              "dynamics.every_steps": 3, "dynamics.last_step": 12}
    return get_config("smnist_dynamics", "smoke", {**values, **overrides})


def test_dynamics_needs_a_model_of_fixed_size():
    with pytest.raises(ConfigError, match="reduction.mode = none"):
        _tiny_dynamics(**{"reduction.mode": "tolerance", "reduction.tau": 0.02})


def test_a_run_records_its_dynamics_and_resumes_them_exactly(tmp_path, monkeypatch):
    """Records at 0, 3, ..., 12 land in dynamics.npz; a run interrupted at step 6 (after the checkpoint of step 4)
    and resumed ends with the same arrays, bit for bit."""
    from fakes import write_fake_mnist

    config = _tiny_dynamics()
    root = write_fake_mnist(tmp_path / "data", 300, 100)
    dataset = load_dataset("smnist", root, key=run_keys(0)["split"], limit=config.data_limit)
    uninterrupted = train(config, 0, dataset, out_dir=tmp_path / "once", progress=False).dynamics
    np.testing.assert_array_equal(uninterrupted["step"], [0, 3, 6, 9, 12])
    assert np.all(np.isfinite(uninterrupted["bound_step"][1:]))
    np.testing.assert_equal(records.load_dynamics(tmp_path / "once"), uninterrupted)

    real_step, calls = train_module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, 0, dataset, out_dir=tmp_path / "run", progress=False)
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(config, 0, dataset, out_dir=tmp_path / "run", progress=False)
    assert resumed.metrics["resumes"] == [4]
    np.testing.assert_equal(resumed.dynamics, uninterrupted)
    np.testing.assert_equal(train_module.load_result(tmp_path / "run").dynamics, uninterrupted)
