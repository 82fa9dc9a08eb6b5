"""The Linear Recurrent Unit (Orvieto et al., 2023): parameters, initialisation and exact recurrences.

One LRU layer with state size N and width H maps an input sequence u (L, H) to y (L, H):

    x_k = lambda * x_{k-1} + B u_k,        y_k = Re(C x_k) + D * u_k,        x_0 = 0,

with lambda = exp(-exp(nu_log) + i exp(theta_log)) (N complex eigenvalues, |lambda| < 1) and
B = gamma * (B_re + i B_im), gamma = exp(gamma_log). Everything here is a pure function of arrays for
ONE sequence; batch with `jax.vmap`. Three recurrences compute the same zero-state response Re(C x_k)
(`response`; the LRU output adds D * u); they differ in cost:

- ``scan``:        `lax.scan` over time, O(L N) sequential work after the (L, H) x (H, N) input product;
- ``associative``: `lax.associative_scan`, O(L N log L) work but O(log L) depth (the paper's choice, GPU);
- ``conv``:        causal convolution of u with the closed-form kernel K_t = Re(C diag(lambda^t) B) (L, H, H)
                   through a real FFT; the kernel costs L H^2 N once per batch instead of L N H per sequence,
                   so it wins when H is small (sMNIST) and loses when H is large (sCIFAR).
"""

import typing
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from compressm.errors import InvalidSystem

Recurrence = Literal["scan", "associative", "conv"]
RECURRENCES: tuple[str, ...] = typing.get_args(Recurrence)

STATE_PARAMS = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")  # lambda and B: what drives the state
PARAMS = (*STATE_PARAMS, "C_re", "C_im", "D")  # the keys of one LRU layer's parameter dict
MIN_PHASE = 1e-10  # `params_from_system` floors theta here (rad) so that theta_log stays finite for real lambda
# A mode with |lambda| >= 1 - STABILITY_EPS counts as on the unit circle, and the reduction and `params_from_system`
# refuse it. Trained LRUs stay far inside: init's r_max 0.999 gives 1 - 1e-3, and the closest mode of any committed
# record is 1 - 5e-6 (a paper-profile N = 13 run after 200k steps). Yet lambda = -1 (nu_log = -inf) evaluates to
# |lambda| = 1 - 1.1e-16; 1e-7 is two float32 rounding steps below 1, so a float32 reduction resolves it too.
STABILITY_EPS = 1e-7


# ----------------------------------------------------------------------------------------------------------
# Parameterisation and initialisation
# ----------------------------------------------------------------------------------------------------------
def init_nu_log(key: jax.Array, n: int, r_min: float, r_max: float) -> jax.Array:
    """nu_log (N,) so that |lambda|^2 ~ U[r_min^2, r_max^2] (the paper: r_min 0.9, r_max 0.999)."""
    u = jax.random.uniform(key, (n,))
    return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))


def init_theta_log(key: jax.Array, n: int, max_phase: float) -> jax.Array:
    """theta_log (N,) so that the phase ~ U[0, max_phase] (the paper: 6.28)."""
    return jnp.log(max_phase * jax.random.uniform(key, (n,)))


def init_B_part(key: jax.Array, n: int, width: int) -> jax.Array:
    """B_re or B_im (N, H) ~ N(0, 1) / sqrt(2H)."""
    return jax.random.normal(key, (n, width)) / jnp.sqrt(2.0 * width)


def init_C_part(key: jax.Array, width: int, n: int) -> jax.Array:
    """C_re or C_im (H, N) ~ N(0, 1) / sqrt(N)."""
    return jax.random.normal(key, (width, n)) / jnp.sqrt(1.0 * n)


