"""The classifier, and compressing it: parameters and optimizer state shrink together, outputs barely move."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MODEL_RTOL

from compressm import compression, lru, records, reduction
from compressm.bench import compiles
from compressm.configs import ModelConfig, OptimConfig, ReductionConfig
from compressm.model import LRUClassifier, block_lru, state_sizes_of, stream_logits, with_block_lru
from compressm.train import make_optimizer


def reduction_config(**fields) -> ReductionConfig:
    """A reduction config with a one-attempt schedule (at step 1)."""
    return ReductionConfig(first_step=1, every_steps=1, last_step=1, **fields)


def make_model(state_sizes=(24, 16), recurrence="scan"):
    return LRUClassifier(state_sizes, input_dim=2, num_classes=5, config=ModelConfig(width=6, recurrence=recurrence))


@pytest.fixture(scope="module")
def variables():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 40, 2))
    return make_model().init({"params": jax.random.PRNGKey(1)}, x, train=False), x


def test_parameter_tree_follows_the_paper(variables):
    (v, _) = variables
    lru_params = v["params"]["blocks_0"]["lru"]
    assert block_lru(v["params"], 0) is lru_params
    assert {k: a.shape for k, a in lru_params.items()} == {
        "nu_log": (24,), "theta_log": (24,), "gamma_log": (24,), "B_re": (24, 6), "B_im": (24, 6),
        "C_re": (6, 24), "C_im": (6, 24), "D": (6,)}
    assert "norm" not in v["params"]["blocks_0"]  # BatchNorm without affine parameters
    assert v["batch_stats"]["blocks_0"]["norm"]["mean"].shape == (6,)
    assert state_sizes_of(v["params"]) == (24, 16)
    assert tuple(lru_params) == lru.PARAMS


def test_with_block_lru_replaces_one_block_and_shares_the_rest(variables):
    params = variables[0]["params"]
    smaller = lru.select_states(block_lru(params, 1), np.arange(5))
    new = with_block_lru(params, 1, smaller)
    assert state_sizes_of(new) == (24, 5) and state_sizes_of(params) == (24, 16)  # the input is unchanged
    assert new["blocks_0"] is params["blocks_0"] and new["blocks_1"]["glu"] is params["blocks_1"]["glu"]


def test_streaming_inference_matches_the_parallel_forward_pass(variables):
    v, x = variables
    model = make_model()
    np.testing.assert_allclose(stream_logits(model, v, x), model.apply(v, x, train=False), rtol=MODEL_RTOL,
                               atol=MODEL_RTOL / 10)


def test_every_recurrence_gives_the_same_model_output(variables):
    v, x = variables
    reference = make_model(recurrence="scan").apply(v, x, train=False)
    for recurrence in ("associative", "conv"):
        np.testing.assert_allclose(make_model(recurrence=recurrence).apply(v, x, train=False), reference,
                                   rtol=MODEL_RTOL, atol=MODEL_RTOL / 10)


def test_dropout_only_in_training(variables):
    v, x = variables
    model = make_model()
    out = lambda key: model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0]
    assert not np.allclose(out(jax.random.PRNGKey(0)), out(jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(model.apply(v, x, train=False), model.apply(v, x, train=False))


def test_compression_shrinks_params_and_optimizer_state_together(variables):
    v, x = variables
    optimizer = make_optimizer(OptimConfig(lr=1e-3), 100)
    opt_state = optimizer.init(v["params"])
    # make the Adam moments recognisable: mu = 1 + index along the state axis
    opt_state = jax.tree.map(lambda a: jnp.broadcast_to(jnp.arange(a.shape[0], dtype=a.dtype) + 1,
                                                        a.shape[::-1]).T if a.ndim == 1 else a, opt_state)
    config = reduction_config(mode="tolerance", tau=0.05)
    params, new_opt, events, _ = compression.compress(v["params"], opt_state, optimizer, config, 1,
                                                      jax.random.PRNGKey(0))
    sizes = state_sizes_of(params)
    assert events and all(e.new_size < e.old_size for e in events)
    assert sizes == tuple(e.new_size for e in events) or len(events) < 2
    fresh = optimizer.init(params)
    assert jax.tree.map(jnp.shape, new_opt) == jax.tree.map(jnp.shape, fresh)  # shapes follow the params
    # 'slice': the moments of nu_log keep their leading entries (1, 2, ..., r)
    old_mu = _find(opt_state, "nu_log", "mu", block=0)
    new_mu = _find(new_opt, "nu_log", "mu", block=0)
    np.testing.assert_array_equal(new_mu, old_mu[: sizes[0]])
    # unchanged parameters keep their optimizer state exactly
    np.testing.assert_array_equal(_find(new_opt, "kernel", "mu", module="encoder"),
                                  _find(opt_state, "kernel", "mu", module="encoder"))
    reset = compression.resize_opt_state(opt_state, params, optimizer, policy="reset")
    assert float(jnp.abs(_find(reset, "nu_log", "mu", block=0)).sum()) == 0.0


def _find(opt_state, leaf, moment, block=None, module=None):
    """The Adam moment `moment` of parameter `leaf` (of blocks_<block>/lru or of `module`) in an optax state."""
    found = []
    for path, value in jax.tree_util.tree_leaves_with_path(opt_state):
        names = [getattr(p, "key", getattr(p, "name", None)) for p in path]
        where = f"blocks_{block}" if block is not None else module
        if names[-1] == leaf and moment in names and where in names and getattr(value, "size", 0):
            found.append(np.asarray(value))
    assert len(found) == 1, found
    return found[0]


def test_small_tau_compression_keeps_the_model_output(variables):
    """With tau = 0.05 the truncation drops 5 % of the Hankel energy: logits move by under 1 % of their scale."""
    v, x = variables
    config = reduction_config(mode="tolerance", tau=0.05, gate=1.0)
    optimizer = make_optimizer(OptimConfig(), 10)
    params, _, events, _ = compression.compress(v["params"], optimizer.init(v["params"]), optimizer, config, 1,
                                                jax.random.PRNGKey(0))
    assert events
    before = make_model().apply(v, x, train=False)
    after = make_model(state_sizes_of(params)).apply({**v, "params": params}, x, train=False)
    assert float(jnp.abs(after - before).max()) < 0.01 * float(jnp.abs(before).max())


def test_blocks_reduced_in_parallel_threads_equal_the_serial_reduction(variables):
    """compress() reduces blocks in worker threads (float64 inside each): the same arrays as one block at a time,
    and its HSVs, taken from the Gramians it balances, are the snapshot's."""
    v, _ = variables
    config = reduction_config(mode="fixed", fraction=0.25)
    optimizer = make_optimizer(OptimConfig(), 10)
    params, _, events, hsvs = compression.compress(v["params"], optimizer.init(v["params"]), optimizer, config, 1,
                                                   jax.random.PRNGKey(0))
    assert [e.new_size for e in events] == [18, 12]
    for i, event in enumerate(events):
        lru_params = block_lru(v["params"], i)
        np.testing.assert_allclose(hsvs[records.hsv_key(1, i)], reduction.lru_hsv(lru_params), rtol=1e-12)
        serial = reduction.reduce_lru_to_rank(lru_params, event.new_size, system=config.system, method=config.method,
                                              selection=config.selection, precision=config.precision)
        jax.tree.map(np.testing.assert_array_equal, block_lru(params, i), serial)


