"""Balanced truncation against independent oracles, on random stable systems of several sizes.

Oracles: scipy's dense discrete Lyapunov solver (the paper's complex-system Gramians and HSVs) and SLICOT's
AB09AD through slycot (HSVs and balanced truncation of the real-output system, in real 2N-state form).
All comparisons run in float64 (jax x64 mode); tolerances are stated where they are used.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import slycot

from compressm import lru, reduction
from compressm.configs import get_config
from compressm.paper import paper_table

SIZES = [(4, 1), (8, 3), (16, 2)]  # (N states, H channels)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def random_system(seed: int, n: int, h: int):
    """A stable diagonal system (lambdas (n,), B (n, h), C (h, n)), complex128, |lambda| in [0.5, 0.98]."""
    rng = np.random.default_rng(seed)
    lambdas = rng.uniform(0.5, 0.98, n) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    B = rng.normal(size=(n, h)) + 1j * rng.normal(size=(n, h))
    C = rng.normal(size=(h, n)) + 1j * rng.normal(size=(h, n))
    return lambdas, B, C


response = reduction.frequency_response


def hinf(G):
    """Largest singular value over a frequency grid of responses G (F, p, m)."""
    return np.linalg.svd(G, compute_uv=False).max()


Z = np.exp(1j * np.linspace(-np.pi, np.pi, 2001))  # dense grid on the unit circle


@pytest.mark.parametrize("n,h", SIZES)
def test_closed_form_gramians_solve_the_lyapunov_equations(n, h):
    lambdas, B, C = random_system(n, n, h)
    P, Q = (np.asarray(M) for M in reduction.gramians(jnp.asarray(lambdas), jnp.asarray(B), jnp.asarray(C)))
    A = np.diag(lambdas)
    P_ref = scipy.linalg.solve_discrete_lyapunov(A, B @ B.conj().T)  # A P A^H - P + B B^H = 0
    Q_ref = scipy.linalg.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    np.testing.assert_allclose(P, P_ref, rtol=1e-10, atol=1e-12)  # both exact up to rounding
    np.testing.assert_allclose(Q, Q_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,h", SIZES)
def test_complex_hsv_match_lyapunov_oracle(n, h):
    lambdas, B, C = random_system(10 + n, n, h)
    A = np.diag(lambdas)
    P = scipy.linalg.solve_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy.linalg.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    expected = np.sort(np.sqrt(np.linalg.eigvals(P @ Q).real))[::-1]
    hsv = np.asarray(reduction.system_hsv(jnp.asarray(lambdas), jnp.asarray(B), jnp.asarray(C), "complex"))
    np.testing.assert_allclose(hsv, expected, rtol=1e-6)  # the 1e-6 relative


@pytest.mark.parametrize("n,h", SIZES)
def test_real_output_hsv_match_slicot_ab09ad(n, h):
    lambdas, B, C = random_system(20 + n, n, h)
    args = [jnp.asarray(x) for x in (lambdas, B, C)]
    A_w, B_w, C_w, _, _ = (np.asarray(M) for M in reduction.real_coordinates(*args))
    *_, hsv_ref = slycot.ab09ad("D", "B", "N", 2 * n, h, h, A_w, B_w, C_w, nr=2 * n)
    hsv = np.asarray(reduction.system_hsv(*args, "real"))
    np.testing.assert_allclose(hsv, hsv_ref, rtol=1e-6)
    assert not np.allclose(hsv[:n], np.asarray(reduction.system_hsv(*args, "complex")))  # they do differ


def test_real_coordinates_realise_the_real_output():
    """The real 2N-state form has the transfer function of y = Re(C x): (G(z) + conj G(conj z)) / 2."""
    lambdas, B, C = random_system(3, 6, 2)
    args = [jnp.asarray(x) for x in (lambdas, B, C)]
    A_w, B_w, C_w, P_w, Q_w = (np.asarray(M) for M in reduction.real_coordinates(*args))
    z = Z[::50]
    G_real = 0.5 * (response(lambdas, B, C, z) + response(lambdas, B, C, z.conj()).conj())
    np.testing.assert_allclose(response(A_w, B_w, C_w, z), G_real, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(P_w, scipy.linalg.solve_discrete_lyapunov(A_w, B_w @ B_w.T), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(Q_w, scipy.linalg.solve_discrete_lyapunov(A_w.T, C_w.T @ C_w), rtol=1e-8, atol=1e-10)


def _truncate(lambdas, B, C, rank, system, method):
    args = [jnp.asarray(x) for x in (lambdas, B, C)]
    if system == "real":
        A, B_, C_, P, Q = reduction.real_coordinates(*args)
    else:
        (A, B_, C_), (P, Q) = args, reduction.gramians(*args)
    hsv = np.asarray(reduction.hankel_singular_values(P, Q))
    bal = reduction.Balancing(*(np.asarray(M) for M in reduction.hsv_and_balancing(P, Q, method)[1]))
    full = tuple(np.asarray(M) for M in (A, B_, C_))
    return full, reduction.truncate(*full, bal, np.arange(rank)), hsv  # truncate works on numpy arrays too


@pytest.mark.parametrize("method", ["sqrtm", "chol"])
@pytest.mark.parametrize("system", ["complex", "real"])
@pytest.mark.parametrize("n,h", SIZES)
def test_truncation_error_within_twice_the_discarded_hsvs_for_every_rank(n, h, system, method):
    lambdas, B, C = random_system(30 + n, n, h)
    args = [jnp.asarray(x) for x in (lambdas, B, C)]
    result = reduction.truncation_errors(*args, system, method, num_freq=2001)
    hsv = np.asarray(reduction.system_hsv(*args, system))
    # the two tail sums add the same HSVs in a different order: rounding differs by ~1e-12 relative across BLAS builds
    np.testing.assert_allclose(result["bound"], [2 * hsv[r:].sum() for r in result["rank"]], rtol=1e-9)
    assert len(result["rank"]) == len(hsv) - 1
    # grid maximum <= true H-infinity norm <= bound; 1e-6 absorbs rounding
    assert np.all(result["hinf_error"] <= result["bound"] * (1 + 1e-6)), result
    for rank in result["rank"]:
        _, (A_r, _, _), _ = _truncate(lambdas, B, C, rank, system, method)
        assert np.abs(np.linalg.eigvals(A_r)).max() < 1  # balanced truncation keeps stability


def paper_sqrtm_balancing(P, Q, eps=reduction.GRAMIAN_EPS):
    """The paper's formula, literally: P^1/2 = sqrtm(P + eps I), U, S = svd(P^1/2 Q P^1/2), T = P^1/2 U S^-1/4."""
    P_half = scipy.linalg.sqrtm(P + eps * np.eye(len(P)))
    U, S, _ = np.linalg.svd(P_half @ Q @ P_half)
    T = P_half @ U * S**-0.25
    return T, np.linalg.inv(T)


