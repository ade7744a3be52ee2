"""rnn_jax: recurrent networks from pure functions in JAX."""

from rnn_jax import cells, initializers
from rnn_jax.cells import Cell
from rnn_jax.ops import bidirectional, stacked, unroll

__all__ = ["Cell", "bidirectional", "cells", "initializers", "stacked", "unroll"]
__version__ = "0.1.0"
