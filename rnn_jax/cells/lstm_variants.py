"""LSTM variants with their own parameters: layer-normalised (Ba et al. 2016) and projected (LSTMP).

Both keep the classic LSTM's layout (``w_x: [I, 4H]``, ``w_h: [R, 4H]``, ``b: [4H]``,
gate blocks in the order ``("i", "f", "g", "o")``) and add their own arrays, so the
weight converters, the optimizer's recurrent-weight options and the diagnostics read
them the same way. Neither has a fused fast path: ``unroll`` runs the plain scan.
"""

import jax
import jax.numpy as jnp

from rnn_jax import initializers as inits
from rnn_jax.cells.base import (Cell, batch_shape_tuple, bias_like, check_size, dense_init,
                                params_check)
from rnn_jax.gates import lstm_pointwise

_GATES = ("i", "f", "g", "o")


def _check_pair(carry, widths, name):
    if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
        raise TypeError(f"{name} carry must be a pair (h, c) of [..., {widths[0]}] and "
                        f"[..., {widths[1]}] arrays, got {type(carry).__name__}")
    h, c = carry
    for leaf, width, what in ((h, widths[0], "h"), (c, widths[1], "c")):
        if not hasattr(leaf, "shape") or leaf.shape[-1:] != (width,):
            raise ValueError(f"{name} carry {what} must have shape [..., {width}], got "
                             f"{getattr(leaf, 'shape', type(leaf).__name__)}")
    return h, c


def _check_x(x, params, batch_shape, check_params):
    input_size = check_params(params)
    if x.ndim < 1 or x.shape[-1] != input_size:
        raise ValueError(f"x must have shape [..., input_size={input_size}] (the size given "
                         f"to init), got shape {tuple(x.shape)}")
    if tuple(x.shape[:-1]) != tuple(batch_shape):
        raise ValueError(f"x's batch shape {tuple(x.shape[:-1])} must equal the carry's "
                         f"{tuple(batch_shape)}")


def _initial_pair(h_width, c_width, dtype):
    def initial_carry(batch_shape=()):
        batch_shape = batch_shape_tuple(batch_shape)
        return (jnp.zeros(batch_shape + (h_width,), dtype), jnp.zeros(batch_shape + (c_width,), dtype))
    return initial_carry


def _forget_bias(H, forget_bias, dtype):
    return jnp.concatenate([jnp.zeros((H,), dtype), jnp.full((H,), forget_bias, dtype),
                            jnp.zeros((2 * H,), dtype)])


def layer_norm(z, scale, offset, eps: float):
    """Layer normalisation over the last axis: ``scale * (z - mean) / sqrt(var + eps) + offset``.

    ``z: [..., N]``, ``scale``/``offset: [N]``. The statistics are those of one example's
    N summed inputs (Ba et al. 2016, eq. 4), never of the batch.
    """
    mean = jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(z - mean), axis=-1, keepdims=True)
    return (z - mean) * jax.lax.rsqrt(var + eps) * bias_like(scale, z) + bias_like(offset, z)


