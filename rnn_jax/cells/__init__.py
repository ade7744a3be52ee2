"""Recurrent cells as pure functions (see :mod:`rnn_jax.cells.base` for the contract).

- :mod:`~rnn_jax.cells.classic`: Elman RNN, LSTM and its variants, GRU, ``stack``.
"""

from rnn_jax.cells.base import Cell, step_of
from rnn_jax.cells.classic import gru, lstm, rnn, stack

__all__ = ["Cell", "gru", "lstm", "rnn", "stack", "step_of"]
