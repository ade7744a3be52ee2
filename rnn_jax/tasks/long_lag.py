"""Noise-free long time lag task (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory",
Neural Computation 9(8), Exp. 2a).

Batches (``output_mode="all"``)::

    inputs  [B, p, p + 1] float32 one-hot symbol
    targets [B, p]        int32   index of the next symbol
    lengths [B]           int32   (all p)

Outputs scored by ``loss``/``metrics`` are logits ``[B, p, p + 1]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.tasks._common import check_outputs, check_size, randint, sigmoid_bce
from rnn_jax.tasks.base import Task


def long_lag(p: int = 100, *, error_threshold: float = 0.25, eval_size: int = 256) -> Task:
    """Noise-free sequences with a time lag of p steps (H&S 1997 Exp. 2a).

    There are p + 1 locally coded symbols ``a_1 .. a_{p-1}, x = a_p, y = a_{p+1}``
    (indices 0 .. p). Only two sequences exist, each drawn with probability 1/2:
    ``(y, a_1, .., a_{p-1}, y)`` and ``(x, a_1, .., a_{p-1}, x)``. The network reads
    one symbol per step and predicts the next at every step, so the p inputs are the
    first p symbols and the p targets the last p. All predictions are easy except the
    last, which needs the first symbol stored for p steps.

    ``seq_len`` must equal ``p``: the alphabet, and so ``input_size = output_size =
    p + 1``, grows with the lag, so sweep the lag by building one task per p
    (``get("long_lag", p=T)``).

    Readout: ``outputs`` are logits of p + 1 sigmoid units (the paper's output units
    are sigmoids), loss their binary cross-entropy against the one-hot next symbol,
    summed over units and averaged over steps and batch. A sequence is wrong when
    any unit at any step has ``|sigmoid(output) - target| >= error_threshold`` (0.25
    in the paper). The paper stops when the maximal absolute error stays below 0.25
    for 10,000 successive sequences (LSTM: 100% of trials, ~5k training sequences
    for p=100); since only two sequences exist, our success is no wrong sequence
    among ``eval_size`` (256) fresh draws (both sequences appear with probability
    1 - 2^-255). ``baseline(p) = 2 log 2 / p`` is the loss of a memoryless predictor
    that is perfect except for answering 1/2 on x and y at the last step.
    """
    p = check_size("p", p, 2)
    eval_size = check_size("eval_size", eval_size)
    if not 0 < error_threshold < 1:
        raise ValueError(f"error_threshold must be in (0, 1), got {error_threshold}")
    n_symbols = p + 1
    x_index = p - 1
    # Steps 1 .. p-1 always show a_1 .. a_{p-1}; only step 0 and the last target vary.
    middle = jnp.arange(p - 1, dtype=jnp.int32).reshape(1, p - 1)

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len)
        if seq_len != p:
            raise ValueError(f"seq_len must equal the lag p={p} this task was built with, got "
                             f"{seq_len}; build long_lag(p={seq_len}) to change the lag")
        first = x_index + randint(key, (batch_size, 1), 0, 2)
        middle_b = jnp.broadcast_to(middle, (batch_size, p - 1))
        symbols = jnp.concatenate([first, middle_b], axis=1)
        targets = jnp.concatenate([middle_b, first], axis=1)
        return {"inputs": jax.nn.one_hot(symbols, n_symbols), "targets": targets,
                "lengths": jnp.full((batch_size,), p, jnp.int32)}

    def _bce(outputs, batch):
        check_outputs(outputs, batch["targets"].shape + (n_symbols,), "long_lag")
        return sigmoid_bce(outputs, jax.nn.one_hot(batch["targets"], n_symbols))

    def loss(outputs, batch):
        return jnp.mean(_bce(outputs, batch))

    def metrics(outputs, batch):
        bce = _bce(outputs, batch)
        err = jnp.abs(jax.nn.sigmoid(outputs) - jax.nn.one_hot(batch["targets"], n_symbols))
        seq_err = jnp.max(err, axis=(1, 2))
        wrong = seq_err >= error_threshold
        return {"bce": jnp.mean(bce), "max_abs_error": jnp.max(seq_err),
                "error_rate": jnp.mean(wrong), "num_wrong": jnp.sum(wrong)}

    base = 2.0 * float(np.log(2.0)) / p
    return Task("long_lag", n_symbols, n_symbols, "all", sample, loss, metrics, "error_rate",
                False, success=lambda m: m["error_rate"] == 0,
                eval_size=eval_size, baseline=lambda seq_len: base)
