"""Balanced truncation of one LRU layer: Gramians, Hankel singular values, rank, truncation, back to LRU form.

The one call: `reduce_lru(params, tau)` takes one LRU layer's parameter dict and returns the balanced-truncated
dict that keeps 1 - tau of the Hankel energy (`reduce_lru_to_rank` for a given rank). It is `balance_lru` (HSVs
and balancing transform, one program compiled per state size) followed by `truncate_lru` (host-side), which
training calls separately so that one balancing serves the HSV snapshot, the rank policy and the truncation.

Underneath, plain arrays: a diagonal system is (lambdas (N,) complex, B (N, H) complex with gamma folded in,
C (H, N) complex); `compressm.lru.system_from` makes one from LRU parameters. Everything up to the truncated
matrices is `jax.numpy` in the dtype of its inputs (float64 under `jax.enable_x64(True)` for the paper's
accuracy, or float32 where the parameters live); the small eigendecomposition that turns the truncated system
back into LRU parameters runs on the host in numpy.

Every public entry refuses a system without HSVs to truncate by (InvalidSystem, one line: NaN or inf anywhere,
|lambda| >= 1 - `lru.STABILITY_EPS`, lambda = 0, B = 0 or C = 0; see `system_defects`): at once where it sees
values, and on the host after a jitted reduction, which returns `system_defects` beside its result.

Which system the HSVs describe (`system=`):
- ``"complex"`` (the paper's, default): the complex system (lambdas, B, C), ignoring the Re() on the output.
- ``"real"``: the exact real-output system y = Re(C x), i.e. the conjugate-augmented 2N-state system
  ([lambda, conj lambda], [B; conj B], [C, conj C] / 2), in real coordinates. Its HSVs differ from the
  complex ones; its truncation yields conjugate pairs, each stored as one LRU state with C doubled.
"""

import typing
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from compressm import lru
from compressm.errors import InvalidSystem, excerpt

HsvSystem = Literal["complex", "real"]
Method = Literal["sqrtm", "chol"]
Selection = Literal["largest", "smallest", "random"]
Precision = Literal["float64", "float32"]

GRAMIAN_EPS = 1e-9  # the paper's regulariser: P^1/2 = sqrtm(P + eps I) (Cholesky form: chol(P + eps I))


def _unknown(kind: str, value, choices) -> ValueError:
    """The error for a `value` outside the Literal `choices`."""
    return ValueError(f"unknown {kind} {value!r}; use one of {list(typing.get_args(choices))}")


DEFECTS = (  # what makes a system unreducible, in the order `system_defects` tests it
    "lambda has NaN or infinite entries (non-finite or overflowing parameters)",
    "B has NaN or infinite entries (non-finite or overflowing parameters)",
    "C has NaN or infinite entries (non-finite or overflowing parameters)",
    f"unstable or marginally stable: some |lambda| >= 1 - {lru.STABILITY_EPS} (lru.STABILITY_EPS), so the Gramians"
    " do not exist or are not reliable",
    "lambda = 0 has no LRU parameters (nu_log would be infinite)",
    "B = 0: the system has no input, so every HSV is zero and there is nothing to rank",
    "C = 0: the system has no output, so every HSV is zero and there is nothing to rank",
)


def system_defects(lambdas: jax.Array, B: jax.Array, C: jax.Array) -> jax.Array:
    """Which DEFECTS (bool (7,)) the system (lambdas (N,), B (N, H), C (H, N)) has; traceable, so a jitted
    reduction returns it beside its result and `refuse_defects` checks it on the host."""
    radius = jnp.abs(lambdas)
    finite = [jnp.all(jnp.isfinite(M)) for M in (lambdas, B, C)]
    return jnp.stack([~finite[0], ~finite[1], ~finite[2], jnp.any(radius >= 1 - lru.STABILITY_EPS),
                      jnp.any(radius == 0), ~jnp.any(B != 0), ~jnp.any(C != 0)])


def refuse_defects(defects) -> None:
    """Raise InvalidSystem naming the first defect flagged in `defects` (7,), if any."""
    flagged = np.flatnonzero(np.asarray(defects))
    if flagged.size:
        raise InvalidSystem(DEFECTS[flagged[0]])


