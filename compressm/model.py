"""The LRU classifier of the paper, as flax.linen modules whose parameters are a plain pytree.

    encoder Dense(d -> H) -> blocks -> mean over time -> Dense(H -> classes)
    block:  BatchNorm (no affine, over batch and time) -> LRU -> GELU -> dropout -> GLU -> dropout -> + skip

Activations are held channels first, (H, B, L): with the paper's narrow models (sMNIST: H = 8) every dense
layer is then one wide matrix product, and every reduction over batch and time runs along contiguous memory.
Parameters have the usual shapes (Dense kernels (in, out)); the model maps (B, L, d) to logits (B, classes).

With `config.time_channel` (the authors' runs) each step's input is [t / L, x_t], time first
(`with_time`): the encoder is Dense(1 + d -> H). The first block's LRU input is an affine image of the model
input: u = norm([t; x] W + b) = A_x x + A_s s, with the batch-independent s = [t; 1] (or [1] without time) and
A from the encoder and the normalisation statistics. Where the input has fewer channels than H (sMNIST: d = 1,
H = 8) the LRU runs on x through B A_x, one channel per example, and on s through B A_s once per batch
(`lru.response` is linear): the same output for a fraction of the recurrence's input work.

Each block has its own state size (they differ after reduction), so a model is built for a tuple of sizes
(`train.build_model(config, dataset, state_sizes_of(params), recurrence)`).
Parameter paths: params["blocks_<i>"]["lru"]["nu_log"] etc.; `block_lru` and `with_block_lru` read and replace them.
Dense layers use the PyTorch/Equinox initialisation of the authors' code, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from compressm import lru
from compressm.configs import ModelConfig, NormRule


class Dense(nn.Module):
    """Affine map of the leading (channel) axis: (in, ...) -> (out, ...), parameters kernel (in, out), bias (out,).

    Initialised as the authors' Equinox/PyTorch layers, U(-1/sqrt(in), 1/sqrt(in)).
    """

    features: int

    def __call__(self, x: jax.Array) -> jax.Array:
        return affine(x, *self.weights(x.shape[0]))

    @nn.compact
    def weights(self, fan_in: int) -> tuple[jax.Array, jax.Array]:
        """(kernel (in, out), bias (out,)), created at the first call."""
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -fan_in**-0.5, fan_in**-0.5)
        return self.param("kernel", init, (fan_in, self.features)), self.param("bias", init, (self.features,))


def affine(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """kernel^T x + bias along the leading axis: x (in, ...), kernel (in, out), bias (out,) -> (out, ...)."""
    y = jnp.tensordot(kernel, x, axes=(0, 0))
    return y + bias.reshape(bias.shape + (1,) * (y.ndim - 1))


class LRU(nn.Module):
    """One LRU layer of state size N and width H = config.width: (H, B, L) -> (H, B, L).

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

    def __call__(self, x: jax.Array, input_map: jax.Array | None = None,
                 shared: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
        """LRU output (H, B, L) for the input u = x (H, B, L), or u = A x + S s for x (d, B, L), input_map A (H, d)
        and shared = (s (c, L), S (H, c)), a batch-independent part whose response is computed once."""
        lambdas, B, C, D = self._system()
        respond = lambda B_in, seq: lru.response(self.config.recurrence, lambdas, B_in, C, seq.T).T  # (d, L) -> (H, L)
        if input_map is None:
            return jax.vmap(partial(respond, B), in_axes=1, out_axes=1)(x) + D[:, None, None] * x
        # D u = (D A) x + (D S) s
        y = jax.vmap(partial(respond, B @ input_map.astype(B.dtype)), in_axes=1, out_axes=1)(x)
        y = y + jnp.tensordot(D[:, None] * input_map, x, axes=(1, 0))
        if shared is not None:
            s, S = shared
            y = y + (respond(B @ S.astype(B.dtype), s) + (D[:, None] * S) @ s)[:, None, :]
        return y

    def step(self, x: jax.Array, u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One streaming step for a batch: state x (B, N) complex, u_t (B, H) -> (x, y_t (B, H))."""
        system = self._system()
        return jax.vmap(lambda x1, u1: lru.lru_step(*system, x1, u1))(x, u_t)


class GLU(nn.Module):
    """Gated linear unit W1 x * sigmoid(W2 x), (H, ...) -> (H, ...); both products as one (the layers are narrow)."""

    width: int

    def setup(self):
        self.w1 = Dense(self.width)
        self.w2 = Dense(self.width)

    def __call__(self, x):
        (k1, b1), (k2, b2) = self.w1.weights(x.shape[0]), self.w2.weights(x.shape[0])
        value, gate = jnp.split(affine(x, jnp.concatenate([k1, k2], 1), jnp.concatenate([b1, b2])), 2)
        return value * jax.nn.sigmoid(gate)


class BatchNorm(nn.Module):
    """Statistics (mean, var), each (H,), to normalise activations (H, ...) with, per channel over the rest.

    No affine parameters. In evaluation both rules use the running statistics. In training:
    - 'ema' (the authors' model: equinox's BatchNorm in its default mode): normalise with
      momentum * running + (1 - momentum) * batch statistics (the batch's own at the first step), which then
      become the running statistics;
    - 'batch' (flax's BatchNorm): normalise with the batch statistics; running = momentum * running +
      (1 - momentum) * batch.
    """

    rule: NormRule
    momentum: float = 0.99

    @nn.compact
    def __call__(self, h: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        width = h.shape[0]
        mean = self.variable("batch_stats", "mean", jnp.zeros, (width,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (width,), jnp.float32)
        started = self.variable("batch_stats", "started", lambda: jnp.array(False)) if self.rule == "ema" else None
        if not train:
            return mean.value, var.value
        axes = tuple(range(1, h.ndim))
        batch_mean = h.mean(axes)
        if self.rule == "batch":  # flax: the one-pass variance
            batch_var = jnp.maximum(0.0, jnp.mean(h * h, axes) - batch_mean * batch_mean)
            new_mean, new_var = (self.momentum * s.value + (1 - self.momentum) * b
                                 for s, b in ((mean, batch_mean), (var, batch_var)))
            use = (batch_mean, batch_var)
        else:  # equinox: the two-pass variance
            batch_var = jnp.mean((h - _per_channel(batch_mean, h)) ** 2, axes)
            new_mean, new_var = (jnp.where(started.value, self.momentum * s.value + (1 - self.momentum) * b, b)
                                 for s, b in ((mean, batch_mean), (var, batch_var)))
            use = (new_mean, new_var)
        if not self.is_initializing():
            mean.value, var.value = new_mean, new_var
            if started is not None:
                started.value = jnp.array(True)
        return use


def _per_channel(v: jax.Array, like: jax.Array) -> jax.Array:
    """v (H,) shaped to broadcast over channels-first activations like (H, ...)."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def dropout(key: jax.Array, rate: float, x: jax.Array, shared_axes: tuple[int, ...] = ()) -> jax.Array:
    """x with each entry zeroed with probability `rate` and the rest scaled so that the mean is unchanged; one
    decision serves every index along `shared_axes` (the authors' runs: one mask for the whole batch).

    Each decision compares 16 random bits with round(rate * 2^16): the rate is exact to 2^-17 (0.1000061 for
    0.1) and the scale 1 / (1 - that rate) keeps the expectation exact. The bits come from `threefry_2x32`
    (jax.random's generator): counter i gives two 32-bit words, whose four halves decide entries i, i + m,
    i + 2m and i + 3m of the flattened mask (m = mask size / 4, rounded up).
    """
    if rate == 0.0:
        return x
    shape = tuple(1 if axis in shared_axes else n for axis, n in enumerate(x.shape))
    return x * dropout_mask(key, rate, shape).astype(x.dtype)


def dropout_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """The multiplier of `dropout`, float32 of `shape`: 0 where dropped, 1 / (1 - rate') elsewhere."""
    threshold = round(rate * 2**16)
    size = math.prod(shape)
    m = -(-size // 4)
    counters = jnp.arange(m, dtype=jnp.uint32)
    w0, w1 = threefry_2x32(jax.random.key_data(key), counters, jnp.zeros_like(counters))
    bits = jnp.stack([w0 & 0xFFFF, w0 >> 16, w1 & 0xFFFF, w1 >> 16]).ravel()[:size]
    return jnp.where(bits >= threshold, jnp.float32(2**16 / (2**16 - threshold)), 0.0).reshape(shape)


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry_2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011; the hash behind `jax.random`) of the counter pairs
    (x0, x1), each (n,) uint32, under key (2,) uint32: two (n,) uint32 words.

    Written out round by round: on CPU, jax lowers its threefry to a loop of five steps, whose
    intermediate arrays cost more than the arithmetic.
    """
    ks = (key[0], key[1], key[0] ^ key[1] ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << r) | (x1 >> (32 - r)))
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


class Block(nn.Module):
    """Residual LRU block (H, B, L) -> (H, B, L)."""

    state_size: int
    config: ModelConfig
    epsilon: float = 1e-5

    def setup(self):
        self.norm = BatchNorm(self.config.norm)
        self.lru = LRU(self.state_size, self.config)
        self.glu = GLU(self.config.width)

    def __call__(self, h, *, train: bool, encoder: tuple | None = None):
        """Block output for h (H, B, L). `encoder` = (x (d, B, L), W_x (d, H), t (L,) or None, w_t (H,) or None,
        b (H,)) says that h = W_x^T x + w_t t + b: the encoder's input split into what differs per example and
        the time channel.

        Given the encoder, the LRU runs on x through the map that equals the normalisation of h, and on the
        batch-independent [t; 1] once (see the module docstring).
        """
        mean, var = self.norm(h, train=train)
        scale = jax.lax.rsqrt(var + self.epsilon)
        if encoder is None:
            z = self.lru((h - _per_channel(mean, h)) * _per_channel(scale, h))
        else:
            x, W_x, t, w_t, b = encoder
            offset = ((b - mean) * scale)[:, None]  # (H, 1): the map of the constant channel
            s, S = (jnp.ones((1, x.shape[-1]), x.dtype), offset) if t is None else \
                (jnp.stack([t, jnp.ones_like(t)]), jnp.concatenate([(w_t * scale)[:, None], offset], axis=1))
            z = self.lru(x, (W_x * scale).T, (s, S))
        z = self._dropout(jax.nn.gelu(z), train)
        z = self._dropout(self.glu(z), train)
        return h + z

    def _dropout(self, z, train: bool):
        """Dropout of z (H, B, L) in training: one mask per example, or one for the whole batch (the authors')."""
        if not train:
            return z
        shared = (1,) if self.config.dropout_mask == "batch" else ()
        return dropout(self.make_rng("dropout"), self.config.dropout, z, shared)

    def step(self, state, h_t):
        """Streaming step (evaluation mode): state (B, N), h_t (H, B) -> (state, (H, B))."""
        mean, var = self.norm(h_t, train=False)
        state, z = self.lru.step(state, ((h_t - mean[:, None]) * jax.lax.rsqrt(var + self.epsilon)[:, None]).T)
        return state, h_t + self.glu(jax.nn.gelu(z.T))


class LRUClassifier(nn.Module):
    """Sequence classifier (B, L, d) -> logits (B, classes); one block per entry of `state_sizes`. With
    config.time_channel the encoder also reads t / L (`with_time`); `input_dim` is d, without it.

    `config` gives width, dropout, init ring, normalisation and recurrence (resolved, not 'auto'); its state_size
    and num_blocks are ignored in favour of `state_sizes`, which changes as blocks are reduced.
    """

    state_sizes: tuple[int, ...]
    input_dim: int
    num_classes: int
    config: ModelConfig
    factor_input: bool = True  # False: the first block's LRU runs on the normalised (H, B, L) activations

    def setup(self):
        self.encoder = Dense(self.config.width)
        self.blocks = [Block(n, self.config) for n in self.state_sizes]
        self.head = Dense(self.num_classes)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = jnp.moveaxis(x, -1, 0)  # (d, B, L)
        timed = self.config.time_channel
        W, b = self.encoder.weights(x.shape[0] + timed)  # (1 + d, H) with the time channel first, (H,)
        t = time_channel(x.shape[-1], x.dtype) if timed else None
        h = affine(x, W[timed:], b) + (W[0][:, None, None] * t if timed else 0.0)
        encoder = None
        if self.factor_input and x.shape[0] < self.config.width:  # the LRU runs on x and on [t; 1] (module docstring)
            encoder = (x, W[timed:], t, W[0] if timed else None, b)
        for block in self.blocks:
            h = block(h, train=train, encoder=encoder)
            encoder = None
        return self.head(h.mean(axis=-1)).T

    def step(self, states: list, x_t: jax.Array) -> tuple[list, jax.Array]:
        """One streaming step: per-block states [(B, N_i)], input x_t (B, d_in) -> (states, features (B, H)); x_t
        includes the time channel when config.time_channel (`with_time`)."""
        h = self.encoder(x_t.T)
        new_states = []
        for block, state in zip(self.blocks, states):
            state, h = block.step(state, h)
            new_states.append(state)
        return new_states, h.T

    def classify(self, features: jax.Array) -> jax.Array:
        """Logits (B, classes) from time-pooled features (B, H)."""
        return self.head(features.T).T


def stream_logits(model: LRUClassifier, variables: dict, x: jax.Array) -> jax.Array:
    """Logits (B, classes) computed recurrently, one input step at a time: what a deployed model runs.

    Equals `model.apply(variables, x, train=False)` up to rounding; x is (B, L, d), without the time channel.
    """
    batch, length = x.shape[:2]
    x = with_time(x) if model.config.time_channel else x
    dtype = jnp.result_type(x.dtype, jnp.complex64)
    states = [jnp.zeros((batch, n), dtype) for n in model.state_sizes]

    def body(carry, x_t):
        states, total = carry
        states, h = model.apply(variables, states, x_t, method=LRUClassifier.step)
        return (states, total + h), None

    init = (states, jnp.zeros((batch, model.config.width), x.dtype))
    (_, total), _ = jax.lax.scan(body, init, jnp.swapaxes(x, 0, 1))
    return model.apply(variables, total / length, method=LRUClassifier.classify)


def time_channel(length: int, dtype=jnp.float32) -> jax.Array:
    """t / L for t = 0..L-1, (L,): the authors' time channel (`"time": "True"`, T = 1)."""
    return jnp.arange(length, dtype=dtype) / length


def with_time(x: jax.Array) -> jax.Array:
    """Inputs (B, L, d) -> (B, L, 1 + d) with the time channel first, as the authors' data pipeline feeds them."""
    t = jnp.broadcast_to(time_channel(x.shape[1], x.dtype)[None, :, None], (*x.shape[:2], 1))
    return jnp.concatenate([t, x], axis=-1)


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


