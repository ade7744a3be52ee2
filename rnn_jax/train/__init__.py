"""Training driver pieces: config schema, checkpointing, logging and the loop.

The pure training functions live in :mod:`rnn_jax.train.training`;
``train_and_evaluate(config, workdir)`` (:mod:`rnn_jax.train.loop`) drives them.
"""

from rnn_jax.train.config import default_config, validate


def train_and_evaluate(config, workdir):
    """See :func:`rnn_jax.train.loop.train_and_evaluate`."""
    from rnn_jax.train import loop  # imported lazily: it pulls in orbax
    return loop.train_and_evaluate(config, workdir)


__all__ = ["default_config", "train_and_evaluate", "validate"]