def _traced(*arrays) -> bool:
    """Whether any of `arrays` is being traced (under jit, grad or vmap): then the public entries below cannot look
    at values, and the jitted reductions return `system_defects` for `refuse_defects` to check on the host."""
    return any(isinstance(M, jax.core.Tracer) for M in arrays)


def _refuse_nonfinite_gramians(P, Q) -> None:
    """InvalidSystem if Gramians P, Q that are not being traced have NaN or infinite entries."""
    if not _traced(P, Q) and not (np.all(np.isfinite(P)) and np.all(np.isfinite(Q))):
        raise InvalidSystem("the Gramians have NaN or infinite entries")


# ----------------------------------------------------------------------------------------------------------
# Gramians and Hankel singular values
# ----------------------------------------------------------------------------------------------------------
def gramians(lambdas: jax.Array, B: jax.Array, C: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Closed-form Gramians (P, Q), each (N, N) Hermitian, of x' = diag(lambdas) x + B u, y = C x.

    P solves P = A P A^H + B B^H and Q solves Q = A^H Q A + C^H C for A = diag(lambdas):
    P_ij = (B B^H)_ij / (1 - l_i conj(l_j)),  Q_ij = (C^H C)_ij / (1 - conj(l_i) l_j).
    InvalidSystem for a system with a defect (`system_defects`), unless traced. Every entry below that takes a
    system computes its Gramians here.
    """
    if not _traced(lambdas, B, C):
        refuse_defects(system_defects(lambdas, B, C))
    outer = lambdas[:, None] * jnp.conj(lambdas)[None, :]
    P = (B @ jnp.conj(B).T) / (1 - outer)
    Q = (jnp.conj(C).T @ C) / (1 - jnp.conj(outer))
    return P, Q


def augment_conjugate(lambdas, B, C):
    """The 2N-state complex system whose output is the real output Re(C x) of (lambdas, B, C)."""
    return (
        jnp.concatenate([lambdas, jnp.conj(lambdas)]),
        jnp.concatenate([B, jnp.conj(B)], axis=0),
        0.5 * jnp.concatenate([C, jnp.conj(C)], axis=1),
    )


def system_gramians(lambdas, B, C, system: HsvSystem = "complex"):
    """(A, B, C, P, Q) of the system whose HSVs `system` names.

    'complex': A = lambdas (N,) diagonal with the given B, C and closed-form Gramians (N, N);
    'real': the real-output system in real coordinates, all real, A (2N, 2N) (see `real_coordinates`).
    """
    if system == "real":
        return real_coordinates(lambdas, B, C)
    return (lambdas, B, C, *gramians(lambdas, B, C))


def _eigen_factor(w: jax.Array, V: jax.Array, eps: float) -> jax.Array:
    """F = V diag(sqrt(w + eps)), so F F^H = P + eps I, from eigh(P) = (w (N,), V (N, N)) of a PSD P."""
    return V * jnp.sqrt(jnp.clip(w + eps, 0.0))


def _psd_factor(P: jax.Array, eps: float = 0.0) -> jax.Array:
    """Eigenvalue-based square-root factor F (N, N) of P + eps I (Hermitian PSD P), F F^H = P + eps I."""
    return _eigen_factor(*jnp.linalg.eigh(P), eps)


def _hsv_of_factors(Fp: jax.Array, Fq: jax.Array) -> jax.Array:
    """Singular values of Fq^H Fp (N,), descending: the HSVs of (Fp Fp^H, Fq Fq^H)."""
    return jnp.linalg.svd(jnp.conj(Fq).T @ Fp, compute_uv=False)


def hankel_singular_values(P: jax.Array, Q: jax.Array) -> jax.Array:
    """HSVs sigma (N,), descending: sqrt(eig(P Q)), computed as the singular values of Fq^H Fp.

    Fp Fp^H = P and Fq Fq^H = Q are eigenvalue-based square-root factors, so Fq^H Fp has the singular
    values of Q^1/2 P^1/2. Square-root factors keep the small HSVs accurate relative to sigma_max (the
    product P Q would lose them to rounding, as would eig(P^1/2 Q P^1/2)). InvalidSystem for non-finite P or Q.
    """
    _refuse_nonfinite_gramians(P, Q)
    return _hsv_of_factors(_psd_factor(P), _psd_factor(Q))


def system_hsv(lambdas, B, C, system: HsvSystem = "complex") -> jax.Array:
    """HSVs (N,) of the diagonal system (complex) or 2N HSVs of its real-output system (real), descending;
    InvalidSystem for a system that has none (`system_defects`)."""
    return hankel_singular_values(*system_gramians(lambdas, B, C, system)[3:])


# ----------------------------------------------------------------------------------------------------------
# Rank (host-side decisions on a few numbers)
# ----------------------------------------------------------------------------------------------------------
def rank_for_tau(hsv, tau: float) -> int:
    """Smallest r with sum(hsv[:r]) >= (1 - tau) * sum(hsv); hsv (N,) descending. Energy is the SUM of HSVs.

    InvalidSystem unless the HSVs are finite, >= 0 and not all zero (there is no energy to keep otherwise).
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    hsv = np.asarray(hsv, dtype=np.float64)
    if not (np.all(np.isfinite(hsv)) and np.all(hsv >= 0) and np.any(hsv > 0)):
        raise InvalidSystem(f"HSVs must be finite, >= 0 and not all zero to rank, got {excerpt(hsv.tolist())}")
    cumulative = np.cumsum(hsv)
    return int(np.searchsorted(cumulative, (1.0 - tau) * cumulative[-1]) + 1)


def lru_size(rank: int, system: HsvSystem) -> int:
    """LRU states of a truncation to `rank` HSVs: rank for 'complex'; rank / 2 rounded up for 'real', one LRU state
    per conjugate pair of eigenvalues (real eigenvalues, if any, take one state each and add to it)."""
    return -(-rank // 2) if system == "real" else rank


# ----------------------------------------------------------------------------------------------------------
# Balanced truncation
# ----------------------------------------------------------------------------------------------------------
class Balancing(NamedTuple):
    """Balancing transform: Tinv @ P @ Tinv^H = T^H @ Q @ T = diag(HSVs) (of the eps-regularised Gramians)."""

    T: jax.Array  # (N, N), columns ordered by decreasing HSV
    Tinv: jax.Array  # (N, N)


def _square_root_balancing(Fp: jax.Array, Fq: jax.Array) -> Balancing:
    """T = Fp V S^-1/2 and Tinv = S^-1/2 U^H Fq^H from U S V^H = svd(Fq^H Fp), for Fp Fp^H = P, Fq Fq^H = Q."""
    U, s, Vh = jnp.linalg.svd(jnp.conj(Fq).T @ Fp)
    s = jnp.clip(s, jnp.finfo(s.dtype).tiny)
    return Balancing((Fp @ jnp.conj(Vh).T) * s**-0.5, (s**-0.5)[:, None] * (jnp.conj(U).T @ jnp.conj(Fq).T))


def hsv_and_balancing(P, Q, method: Method = "sqrtm", eps: float = GRAMIAN_EPS) -> tuple[jax.Array, Balancing]:
    """HSVs (N,) of Gramians P, Q (N, N), as `hankel_singular_values`, and the balancing transform of
    (P + eps I, Q), sharing one eigendecomposition of each Gramian.

    sqrtm (paper default): P^1/2 = sqrtm(P + eps I), U S U^H = P^1/2 Q P^1/2, T = P^1/2 U S^-1/4. Computed in
    factored form: Fp = V diag(sqrt(w + eps)) = P^1/2 V from eigh(P), and Fq Fq^H = Q. The SVD
    Fq^H Fp = U' sigma V'^H gives U = V V' and S = sigma^2, so T = Fp V' sigma^-1/2: the same T, without the
    squared condition number of eigh(P^1/2 Q P^1/2). Tinv = sigma^-1/2 U'^H Fq^H is T^-1 without inverting P^1/2.
    chol (square-root method): the same formula with Fp = chol(P + eps I), Fq = chol(Q + eps I).
    InvalidSystem for non-finite P or Q.
    """
    _refuse_nonfinite_gramians(P, Q)
    w, V = jnp.linalg.eigh(P)
    Fq = _psd_factor(Q)
    hsv = _hsv_of_factors(_eigen_factor(w, V, 0.0), Fq)
    if method == "sqrtm":
        Fp = _eigen_factor(w, V, eps)
    elif method == "chol":
        eye = jnp.eye(P.shape[0], dtype=P.dtype)
        Fp, Fq = jnp.linalg.cholesky(P + eps * eye), jnp.linalg.cholesky(Q + eps * eye)
    else:
        raise _unknown("balancing method", method, Method)
    return hsv, _square_root_balancing(Fp, Fq)


def real_coordinates(lambdas, B, C):
    """Real-output system y = Re(C x) in real coordinates, with its Gramians: (A, B, C, P, Q), all real.

    Shapes A (2N, 2N), B (2N, H), C (H, 2N), P, Q (2N, 2N). The state w = [Re x; Im x] = M z for
    z = [x; conj x], M = [[I, I], [-iI, iI]] / 2; the closed-form Gramians (P, Q) of the conjugate-augmented
    system (z) transform as M P M^H and M^-H Q M^-1 and come out real.
    """
    P, Q = gramians(*augment_conjugate(lambdas, B, C))
    n = lambdas.shape[0]
    eye = jnp.eye(n, dtype=lambdas.dtype)
    M = 0.5 * jnp.block([[eye, eye], [-1j * eye, 1j * eye]])
    Minv = jnp.block([[eye, 1j * eye], [eye, -1j * eye]])
    re, im = lambdas.real, lambdas.imag
    A = jnp.block([[jnp.diag(re), -jnp.diag(im)], [jnp.diag(im), jnp.diag(re)]])
    B_w = jnp.concatenate([B.real, B.imag], axis=0)
    C_w = jnp.concatenate([C.real, -C.imag], axis=1)
    P_w = (M @ P @ jnp.conj(M).T).real
    Q_w = (jnp.conj(Minv).T @ Q @ Minv).real
    return A, B_w, C_w, P_w, Q_w


def truncate(A, B, C, bal: Balancing, keep: jax.Array):
    """Balanced truncation to the balanced states `keep` (r,): (Tinv A T, Tinv B, C T) restricted to them.

    A is (N,) for a diagonal system or (N, N); returns dense A_r (r, r), B_r (r, H), C_r (H, r).
    Plain indexing and products only: works on jax and numpy arrays alike.
    """
    T, Tinv = bal.T[:, keep], bal.Tinv[keep]
    A_T = A[:, None] * T if A.ndim == 1 else A @ T
    return Tinv @ A_T, Tinv @ B, C @ T


def keep_indices(n: int, rank: int, selection: Selection, key: jax.Array | None = None) -> np.ndarray:
    """Indices (rank,) of the states kept: the largest HSVs (paper), the smallest, or random (needs key)."""
    if selection == "largest":
        return np.arange(rank)
    if selection == "smallest":
        return np.arange(n - rank, n)
    if selection == "random":
        if key is None:
            raise ValueError("selection='random' needs a PRNG key")
        return np.sort(np.asarray(jax.random.choice(key, n, (rank,), replace=False)))
    raise _unknown("selection", selection, Selection)


# ----------------------------------------------------------------------------------------------------------
# Back to the LRU parameterisation (host, numpy)
# ----------------------------------------------------------------------------------------------------------
def lru_params_from_system(A_r, B_r, C_r, D, real: bool = False) -> dict:
    """LRU parameters (`lru.PARAMS`) of a dense system A_r (r, r), B_r (r, H), C_r (H, r), and D (H,).

    Eigendecomposes A_r = V diag(lambda') V^-1 and hands (lambda', B' = V^-1 B_r, C' = C_r V, D) to
    `lru.params_from_system`. With real=True, (A_r, B_r, C_r) is a real system with output C_r x: each conjugate
    pair of eigenvalues becomes one LRU state with C' doubled (Re(c x) + Re(conj(c x)) = 2 Re(c x)).
    """
    A_r, B_r, C_r = (np.asarray(M) for M in (A_r, B_r, C_r))
    lam, V = np.linalg.eig(A_r)
    Bd, Cd = np.linalg.solve(V, B_r), C_r @ V
    if real:
        keep = lam.imag >= 0
        Cd = Cd * np.where(lam.imag > 0, 2.0, 1.0)[None, :]
        lam, Bd, Cd = lam[keep], Bd[keep], Cd[:, keep]
    return lru.params_from_system(lam, Bd, Cd, D)


# ----------------------------------------------------------------------------------------------------------
# One LRU layer: parameters in, parameters out
# ----------------------------------------------------------------------------------------------------------
def _with_precision(precision: Precision):
    """Context under which `precision` arrays exist (float64 needs jax's x64 mode)."""
    return jax.enable_x64(precision == "float64")


def _system_in(params: dict, precision: Precision):
    """(lambdas, B, C) of an LRU layer in `precision`; cast inside the caller's jit, so casts never compile alone."""
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    lambdas, B, C, _ = lru.system_from(jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), params))
    return lambdas, B, C


