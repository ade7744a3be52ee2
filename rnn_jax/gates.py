"""The gate arithmetic of the LSTM and the GRU, shared by the cells, their fast paths
(``rnn_jax.fused``) and the diagnostics (``gate_activations``).

One definition per cell, so the three users cannot drift apart. Everything here works
on any leading shape, so one function serves a single step (``[*batch, H]``), a whole
recorded run (``[T, *batch, H]``, as the diagnostics use it) and the fused scan, which
keeps the intermediates for its backward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class LSTMGates(NamedTuple):
    """Activations of one LSTM update; ``f`` is None for the cell without a forget gate."""
    i: jax.Array
    f: jax.Array | None
    g: jax.Array
    o: jax.Array
    c: jax.Array        # new cell state
    tanh_c: jax.Array
    h: jax.Array        # o * tanh(c)


def lstm_pointwise(z: dict, c_prev, peepholes: dict | None = None) -> LSTMGates:
    """The LSTM update from its gate pre-activations (equations in ``rnn_jax.cells.lstm``).

    Args:
      z: gate name -> pre-activation ``[..., H]`` for the cell's gates: ``"i", "f", "g",
        "o"``; without ``"f"`` the forget gate is the constant 1 (Hochreiter &
        Schmidhuber 1997); without ``"i"`` the input gate is ``1 - f`` (CIFG).
      c_prev: ``[..., H]`` cell state before the step.
      peepholes: optional gate name -> ``[H]`` weights (Gers & Schmidhuber 2000): ``i``
        and ``f`` read ``c_prev``, ``o`` reads the new cell state.
    """
    peepholes = peepholes or {}

    def pre(name, cell):
        p = peepholes.get(name)
        # Explicit reshape: callers run with jax_numpy_rank_promotion="raise".
        return z[name] if p is None else z[name] + p.reshape((1,) * (cell.ndim - 1) + p.shape) * cell

    f = jax.nn.sigmoid(pre("f", c_prev)) if "f" in z else None
    i = jax.nn.sigmoid(pre("i", c_prev)) if "i" in z else 1.0 - f
    g = jnp.tanh(z["g"])
    c = c_prev + i * g if f is None else f * c_prev + i * g
    o = jax.nn.sigmoid(pre("o", c))
    tanh_c = jnp.tanh(c)
    return LSTMGates(i, f, g, o, c, tanh_c, o * tanh_c)


class GRUGates(NamedTuple):
    """Activations of one GRU update (Cho et al. 2014, arXiv 1406.1078)."""
    r: jax.Array        # reset gate
    z: jax.Array        # update gate
    n: jax.Array        # candidate state
    h_n: jax.Array | None  # W_hn h_{t-1} + b_hn (reset_after only; the fast path needs it)
    h: jax.Array        # z * h_prev + (1 - z) * n


def gru_gates(x_gates, h_prev, w_h, b_hn=None) -> GRUGates:
    """The GRU update from its input pre-activations (equations in ``rnn_jax.cells.gru``).

    Unlike the LSTM's, the GRU's arithmetic after the input matmul is not pointwise:
    with ``reset_after=False`` the reset gate scales ``h_{t-1}`` *before* the candidate's
    recurrent matmul. So this function takes the recurrent weight and does the recurrent
    products itself.

    Args:
      x_gates: ``[..., 3H]``, ``x W_x + b`` with the blocks ``(r, z, n)``.
      h_prev: ``[..., H]``, the state before the step.
      w_h: ``[H, 3H]`` recurrent weight, blocks ``(r, z, n)``.
      b_hn: ``[H]`` for the ``reset_after=True`` form (``n`` reads
        ``r * (h W_hn + b_hn)``); None for the 2014 form (``n`` reads ``(r * h) W_hn``).
    """
    H = h_prev.shape[-1]
    x_r, x_z, x_n = x_gates[..., :H], x_gates[..., H:2 * H], x_gates[..., 2 * H:]
    if b_hn is not None:
        # One matmul serves all three blocks (the cuDNN / PyTorch form).
        zh = h_prev @ w_h
        r = jax.nn.sigmoid(x_r + zh[..., :H])
        z = jax.nn.sigmoid(x_z + zh[..., H:2 * H])
        # Explicit reshape: callers run with jax_numpy_rank_promotion="raise".
        h_n = zh[..., 2 * H:] + b_hn.reshape((1,) * (h_prev.ndim - 1) + b_hn.shape)
        n = jnp.tanh(x_n + r * h_n)
    else:
        zh = h_prev @ w_h[:, :2 * H]
        r = jax.nn.sigmoid(x_r + zh[..., :H])
        z = jax.nn.sigmoid(x_z + zh[..., H:])
        h_n = None
        n = jnp.tanh(x_n + (r * h_prev) @ w_h[:, 2 * H:])
    return GRUGates(r, z, n, h_n, z * h_prev + (1.0 - z) * n)
