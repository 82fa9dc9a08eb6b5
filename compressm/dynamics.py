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
are clipped to 0, with no regulariser. `summary` and `reading` read a recorded trace for the book
(`analysis.dynamics_record` finds it).
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
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


# ----------------------------------------------------------------------------------------------------------
# Reading a recorded run (the dynamics page)
# ----------------------------------------------------------------------------------------------------------
def cut_margin(arrays: dict, bound: str = "bound_step", tau: float = 0.02, block: int = 0) -> np.ndarray:
    """Per record (T,): the gap between the last HSV that tolerance tau keeps and the first it drops, over twice
    the Weyl bound `bound` ('bound_step' or 'bound_interval'); above 1, no change of that size can move a state
    across the cut. NaN where the bound is unknown (the first record) or nothing is dropped."""
    out = np.full(len(arrays["step"]), np.nan)
    for t, (hsv, b) in enumerate(zip(arrays["hsv"][:, block], arrays[bound][:, block])):
        rank = reduction.rank_for_tau(hsv, tau)
        if rank < len(hsv) and np.isfinite(b):
            out[t] = (hsv[rank - 1] - hsv[rank]) / (2 * b)
    return out


def summary(arrays: dict, block: int = 0, at_steps=(0, 1000, 3000, 5000, 10000, 25000),
            tau: float = 0.02) -> pd.DataFrame:
    """The trace at those of `at_steps` that were recorded: largest and smallest HSV, the Weyl bounds of one step
    and of the interval since the previous record, the share of adjacent pairs the one-step bound cannot swap
    (`stable_pairs`), the rank tau keeps, and `cut_margin` for both bounds."""
    step_margin, interval_margin = (cut_margin(arrays, b, tau, block) for b in ("bound_step", "bound_interval"))
    rows = []
    for t in [int(np.flatnonzero(arrays["step"] == s)[0]) for s in at_steps if s in arrays["step"]]:
        hsv, b_step = arrays["hsv"][t, block], arrays["bound_step"][t, block]
        rows.append({"step": int(arrays["step"][t]), "largest HSV": hsv[0], "smallest HSV": hsv[-1],
                     "bound, one step": b_step, "bound, interval": arrays["bound_interval"][t, block],
                     "pairs kept in order, one step (%)": 100 * stable_pairs(hsv, b_step).mean() if t else np.nan,
                     f"rank at tau = {tau}": reduction.rank_for_tau(hsv, tau),
                     "cut margin, one step": step_margin[t], "cut margin, interval": interval_margin[t]})
    return pd.DataFrame(rows)


def reading(arrays: dict, block: int = 0, tau: float = 0.02, after_step: int = 3000) -> str:
    """Markdown sentences on what a trace shows: growth of the HSVs, the one-step bound against them, how often
    the cut at tau is safe from one step and from one interval of change, and the bottom-half energy; "later"
    starts at `after_step`, or halfway through a trace that ends before it."""
    steps, hsv = arrays["step"], arrays["hsv"][:, block]
    if len(steps) < 2:
        return f"The trace holds one record (step {steps[0]}): there is no change to bound."
    if steps[-1] < after_step:  # a short trace: its second half
        after_step = int(steps[len(steps) // 2])
    later = steps >= after_step
    b_step = arrays["bound_step"][:, block]
    step_margin, interval_margin = (cut_margin(arrays, b, tau, block) for b in ("bound_step", "bound_interval"))
    pairs = np.array([stable_pairs(h, b).mean() for h, b in zip(hsv, b_step)])
    half = bottom_energy(hsv, hsv.shape[1] // 2)
    share = lambda x: f"{100 * np.mean(x[later & np.isfinite(x)] > 1):.0f} %"
    return (
        f"Over steps {steps[0]}-{steps[-1]} the largest HSV goes from {hsv[0, 0]:.3g} to {hsv[-1, 0]:.3g} and the"
        f" smallest from {hsv[0, -1]:.3g} to {hsv[-1, -1]:.3g}. From step {after_step} on, one gradient step moves"
        f" any HSV by at most {np.nanmedian(b_step[later]):.3g} (median over records), and"
        f" {100 * np.nanmedian(pairs[later]):.0f} % of adjacent HSV pairs (median) are more than twice that apart."
        f" At the cut tau = {tau} would make, the gap exceeds twice the one-step bound at {share(step_margin)} of"
        f" the records and twice the bound of the {int(steps[1] - steps[0])} steps between records at"
        f" {share(interval_margin)}. The smaller half of the HSVs holds {100 * half[0]:.2f} % of the Hankel energy"
        f" at step {steps[0]}, {100 * half[np.argmax(later)]:.2f} % at step {steps[np.argmax(later)]} and"
        f" {100 * half[-1]:.2f} % at step {steps[-1]}."
    )