@partial(jax.jit, static_argnames=("system", "precision"))
def _lru_hsv(params: dict, system: HsvSystem, precision: Precision) -> tuple[jax.Array, jax.Array]:
    diagonal = _system_in(params, precision)
    return system_hsv(*diagonal, system), system_defects(*diagonal)


def lru_hsv(params: dict, *, system: HsvSystem = "complex", precision: Precision = "float64") -> np.ndarray:
    """HSVs of one LRU layer (`lru.PARAMS`, N states), descending: (N,) for 'complex', (2N,) for 'real'.

    Raises InvalidSystem for a layer that has none (`system_defects`).
    """
    with _with_precision(precision):
        hsv, defects = _lru_hsv(params, system, precision)
        refuse_defects(defects)
        return np.asarray(hsv)


class BalancedLRU(NamedTuple):
    """One LRU layer ready to truncate (host arrays): its HSVs, its system and the balancing transform."""

    hsv: np.ndarray  # (N,), or (2N,) for system='real'; descending
    A: np.ndarray  # (N,) diagonal, or (2N, 2N) real coordinates for system='real'
    B: np.ndarray  # (N, H) or (2N, H)
    C: np.ndarray  # (H, N) or (H, 2N)
    balancing: Balancing
    system: HsvSystem


@partial(jax.jit, static_argnames=("system", "method", "precision"))
def _balance_lru(params: dict, system: HsvSystem, method: Method, precision: Precision):
    diagonal = _system_in(params, precision)
    A, B, C, P, Q = system_gramians(*diagonal, system)
    hsv, bal = hsv_and_balancing(P, Q, method)
    return hsv, A, B, C, bal, system_defects(*diagonal)


