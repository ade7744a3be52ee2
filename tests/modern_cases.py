"""The modern cells and inputs shared by test_modern_ops.py and test_modern_diagnostics.py:
tiny sizes (compilation dominates), every cell constructible in float32 and float64."""

import jax
import jax.numpy as jnp

from rnn_jax import cells

T, B, I, H = 6, 2, 3, 4

MAKERS = {
    "lru": lambda dt=jnp.float32: cells.lru(H, state_size=3, r_min=0.5, r_max=0.95, dtype=dt),
    "min_gru": lambda dt=jnp.float32: cells.min_gru(H, dtype=dt),
    "min_lstm": lambda dt=jnp.float32: cells.min_lstm(H, dtype=dt),
    "slstm": lambda dt=jnp.float32: cells.slstm(H, num_heads=2, dtype=dt),
    "indrnn": lambda dt=jnp.float32: cells.indrnn(H, activation="tanh", dtype=dt),
}


def setup(name, dtype=jnp.float32):
    """``(cell, params, xs [T, B, I])`` of the cell ``name``, from fixed keys."""
    cell = MAKERS[name](dtype)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I), dtype)
    return cell, params, xs
