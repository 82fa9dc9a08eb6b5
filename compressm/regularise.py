"""Hankel nuclear-norm regularisation: the sum of the Hankel singular values of every LRU block, differentiable.

The baseline of the paper's Table 6, after Schwerdtner, Berman and Peherstorfer (arXiv 2510.22951): train with

    loss = cross-entropy + lambda * sum over blocks of sum(HSVs)

so that the HSVs decay fast, then balanced-truncate every block to the target size (`reduction.mode = rank`).
The sum of the HSVs is the nuclear norm of a block's Hankel operator. For one block (N states, H channels):

1. closed-form Gramians P, Q of the diagonal system (`reduction.gramians`), O(N^2 H) with no Lyapunov solver:
   the structure that 2510.22951 exploits for its block-diagonal systems;
2. Cholesky factors Lp Lp^H = P + eps I and Lq Lq^H = Q + eps I (eps = `reduction.GRAMIAN_EPS`, the paper's);
3. the HSVs are the singular values of K = Lq^H Lp. Their sum is differentiated by JAX's rule for singular
   values alone, d sigma_i = Re(u_i^H dK v_i), which stays bounded where HSVs cluster or vanish (the
   derivative of an eigendecomposition divides by eigenvalue gaps), and by JAX's Cholesky rule (triangular
   solves).

All of it in float64 (complex128). `hankel_penalty` runs it inside a float32 training step: a custom VJP whose
forward pass computes the value and the gradient together in float64 and hands back float32. Per block and
step it costs two Cholesky factorisations and one SVD of an N x N complex matrix, O(N^3): the reason the paper
calls this baseline slow (`bench.bench_regularised_step` measures it against a plain step).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from compressm import lru, records, reduction
from compressm.model import block_lru, num_blocks, with_block_lru


def nuclear_norm(lambdas: jax.Array, B: jax.Array, C: jax.Array, eps: float = reduction.GRAMIAN_EPS) -> jax.Array:
    """Sum of the HSVs (a real scalar) of the diagonal system lambdas (N,), B (N, H), C (H, N), all complex.

    The HSVs are those of the eps-regularised Gramians (P + eps I, Q + eps I), computed as the singular values
    of Lq^H Lp from their Cholesky factors; differentiable (see the module docstring). Use float64 inputs.
    """
    P, Q = reduction.gramians(lambdas, B, C)
    eye = jnp.eye(lambdas.shape[0], dtype=P.dtype)
    K = jnp.conj(jnp.linalg.cholesky(Q + eps * eye)).T @ jnp.linalg.cholesky(P + eps * eye)
    return jnp.sum(jnp.linalg.svd(K, compute_uv=False))


def lru_nuclear_norm(lru_params: dict, eps: float = reduction.GRAMIAN_EPS) -> jax.Array:
    """Sum of the HSVs of one LRU layer (`lru.PARAMS`, N states): the paper's complex system (lambda, B, C)."""
    lambdas, B, C, _ = lru.system_from(lru_params)
    return nuclear_norm(lambdas, B, C, eps)


def _blocks_norm(lrus: list[dict]) -> jax.Array:
    return sum(lru_nuclear_norm(layer) for layer in lrus)


def penalty_and_grad(params: dict) -> tuple[jax.Array, dict]:
    """(sum over blocks of the sum of their HSVs, its gradient as a tree like `params`), computed in float64 and
    returned in the dtypes of `params`; zero gradient outside the LRU layers."""
    blocks = range(num_blocks(params))
    dtype = block_lru(params, 0)["nu_log"].dtype
    with jax.enable_x64(True):
        lrus = [jax.tree.map(lambda x: x.astype(jnp.float64), block_lru(params, i)) for i in blocks]
        value, grads = jax.value_and_grad(_blocks_norm)(lrus)
    tree = jax.tree.map(jnp.zeros_like, params)
    for i in blocks:
        tree = with_block_lru(tree, i, jax.tree.map(lambda g, p: g.astype(p.dtype), grads[i], block_lru(params, i)))
    return value.astype(dtype), tree


@jax.custom_vjp
def hankel_penalty(params: dict) -> jax.Array:
    """Sum over the blocks of a classifier's parameter tree of the sum of their HSVs (`lru_nuclear_norm`): a
    scalar in the parameters' dtype, computed in float64 even inside a float32 jitted step."""
    return penalty_and_grad(params)[0]


def _forward(params: dict):
    return penalty_and_grad(params)


def _backward(grads: dict, cotangent: jax.Array):
    return (jax.tree.map(lambda g: cotangent.astype(g.dtype) * g, grads),)


hankel_penalty.defvjp(_forward, _backward)


# ----------------------------------------------------------------------------------------------------------
# The regularisation weight: which states the cross-entropy can defend
# ----------------------------------------------------------------------------------------------------------
def defended_states(loss_grads: list[dict], penalty_grad: dict, weights) -> pd.DataFrame:
    """For each weight lambda and LRU parameter group, how many of the N states the loss defends: those where
    lambda |d penalty / d theta| < |mean over batches of d loss / d theta| (B and C averaged over the channels).

    loss_grads: one LRU gradient dict (`lru.PARAMS`) per batch; penalty_grad: the gradient of the sum of HSVs.
    Returns one row per weight, one column per parameter group, and their median.
    """
    rows = {}
    for weight in weights:
        counts = {}
        for name in ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im"):
            mean = np.abs(np.mean([np.asarray(g[name]) for g in loss_grads], axis=0))
            push = weight * np.abs(np.asarray(penalty_grad[name]))
            axis = 1 if name.startswith("B") else 0 if name.startswith("C") else None
            if axis is not None:
                mean, push = mean.mean(axis), push.mean(axis)
            counts[name] = int((push < mean).sum())
        rows[weight] = {**counts, "median": float(np.median(list(counts.values())))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("lambda")


def calibrate_weight(path, data_dir, weights=(1e-3, 3e-3, 1e-2), batches: int = 20) -> pd.DataFrame:
    """`defended_states` at the final parameters of the sMNIST record in `path`, over `batches` training batches of
    50 (dropout on, as in training; block 0): how the weight of `smnist_hankel_n28` was chosen."""
    from compressm.data import load_dataset
    from compressm.model import cross_entropy, state_sizes_of
    from compressm.train import build_model, run_keys  # train imports this module (through objectives)

    config, seed = records.stored_identity(path)
    variables = records.load_variables(path)
    dataset = load_dataset(config.dataset, data_dir, key=run_keys(seed)["split"], limit=50 * batches)
    model = build_model(config, dataset, state_sizes_of(variables["params"]), records.load_metrics(path)["recurrence"])

    @jax.jit
    def loss_grad(params, x, y, key):
        def loss(p):
            logits, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=True,
                                    rngs={"dropout": key}, mutable=["batch_stats"])
            return cross_entropy(logits, y, dataset.num_classes)
        return block_lru(jax.grad(loss)(params), 0)

    grads = [loss_grad(variables["params"], dataset.train_x[i * 50:(i + 1) * 50], dataset.train_y[i * 50:(i + 1) * 50],
                       jax.random.PRNGKey(i)) for i in range(batches)]
    _, penalty = penalty_and_grad(jax.tree.map(np.asarray, variables["params"]))
    return defended_states(grads, block_lru(penalty, 0), weights)