def init_params(key: jax.Array, n: int, width: int, r_min: float, r_max: float, max_phase: float) -> dict:
    """A whole LRU parameter dict (N states, H = width), initialised as in the paper; D ~ N(0, 1)."""
    k = jax.random.split(key, 7)
    nu_log = init_nu_log(k[0], n, r_min, r_max)
    return {
        "nu_log": nu_log, "theta_log": init_theta_log(k[1], n, max_phase), "gamma_log": gamma_log_for(nu_log),
        "B_re": init_B_part(k[2], n, width), "B_im": init_B_part(k[3], n, width),
        "C_re": init_C_part(k[4], width, n), "C_im": init_C_part(k[5], width, n),
        "D": jax.random.normal(k[6], (width,)),
    }


def gamma_log_for(nu_log: jax.Array) -> jax.Array:
    """gamma_log (N,) = log sqrt(1 - |lambda|^2), the input normalisation of the LRU."""
    return 0.5 * jnp.log1p(-jnp.exp(-2.0 * jnp.exp(nu_log)))


def lambdas_from(nu_log: jax.Array, theta_log: jax.Array) -> jax.Array:
    """Eigenvalues lambda (N,) complex from nu_log, theta_log (N,) real."""
    return jnp.exp(-jnp.exp(nu_log) + 1j * jnp.exp(theta_log))


