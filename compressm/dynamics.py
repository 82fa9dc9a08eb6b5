"""HSV dynamics during training (the paper's Lemma 3.1 and Fig. 2): the Hankel operator, the Weyl bound, tracking.

The HSVs of a stable system with Gramians P, Q (N, N) are the eigenvalues of the Hermitian PSD matrix

    H = (P^1/2 Q P^1/2)^1/2                                                        (N, N),

which is continuous in (A, B, C). By Weyl's inequality, between two parameter states the k-th largest HSV moves
by at most the spectral norm of the change of H: |sigma_k(H + dH) - sigma_k(H)| <= ||dH||_2 = max |eig(dH)|
(`weyl_bound`). Two adjacent HSVs whose gap exceeds twice the bound cannot change places along the straight
path between the two states (`stable_pairs`).

Training records them with `observe` (the loop calls it at the steps `is_due` names, see `configs.DynamicsConfig`):
a trace of plain lists, part of the run's checkpoint, saved as `dynamics.npz` (`arrays`) with
    step (T,)  hsv (T, blocks, N)  bound_step (T, blocks)  bound_interval (T, blocks)  match (T, blocks, N).
bound_step is the Weyl bound of the one gradient step that ends at the recorded step; bound_interval that of
the whole interval since the previous record. match[t, b, i] is the index (in the descending order at record t)
of the HSV that continues HSV i of record t - 1: `match_states` assigns them by the overlap of the eigenvectors
of H (`scipy.optimize.linear_sum_assignment`), and `track` follows them.
All linear algebra is float64 (jax x64 inside `lru_hankel_operator`); negative eigenvalues of P and Q (rounding)
are clipped to 0, with no regulariser.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from compressm import lru, reduction
from compressm.configs import DynamicsConfig
from compressm.model import block_lru, num_blocks
from compressm.reduction import HsvSystem

TRACE_ARRAYS = ("step", "hsv", "bound_step", "bound_interval", "match")  # what `arrays` returns, in this order


# ----------------------------------------------------------------------------------------------------------
# The Hankel operator H and the Weyl bound
# ----------------------------------------------------------------------------------------------------------
class HankelOperator(NamedTuple):
    """H = (P^1/2 Q P^1/2)^1/2 = U diag(hsv) U^H, one block's."""

    H: jax.Array  # (N, N) Hermitian PSD, complex (real for real Gramians)
    hsv: jax.Array  # (N,) its eigenvalues, the HSVs, descending
    U: jax.Array  # (N, N) its eigenvectors, columns in the order of hsv


def psd_sqrt(M: jax.Array) -> jax.Array:
    """The principal square root (N, N) of a Hermitian PSD matrix M (N, N); rounding's negative eigenvalues -> 0."""
    w, V = jnp.linalg.eigh(M)
    return (V * jnp.sqrt(jnp.clip(w, 0.0))) @ jnp.conj(V).T


def hankel_operator(P: jax.Array, Q: jax.Array) -> HankelOperator:
    """H = (P^1/2 Q P^1/2)^1/2 of Gramians P, Q (N, N), with its eigenvalues (the HSVs) and eigenvectors.

    With X = P^1/2 Q^1/2 = U S W^H (SVD), P^1/2 Q P^1/2 = X X^H = U S^2 U^H, so H = U S U^H: the HSVs come
    from the SVD as accurately as `reduction.hankel_singular_values` gives them (no squared condition number).
    """
    U, s, _ = jnp.linalg.svd(psd_sqrt(P) @ psd_sqrt(Q))
    return HankelOperator((U * s) @ jnp.conj(U).T, s, U)


@partial(jax.jit, static_argnames=("system",))
def _lru_operator(params: dict, system: HsvSystem):
    lambdas, B, C, _ = lru.system_from(jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.float64), params))
    P, Q = reduction.system_gramians(lambdas, B, C, system)[3:]
    return hankel_operator(P, Q), reduction.system_defects(lambdas, B, C)


def lru_hankel_operator(params: dict, *, system: HsvSystem = "complex") -> HankelOperator:
    """The Hankel operator of one LRU layer (`lru.PARAMS`, N states) in float64, as host arrays: H (N, N), hsv (N,),
    U (N, N) for system 'complex' (the paper's), 2N for 'real'. reduction.InvalidSystem if it has no HSVs."""
    with jax.enable_x64(True):
        operator, defects = _lru_operator(params, system)
        reduction.refuse_defects(defects)
        return HankelOperator(*(np.asarray(M) for M in operator))


