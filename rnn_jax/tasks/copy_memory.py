"""Copy memory task of Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural
Networks" (arXiv 1511.06464), Sec. 4.1.

Batches (``output_mode="all"``)::

    inputs  [B, T + 20, 10] float32 one-hot input category
    targets [B, T + 20]     int32   output category in [0, 9)
    lengths [B]             int32   (all T + 20)

Outputs scored by ``loss``/``metrics`` are logits ``[B, T + 20, 9]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.layers import softmax_xent
from rnn_jax.tasks._common import check_outputs, check_size, randint
from rnn_jax.tasks.base import Task

NUM_TO_COPY = 10
NUM_DATA = 8
BLANK = 8
DELIMITER = 9


def baseline(seq_len: int) -> float:
    """``10 log 8 / (T + 20)``: cross-entropy of the memoryless strategy.

    Predict the blank with certainty for the first T + 10 outputs and a uniform
    distribution over the 8 data categories for the last 10.
    """
    seq_len = check_size("seq_len", seq_len)
    return NUM_TO_COPY * float(np.log(NUM_DATA)) / (seq_len + 2 * NUM_TO_COPY)


def copy_memory(*, max_error_rate: float = 0.01) -> Task:
    """Copy memory task (Arjovsky et al. 2016), the length T of the blank stretch swept.

    Categories follow the paper: ``a0..a7`` data, ``a8`` blank, ``a9`` delimiter. The
    input has T + 20 steps: 10 data categories drawn uniformly with replacement,
    T - 1 blanks, the delimiter, then 10 blanks. The target has T + 10 blanks
    followed by the 10 data categories in their input order. Outputs are logits over
    the 9 categories that can be targets (``a0..a8``); the loss is the softmax
    cross-entropy averaged over all T + 20 steps and the batch, so the memoryless
    baseline is ``baseline(T) = 10 log 8 / (T + 20)``.

    The paper reports learning curves against that baseline, not a criterion. Our
    success: at most ``max_error_rate`` (1%) of ``eval_size=2560`` fresh sequences
    have any step whose argmax is wrong. ``metrics`` also gives the per-symbol
    accuracy on the 10 recalled steps.
    """
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate must be in (0, 1), got {max_error_rate}")

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len)
        width = seq_len + 2 * NUM_TO_COPY
        data = randint(key, (batch_size, NUM_TO_COPY), 0, NUM_DATA)
        blanks_in = jnp.full((batch_size, seq_len - 1), BLANK)
        delim = jnp.full((batch_size, 1), DELIMITER)
        blanks_tail = jnp.full((batch_size, NUM_TO_COPY), BLANK)
        symbols = jnp.concatenate([data, blanks_in, delim, blanks_tail], axis=1)
        blanks_out = jnp.full((batch_size, seq_len + NUM_TO_COPY), BLANK)
        targets = jnp.concatenate([blanks_out, data], axis=1).astype(jnp.int32)
        return {"inputs": jax.nn.one_hot(symbols, NUM_DATA + 2), "targets": targets,
                "lengths": jnp.full((batch_size,), width, jnp.int32)}

    def _check(outputs, batch):
        check_outputs(outputs, batch["targets"].shape + (NUM_DATA + 1,), "copy_memory")

    def loss(outputs, batch):
        _check(outputs, batch)
        return jnp.mean(softmax_xent(outputs, batch["targets"]))

    def metrics(outputs, batch):
        _check(outputs, batch)
        targets = batch["targets"]
        hit = jnp.argmax(outputs, axis=-1) == targets
        wrong = ~jnp.all(hit, axis=1)
        return {"cross_entropy": jnp.mean(softmax_xent(outputs, targets)),
                "copy_accuracy": jnp.mean(hit[:, -NUM_TO_COPY:]),
                "error_rate": jnp.mean(wrong), "num_wrong": jnp.sum(wrong)}

    return Task("copy_memory", NUM_DATA + 2, NUM_DATA + 1, "all", sample, loss, metrics,
                "cross_entropy", False, success=lambda m: m["error_rate"] <= max_error_rate,
                eval_size=2560, baseline=baseline)
