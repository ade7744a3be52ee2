"""Recurrent cells as pure functions (see :mod:`rnn_jax.cells.base` for the contract).

- :mod:`~rnn_jax.cells.classic`: Elman RNN, LSTM and its variants, GRU, ``stack``.
- :mod:`~rnn_jax.cells.lstm_variants`: layer-normalised LSTM and the projection LSTM (LSTMP).
- :mod:`~rnn_jax.cells.dropout`: variational (recurrent) dropout, zoneout, weight-drop.
- :mod:`~rnn_jax.cells.modern`: LRU, minGRU, minLSTM, sLSTM, IndRNN.
- :mod:`~rnn_jax.cells.precision`: mixed precision (``with_compute_dtype``).
"""

from rnn_jax.cells.base import Cell, step_of
from rnn_jax.cells.classic import gru, lstm, rnn, stack
from rnn_jax.cells.dropout import variational_dropout, weight_drop, zoneout
from rnn_jax.cells.lstm_variants import layer_norm_lstm, lstmp
from rnn_jax.cells.modern import indrnn, lru, min_gru, min_lstm, slstm
from rnn_jax.cells.precision import with_compute_dtype

__all__ = ["Cell", "gru", "indrnn", "layer_norm_lstm", "lstm", "lstmp", "lru", "min_gru",
           "min_lstm", "rnn", "slstm", "stack", "step_of", "variational_dropout", "weight_drop",
           "with_compute_dtype", "zoneout"]
