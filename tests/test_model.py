"""The classifier's fast paths compute what the reference computes: the factored first block, the dropout
generator, and the two BatchNorm rules against the libraries they reproduce (equinox, flax)."""

import dataclasses

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MODEL_RTOL, ON_CPU

from compressm.configs import ModelConfig
from compressm.model import (BatchNorm, LRUClassifier, cross_entropy, dropout, dropout_mask, stream_logits,
                             threefry_2x32, with_time)

RTOL = 1e-5 if ON_CPU else MODEL_RTOL  # the bar for float32 fast paths; GPUs multiply in TF32


def rel_err(a, b) -> float:
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def smnist_like(recurrence: str, factor_input: bool, norm: str = "ema") -> LRUClassifier:
    config = ModelConfig(width=8, state_size=32, recurrence=recurrence, norm=norm)
    return LRUClassifier((32,), input_dim=1, num_classes=10, config=config, factor_input=factor_input)


def loss_and_grads(model, variables, x, y, key):
    """Training-mode loss (with dropout), its gradients and the new batch statistics."""

    def loss(params):
        logits, updates = model.apply({**variables, "params": params}, x, train=True, rngs={"dropout": key},
                                      mutable=["batch_stats"])
        return cross_entropy(logits, y, 10), (logits, updates["batch_stats"])

    (_, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    return logits, grads, stats


@pytest.mark.parametrize("norm", ["ema", "batch"])
@pytest.mark.parametrize("recurrence", ["scan", "associative", "conv"])
def test_factored_first_block_equals_the_normalised_input_path(recurrence, norm):
    """The first block's LRU on [x; 1] through B A equals the LRU on the normalised activations: logits, every
    gradient and the batch statistics, in float32, against the sequential scan on the unfactored path."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (6, 200, 1))
    y = jnp.arange(6) % 10
    reference = smnist_like("scan", factor_input=False, norm=norm)
    variables = reference.init({"params": jax.random.PRNGKey(1)}, x, train=False)
    key = jax.random.PRNGKey(2)
    logits_ref, grads_ref, stats_ref = loss_and_grads(reference, variables, x, y, key)
    logits, grads, stats = loss_and_grads(smnist_like(recurrence, factor_input=True, norm=norm), variables, x, y, key)
    assert rel_err(logits, logits_ref) < RTOL
    leaves = jax.tree_util.tree_leaves_with_path
    for (path, g), (_, g_ref) in zip(leaves(grads), leaves(grads_ref), strict=True):
        assert rel_err(g, g_ref) < RTOL, jax.tree_util.keystr(path)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7), stats, stats_ref)


# ----------------------------------------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------------------------------------
def test_threefry_matches_the_random123_known_answers():
    """Threefry-2x32-20 known-answer vectors of Random123 (kat_vectors), which jax's own tests use too."""
    cases = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, counter, expected in cases:
        words = threefry_2x32(jnp.array(key, jnp.uint32), *(jnp.array([c], jnp.uint32) for c in counter))
        assert tuple(int(w[0]) for w in words) == expected


def test_dropout_rate_and_expectation():
    """Zeroed fraction within 5 binomial sigma of round(0.1 * 2^16) / 2^16, mean kept (x = 1 everywhere)."""
    n, rate = 2_000_000, 0.1
    out = np.asarray(dropout(jax.random.PRNGKey(0), rate, jnp.ones(n)))
    p = round(rate * 2**16) / 2**16
    assert abs(p - rate) < 2**-17
    zeroed = np.mean(out == 0)
    assert abs(zeroed - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(out.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert set(np.unique(out)) == {0.0, np.float32(1 / (1 - p))}
    odd = dropout(jax.random.PRNGKey(1), rate, jnp.ones((3, 7)))  # a size that is not a multiple of 4
    assert odd.shape == (3, 7) and set(np.unique(np.asarray(odd))) <= {0.0, np.float32(1 / (1 - p))}


def _mask(key, shape=(8, 50, 784)):
    return np.asarray(dropout(key, 0.1, jnp.ones(shape))) == 0


def test_dropout_masks_are_independent_across_steps_seeds_and_entries():
    """Masks of different keys (steps folded in, seeds) and the four entries drawn from one counter are
    uncorrelated: |correlation| < 5 / sqrt(n); the same key gives the same mask."""
    step_key = lambda seed, step: jax.random.fold_in(jax.random.PRNGKey(seed), step)
    pairs = [(_mask(step_key(0, 1)), _mask(step_key(0, 2))), (_mask(step_key(0, 1)), _mask(step_key(1, 1)))]
    planes = _mask(step_key(3, 7)).reshape(4, -1)  # entries i, i + n/4, i + n/2, i + 3n/4 share a counter
    pairs += [(planes[i], planes[j]) for i in range(4) for j in range(i + 1, 4)]
    for a, b in pairs:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5 / np.sqrt(a.size)
    np.testing.assert_array_equal(_mask(step_key(0, 1)), _mask(step_key(0, 1)))


# ----------------------------------------------------------------------------------------------------------
# BatchNorm rules
# ----------------------------------------------------------------------------------------------------------
def _batches(count=3, shape=(5, 4, 30)):
    """Activations (B, H, L) with channel-dependent means and scales, a new batch per step."""
    keys = jax.random.split(jax.random.PRNGKey(0), count)
    return [3.0 + jnp.arange(4.0)[:, None] + jax.random.normal(k, shape) * (1 + jnp.arange(4.0))[:, None]
            for k in keys]


def _ours(rule: str, batches):
    """Normalised outputs (B, H, L) of our BatchNorm over the training batches, then in evaluation."""
    norm = BatchNorm(rule)
    h0 = jnp.moveaxis(batches[0], 1, 0)
    stats = norm.init({}, h0, train=False)["batch_stats"]
    outputs = []
    for train in [True] * len(batches) + [False]:
        h = jnp.moveaxis(batches[min(len(outputs), len(batches) - 1)], 1, 0)  # (H, B, L)
        (mean, var), updates = norm.apply({"batch_stats": stats}, h, train=train, mutable=["batch_stats"])
        stats = updates["batch_stats"] if train else stats
        outputs.append(jnp.moveaxis((h - mean[:, None, None]) / jnp.sqrt(var[:, None, None] + 1e-5), 0, 1))
    return outputs


def test_ema_rule_is_equinox_batchnorm():
    """'ema' reproduces eqx.nn.BatchNorm(mode='ema'), the authors' layer (their default, legacy mode), as they
    call it: per example on (H, L), vmapped over the batch axis; three training steps, then evaluation."""
    batches = _batches()
    bn = eqx.nn.BatchNorm(4, axis_name="batch", channelwise_affine=False, mode="ema")
    state = eqx.nn.State(bn)
    expected = []
    for train in [True] * len(batches) + [False]:
        h = batches[min(len(expected), len(batches) - 1)]
        out, new_state = jax.vmap(lambda x, s: bn(x, s, inference=not train), axis_name="batch",
                                  in_axes=(0, None), out_axes=(0, None))(h, state)
        state = new_state if train else state
        expected.append(out)
    for ours, theirs in zip(_ours("ema", batches), expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_batch_rule_is_flax_batchnorm():
    """'batch' reproduces flax.linen.BatchNorm (no affine, momentum 0.99, eps 1e-5) on (B, L, H) activations."""
    batches = _batches()
    bn = nn.BatchNorm(momentum=0.99, epsilon=1e-5, use_bias=False, use_scale=False)
    as_blh = lambda h: jnp.swapaxes(h, 1, 2)
    stats = bn.init({}, as_blh(batches[0]), use_running_average=True)["batch_stats"]
    expected = []
    for train in [True] * len(batches) + [False]:
        h = as_blh(batches[min(len(expected), len(batches) - 1)])
        out, updates = bn.apply({"batch_stats": stats}, h, use_running_average=not train, mutable=["batch_stats"])
        stats = updates["batch_stats"] if train else stats
        expected.append(as_blh(out))
    for ours, theirs in zip(_ours("batch", batches), expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_the_rules_differ_in_training_from_the_second_step():
    """Same first step (ema starts from the batch's own statistics), then ema mixes in the running ones."""
    batches = _batches()
    ema, batch = _ours("ema", batches), _ours("batch", batches)
    np.testing.assert_allclose(ema[0], batch[0], rtol=1e-5, atol=1e-5)
    assert rel_err(ema[1], batch[1]) > 1e-3


def test_model_config_defaults_to_the_authors_rule():
    assert ModelConfig().norm == "ema"
    assert dataclasses.replace(ModelConfig(), norm="batch").norm == "batch"


# ----------------------------------------------------------------------------------------------------------
# The authors' recipe: time channel and one dropout mask per batch
# ----------------------------------------------------------------------------------------------------------
def test_time_channel_model_equals_an_unfactored_model_fed_t_over_L_first():
    """With config.time_channel the classifier reads [t / L, x_t]: the same logits and gradients as a model
    without it whose input carries that channel first (the authors' data pipeline), encoder Dense(2 -> H)."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 120, 1))
    y = jnp.arange(4)
    timed = smnist_like("conv", factor_input=True)
    plain = LRUClassifier((32,), 2, 10, dataclasses.replace(timed.config, time_channel=False, recurrence="scan"),
                          factor_input=False)
    variables = timed.init({"params": jax.random.PRNGKey(1)}, x, train=False)
    assert variables["params"]["encoder"]["kernel"].shape == (2, 8)
    key = jax.random.PRNGKey(2)
    logits, grads, _ = loss_and_grads(timed, variables, x, y, key)
    logits_ref, grads_ref, _ = loss_and_grads(plain, variables, with_time(x), y, key)
    np.testing.assert_allclose(np.asarray(with_time(x)[0, :3, 0]), [0, 1 / 120, 2 / 120], rtol=1e-6)
    assert rel_err(logits, logits_ref) < RTOL
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        assert rel_err(g, g_ref) < RTOL
    np.testing.assert_allclose(stream_logits(timed, variables, x), timed.apply(variables, x, train=False),
                               rtol=1e-4, atol=1e-5)


def test_batch_dropout_mask_is_one_mask_for_every_example():
    """dropout_mask 'batch': the same (H, L) pattern for every example; 'example': a different one each."""
    ones = jnp.ones((8, 50, 784))
    shared = np.asarray(dropout(jax.random.PRNGKey(0), 0.1, ones, (1,))) == 0
    assert (shared == shared[:, :1]).all() and 0.08 < shared.mean() < 0.12
    own = _mask(jax.random.PRNGKey(0))
    assert not (own == own[:, :1]).all()
    np.testing.assert_array_equal(shared[:, 0], np.asarray(dropout_mask(jax.random.PRNGKey(0), 0.1, (8, 784))) == 0)


def test_model_config_defaults_to_the_authors_recipe():
    config = ModelConfig()
    assert (config.time_channel, config.dropout_mask) == (True, "batch")
