"""In-training compression: per-block rank policies, balanced truncation of the model, optimizer state.

`compress(params, opt_state, optimizer, config, step, key)` is pure: it returns new (smaller) parameters, an
optimizer state of the new shapes, the list of reduction events and every block's HSVs. It runs outside the
jitted training step, at evaluation boundaries; the step recompiles once for the new shapes.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from threadpoolctl import threadpool_limits

from compressm import lru, reduction
from compressm.configs import ReductionConfig
from compressm.model import num_blocks
from compressm.records import hsv_key


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


def _with_precision(precision: str):
    """Context under which `precision` arrays exist (float64 needs jax's x64 mode)."""
    return jax.enable_x64(precision == "float64")


def _system_in(lru_params: dict, precision: str):
    """(lambdas, B, C) of an LRU layer in `precision`; cast inside the caller's jit, so casts never compile alone."""
    dtype = jnp.float64 if precision == "float64" else jnp.float32
    lambdas, B, C, _ = lru.system_from(jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), lru_params))
    return lambdas, B, C


@partial(jax.jit, static_argnames=("system", "precision"))
def _block_hsv(lru_params: dict, system: str, precision: str) -> tuple[jax.Array, jax.Array]:
    diagonal = _system_in(lru_params, precision)
    return reduction.system_hsv(*diagonal, system), reduction.system_defects(*diagonal)


def block_hsv(lru_params: dict, system: str = "complex", precision: str = "float64") -> np.ndarray:
    """Hankel singular values of one LRU layer, descending: (N,) for 'complex', (2N,) for 'real'.

    Raises reduction.InvalidSystem for a layer that has none (see `reduction.system_defects`).
    """
    with _with_precision(precision):
        hsv, defects = _block_hsv(lru_params, system, precision)
        reduction.refuse_defects(defects)
        return np.asarray(hsv)


class BalancedBlock(NamedTuple):
    """One LRU layer ready to truncate (host arrays): its HSVs, its system and the balancing transform."""

    hsv: np.ndarray  # (N,), or (2N,) for system='real'; descending
    A: np.ndarray  # (N,) diagonal, or (2N, 2N) real coordinates for system='real'
    B: np.ndarray
    C: np.ndarray
    balancing: reduction.Balancing


@partial(jax.jit, static_argnames=("system", "method", "precision"))
def _balance(lru_params: dict, system: str, method: str, precision: str):
    diagonal = _system_in(lru_params, precision)
    A, B, C, P, Q = reduction.system_gramians(*diagonal, system)
    hsv, bal = reduction.hsv_and_balancing(P, Q, method)
    return hsv, A, B, C, bal, reduction.system_defects(*diagonal)


def balance_block(lru_params: dict, config: ReductionConfig) -> BalancedBlock:
    """HSVs and balancing transform of one LRU layer in one pass (compiled once per state size N).

    Raises reduction.InvalidSystem for a layer that cannot be reduced (see `reduction.system_defects`).
    """
    with _with_precision(config.precision):
        hsv, A, B, C, bal, defects = _balance(lru_params, config.system, config.method, config.precision)
        reduction.refuse_defects(defects)
        return BalancedBlock(np.asarray(hsv), np.asarray(A), np.asarray(B), np.asarray(C),
                             reduction.Balancing(np.asarray(bal.T), np.asarray(bal.Tinv)))


def truncate_block(lru_params: dict, balanced: BalancedBlock, rank: int, config: ReductionConfig,
                   key: jax.Array) -> dict:
    """LRU parameters of one layer truncated to `rank` balanced states (or random modes, see selection).

    For system='real', `rank` counts real states; the LRU gets one state per conjugate pair.
    """
    if config.selection == "random":  # the ablation: keep random diagonal modes, no balancing
        keep = reduction.keep_indices(lru_params["nu_log"].shape[0], rank, "random", key)
        return {k: v[..., keep] if k.startswith("C") else (v if k == "D" else v[keep]) for k, v in lru_params.items()}
    keep = reduction.keep_indices(len(balanced.hsv), rank, config.selection)
    A_r, B_r, C_r = reduction.truncate(balanced.A, balanced.B, balanced.C, balanced.balancing, keep)
    return reduction.lru_params_from_system(A_r, B_r, C_r, lru_params["D"], real=config.system == "real")


def reduce_block(lru_params: dict, rank: int, config: ReductionConfig, key: jax.Array) -> dict:
    """`truncate_block` of a layer balanced here: one layer reduced to `rank`, whatever its HSVs."""
    return truncate_block(lru_params, balance_block(lru_params, config), rank, config, key)


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
    fresh = jax.eval_shape(optimizer.init, new_params)  # shapes and dtypes only: nothing is allocated

    def fit(old, new):  # on the host: slicing a device array would compile one program per new shape
        if old.shape == new.shape:
            return old
        if policy == "slice":
            return jax.device_put(np.asarray(old)[tuple(slice(0, n) for n in new.shape)])
        return jax.device_put(np.zeros(new.shape, new.dtype))

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


class BlockAttempt(NamedTuple):
    """One block at one reduction attempt: its HSVs, and its new rank and LRU parameters (None if not reduced)."""

    hsv: np.ndarray
    rank: int | None
    lru: dict | None


def attempt_block(lru_params: dict, config: ReductionConfig, key: jax.Array) -> BlockAttempt:
    """HSVs of one layer and, if the policy and gate allow, its truncation: one balancing serves both."""
    balanced = balance_block(lru_params, config)
    rank = planned_rank(balanced.hsv, lru_params["nu_log"].shape[0], config)
    new_lru = None if rank is None else truncate_block(lru_params, balanced, rank, config, key)
    return BlockAttempt(balanced.hsv, rank, new_lru)


class Compression(NamedTuple):
    """What `compress` returns."""

    params: dict
    opt_state: Any
    events: list[ReductionEvent]  # empty if no block was reduced (params and opt_state then unchanged)
    hsvs: dict[str, np.ndarray]  # every block's HSVs at this step, as `snapshot_hsv` gives them


def compress(params, opt_state, optimizer, config: ReductionConfig, step: int, key: jax.Array) -> Compression:
    """One reduction attempt on every block: HSV snapshot, rank, gate and balanced truncation.

    Blocks are reduced independently (each by its own rank, in parallel threads); the HSVs of the snapshot
    and the balancing come from the same factorisations of the Gramians.
    """
    blocks = range(num_blocks(params))
    attempts = map_blocks(lambda i: attempt_block(params[f"blocks_{i}"]["lru"], config,
                                                  jax.random.fold_in(key, i)), blocks)
    hsvs = {hsv_key(step, i): attempt.hsv for i, attempt in zip(blocks, attempts)}
    new_params, events = dict(params), []
    for i, (hsv, rank, new_lru) in zip(blocks, attempts):
        if new_lru is None:
            continue
        n = params[f"blocks_{i}"]["lru"]["nu_log"].shape[0]
        new_params[f"blocks_{i}"] = {**params[f"blocks_{i}"], "lru": new_lru}
        discarded = _discarded(hsv, rank, config.selection)
        events.append(ReductionEvent(
            step=step, block=i, old_size=n, new_size=int(new_lru["nu_log"].shape[0]), hsv_key=hsv_key(step, i),
            discarded_energy=discarded / float(hsv.sum()), error_bound=2.0 * discarded,
        ))
    if not events:
        return Compression(params, opt_state, [], hsvs)
    return Compression(new_params, resize_opt_state(opt_state, new_params, optimizer, config.opt_state), events, hsvs)
