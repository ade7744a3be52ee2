"""Modern recurrences on the same :class:`~rnn_jax.cells.base.Cell` contract.

- :func:`lru`: Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural
  Networks for Long Sequences", arXiv 2303.06349).
- :func:`min_gru`, :func:`min_lstm`: Feng et al. 2024, "Were RNNs All We Needed?",
  arXiv 2410.01201 (the log-space forms of their appendix).
- :func:`slstm`: the scalar-memory LSTM of xLSTM (Beck et al. 2024, arXiv 2405.04517),
  exponential gating with the stabiliser state ``m``, block-diagonal heads.
- :func:`indrnn`: independently recurrent network (Li et al. 2018, arXiv 1803.04831).

The LRU, minGRU and minLSTM carries enter their update linearly, so these cells also
declare ``parallel_unroll`` (a ``jax.lax.associative_scan`` over time, see
:mod:`rnn_jax.parallel`). Every cell declares ``retention`` (see the Cell docstring).

The LRU's complex state is carried as a real pair ``(re, im)`` of float arrays, not as
complex64: every diagnostic (``grad_norms`` per carry leaf, explicit Jacobians,
``jacrev``), the float64 references and the ``jnp.where`` masking of padding then work
on real arrays only, and JAX's complex autodiff conventions (conjugated cotangents)
never enter user code. The cost is writing the complex product out by hand.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnn_jax import initializers as inits
from rnn_jax import parallel
from rnn_jax.cells.base import (Cell, ACTIVATIONS, batch_shape_tuple, bias_like, check_input,
                                check_size, params_check, split_gates)


def _row(v, like):
    """``v: [N]`` reshaped to broadcast against ``like: [*batch, N]`` without rank promotion."""
    return v.reshape((1,) * (like.ndim - v.ndim) + v.shape)


def _check_carry_tuple(carry, n, what, size):
    if not (isinstance(carry, (tuple, list)) and len(carry) == n):
        raise TypeError(f"{what} carry must be a tuple of {n} [..., {size}] arrays, "
                        f"got {type(carry).__name__}")


def _check_x(x, input_size):
    if x.ndim < 1 or x.shape[-1] != input_size:
        raise ValueError(f"x must have shape [..., input_size={input_size}] (the size given "
                         f"to init), got shape {tuple(x.shape)}")


def _check_leaves(carry, x, size, what):
    expected = tuple(x.shape[:-1]) + (size,)
    for leaf in carry:
        if tuple(leaf.shape) != expected:
            raise ValueError(f"{what} carry leaves must have shape {expected} (x's batch shape "
                             f"+ {size}), got {tuple(leaf.shape)}")


# ----------------------------------------------------------------------------- LRU

def lru(hidden_size: int, *, state_size: int | None = None, r_min: float = 0.0,
        r_max: float = 1.0, max_phase: float = 2 * math.pi, dtype=jnp.float32) -> Cell:
    """Linear Recurrent Unit (Orvieto et al. 2023), eqs. of their Sec. 3 and App. A::

        lambda   = exp(-exp(nu_log) + i exp(theta_log))            # [N], |lambda| < 1
        gamma    = exp(gamma_log)                                  # init sqrt(1 - |lambda|^2)
        x_k      = lambda * x_{k-1} + gamma * (u_k B)              # complex state [N]
        y_k      = Re(x_k C) + u_k D                               # [H]

    ``B = B_re + i B_im: [I, N]``, ``C = C_re + i C_im: [N, H]``. The paper has a diagonal
    ``D`` because its input and output widths agree; here ``D: [I, H]`` is dense so that
    ``I != H`` works (init ``N(0, 1/I)``; for ``I == H`` the paper's diagonal is a special
    case). ``gamma_log`` is trained, as in the paper's code (App. A).

    Initialisation (the paper's ring init, Lemma 3.2): ``|lambda|^2 ~ U[r_min^2, r_max^2]``,
    phase ``~ U[0, max_phase]``; ``B`` entries ``N(0, 1/(2I))`` per part, ``C`` entries
    ``N(0, 1/(2N))`` per part (unit-variance complex Gaussians scaled by ``1/sqrt(I)``,
    ``1/sqrt(N)``).

    Args:
      hidden_size: H, the output width.
      state_size: N, the complex state width (default H).
      r_min, r_max: the ring of the eigenvalue moduli, ``0 <= r_min <= r_max <= 1`` and
        ``r_min < 1``. With ``r_max = 1`` a draw of exactly 1 is avoided by keeping
        ``exp(nu_log) >= 1e-7`` (|lambda| <= 1 - 1e-7).
      max_phase: largest initial eigenvalue phase (the paper uses ``pi/10`` on LRA).

    Params: ``nu_log, theta_log, gamma_log: [N]``, ``B_re, B_im: [I, N]``,
    ``C_re, C_im: [N, H]``, ``D: [I, H]``. Carry: ``(x_re, x_im)``, each ``[*batch, N]``.
    """
    H = check_size("hidden_size", hidden_size)
    N = H if state_size is None else check_size("state_size", state_size)
    r_min, r_max = float(r_min), float(r_max)
    if not 0.0 <= r_min < 1.0:
        raise ValueError(f"r_min must lie in [0, 1), got {r_min}")
    if not 0.0 < r_max <= 1.0:
        raise ValueError(f"r_max must lie in (0, 1], got {r_max}")
    if r_min > r_max:
        raise ValueError(f"r_min must not exceed r_max, got r_min={r_min} > r_max={r_max}")
    if not (math.isfinite(max_phase) and max_phase > 0):
        raise ValueError(f"max_phase must be a positive finite float, got {max_phase!r}")

    def init(key, input_size):
        I = check_size("input_size", input_size)
        k1, k2, kb1, kb2, kc1, kc2, kd = jax.random.split(key, 7)
        u1 = jax.random.uniform(k1, (N,), dtype)
        u2 = jax.random.uniform(k2, (N,), dtype)
        mag2 = u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2
        # nu = -log|lambda| = -0.5 log|lambda|^2; kept >= 1e-7 so |lambda| < 1 strictly
        # and <= 80 so |lambda| = 0 (r_min = 0, u1 = 0) stays a finite parameter.
        nu = jnp.clip(-0.5 * jnp.log(jnp.maximum(mag2, 1e-30)), 1e-7, 80.0)
        theta = jnp.maximum(max_phase * u2, 1e-30)
        gamma = jnp.sqrt(-jnp.expm1(-2.0 * nu))  # sqrt(1 - |lambda|^2), accurate near 1
        s_b, s_c = 1.0 / math.sqrt(2 * I), 1.0 / math.sqrt(2 * N)
        return {"nu_log": jnp.log(nu), "theta_log": jnp.log(theta),
                "gamma_log": jnp.log(jnp.maximum(gamma, 1e-30)),
                "B_re": s_b * jax.random.normal(kb1, (I, N), dtype),
                "B_im": s_b * jax.random.normal(kb2, (I, N), dtype),
                "C_re": s_c * jax.random.normal(kc1, (N, H), dtype),
                "C_im": s_c * jax.random.normal(kc2, (N, H), dtype),
                "D": jax.random.normal(kd, (I, H), dtype) / math.sqrt(I)}

    def initial_carry(batch_shape=()):
        z = jnp.zeros(batch_shape_tuple(batch_shape) + (N,), dtype)
        return (z, z)

    check_params = params_check(f"an LRU (state_size={N})", H, init)

    def check(params, carry, x):
        _check_carry_tuple(carry, 2, "LRU", N)
        _check_x(x, check_params(params))
        _check_leaves(carry, x, N, "LRU")

    def step(params, carry, x):
        check(params, carry, x)
        x_re, x_im = carry
        l_re, l_im = lru_lambda(params)
        g = jnp.exp(params["gamma_log"])
        bu_re = x @ params["B_re"]
        bu_im = x @ params["B_im"]
        l_re, l_im, g = _row(l_re, x_re), _row(l_im, x_re), _row(g, x_re)
        new_re = l_re * x_re - l_im * x_im + g * bu_re
        new_im = l_re * x_im + l_im * x_re + g * bu_im
        y = new_re @ params["C_re"] - new_im @ params["C_im"] + x @ params["D"]
        return (new_re, new_im), y

    def retention(params, carry, x):
        check(params, carry, x)
        mod = jnp.exp(-jnp.exp(params["nu_log"]))
        return jnp.broadcast_to(_row(mod, carry[0]), carry[0].shape)

    def parallel_unroll(params, carry, xs, *, lengths=None, resets=None, reverse=False,
                        unroll=1):
        del unroll  # a scan-only option
        check(params, carry, jnp.zeros(xs.shape[1:], xs.dtype))
        l_re, l_im = lru_lambda(params)
        bu_re, bu_im = xs @ params["B_re"], xs @ params["B_im"]
        g = _row(jnp.exp(params["gamma_log"]), bu_re)
        final, (hs_re, hs_im) = parallel.complex_linear_scan(
            (l_re, l_im), (g * bu_re, g * bu_im), tuple(carry), lengths=lengths,
            resets=resets, reverse=reverse)
        ys = hs_re @ params["C_re"] - hs_im @ params["C_im"] + xs @ params["D"]
        return final, parallel.zero_padding(ys, lengths)

    return Cell(init, initial_carry, step, H, (), parallel_unroll=parallel_unroll,
                retention=retention)


def lru_lambda(params):
    """``(Re lambda, Im lambda)``, each ``[N]``, from ``nu_log`` and ``theta_log``."""
    mod = jnp.exp(-jnp.exp(params["nu_log"]))
    theta = jnp.exp(params["theta_log"])
    return mod * jnp.cos(theta), mod * jnp.sin(theta)


# ------------------------------------------------------------------- minGRU / minLSTM

def log_g(k):
    """``log g(k)`` with ``g(k) = k + 0.5`` for ``k >= 0`` and ``sigmoid(k)`` below (Feng et al.
    2024, App. B: a continuous positive activation so the candidate state has a log)."""
    # Both branches finite everywhere, so the unselected branch's gradient is never NaN.
    return jnp.where(k >= 0, jnp.log(jax.nn.relu(k) + 0.5), -jax.nn.softplus(-k))


def g_act(k):
    """``g(k) = k + 0.5`` for ``k >= 0``, ``sigmoid(k)`` below: continuous and positive."""
    return jnp.where(k >= 0, jax.nn.relu(k) + 0.5, jax.nn.sigmoid(k))


def _dense_x_init(kernel_init, dtype, H, n):
    def init(key, input_size):
        I = check_size("input_size", input_size)
        keys = jax.random.split(key, n)
        w_x = jnp.concatenate([kernel_init(k, (I, H), dtype) for k in keys], axis=-1)
        return {"w_x": w_x, "b": jnp.zeros((n * H,), dtype)}
    return init


def _pre(params, x, n):
    zx = x @ params["w_x"]
    return split_gates(zx + bias_like(params["b"], zx), n)


def _min_lstm_linear(params, x):
    k_f, k_i, k_h = _pre(params, x, 3)
    f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
    return f / (f + i), i / (f + i), k_h


def min_gru_gates(params, x, H):
    """``(log(1 - z), log z + log h_tilde)`` of minGRU, each ``[..., H]``; ``x: [..., I]``."""
    k_z, k_h = _pre(params, x, 2)
    # log(1 - sigmoid(k)) = -softplus(k), log sigmoid(k) = -softplus(-k).
    return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(k_h)


def min_gru(hidden_size: int, *, kernel_init: str | inits.Initializer = inits.glorot_uniform,
            dtype=jnp.float32) -> Cell:
    """minGRU (Feng et al. 2024, Sec. 3.1 and App. B, log-space version)::

        z_t = sigmoid(x_t W_z + b_z),   h~_t = g(x_t W_h + b_h)
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t,   y_t = h_t

    with ``g(k) = k + 0.5`` (k >= 0), ``sigmoid(k)`` (k < 0), so ``h~ > 0`` and the parallel
    path can run in log space (the paper's "log-space" minGRU). The step computes it in
    linear space, the parallel path in log space; both use g, so they compute one
    function. The gates see ``x_t`` only, so ``d h_t / d h_{t-1} = diag(1 - z_t)``.

    Gate blocks ``("z", "h")``. Params: ``w_x: [I, 2H]``, ``b: [2H]``. Carry: ``h: [*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    init = _dense_x_init(inits.resolve(kernel_init, "kernel_init"), dtype, H, 2)
    check_params = params_check("a minGRU", H, init)

    def check(params, h, x):
        check_input(x, params, h, H, check_params)

    def step(params, h, x):
        # Linear space here; the parallel path computes the same function in log space.
        check(params, h, x)
        k_z, k_h = _pre(params, x, 2)
        h = jax.nn.sigmoid(-k_z) * h + jax.nn.sigmoid(k_z) * g_act(k_h)
        return h, h

    def retention(params, h, x):
        check(params, h, x)
        return jax.nn.sigmoid(-_pre(params, x, 2)[0])  # 1 - z

    return Cell(init, _zeros(H, dtype), step, H, ("z", "h"),
                parallel_unroll=_log_space_path(lambda p, x: min_gru_gates(p, x, H), check),
                retention=retention)


def min_lstm_gates(params, x, H):
    """``(log f', log i' + log h~)`` of minLSTM, each ``[..., H]``."""
    k_f, k_i, k_h = _pre(params, x, 3)
    # f' = f/(f+i) = 1/(1 + i/f) and log(i/f) = softplus(-k_f) - softplus(-k_i).
    diff = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
    return -jax.nn.softplus(diff), -jax.nn.softplus(-diff) + log_g(k_h)


def min_lstm(hidden_size: int, *, kernel_init: str | inits.Initializer = inits.glorot_uniform,
             dtype=jnp.float32) -> Cell:
    """minLSTM (Feng et al. 2024, Sec. 3.2 and App. B, log-space version)::

        f_t = sigmoid(x_t W_f + b_f),   i_t = sigmoid(x_t W_i + b_i)
        f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t)
        h~_t = g(x_t W_h + b_h),        h_t = f'_t * h_{t-1} + i'_t * h~_t,   y_t = h_t

    (g as in :func:`min_gru`). Gate blocks ``("f", "i", "h")``. Params: ``w_x: [I, 3H]``,
    ``b: [3H]``. Carry: ``h: [*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    init = _dense_x_init(inits.resolve(kernel_init, "kernel_init"), dtype, H, 3)
    check_params = params_check("a minLSTM", H, init)

    def check(params, h, x):
        check_input(x, params, h, H, check_params)

    def step(params, h, x):
        # Linear space here; the parallel path computes the same function in log space.
        check(params, h, x)
        f_n, i_n, k_h = _min_lstm_linear(params, x)
        h = f_n * h + i_n * g_act(k_h)
        return h, h

    def retention(params, h, x):
        check(params, h, x)
        return _min_lstm_linear(params, x)[0]  # f'

    return Cell(init, _zeros(H, dtype), step, H,
                ("f", "i", "h"),
                parallel_unroll=_log_space_path(lambda p, x: min_lstm_gates(p, x, H), check),
                retention=retention)


def _log_space_path(gates, check):
    """The parallel :data:`~rnn_jax.cells.base.SequencePath` of a cell whose step is
    ``h = exp(log_a) h + exp(log_b)`` with ``(log_a, log_b) = gates(params, x)``."""
    def parallel_unroll(params, carry, xs, *, lengths=None, resets=None, reverse=False,
                        unroll=1):
        del unroll  # a scan-only option
        check(params, carry, jnp.zeros(xs.shape[1:], xs.dtype))
        log_a, log_b = gates(params, xs)
        final, hs = parallel.log_linear_scan(log_a, log_b, carry, lengths=lengths,
                                             resets=resets, reverse=reverse)
        return final, parallel.zero_padding(hs, lengths)
    return parallel_unroll


def _zeros(H, dtype, n=1):
    def initial_carry(batch_shape=()):
        z = jnp.zeros(batch_shape_tuple(batch_shape) + (H,), dtype)
        return z if n == 1 else tuple(z for _ in range(n))
    return initial_carry


# ---------------------------------------------------------------------------- sLSTM

_FORGET = ("sigmoid", "exp")


def slstm(hidden_size: int, *, num_heads: int = 1, forget_gate: str = "sigmoid",
          forget_bias: float = 1.0, kernel_init: str | inits.Initializer = inits.glorot_uniform,
          recurrent_init: str | inits.Initializer = inits.orthogonal, dtype=jnp.float32) -> Cell:
    """sLSTM of xLSTM (Beck et al. 2024, Sec. 2.2, eqs. 8-17), stabilised::

        [i~, f~, z~, o~] = x_t W + h_{t-1} R + b        # R block-diagonal, one block per head
        z_t = tanh(z~),  o_t = sigmoid(o~)
        log f_t = f~ (forget_gate="exp")  or  log sigmoid(f~) ("sigmoid");  log i_t = i~
        m_t  = max(log f_t + m_{t-1}, log i_t)          # stabiliser
        i'_t = exp(log i_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
        c_t = f'_t c_{t-1} + i'_t z_t,  n_t = f'_t n_{t-1} + i'_t
        h_t = o_t * c_t / n_t,  y_t = h_t

    The stabilised ``c, n`` are the unstabilised ones times ``exp(-m_t)``, so ``h`` equals
    the unstabilised ``o * c / n`` wherever that one does not overflow (tested). The carry
    starts at zeros, ``m_{-1} = 0`` included (as the reference code's zero state); ``n_0``
    is then ``exp(i~_0 - m_0) > 0`` unless ``i~_0 < log f_0 - 87``, far outside any init.

    Args:
      num_heads: the recurrent matrices are block-diagonal with ``num_heads`` blocks of
        ``H / num_heads`` (each head mixes only its own units); must divide H.
      forget_gate: ``"sigmoid"`` (default) or ``"exp"``.
      forget_bias: initial forget-gate bias (other biases start at 0).
      kernel_init, recurrent_init: for ``w_x`` and each ``[d, d]`` head block of each gate.

    Gate blocks ``("i", "f", "z", "o")``. Params: ``w_x: [I, 4H]``, ``r: [num_heads, d, 4, d]``
    (head k's block of gate g is ``r[k, :, g, :]``), ``b: [4H]``. Carry ``(h, c, n, m)``,
    each ``[*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    NH = check_size("num_heads", num_heads)
    if H % NH:
        raise ValueError(f"num_heads must divide hidden_size, got num_heads={NH} and "
                         f"hidden_size={H}")
    if forget_gate not in _FORGET:
        raise ValueError(f"forget_gate must be one of {_FORGET}, got {forget_gate!r}")
    d = H // NH
    kernel_init = inits.resolve(kernel_init, "kernel_init")
    recurrent_init = inits.resolve(recurrent_init, "recurrent_init")

    def init(key, input_size):
        I = check_size("input_size", input_size)
        k_x, k_r = jax.random.split(key)
        w_x = jnp.concatenate([kernel_init(k, (I, H), dtype) for k in jax.random.split(k_x, 4)],
                              axis=-1)
        blocks = [recurrent_init(k, (d, d), dtype) for k in jax.random.split(k_r, 4 * NH)]
        r = jnp.stack(blocks).reshape(NH, 4, d, d).transpose(0, 2, 1, 3)
        b = jnp.zeros((4 * H,), dtype).at[H:2 * H].set(forget_bias)
        return {"w_x": w_x, "r": r, "b": b}

    check_params = params_check(f"an sLSTM (num_heads={NH})", H, init)

    def pre(params, carry, x):
        _check_carry_tuple(carry, 4, "sLSTM", H)
        h, c, n, m = carry
        check_input(x, params, h, H, check_params)
        _check_leaves(carry, x, H, "sLSTM")
        hh = h.reshape(h.shape[:-1] + (NH, d))
        zr = jnp.einsum("...kd,kdge->...gke", hh, params["r"]).reshape(h.shape[:-1] + (4 * H,))
        zx = x @ params["w_x"]
        z = zx + zr + bias_like(params["b"], zx)
        k_i, k_f, k_z, k_o = split_gates(z, 4)
        log_f = k_f if forget_gate == "exp" else -jax.nn.softplus(-k_f)
        m_new = jnp.maximum(log_f + m, k_i)
        i_s = jnp.exp(k_i - m_new)
        f_s = jnp.exp(log_f + m - m_new)
        c_new = f_s * c + i_s * jnp.tanh(k_z)
        n_new = f_s * n + i_s
        h_new = jax.nn.sigmoid(k_o) * c_new / n_new
        return (h_new, c_new, n_new, m_new), f_s

    def step(params, carry, x):
        new, _ = pre(params, carry, x)
        return new, new[0]

    def retention(params, carry, x):
        # h~ = c/n obeys h~_t = (f' n_{t-1}/n_t) h~_{t-1} + (i'/n_t) z_t, a convex
        # combination: f' n_{t-1}/n_t is the fraction of the normalised memory kept, the
        # sLSTM's effective forget. It is stabiliser-invariant (= f n_{t-1}/n_t unstabilised)
        # and lies in [0, 1], unlike f' alone, which jumps with m.
        (_, _, n_new, _), f_s = pre(params, carry, x)
        return f_s * carry[2] / n_new

    return Cell(init, _zeros(H, dtype, 4), step, H, ("i", "f", "z", "o"), retention=retention)


# --------------------------------------------------------------------------- IndRNN

def indrnn(hidden_size: int, *, activation: str = "relu", recurrent_max: float | None = None,
           recurrent_init_max: float = 1.0,
           kernel_init: str | inits.Initializer = inits.glorot_uniform, dtype=jnp.float32) -> Cell:
    """IndRNN (Li et al. 2018, eq. 2): ``h_t = act(x_t W + u * h_{t-1} + b)``, ``y_t = h_t``.

    Each unit sees only its own past (``u: [H]`` is a diagonal recurrence), so
    ``d h_t / d h_{t-1} = diag(u * act'(.))`` and the gradient over a lag k is a product of
    k scalars per unit, which the paper keeps in range by capping ``|u|``.

    Args:
      activation: ``"relu"`` (the paper's) or ``"tanh"``.
      recurrent_max: if set, ``u`` is used clipped to ``[-recurrent_max, recurrent_max]``
        (the paper clips after each update; e.g. ``2 ** (1 / T)`` for relu so that a
        unit's gradient grows at most 2x over T steps). Clipping in the forward pass gives
        the same values as clipping the stored weight; a weight beyond the cap gets zero
        gradient instead of being moved back.
      recurrent_init_max: ``u ~ U[0, recurrent_init_max]`` (capped by ``recurrent_max``).

    Params: ``w_x: [I, H]``, ``u: [H]``, ``b: [H]``. Carry: ``h: [*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if recurrent_max is not None and not (math.isfinite(recurrent_max) and recurrent_max > 0):
        raise ValueError(f"recurrent_max must be None or a positive finite float, "
                         f"got {recurrent_max!r}")
    act = ACTIVATIONS[activation]
    hi = recurrent_init_max if recurrent_max is None else min(recurrent_init_max, recurrent_max)
    kernel_init = inits.resolve(kernel_init, "kernel_init")

    def init(key, input_size):
        I = check_size("input_size", input_size)
        k_x, k_u = jax.random.split(key)
        return {"w_x": kernel_init(k_x, (I, H), dtype),
                "u": jax.random.uniform(k_u, (H,), dtype, 0.0, hi),
                "b": jnp.zeros((H,), dtype)}

    def u_eff(params):
        u = params["u"]
        return u if recurrent_max is None else jnp.clip(u, -recurrent_max, recurrent_max)

    check_params = params_check("an IndRNN", H, init)

    def pre(params, h, x):
        check_input(x, params, h, H, check_params)
        zx = x @ params["w_x"]
        return zx + _row(u_eff(params), h) * h + bias_like(params["b"], zx)

    def step(params, h, x):
        h = act(pre(params, h, x))
        return h, h

    def retention(params, h, x):
        # The exact diagonal Jacobian entry |u act'(z)|: relu keeps u * h_{t-1} while the
        # unit is active and nothing when it is off; tanh scales by 1 - h_t^2.
        z = pre(params, h, x)
        slope = jax.vmap(jax.grad(act))(z.reshape(-1)).reshape(z.shape)
        return jnp.abs(_row(u_eff(params), h)) * slope

    return Cell(init, _zeros(H, dtype), step, H, ("h",), retention=retention)


__all__ = ["indrnn", "lru", "min_gru", "min_lstm", "slstm"]