@pytest.mark.parametrize("n,h", SIZES)
def test_factored_sqrtm_balancing_is_the_papers_formula(n, h):
    """hsv_and_balancing's factored 'sqrtm' gives the paper's truncated systems (balanced coordinates are unique
    up to a unitary phase per state, so compare transfer functions) for every rank."""
    lambdas, B, C = random_system(60 + n, n, h)
    P, Q = (np.asarray(M) for M in reduction.gramians(*(jnp.asarray(x) for x in (lambdas, B, C))))
    hsv, bal = reduction.hsv_and_balancing(jnp.asarray(P), jnp.asarray(Q), "sqrtm")
    np.testing.assert_allclose(hsv, reduction.hankel_singular_values(P, Q), rtol=1e-12)
    paper = reduction.Balancing(*paper_sqrtm_balancing(P, Q))
    ours = reduction.Balancing(*(np.asarray(M) for M in bal))
    np.testing.assert_allclose(ours.Tinv @ ours.T, np.eye(n), atol=1e-8)
    for rank in range(1, n + 1):
        G = response(*reduction.truncate(lambdas, B, C, ours, np.arange(rank)), Z[::10])
        G_paper = response(*reduction.truncate(lambdas, B, C, paper, np.arange(rank)), Z[::10])
        assert hinf(G - G_paper) <= 1e-7 * hinf(G_paper), rank


