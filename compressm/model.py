"""The LRU classifier of the paper, as flax.linen modules whose parameters are a plain pytree.

    encoder Dense(d -> H) -> blocks -> mean over time -> Dense(H -> classes)
    block:  BatchNorm (no affine, over batch and time) -> LRU -> GELU -> dropout -> GLU -> dropout -> + skip

Each block has its own state size (they differ after reduction), so a model is built for a tuple of sizes
(`train.build_model(config, dataset, state_sizes_of(params))`).
Parameter paths: params["blocks_<i>"]["lru"]["nu_log"] etc.; `block_lru` and `with_block_lru` read and replace them.
Dense layers use the PyTorch/Equinox initialisation of the authors' code, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from compressm import lru
from compressm.configs import ModelConfig


def _dense(features: int, fan_in: int) -> nn.Dense:
    """A Dense layer with the Equinox/PyTorch initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return nn.Dense(features, kernel_init=init, bias_init=init)


class LRU(nn.Module):
    """One LRU layer of state size N and width H = config.width: (B, L, H) -> (B, L, H).

    Parameters as in `compressm.lru`; `config.recurrence` must be resolved (not 'auto').
    """

    state_size: int
    config: ModelConfig

    def setup(self):
        n, width, c = self.state_size, self.config.width, self.config
        self.nu_log = self.param("nu_log", lambda key: lru.init_nu_log(key, n, c.r_min, c.r_max))
        self.theta_log = self.param("theta_log", lambda key: lru.init_theta_log(key, n, c.max_phase))
        self.gamma_log = self.param("gamma_log", lambda key: lru.gamma_log_for(self.nu_log))
        self.B_re = self.param("B_re", lambda key: lru.init_B_part(key, n, width))
        self.B_im = self.param("B_im", lambda key: lru.init_B_part(key, n, width))
        self.C_re = self.param("C_re", lambda key: lru.init_C_part(key, width, n))
        self.C_im = self.param("C_im", lambda key: lru.init_C_part(key, width, n))
        self.D = self.param("D", lambda key: jax.random.normal(key, (width,)))

    def _system(self):
        return lru.system_from({name: getattr(self, name) for name in lru.PARAMS})

    def __call__(self, u: jax.Array) -> jax.Array:
        system = self._system()
        return jax.vmap(lambda seq: lru.apply_lru(self.config.recurrence, *system, seq))(u)

    def step(self, x: jax.Array, u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One streaming step for a batch: state x (B, N) complex, u_t (B, H) -> (x, y_t (B, H))."""
        system = self._system()
        return jax.vmap(lambda x1, u1: lru.lru_step(*system, x1, u1))(x, u_t)


class GLU(nn.Module):
    """Gated linear unit W1 x * sigmoid(W2 x), (..., H) -> (..., H)."""

    width: int

    def setup(self):
        self.w1 = _dense(self.width, self.width)
        self.w2 = _dense(self.width, self.width)

    def __call__(self, x):
        return self.w1(x) * jax.nn.sigmoid(self.w2(x))


class Block(nn.Module):
    """Residual LRU block (B, L, H) -> (B, L, H)."""

    state_size: int
    config: ModelConfig

    def setup(self):
        self.norm = nn.BatchNorm(momentum=0.99, epsilon=1e-5, use_bias=False, use_scale=False)
        self.lru = LRU(self.state_size, self.config)
        self.glu = GLU(self.config.width)
        self.drop = nn.Dropout(self.config.dropout)

    def __call__(self, x, *, train: bool):
        z = self.lru(self.norm(x, use_running_average=not train))
        z = self.drop(jax.nn.gelu(z), deterministic=not train)
        z = self.drop(self.glu(z), deterministic=not train)
        return x + z

    def step(self, state, x_t):
        """Streaming step (evaluation mode): state (B, N), x_t (B, H) -> (state, (B, H))."""
        state, z = self.lru.step(state, self.norm(x_t, use_running_average=True))
        return state, x_t + self.glu(jax.nn.gelu(z))


class LRUClassifier(nn.Module):
    """Sequence classifier (B, L, d) -> logits (B, classes); one block per entry of `state_sizes`.

    `config` gives width, dropout, init ring and recurrence (resolved, not 'auto'); its state_size and
    num_blocks are ignored in favour of `state_sizes`, which changes as blocks are reduced.
    """

    state_sizes: tuple[int, ...]
    input_dim: int
    num_classes: int
    config: ModelConfig

    def setup(self):
        self.encoder = _dense(self.config.width, self.input_dim)
        self.blocks = [Block(n, self.config) for n in self.state_sizes]
        self.head = _dense(self.num_classes, self.config.width)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h, train=train)
        return self.head(h.mean(axis=1))

    def step(self, states: list, x_t: jax.Array) -> tuple[list, jax.Array]:
        """One streaming step: per-block states [(B, N_i)], input x_t (B, d) -> (states, features (B, H))."""
        h = self.encoder(x_t)
        new_states = []
        for block, state in zip(self.blocks, states):
            state, h = block.step(state, h)
            new_states.append(state)
        return new_states, h

    def classify(self, features: jax.Array) -> jax.Array:
        """Logits (B, classes) from time-pooled features (B, H)."""
        return self.head(features)


def stream_logits(model: LRUClassifier, variables: dict, x: jax.Array) -> jax.Array:
    """Logits (B, classes) computed recurrently, one input step at a time: what a deployed model runs.

    Equals `model.apply(variables, x, train=False)` up to rounding; x is (B, L, d).
    """
    batch, length = x.shape[:2]
    dtype = jnp.result_type(x.dtype, jnp.complex64)
    states = [jnp.zeros((batch, n), dtype) for n in model.state_sizes]

    def body(carry, x_t):
        states, total = carry
        states, h = model.apply(variables, states, x_t, method=LRUClassifier.step)
        return (states, total + h), None

    init = (states, jnp.zeros((batch, model.config.width), x.dtype))
    (_, total), _ = jax.lax.scan(body, init, jnp.swapaxes(x, 0, 1))
    return model.apply(variables, total / length, method=LRUClassifier.classify)


def state_sizes_of(params: dict) -> tuple[int, ...]:
    """Per-block state sizes (N_0, N_1, ...) read off a parameter tree."""
    return tuple(lru.state_size(block_lru(params, i)) for i in range(num_blocks(params)))


def num_blocks(params: dict) -> int:
    """Number of LRU blocks in a parameter tree."""
    return sum(1 for i in range(len(params)) if _block_name(i) in params)


def _block_name(block: int) -> str:
    """Flax's name for entry `block` of `LRUClassifier.blocks` (and "lru" is `Block.lru`'s)."""
    return f"blocks_{block}"


def block_lru(params: dict, block: int) -> dict:
    """The LRU parameter dict (`lru.PARAMS`) of block `block` of a classifier's parameter tree."""
    return params[_block_name(block)]["lru"]


def with_block_lru(params: dict, block: int, lru_params: dict) -> dict:
    """A new parameter tree with block `block`'s LRU parameters replaced; everything else shared."""
    name = _block_name(block)
    return {**params, name: {**params[name], "lru": lru_params}}


def cross_entropy(logits: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """The paper's loss, mean over the batch of -sum(y log(softmax + 1e-8)); logits (B, K), labels (B,) int."""
    probs = jax.nn.softmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, num_classes)
    return jnp.mean(-jnp.sum(onehot * jnp.log(probs + 1e-8), axis=-1))


