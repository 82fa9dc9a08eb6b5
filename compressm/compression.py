"""In-training compression: per-block rank policies, balanced truncation of the model, optimizer state.

`compress(params, opt_state, optimizer, config, hsvs, step, key)` is pure: it returns new (smaller) parameters, an
optimizer state of the new shapes and the list of reduction events. It runs outside the jitted training step,
at evaluation boundaries; the step recompiles once for the new shapes.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from threadpoolctl import threadpool_limits

from compressm import lru, reduction
from compressm.configs import ReductionConfig
from compressm.model import num_blocks


@dataclass(frozen=True)
class ReductionEvent:
    """One block reduced at one attempt. The HSVs themselves are in the run's hsv.npz under `hsv_key`."""

    step: int
    block: int
    old_size: int
    new_size: int
    hsv_key: str
    discarded_energy: float  # sum of discarded HSVs / sum of all HSVs
    error_bound: float  # 2 * sum of discarded HSVs: bound on ||G - G_r||_inf for this truncation

    def to_dict(self) -> dict:
        return asdict(self)


def hsv_key(step: int, block: int) -> str:
    """Key of a block's HSV snapshot in hsv.npz."""
    return f"step{step:07d}_block{block}"


def snapshot_steps(hsvs: dict) -> list[int]:
    """Sorted steps at which `hsvs` (keys from `hsv_key`) holds snapshots."""
    return sorted({int(key[len("step"):].split("_")[0]) for key in hsvs})


def _in_precision(tree, precision: str):
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def _with_precision(precision: str):
    """Context under which `precision` arrays exist (float64 needs jax's x64 mode)."""
    return jax.enable_x64(precision == "float64")


@partial(jax.jit, static_argnames=("system",))
def _block_hsv(lru_params: dict, system: str) -> jax.Array:
    lambdas, B, C, _ = lru.system_from(lru_params)
    return reduction.system_hsv(lambdas, B, C, system)


def block_hsv(lru_params: dict, system: str = "complex", precision: str = "float64") -> np.ndarray:
    """Hankel singular values of one LRU layer, descending: (N,) for 'complex', (2N,) for 'real'."""
    with _with_precision(precision):
        return np.asarray(_block_hsv(_in_precision(lru_params, precision), system))


@partial(jax.jit, static_argnames=("system", "method"))
def _balanced_system(lru_params, *, system, method):
    """(A, B, C, Balancing) of one LRU layer: compiled once per state size N."""
    lambdas, B, C, _ = lru.system_from(lru_params)
    if system == "real":
        A, B, C, P, Q = reduction.real_coordinates(lambdas, B, C)
    else:
        A, (P, Q) = lambdas, reduction.gramians(lambdas, B, C)
    return A, B, C, reduction.balancing(P, Q, method)


def reduce_block(lru_params: dict, rank: int, config: ReductionConfig, key: jax.Array) -> dict:
    """LRU parameters of one layer truncated to `rank` balanced states (or random modes, see selection).

    For system='real', `rank` counts real states; the LRU gets one state per conjugate pair.
    """
    n = lru_params["nu_log"].shape[0]
    if config.selection == "random":  # the ablation: keep random diagonal modes, no balancing
        keep = reduction.keep_indices(n, rank, "random", key)
        return {k: v[..., keep] if k.startswith("C") else (v if k == "D" else v[keep]) for k, v in lru_params.items()}
    size = 2 * n if config.system == "real" else n
    keep = jnp.asarray(reduction.keep_indices(size, rank, config.selection))
    with _with_precision(config.precision):
        A, B, C, bal = _balanced_system(_in_precision(lru_params, config.precision),
                                        system=config.system, method=config.method)
        A_r, B_r, C_r = (np.asarray(M) for M in reduction.truncate(A, B, C, bal, keep))
    return reduction.lru_params_from_system(A_r, B_r, C_r, lru_params["D"], real=config.system == "real")