def test_only_changed_state_sizes_recompile(variables):
    """A reduction compiles one balancing program per state size it has not seen; the same sizes again compile
    nothing, and a block that kept its size reuses its program."""
    v, _ = variables
    config = reduction_config(mode="fixed", fraction=0.25)
    optimizer = make_optimizer(OptimConfig(), 10)
    opt_state, key = optimizer.init(v["params"]), jax.random.PRNGKey(0)
    reduced = compression.compress(v["params"], opt_state, optimizer, config, 1, key)  # sizes 24, 16 -> 18, 12
    with compiles() as again:
        compression.compress(v["params"], opt_state, optimizer, config, 1, key)
    assert again == []
    mixed = {**v["params"], "blocks_0": reduced.params["blocks_0"]}  # block 0 now 18, block 1 still 16
    mixed_opt_state = optimizer.init(mixed)
    with compiles() as found:
        compression.compress(mixed, mixed_opt_state, optimizer, config, 2, key)
    assert [name for name, _ in found] == ["jit(_balance_lru)"]  # for N = 18 only


def test_gate_and_fixed_fraction():
    assert compression.passes_gate(243, 256, 0.95) and not compression.passes_gate(244, 256, 0.95)  # 243.2
    assert compression.rank_for_fraction(256, 0.1) == 230 and compression.rank_for_fraction(1, 0.1) == 1


def test_gate_blocks_small_reductions():
    config = reduction_config(mode="tolerance", tau=0.01)
    hsv = np.ones(100)  # flat spectrum: keeping 99 % needs 99 of 100 states
    assert compression.planned_rank(hsv, 100, config) is None
    assert compression.planned_rank(hsv, 100, dataclasses.replace(config, tau=0.2)) == 80
    assert compression.planned_rank(hsv, 100, dataclasses.replace(config, mode="fixed")) == 90



def test_rank_mode_truncates_to_the_target_unless_the_block_is_no_larger():
    config = reduction_config(mode="rank", rank=28)
    hsv = np.linspace(1, 0.1, 256)
    assert compression.planned_rank(hsv, 256, config) == 28
    assert compression.planned_rank(hsv[:28], 28, config) is None  # already at the target: the gate says no
    assert compression.planned_rank(np.r_[hsv, hsv], 256, dataclasses.replace(config, system="real")) == 56