@pytest.mark.parametrize("n,h", SIZES)
def test_paper_complex_hsvs_also_bound_the_real_output_error(n, h):
    """||Re-output error|| <= ||complex error|| <= 2 sum(discarded complex HSVs): the paper's bound holds for y."""
    lambdas, B, C = random_system(40 + n, n, h)
    for rank in range(1, n):
        _, (A_r, B_r, C_r), hsv = _truncate(lambdas, B, C, rank, "complex", "sqrtm")
        G = lambda A, B_, C_: 0.5 * (response(A, B_, C_, Z) + response(A, B_, C_, Z.conj()).conj())
        assert hinf(G(np.diag(lambdas), B, C) - G(A_r, B_r, C_r)) <= 2 * hsv[rank:].sum() * (1 + 1e-6)


@pytest.mark.parametrize("n,h", SIZES)
def test_real_output_truncation_matches_slicot_ab09ad(n, h):
    lambdas, B, C = random_system(50 + n, n, h)
    for rank in (1, n, 2 * n - 1):
        full, (A_r, B_r, C_r), _ = _truncate(lambdas, B, C, rank, "real", "sqrtm")
        nr, Ar, Br, Cr, _ = slycot.ab09ad("D", "B", "N", 2 * n, h, h, *full, nr=rank)
        assert nr == rank
        # Balanced realisations agree up to state signs: compare transfer functions, to 1e-6 relative.
        G, G_ref = response(A_r, B_r, C_r, Z), response(Ar[:nr, :nr], Br[:nr], Cr[:, :nr], Z)
        assert hinf(G - G_ref) <= 1e-6 * hinf(G_ref)


def lru_impulse_response(params: dict, length: int) -> np.ndarray:
    """K_t = Re(C lambda^t B) (t < length) of LRU parameters: the response that the LRU layer computes."""
    lambdas, B, C, _ = lru.system_from(params)
    return np.asarray(lru.lru_kernel(lambdas, B, C, length))


def dense_impulse_response(A, B, C, length: int, real_part: bool) -> np.ndarray:
    out, M = [], B
    for _ in range(length):
        out.append(C @ M)
        M = A @ M
    out = np.stack(out)
    return out.real if real_part else out