def balance_lru(params: dict, *, system: HsvSystem = "complex", method: Method = "sqrtm",
                precision: Precision = "float64") -> BalancedLRU:
    """HSVs and balancing transform of one LRU layer (`lru.PARAMS`, N states) in one pass.

    One program is compiled per state size N (and system, method, precision); `precision` is that of the
    Gramians, HSVs and balancing, whatever the dtype of the parameters. Raises InvalidSystem for a layer
    that cannot be reduced (`system_defects`).
    """
    with _with_precision(precision):
        hsv, A, B, C, bal, defects = _balance_lru(params, system, method, precision)
        refuse_defects(defects)
        A, B, C, T, Tinv = (np.asarray(M) for M in (A, B, C, bal.T, bal.Tinv))
        return BalancedLRU(np.asarray(hsv), A, B, C, Balancing(T, Tinv), system)


def truncate_lru(params: dict, balanced: BalancedLRU, rank: int, *, selection: Selection = "largest",
                 key: jax.Array | None = None) -> dict:
    """LRU parameters of the layer `params` truncated to `rank` of the balanced states of `balanced`.

    `rank` counts HSVs: complex states, or real states for system='real' (the LRU then gets one state per
    conjugate pair and one per real eigenvalue). selection: keep the largest HSVs (the paper's), the smallest,
    or 'random' (the ablation: `lru_size(rank, system)` random diagonal modes of `params`, not balanced; needs
    `key`). On the host: nothing compiles. D is unchanged.
    """
    if selection == "random":
        n = lru.state_size(params)
        return lru.select_states(params, keep_indices(n, lru_size(rank, balanced.system), "random", key))
    keep = keep_indices(len(balanced.hsv), rank, selection)
    A_r, B_r, C_r = truncate(balanced.A, balanced.B, balanced.C, balanced.balancing, keep)
    return lru_params_from_system(A_r, B_r, C_r, params["D"], real=balanced.system == "real")