def layer_norm_lstm(hidden_size: int, *, forget_bias: float = 1.0, eps: float = 1e-5,
                    kernel_init: str | inits.Initializer = inits.glorot_uniform,
                    recurrent_init: str | inits.Initializer = inits.orthogonal,
                    dtype=jnp.float32) -> Cell:
    """Layer-normalised LSTM of Ba, Kiros & Hinton 2016 (arXiv 1607.06450, section 6)::

        z_t = LN(h_{t-1} W_h; s_h, o_h) + LN(x_t W_x; s_x, o_x) + b       # [*batch, 4H]
        i, f, g, o = split(z_t)
        c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g)
        h_t = sigma(o) * tanh(LN(c_t; s_c, o_c)),   y_t = h_t

    The recurrent and the input contributions are normalised apart, each over all 4H
    gate pre-activations, and the cell state over its H units. Scales start at 1 and
    offsets at 0; ``b`` carries ``forget_bias`` on the forget block as in ``cells.lstm``.

    Params: ``w_x: [I, 4H]``, ``w_h: [H, 4H]``, ``b: [4H]``, ``ln_x_scale``,
    ``ln_x_offset``, ``ln_h_scale``, ``ln_h_offset: [4H]``, ``ln_c_scale``,
    ``ln_c_offset: [H]``. Carry: ``(h, c)``, each ``[*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    kernel_init = inits.resolve(kernel_init, "kernel_init")
    recurrent_init = inits.resolve(recurrent_init, "recurrent_init")

    def init(key, input_size):
        input_size = check_size("input_size", input_size)
        w_x, w_h = dense_init(key, input_size, H, 4, kernel_init, recurrent_init, dtype)
        ones4, zeros4 = jnp.ones((4 * H,), dtype), jnp.zeros((4 * H,), dtype)
        return {"w_x": w_x, "w_h": w_h, "b": _forget_bias(H, forget_bias, dtype),
                "ln_x_scale": ones4, "ln_x_offset": zeros4,
                "ln_h_scale": ones4, "ln_h_offset": zeros4,
                "ln_c_scale": jnp.ones((H,), dtype), "ln_c_offset": jnp.zeros((H,), dtype)}

    check_params = params_check("a layer-norm LSTM", H, init)

    def pre_activations(params, carry, x):
        h, c = _check_pair(carry, (H, H), "layer_norm_lstm")
        _check_x(x, params, h.shape[:-1], check_params)
        z = (layer_norm(h @ params["w_h"], params["ln_h_scale"], params["ln_h_offset"], eps)
             + layer_norm(x @ params["w_x"], params["ln_x_scale"], params["ln_x_offset"], eps))
        z = z + bias_like(params["b"], z)
        return dict(zip(_GATES, jnp.split(z, 4, axis=-1))), c

    def step(params, carry, x):
        z, c_prev = pre_activations(params, carry, x)
        f, i = jax.nn.sigmoid(z["f"]), jax.nn.sigmoid(z["i"])
        c = f * c_prev + i * jnp.tanh(z["g"])
        h = jax.nn.sigmoid(z["o"]) * jnp.tanh(
            layer_norm(c, params["ln_c_scale"], params["ln_c_offset"], eps))
        return (h, c), h

    def retention(params, carry, x):
        return jax.nn.sigmoid(pre_activations(params, carry, x)[0]["f"])

    return Cell(init, _initial_pair(H, H, dtype), step, H, _GATES, retention=retention)


def lstmp(hidden_size: int, proj_size: int, *, forget_bias: float = 1.0,
          kernel_init: str | inits.Initializer = inits.glorot_uniform,
          recurrent_init: str | inits.Initializer = inits.orthogonal,
          dtype=jnp.float32) -> Cell:
    """LSTM with a recurrent projection layer (LSTMP; Sak, Senior & Beaufays 2014)::

        i, f, g, o = split(x_t W_x + r_{t-1} W_h + b)        # r_{t-1}: [*batch, P]
        c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g)
        r_t = (sigma(o) * tanh(c_t)) W_r,   y_t = r_t        # W_r: [H, P]

    This is ``torch.nn.LSTM(..., proj_size=P)``: the recurrent state and the output have
    P < H units while the cell state keeps H, which cuts ``w_h`` from ``[H, 4H]`` to
    ``[P, 4H]``. ``hidden_size`` is H (the cell state); the cell's ``hidden_size`` field,
    the width of ``y``, is P.

    Params: ``w_x: [I, 4H]``, ``w_h: [P, 4H]``, ``b: [4H]``, ``w_r: [H, P]`` (Glorot
    uniform). Carry: ``(r, c)`` with ``r: [*batch, P]`` and ``c: [*batch, H]``.
    """
    H = check_size("hidden_size", hidden_size)
    P = check_size("proj_size", proj_size)
    if P >= H:
        raise ValueError(f"proj_size must be smaller than hidden_size={H} (as in PyTorch), got {P}")
    kernel_init = inits.resolve(kernel_init, "kernel_init")
    recurrent_init = inits.resolve(recurrent_init, "recurrent_init")

    def init(key, input_size):
        input_size = check_size("input_size", input_size)
        k_x, k_h, k_r = jax.random.split(key, 3)
        w_h = jnp.concatenate([recurrent_init(k, (P, H), dtype) for k in jax.random.split(k_h, 4)],
                              axis=-1)
        return {"w_x": kernel_init(k_x, (input_size, 4 * H), dtype), "w_h": w_h,
                "b": _forget_bias(H, forget_bias, dtype),
                "w_r": inits.glorot_uniform(k_r, (H, P), dtype)}

    check_params = params_check(f"an LSTMP (proj_size={P})", H, init)

    def gates(params, carry, x):
        r, c = _check_pair(carry, (P, H), "lstmp")
        _check_x(x, params, r.shape[:-1], check_params)
        z = x @ params["w_x"] + r @ params["w_h"]
        z = z + bias_like(params["b"], z)
        return lstm_pointwise(dict(zip(_GATES, jnp.split(z, 4, axis=-1))), c)

    def step(params, carry, x):
        act = gates(params, carry, x)
        r = act.h @ params["w_r"]
        return (r, act.c), r

    def retention(params, carry, x):
        return gates(params, carry, x).f

    return Cell(init, _initial_pair(P, H, dtype), step, P, _GATES, retention=retention)


__all__ = ["layer_norm", "layer_norm_lstm", "lstmp"]