def planned_rank(hsv: np.ndarray, n: int, config: ReductionConfig) -> int | None:
    """The new rank of a block of size n under the config's policy, or None if the gate says no.

    The rank is in the units of `hsv` (N complex states, or 2N real ones for system='real'); the gate compares
    the resulting LRU size (rank / 2 rounded up for 'real') with gate * n.
    """
    per_state = 2 if config.system == "real" else 1
    if config.mode == "tolerance":
        rank = reduction.rank_for_tau(hsv, config.tau)
    else:  # fixed, pragmatic
        rank = per_state * reduction.rank_for_fraction(n, config.fraction)
    return rank if reduction.passes_gate(-(-rank // per_state), n, config.gate) else None


def resize_opt_state(opt_state, new_params, optimizer: optax.GradientTransformation, policy: str = "slice"):
    """Optimizer state for `new_params`, carried over from the state of the larger model.

    Leaves whose shape is unchanged (all non-LRU parameters, untouched blocks, step counts) are kept.
    A resized moment is either sliced to its leading entries ('slice', the paper's choice: Adam keeps its
    scale estimates and the step count continues) or zeroed ('reset'). Slicing is only nominally aligned:
    the first r balanced coordinates are a new basis, not the first r old states.
    """
    fresh = optimizer.init(new_params)

    def fit(old, new):
        if old.shape == new.shape:
            return old
        return old[tuple(slice(0, n) for n in new.shape)] if policy == "slice" else new

    return jax.tree.map(fit, opt_state, fresh)


def map_blocks(fn, items: list) -> list:
    """[fn(item) for item in items], blocks in parallel threads with single-threaded BLAS.

    The per-block linear algebra (N <= 384) gains little from a multi-threaded BLAS, while independent
    blocks run well side by side: on 2 CPU cores six sCIFAR blocks reduce about twice as fast this way.
    Results are identical to the serial loop (each block's computation is unchanged).
    """
    if len(items) <= 1:
        return [fn(item) for item in items]
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(min(len(items), os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


def snapshot_hsv(params: dict, step: int, config: ReductionConfig) -> dict[str, np.ndarray]:
    """HSVs of every block, keyed by `hsv_key(step, block)`."""
    blocks = range(num_blocks(params))
    hsvs = map_blocks(lambda i: block_hsv(params[f"blocks_{i}"]["lru"], config.system, config.precision), blocks)
    return {hsv_key(step, i): hsv for i, hsv in zip(blocks, hsvs)}


def _discarded(hsv: np.ndarray, rank: int, selection: str) -> float:
    """Sum of the HSVs of the states dropped (NaN for random modes, which are not balanced states)."""
    kept = {"largest": hsv[:rank], "smallest": hsv[len(hsv) - rank:]}.get(selection)
    return float(hsv.sum() - kept.sum()) if kept is not None else float("nan")


def compress(params, opt_state, optimizer, config: ReductionConfig, hsvs: dict, step: int, key: jax.Array):
    """One reduction attempt on every block: returns (params, opt_state, events); events empty if none passed.

    `hsvs` is this step's `snapshot_hsv`; blocks are reduced independently, each by its own rank.
    """
    plans = []  # (block, size, hsv, rank) of the blocks the policy reduces
    for i in range(num_blocks(params)):
        n, hsv = params[f"blocks_{i}"]["lru"]["nu_log"].shape[0], hsvs[hsv_key(step, i)]
        rank = planned_rank(hsv, n, config)
        if rank is not None:
            plans.append((i, n, hsv, rank))
    new_lrus = map_blocks(lambda plan: reduce_block(params[f"blocks_{plan[0]}"]["lru"], plan[3], config,
                                                    jax.random.fold_in(key, plan[0])), plans)
    new_params, events = dict(params), []
    for (i, n, hsv, rank), new_lru in zip(plans, new_lrus):
        new_params[f"blocks_{i}"] = {**params[f"blocks_{i}"], "lru": new_lru}
        discarded = _discarded(hsv, rank, config.selection)
        events.append(ReductionEvent(
            step=step, block=i, old_size=n, new_size=int(new_lru["nu_log"].shape[0]), hsv_key=hsv_key(step, i),
            discarded_energy=discarded / float(hsv.sum()), error_bound=2.0 * discarded,
        ))
    if not events:
        return params, opt_state, []
    return new_params, resize_opt_state(opt_state, new_params, optimizer, config.opt_state), events