def reduce_lru_to_rank(params: dict, rank: int, *, system: HsvSystem = "complex", method: Method = "sqrtm",
                       selection: Selection = "largest", key: jax.Array | None = None,
                       precision: Precision = "float64") -> dict:
    """One LRU layer balanced and truncated to `rank` states (counted as in `truncate_lru`); see `reduce_lru`."""
    balanced = balance_lru(params, system=system, method=method, precision=precision)
    return truncate_lru(params, balanced, rank, selection=selection, key=key)


def reduce_lru(params: dict, tau: float, *, system: HsvSystem = "complex", method: Method = "sqrtm",
               selection: Selection = "largest", key: jax.Array | None = None,
               precision: Precision = "float64") -> dict:
    """Balanced truncation of one LRU layer at tolerance tau: the layer that keeps 1 - tau of its Hankel energy.

    params: an LRU parameter dict (`lru.PARAMS`): nu_log, theta_log, gamma_log (N,), B_re, B_im (N, H),
    C_re, C_im (H, N), D (H,), real. Returns the same keys with N replaced by r, the smallest number of HSVs
    that hold 1 - tau of their sum (`rank_for_tau`; for system='real', r counts real states and the LRU gets
    `lru_size(r, 'real')` or a few more); D is unchanged. The reduced layer is stable, and
    ||G - G_r||_inf <= 2 * sum(discarded HSVs). system: whose HSVs ('complex', the paper's, or 'real'); method:
    the balancing ('sqrtm', the paper's, or 'chol'); selection and key: as in `truncate_lru`; precision: that
    of the linear algebra (float64 needs no global x64 flag). Pure: the input is not changed.
    """
    balanced = balance_lru(params, system=system, method=method, precision=precision)
    rank = rank_for_tau(balanced.hsv, tau)
    return truncate_lru(params, balanced, rank, selection=selection, key=key)