def weyl_bound(H_a: np.ndarray, H_b: np.ndarray) -> float:
    """||H_b - H_a||_2 = max |eig(H_b - H_a)| for Hermitian H_a, H_b (N, N): no HSV moves farther between them."""
    return float(np.abs(np.linalg.eigvalsh(H_b - H_a)).max())


def stable_pairs(hsv: np.ndarray, bound: float) -> np.ndarray:
    """Which adjacent HSVs (bool (N - 1,)) of a descending hsv (N,) are more than 2 * bound apart, so that a change
    of H with ||dH||_2 <= bound cannot swap them (along the straight path between the two states)."""
    return -np.diff(hsv) > 2 * bound


def bottom_energy(hsv: np.ndarray, r: int) -> np.ndarray:
    """Share of the Hankel energy (sum of HSVs) held by the r smallest of descending hsv (..., N): (...)."""
    hsv = np.asarray(hsv)
    return hsv[..., hsv.shape[-1] - r:].sum(axis=-1) / hsv.sum(axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Tracking across steps
# ----------------------------------------------------------------------------------------------------------
def match_states(U_prev: np.ndarray, U_next: np.ndarray) -> np.ndarray:
    """match (N,) int: match[i] is the column of U_next (N, N) that continues column i of U_prev (N, N).

    The assignment maximises the total overlap sum_i |u_i^H v_match[i]|^2 of the eigenvectors
    (`linear_sum_assignment`). Matching the values alone would return the sorted order, since for numbers on
    a line the sorted matching is optimal; the eigenvectors are what tell a crossing from a near miss.
    """
    overlap = np.abs(np.conj(U_prev).T @ U_next) ** 2
    _, cols = linear_sum_assignment(overlap, maximize=True)
    return cols


def track(hsv: np.ndarray, match: np.ndarray) -> np.ndarray:
    """Tracked HSVs (T, N): column i follows the state that was the i-th largest at the first record.

    hsv (T, N) descending per record; match (T, N) as `match_states` gives it (row 0 is ignored).
    """
    index = np.arange(hsv.shape[1])
    out = np.empty_like(hsv)
    for t in range(len(hsv)):
        if t:
            index = match[t][index]
        out[t] = hsv[t][index]
    return out


# ----------------------------------------------------------------------------------------------------------
# Recording during training
# ----------------------------------------------------------------------------------------------------------
def is_due(config: DynamicsConfig, step: int) -> bool:
    """Whether training observes the parameters after `step` (0 = initial): at multiples of every_steps up to
    last_step (records), and at the step before each (for the one-step bound)."""
    k = config.every_steps
    return k > 0 and 0 <= step <= config.last_step and (step % k == 0 or (step + 1) % k == 0)


def observe(trace: dict, params: dict, step: int, config: DynamicsConfig, system: HsvSystem = "complex") -> dict:
    """The trace (see module docstring) after observing classifier parameters `params` after `step`; pure.

    At a record step (a multiple of every_steps) it appends the HSVs of every block, the Weyl bounds since the
    step before (NaN if that was not observed) and since the last record (NaN at the first), and the match to the
    last record; at the step before one it only keeps H. An empty dict starts a trace.
    """
    operators = [lru_hankel_operator(block_lru(params, b), system=system) for b in range(num_blocks(params))]
    H = np.stack([op.H for op in operators])
    new = {**trace, "last": {"step": step, "H": H}}
    if step % config.every_steps:
        return new
    last, record = trace.get("last"), trace.get("record")
    nan = np.full(len(operators), np.nan)
    bounds = lambda H_prev: np.array([weyl_bound(a, b) for a, b in zip(H_prev, H)])
    new["record"] = {"H": H, "U": np.stack([op.U for op in operators])}
    rows = {
        "step": step,
        "hsv": np.stack([op.hsv for op in operators]),
        "bound_step": bounds(last["H"]) if last and last["step"] == step - 1 else nan,
        "bound_interval": bounds(record["H"]) if record else nan,
        "match": np.stack([match_states(U_prev, op.U) for U_prev, op in zip(record["U"], operators)]) if record
        else np.tile(np.arange(len(operators[0].hsv)), (len(operators), 1)),
    }
    return new | {name: [*trace.get(name, []), value] for name, value in rows.items()}


def arrays(trace: dict) -> dict[str, np.ndarray]:
    """The recorded part of a trace as arrays (`TRACE_ARRAYS`), for dynamics.npz; {} for an empty trace."""
    if not trace.get("step"):
        return {}
    return {name: np.asarray(trace[name]) for name in TRACE_ARRAYS}
