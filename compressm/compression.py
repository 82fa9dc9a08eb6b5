"""In-training compression policy: when a block is reduced and to what rank (modes and gate), the optimizer state
after it, and the events it records. The reduction of one layer itself is `reduction.balance_lru` and
`reduction.truncate_lru` (the two halves of `reduction.reduce_lru`).

`compress(params, opt_state, optimizer, config, step, key)` is pure: it returns new (smaller) parameters, an
optimizer state of the new shapes, the list of reduction events and every block's HSVs. It runs outside the
jitted training step, at evaluation boundaries; the step recompiles once for the new shapes.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from threadpoolctl import threadpool_limits

from compressm import lru, reduction
from compressm.configs import OptStatePolicy, ReductionConfig
from compressm.model import block_lru, num_blocks, with_block_lru
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


def rank_for_fraction(n: int, fraction: float) -> int:
    """Fixed-fraction policy: remove `fraction` of the n states (at least one state stays)."""
    return max(1, int(n * (1.0 - fraction)))


def passes_gate(size: int, n: int, gate: float) -> bool:
    """The paper's gate (gate 0.95): reduce only if the new size is below gate * the current size n."""
    return size < gate * n


def planned_rank(hsv: np.ndarray, n: int, config: ReductionConfig) -> int | None:
    """The new rank of a block of size n under the config's policy, or None if the gate says no.

    The rank is in the units of `hsv` (N complex states, or 2N real ones for system='real'); the gate compares
    the resulting LRU size (`reduction.lru_size`) with gate * n.
    """
    per_state = 2 if config.system == "real" else 1
    if config.mode == "tolerance":
        rank = reduction.rank_for_tau(hsv, config.tau)
    elif config.mode == "rank":  # a fixed target size (the post-training truncation of a regularised run)
        rank = per_state * min(config.rank, n)
    else:  # fixed, pragmatic
        rank = per_state * rank_for_fraction(n, config.fraction)
    return rank if passes_gate(reduction.lru_size(rank, config.system), n, config.gate) else None


def resize_opt_state(opt_state, new_params, optimizer: optax.GradientTransformation,
                     policy: OptStatePolicy = "slice"):
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
    hsvs = map_blocks(lambda i: reduction.lru_hsv(block_lru(params, i), system=config.system,
                                                  precision=config.precision), blocks)
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
    balanced = reduction.balance_lru(lru_params, system=config.system, method=config.method,
                                     precision=config.precision)
    rank = planned_rank(balanced.hsv, lru.state_size(lru_params), config)
    new_lru = None if rank is None else reduction.truncate_lru(lru_params, balanced, rank,
                                                               selection=config.selection, key=key)
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
    attempts = map_blocks(lambda i: attempt_block(block_lru(params, i), config, jax.random.fold_in(key, i)), blocks)
    hsvs = {hsv_key(step, i): attempt.hsv for i, attempt in zip(blocks, attempts)}
    new_params, events = params, []
    for i, (hsv, rank, new_lru) in zip(blocks, attempts):
        if new_lru is None:
            continue
        new_params = with_block_lru(new_params, i, new_lru)
        discarded = _discarded(hsv, rank, config.selection)
        events.append(ReductionEvent(
            step=step, block=i, old_size=lru.state_size(block_lru(params, i)), new_size=lru.state_size(new_lru),
            hsv_key=hsv_key(step, i), discarded_energy=discarded / float(hsv.sum()), error_bound=2.0 * discarded,
        ))
    if not events:
        return Compression(params, opt_state, [], hsvs)
    return Compression(new_params, resize_opt_state(opt_state, new_params, optimizer, config.opt_state), events, hsvs)