def system_from(params: dict) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The diagonal system (lambdas (N,), B (N, H), C (H, N), D (H,)) of an LRU parameter dict.

    B includes gamma; lambdas, B, C are complex, D is real.
    """
    lambdas = lambdas_from(params["nu_log"], params["theta_log"])
    gamma = jnp.exp(params["gamma_log"])
    B = (params["B_re"] + 1j * params["B_im"]) * gamma[:, None]
    C = params["C_re"] + 1j * params["C_im"]
    return lambdas, B, C, params["D"]


# ----------------------------------------------------------------------------------------------------------
# Recurrences: the zero-state response y_t = Re(C x_t) of inputs x (L, d) through B (N, d)
# ----------------------------------------------------------------------------------------------------------
def scan_response(lambdas, B, C, x):
    """Response y (L, H) with a sequential `lax.scan` over time."""
    Bx = x.astype(B.dtype) @ B.T  # (L, N)

    def step(state, bx):
        state = lambdas * state + bx
        return state, state

    _, states = jax.lax.scan(step, jnp.zeros_like(Bx[0]), Bx)
    return (states @ C.T).real


def _combine(left, right):
    """Composition of two affine maps x -> a x + b (the associative operator of a diagonal recurrence)."""
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def associative_response(lambdas, B, C, x):
    """Response y (L, H) with a parallel `lax.associative_scan` over time."""
    Bx = x.astype(B.dtype) @ B.T  # (L, N)
    powers = jnp.broadcast_to(lambdas, Bx.shape)
    _, states = jax.lax.associative_scan(_combine, (powers, Bx))
    return (states @ C.T).real


def geometric_powers(lambdas: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Re and Im of lambda^t, each (L, N) real, for t = 0..L-1 and lambdas (N,) complex.

    lambda^(q S + r) = (lambda^S)^q lambda^r with S ~ sqrt(L): two small tables of powers, (L / S, N) and
    (S, N), by parallel prefix products, then one complex product per entry, in real arithmetic: no cos or
    sin per entry (XLA's CPU code for them is slow, and it recomputes them inside fused consumers). In
    float32 the error stays below 3e-5 at L = 784 even for |lambda| near 1 (a running product's is ~3e-6;
    exp(t log lambda)'s ~2e-4, from the rounding of the angle t theta).
    """
    s = max(1, round(length**0.5))
    lam = (lambdas.real, lambdas.imag)
    re_r, im_r = _prefix_powers(lam, s)  # lambda^r, r < S
    re_q, im_q = _prefix_powers(_complex_mul((re_r[-1], im_r[-1]), lam), -(-length // s))  # lambda^(q S)
    re = re_q[:, None, :] * re_r[None] - im_q[:, None, :] * im_r[None]
    im = re_q[:, None, :] * im_r[None] + im_q[:, None, :] * re_r[None]
    n = lambdas.shape[0]
    return re.reshape(-1, n)[:length], im.reshape(-1, n)[:length]


def _complex_mul(x, y):
    """(Re, Im) of the product of x = (Re, Im) and y = (Re, Im)."""
    return x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0]


def _prefix_powers(z, count: int):
    """(Re, Im) of z^k for k = 0..count-1, each (count, N), from z = (Re, Im) (N,), by `lax.associative_scan`."""
    one = (jnp.ones_like(z[0]), jnp.zeros_like(z[1]))
    elems = tuple(jnp.concatenate([o[None], jnp.broadcast_to(x, (count - 1, *x.shape))]) for o, x in zip(one, z))
    return jax.lax.associative_scan(_complex_mul, elems)


def lru_kernel(lambdas, B, C, length: int) -> jax.Array:
    """Impulse-response kernel K (L, H, d), K_t = Re(C diag(lambda^t) B), for t = 0..L-1; B is (N, d).

    One real matrix product [Re P, Im P] (L, 2N) @ [Re W; -Im W] (2N, H d), with P_tn = lambda_n^t from
    `geometric_powers` and W_n = outer(C[:, n], B[n, :]): complex arithmetic is several times slower on CPU.
    """
    n, d = B.shape
    P = jnp.concatenate(geometric_powers(lambdas, length), axis=1)  # (L, 2N)
    W = (C.T[:, :, None] * B[:, None, :]).reshape(n, -1)  # (N, H d)
    W = jnp.concatenate([W.real, -W.imag], axis=0)
    # full float32 products even where the backend defaults to TF32 (GPUs): the kernel is reused at every lag
    return jnp.matmul(P, W, precision=jax.lax.Precision.HIGHEST).reshape(length, C.shape[0], d)


def _mix_channels(K_f: jax.Array, u_f: jax.Array) -> jax.Array:
    """y_f[i, f] = sum_j K_f[i, j, f] u_f[j, f] for K_f (H, d, F), u_f (d, F).

    Small H: a broadcast multiply-add, several times faster on CPU than XLA's batched matrix product of
    tiny matrices; large H: the product (the broadcast would hold H d F values per sequence).
    """
    if K_f.shape[0] <= 16:
        return jnp.sum(K_f * u_f[None, :, :], axis=1)
    return jnp.einsum("ijf,jf->if", K_f, u_f)


def conv_response(lambdas, B, C, x):
    """Response y (L, H), y_t = sum_k K_k x_(t-k), as the causal convolution with `lru_kernel` through a real FFT.

    Channels first with the FFT over the last (contiguous) axis, of length 2L: enough for a linear (not
    circular) convolution of two length-L signals. The kernel costs L H d N once per batch instead of the
    scans' L N d per sequence, so it wins when H d is small (sMNIST), and its input FFTs are d per sequence.
    """
    length = x.shape[0]
    n = 2 * length
    K_f = jnp.fft.rfft(jnp.moveaxis(lru_kernel(lambdas, B, C, length), 0, -1), n=n)  # (H, d, F)
    x_f = jnp.fft.rfft(x.T, n=n)  # (d, F)
    return jnp.fft.irfft(_mix_channels(K_f, x_f), n=n)[:, :length].T


_RESPONSE = {"scan": scan_response, "associative": associative_response, "conv": conv_response}


def response(recurrence: Recurrence, lambdas, B, C, x):
    """Zero-state response y (L, H) of inputs x (L, d): y_t = Re(C s_t), s_t = lambda * s_(t-1) + B x_t, B (N, d).

    Every recurrence computes the same y. By linearity, an input u = x A^T that is the image of d < H
    channels has the response of x through B A^T: d channels of work instead of H.
    """
    return _RESPONSE[recurrence](lambdas, B, C, x)


def apply_lru(recurrence: Recurrence, lambdas, B, C, D, u):
    """LRU output y (L, H) = response + D * u of one sequence u (L, H) with the named recurrence."""
    return response(recurrence, lambdas, B, C, u) + D * u


CONV_MAX_WIDTH = 64  # the widest H of the CPU sweep, where the FFT convolution is still the fastest at every N


def choose_recurrence(backend: str, width: int) -> Recurrence:
    """The fastest exact recurrence for this backend and width H (rule read off `compressm bench`'s sweep).

    CPU: the FFT convolution for H <= CONV_MAX_WIDTH, else the sequential scan. Measured on 2 cores with the
    sMNIST model (one block, L = 784, batch 50; `width_sweep` records, H = 8-64 x N = 8-256), the convolution
    is the fastest at every point: its first block convolves the one input channel, and the kernel cost
    L H N is paid once per batch, against the scan's B L N per channel. The state size does not change the
    pick anywhere in that grid. Wider models pay the full L H^2 N kernel in every later block, and the scan
    wins (the associative scan is slower than the sequential one on a CPU at every shape measured).
    GPU: the associative scan. Measured on an H100 (H = 8 to 512 at N = 64, and the sMNIST and sCIFAR steps
    at every state size of the paper), it is the fastest or within 0.3 ms of it, and 4-6x faster than the
    sequential scan at the sCIFAR shapes.
    """
    if backend != "cpu":
        return "associative"
    return "conv" if width <= CONV_MAX_WIDTH else "scan"


# ----------------------------------------------------------------------------------------------------------
# Streaming (recurrent) inference: one step per input
# ----------------------------------------------------------------------------------------------------------
def lru_step(lambdas, B, C, D, x, u_t):
    """One recurrent step: state x (N,) complex, input u_t (H,) -> (new state (N,), output y_t (H,))."""
    x = lambdas * x + B @ u_t.astype(B.dtype)
    return x, (C @ x).real + D * u_t


# ----------------------------------------------------------------------------------------------------------
# From a diagonal system back to parameters (host, numpy: a new state size compiles nothing)
# ----------------------------------------------------------------------------------------------------------
def state_size(params: dict) -> int:
    """N, the number of states of an LRU parameter dict."""
    return int(params["nu_log"].shape[0])


def params_from_system(lambdas, B, C, D) -> dict:
    """The LRU parameter dict of a diagonal system: the inverse of `system_from`.

    lambdas (N,) complex with 0 < |lambda| < 1 - STABILITY_EPS, B (N, H) complex (gamma included), C (H, N)
    complex, D (H,) real, all finite (else InvalidSystem). gamma is set to sqrt(1 - |lambda|^2), the LRU's
    normalisation, and B is stored as B / gamma. Phases are floored at MIN_PHASE. Computed on the host; the arrays
    are put on the device in the dtype of D.
    """
    lambdas, B, C = np.asarray(lambdas), np.asarray(B), np.asarray(C)
    if not all(np.all(np.isfinite(M)) for M in (lambdas, B, C, D)):
        raise InvalidSystem("lambda, B, C or D has NaN or infinite entries: no LRU parameters")
    radius = np.abs(lambdas)
    if not np.all((radius > 0) & (radius < 1 - STABILITY_EPS)):
        raise InvalidSystem(f"|lambda| spans [{radius.min():.3g}, {radius.max():.17g}]; LRU parameters need each"
                            f" in (0, 1 - {STABILITY_EPS}) (lru.STABILITY_EPS)")
    decay = -np.log(radius)
    phase = np.maximum(np.mod(np.angle(lambdas), 2 * np.pi), MIN_PHASE)
    gamma = np.sqrt(-np.expm1(-2.0 * decay))  # sqrt(1 - |lambda|^2)
    B = B / gamma[:, None]
    values = (np.log(decay), np.log(phase), np.log(gamma), B.real, B.imag, C.real, C.imag, D)
    dtype = np.asarray(D).dtype
    return {name: jax.device_put(np.asarray(value, dtype)) for name, value in zip(PARAMS, values)}


def select_states(params: dict, keep) -> dict:
    """The LRU layer restricted to its diagonal states `keep` (r,) indices: nu_log (r,), B (r, H), C (H, r).

    D is unchanged. Sliced on the host, so a new r compiles nothing.
    """
    take = lambda name, x: jax.device_put(np.take(np.asarray(x), keep, axis=-1 if name.startswith("C") else 0))
    return {name: x if name == "D" else take(name, x) for name, x in params.items()}
