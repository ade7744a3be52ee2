"""Sequence to sequence with attention.

- :mod:`rnn_jax.apps.seq2seq.model`: the BiLSTM encoder, the LSTM decoder with additive
  attention, greedy and beam decoding (pure functions);
- :mod:`rnn_jax.apps.seq2seq.train`: the experiment around it (config, data, training,
  evaluation, plots).
"""

from rnn_jax.apps.seq2seq.train import default_config, train_and_evaluate, validate

__all__ = ["default_config", "train_and_evaluate", "validate"]