@pytest.mark.parametrize("system", ["complex", "real"])
@pytest.mark.parametrize("n,h", SIZES)
def test_lru_parameters_rebuilt_from_truncation_reproduce_its_impulse_response(n, h, system):
    lambdas, B, C = random_system(60 + n, n, h)
    D = np.ones(h)
    size = 2 * n if system == "real" else n
    for rank in sorted({1, 2, size // 2 + 1, size - 1, size}):
        _, (A_r, B_r, C_r), _ = _truncate(lambdas, B, C, rank, system, "sqrtm")
        params = reduction.lru_params_from_system(A_r, B_r, C_r, D, real=system == "real")
        expected = dense_impulse_response(A_r, B_r, C_r, 64, real_part=True)
        np.testing.assert_allclose(lru_impulse_response(params, 64), expected, rtol=0, atol=1e-6 * np.abs(
            expected).max())  # 1e-6 relative to the response's scale
        np.testing.assert_array_equal(np.asarray(params["D"]), D)
        assert np.all(np.exp(-np.exp(np.asarray(params["nu_log"]))) < 1)


def test_full_rank_truncation_keeps_the_impulse_response():
    lambdas, B, C = random_system(7, 8, 2)
    _, (A_r, B_r, C_r), _ = _truncate(lambdas, B, C, 8, "complex", "sqrtm")
    np.testing.assert_allclose(dense_impulse_response(A_r, B_r, C_r, 64, True),
                               dense_impulse_response(np.diag(lambdas), B, C, 64, True), atol=1e-8)


def test_hsv_invariant_under_permutation_and_diagonal_scaling():
    lambdas, B, C = random_system(8, 10, 3)
    hsv = np.asarray(reduction.system_hsv(jnp.asarray(lambdas), jnp.asarray(B), jnp.asarray(C)))
    perm = np.random.default_rng(0).permutation(10)
    scale = np.random.default_rng(1).uniform(0.2, 5, 10) * np.exp(1j * np.random.default_rng(2).uniform(0, 6, 10))
    permuted = reduction.system_hsv(*(jnp.asarray(x) for x in (lambdas[perm], B[perm], C[:, perm])))
    scaled = reduction.system_hsv(*(jnp.asarray(x) for x in (lambdas, scale[:, None] * B, C / scale)))
    np.testing.assert_allclose(np.asarray(permuted), hsv, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(scaled), hsv, rtol=1e-8)
    assert np.all(hsv >= 0) and np.all(np.diff(hsv) <= 0)


def test_rank_for_tau_sums_hsvs_not_squares():
    hsv = np.array([4.0, 3.0, 2.0, 1.0])  # cumulative energy 0.4, 0.7, 0.9, 1.0
    assert reduction.rank_for_tau(hsv, 0.0) == 4
    assert reduction.rank_for_tau(hsv, 0.1) == 3  # keep >= 90 %: 4 + 3 + 2
    assert reduction.rank_for_tau(hsv, 0.11) == 3
    assert reduction.rank_for_tau(hsv, 0.35) == 2  # squares would give 0.53 / 0.83 -> rank 2 too; 0.2 differs:
    assert reduction.rank_for_tau(hsv, 0.2) == 3  # sum: 0.7 < 0.8 -> 3; sum of squares: 25/30 = 0.83 -> 2
    for tau in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            reduction.rank_for_tau(hsv, tau)


def test_keep_indices_selections():
    np.testing.assert_array_equal(reduction.keep_indices(6, 2, "largest"), [0, 1])
    np.testing.assert_array_equal(reduction.keep_indices(6, 2, "smallest"), [4, 5])
    random = reduction.keep_indices(6, 3, "random", jax.random.PRNGKey(0))
    assert len(set(random.tolist())) == 3 and random.max() < 6
    with pytest.raises(ValueError):
        reduction.keep_indices(6, 3, "random")


@pytest.mark.parametrize("table", [2, 3])
def test_float32_rank_equals_float64_rank_at_init(table):
    model = get_config(paper_table(table).baseline).model  # the paper's model and taus (Tables 2 and 3)
    taus = [get_config(name).reduction.tau for name in paper_table(table).compressed]
    with jax.enable_x64(False):  # parameters as training makes them: float32
        keys = jax.random.split(jax.random.PRNGKey(0), model.num_blocks)
        layers = [_init_lru(key, model.state_size, model.width) for key in keys]
    for params in layers:
        hsv32 = reduction.lru_hsv(params, precision="float32")
        hsv64 = reduction.lru_hsv(params, precision="float64")
        assert hsv32.dtype == np.float32 and hsv64.dtype == np.float64
        for tau in taus:
            assert reduction.rank_for_tau(hsv32, tau) == reduction.rank_for_tau(hsv64, tau)


def _init_lru(key, n, width):
    return lru.init_params(key, n, width, r_min=0.9, r_max=0.999, max_phase=6.28)


# ---------------------------------------------------------------- reduce_lru: one layer in, one layer out

def oracle_hsv(lambdas, B, C, system: str) -> np.ndarray:
    """HSVs from the oracles: scipy's Lyapunov solver (complex system), SLICOT's AB09AD (real-output system)."""
    if system == "real":
        A_w, B_w, C_w, _, _ = (np.asarray(M) for M in reduction.real_coordinates(*(jnp.asarray(x) for x in
                                                                                      (lambdas, B, C))))
        n, h = 2 * len(lambdas), B.shape[1]
        return slycot.ab09ad("D", "B", "N", n, h, h, A_w, B_w, C_w, nr=n)[-1]
    A = np.diag(lambdas)
    P = scipy.linalg.solve_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy.linalg.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]


def output_response(params: dict, system: str) -> np.ndarray:
    """Transfer function on Z of an LRU layer's state path: of (lambdas, B, C) for 'complex', of y = Re(C x) for
    'real' (G(z) + conj G(conj z)) / 2."""
    lambdas, B, C = (np.asarray(x) for x in lru.system_from(params)[:3])
    G = response(lambdas, B, C, Z)
    return 0.5 * (G + response(lambdas, B, C, Z.conj()).conj()) if system == "real" else G


@pytest.mark.parametrize("tau", [0.01, 0.1, 0.3])
@pytest.mark.parametrize("system", ["complex", "real"])
@pytest.mark.parametrize("n,h", SIZES)
def test_reduce_lru_gives_the_rank_for_tau_a_stable_layer_and_an_error_within_the_bound(n, h, system, tau):
    params = lru.init_params(jax.random.PRNGKey(70 + n), n, h, r_min=0.5, r_max=0.98, max_phase=6.28)
    hsv = oracle_hsv(*(np.asarray(x) for x in lru.system_from(params)[:3]), system)
    rank = int(np.argmax(np.cumsum(hsv) >= (1 - tau) * hsv.sum())) + 1  # fewest leading HSVs holding 1 - tau
    reduced = reduction.reduce_lru(params, tau, system=system)
    assert set(reduced) == set(lru.PARAMS)
    size = lru.state_size(reduced)
    if system == "complex":
        assert size == rank
    else:  # one LRU state per conjugate pair of the reduced real system, one per real eigenvalue
        assert -(-rank // 2) <= size <= rank
    assert all(np.all(np.isfinite(np.asarray(x))) for x in reduced.values())
    assert np.abs(np.asarray(lru.system_from(reduced)[0])).max() < 1  # stable
    np.testing.assert_array_equal(reduced["D"], params["D"])
    G = output_response(params, system)
    error = hinf(G - output_response(reduced, system))
    # grid maximum <= H-infinity norm <= bound; 1e-9 of the response's scale absorbs the rounding at full rank
    assert error <= 2 * hsv[rank:].sum() * (1 + 1e-6) + 1e-9 * hinf(G)


@pytest.mark.parametrize("n,h", SIZES)
def test_reduce_lru_to_rank_keeps_that_many_states_within_the_bound(n, h):
    params = lru.init_params(jax.random.PRNGKey(80 + n), n, h, r_min=0.5, r_max=0.98, max_phase=6.28)
    hsv = oracle_hsv(*(np.asarray(x) for x in lru.system_from(params)[:3]), "complex")
    G = output_response(params, "complex")
    for rank in range(1, n + 1):
        reduced = reduction.reduce_lru_to_rank(params, rank)
        assert lru.state_size(reduced) == rank
        error = hinf(G - output_response(reduced, "complex"))
        assert error <= 2 * hsv[rank:].sum() * (1 + 1e-6) + 1e-9 * hinf(G)  # as above


def test_reduce_lru_works_on_float32_parameters_and_keeps_their_dtype():
    with jax.enable_x64(False):
        params = _init_lru(jax.random.PRNGKey(5), 16, 2)
    reduced = reduction.reduce_lru(params, 0.1)  # linear algebra in float64, parameters stay float32
    assert all(x.dtype == np.float32 for x in reduced.values())
    assert lru.state_size(reduced) == reduction.rank_for_tau(reduction.lru_hsv(params), 0.1)


@pytest.mark.parametrize("system", ["complex", "real"])
def test_random_selection_keeps_random_diagonal_modes(system):
    params = _init_lru(jax.random.PRNGKey(6), 12, 2)
    rank = 8 if system == "complex" else 16  # 16 real states are 8 LRU states
    reduced = reduction.reduce_lru_to_rank(params, rank, system=system, selection="random", key=jax.random.PRNGKey(3))
    kept = np.flatnonzero(np.isin(np.asarray(params["nu_log"]), np.asarray(reduced["nu_log"])))
    assert len(kept) == 8 == lru.state_size(reduced)
    jax.tree.map(np.testing.assert_array_equal, reduced, lru.select_states(params, kept))


# ---------------------------------------------------------------- systems the reduction refuses

@pytest.mark.parametrize("name, index, value, fragment", [
    ("nu_log", 2, np.nan, "lambda has NaN or infinite entries"),
    ("B_re", (0, 0), np.inf, "B has NaN or infinite entries"),
    ("C_im", (0, 1), -np.inf, "C has NaN or infinite entries"),
    ("nu_log", 1, -40.0, r"unstable or marginally stable: some \|lambda\| >= 1 - 1e-07"),  # exp(-exp(-40)) is 1
    ("nu_log", 1, 8.0, "lambda = 0 has no LRU parameters"),  # exp(-exp(8)) underflows to 0
])
def test_reduction_refuses_systems_without_hsvs(name, index, value, fragment):
    params = _init_lru(jax.random.PRNGKey(0), 6, 2)
    bad = {**params, name: params[name].at[index].set(value)}
    for call in (lambda: reduction.lru_hsv(bad), lambda: reduction.reduce_lru(bad, 0.1),
                 lambda: reduction.refuse_defects(reduction.system_defects(*lru.system_from(bad)[:3]))):
        with pytest.raises(reduction.InvalidSystem, match=fragment):
            call()


@pytest.mark.parametrize("zero", ["B", "C"])
def test_reduction_refuses_a_system_without_input_or_output(zero):
    params = _init_lru(jax.random.PRNGKey(0), 6, 2)
    params = {**params, **{f"{zero}_{part}": jnp.zeros_like(params[f"{zero}_{part}"]) for part in ("re", "im")}}
    with pytest.raises(reduction.InvalidSystem, match=f"{zero} = 0: the system has no"):
        reduction.balance_lru(params)


def _at_lambda_minus_one(params: dict) -> dict:
    """`params` with mode 0 at lambda = -1: nu_log = -inf and theta = pi, so gamma = 0; in float64, |lambda|
    evaluates to 1 - 1.1e-16."""
    nu_log = params["nu_log"].at[0].set(-np.inf)
    return {**params, "nu_log": nu_log, "theta_log": params["theta_log"].at[0].set(np.log(np.pi)),
            "gamma_log": lru.gamma_log_for(nu_log)}


def test_a_mode_at_lambda_minus_one_is_refused_at_every_public_entry():
    """Today |lambda| = 1 - 1.1e-16 passes `|lambda| >= 1`: the mode gets HSV 0 and reduce_lru drops it silently."""
    bad = _at_lambda_minus_one(_init_lru(jax.random.PRNGKey(0), 6, 2))
    system = lru.system_from(bad)[:3]
    calls = [lambda: reduction.lru_hsv(bad), lambda: reduction.lru_hsv(bad, precision="float32"),
             lambda: reduction.reduce_lru(bad, 0.1), lambda: reduction.reduce_lru_to_rank(bad, 3),
             lambda: reduction.balance_lru(bad, system="real"), lambda: reduction.system_hsv(*system),
             lambda: reduction.system_hsv(*system, "real"), lambda: reduction.gramians(*system),
             lambda: reduction.truncation_errors(*system, num_freq=16)]
    for call in calls:
        with pytest.raises(reduction.InvalidSystem, match=r"marginally stable: some \|lambda\| >= 1 - 1e-07"):
            call()


@pytest.mark.parametrize("case", ["outside", "nan"])
def test_system_hsv_refuses_what_it_returned_nan_or_zero_hsvs_for(case):
    lambdas, B, C, _ = lru.system_from(_init_lru(jax.random.PRNGKey(1), 4, 2))
    lambdas = lambdas.at[0].set(1.2 if case == "outside" else np.nan)  # today: an HSV of 0, or all NaN
    fragment = "unstable or marginally stable" if case == "outside" else "lambda has NaN"
    with pytest.raises(reduction.InvalidSystem, match=fragment):
        reduction.system_hsv(lambdas, B, C)
    P, Q = reduction.gramians(*lru.system_from(_init_lru(jax.random.PRNGKey(1), 4, 2))[:3])
    with pytest.raises(reduction.InvalidSystem, match="the Gramians have NaN or infinite entries"):
        reduction.hankel_singular_values(P.at[0, 0].set(np.nan), Q)
    with pytest.raises(reduction.InvalidSystem, match="the Gramians have NaN or infinite entries"):
        reduction.hsv_and_balancing(P, Q.at[1, 1].set(np.inf))


@pytest.mark.parametrize("hsv", [[np.nan, 1.0], [np.inf, 1.0], [0.0, 0.0], [2.0, -1.0], []])
def test_rank_for_tau_refuses_hsvs_with_no_energy_to_keep(hsv):
    """Today NaN, inf and all-zero HSVs give rank 1."""
    with pytest.raises(reduction.InvalidSystem, match="HSVs must be finite, >= 0 and not all zero to rank"):
        reduction.rank_for_tau(np.asarray(hsv), 0.1)


def test_the_stability_margin_keeps_the_slowest_trained_modes():
    """The closest committed mode to the unit circle is 1 - 5.2e-6; one 20 times closer still reduces."""
    params = _init_lru(jax.random.PRNGKey(2), 6, 2)
    params = {**params, "nu_log": params["nu_log"].at[0].set(np.log(2.5e-7))}  # |lambda| = 1 - 2.5e-7
    params["gamma_log"] = lru.gamma_log_for(params["nu_log"])
    assert lru.STABILITY_EPS == 1e-7
    hsv = reduction.lru_hsv(params)
    assert np.all(np.isfinite(hsv)) and hsv[0] > 0
    assert lru.state_size(reduction.reduce_lru(params, 0.01)) == reduction.rank_for_tau(hsv, 0.01)
