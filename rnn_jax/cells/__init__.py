"""Recurrent cells as pure functions (see :mod:`rnn_jax.cells.base` for the contract).

- :mod:`~rnn_jax.cells.classic`: Elman RNN, LSTM and its variants, GRU, ``stack``.
- :mod:`~rnn_jax.cells.lstm_variants`: layer-normalised LSTM and the projection LSTM (LSTMP).
- :mod:`~rnn_jax.cells.dropout`: variational (recurrent) dropout, zoneout, weight-drop.
"""

from rnn_jax.cells.base import Cell, step_of
from rnn_jax.cells.classic import gru, lstm, rnn, stack
from rnn_jax.cells.dropout import variational_dropout, weight_drop, zoneout
from rnn_jax.cells.lstm_variants import layer_norm_lstm, lstmp

__all__ = ["Cell", "gru", "layer_norm_lstm", "lstm", "lstmp", "rnn", "stack", "step_of",
           "variational_dropout", "weight_drop", "zoneout"]