# ----------------------------------------------------------------------------------------------------------
# Measuring a truncation (host, numpy): the error the bound talks about
# ----------------------------------------------------------------------------------------------------------
def frequency_response(A, B, C, z) -> np.ndarray:
    """Transfer function G(z) = C (zI - A)^-1 B at points z (F,): (F, p, m); A is (n,) diagonal or (n, n)."""
    A, B, C, z = (np.asarray(M) for M in (A, B, C, z))
    A = np.diag(A) if A.ndim == 1 else A
    shifted = z[:, None, None] * np.eye(A.shape[0]) - A
    return C @ np.linalg.solve(shifted, np.broadcast_to(B, (len(z), *B.shape)))


def truncation_errors(lambdas, B, C, system: HsvSystem = "complex", method: Method = "sqrtm",
                      num_freq: int = 2048) -> dict[str, np.ndarray]:
    """For every rank r = 1 .. n-1: the H-infinity error of balanced truncation to r, measured as the largest
    singular value over `num_freq` points of the unit circle, and its bound 2 * sum(discarded HSVs).

    Returns {'rank', 'hinf_error', 'bound'}, each (n - 1,).
    """
    A, B, C, P, Q = system_gramians(lambdas, B, C, system)
    hsv, bal = hsv_and_balancing(P, Q, method)
    hsv, bal = np.asarray(hsv), Balancing(*(np.asarray(M) for M in bal))
    A, B, C = (np.asarray(M) for M in (A, B, C))
    z = np.exp(1j * np.linspace(-np.pi, np.pi, num_freq))
    G = frequency_response(A, B, C, z)
    ranks = np.arange(1, len(hsv))
    errors = [np.linalg.svd(G - frequency_response(*truncate(A, B, C, bal, np.arange(r)), z),
                            compute_uv=False).max() for r in ranks]
    return {"rank": ranks, "hinf_error": np.array(errors), "bound": 2 * np.cumsum(hsv[::-1])[::-1][1:]}
