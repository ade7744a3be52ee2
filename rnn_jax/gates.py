"""The pointwise half of an LSTM step, shared by the cell, its fast path and the diagnostics.

Everything after the gate matmuls is elementwise, so one function serves a single step
(``[*batch, H]``), a whole recorded run (``[T, *batch, H]``, as the diagnostics use it)
and the fused scan, which keeps the intermediates for its backward pass.
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
