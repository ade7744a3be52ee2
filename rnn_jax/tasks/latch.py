"""Latch / two-sequence problem of Bengio, Simard & Frasconi 1994.

Bengio, Simard & Frasconi 1994, "Learning long-term dependencies with gradient descent
is difficult", IEEE Trans. Neural Networks 5(2); concrete inputs as in Hochreiter &
Schmidhuber 1997 (Neural Computation 9(8)), Exp. 3a. Batches (``output_mode="last"``)::

    inputs  [B, W, 1] float32, zero beyond ``lengths``
    targets [B, 1] float32 (+-0.8, regression) or [B, 2] one-hot (classification)
    lengths [B] int32

``W`` is T, or ``T + T // 10`` with ``vary_length=True``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.layers import softmax_xent
from rnn_jax.tasks._common import check_outputs, check_size, randint
from rnn_jax.tasks.base import Task

NOISE_VARIANCE = 0.2
TARGET = 0.8


def latch(num_relevant: int = 3, *, target: str = "regression", vary_length: bool = False,
          error_threshold: float = 0.2, eval_size: int = 256) -> Task:
    """Two-sequence (latch) problem: the class depends only on the first L inputs.

    One input line. Each sequence is of class 1 or 0 with probability 1/2. Its first
    ``num_relevant`` (L) values are +1.0 for class 1 and -1.0 for class 0; every later
    value is Gaussian noise with mean 0 and variance 0.2 (Bengio et al. 1994). The
    length is exactly T (Bengio et al.), or with ``vary_length=True`` a uniform
    integer in [T, T + T/10] (H&S 1997 Exp. 3a, right-padded). Bengio et al. let the
    learner choose the first L inputs (the "latch" problem); fixing them to +-1 as
    H&S 1997 did makes it the "two-sequence" problem.

    ``target="regression"``: one output, target +0.8 for class 1 and -0.8 for class 0
    (Bengio et al.'s tanh-range targets), squared-error loss; a sequence is wrong
    when ``|output - target| >= error_threshold`` (0.2, the H&S 1997 Exp. 3 threshold).
    ``baseline(T) = 0.64`` is the MSE of always predicting 0.

    ``target="classification"``: two logits, softmax cross-entropy; a sequence is
    wrong when the argmax is not its class. ``baseline(T) = log 2``.

    Success: no wrong sequence among ``eval_size`` (256) fresh ones -- our reading of
    H&S 1997's criterion for Exp. 3 (Bengio et al. give a success probability curve
    over T, not a per-run criterion).
    """
    num_relevant = check_size("num_relevant", num_relevant)
    eval_size = check_size("eval_size", eval_size)
    if target not in ("regression", "classification"):
        raise ValueError(f"target must be 'regression' or 'classification', got {target!r}")
    if not error_threshold > 0:
        raise ValueError(f"error_threshold must be > 0, got {error_threshold}")
    regression = target == "regression"

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len, num_relevant + 1)
        width = seq_len + seq_len // 10 if vary_length else seq_len
        k_int, k_noise = jax.random.split(key)
        ints = randint(k_int, (batch_size, 2), [0, seq_len], [2, width + 1])
        label, lengths = ints[:, 0], ints[:, 1]
        noise = jnp.sqrt(NOISE_VARIANCE) * jax.random.normal(k_noise, (batch_size, width))
        sign = (2.0 * label.astype(jnp.float32) - 1.0).reshape(-1, 1)
        t = jnp.arange(width).reshape(1, width)
        values = jnp.where(t < num_relevant, sign, noise)
        values = jnp.where(t < lengths.reshape(-1, 1), values, 0.0)
        if regression:
            targets = TARGET * sign
        else:
            targets = jax.nn.one_hot(label, 2)
        return {"inputs": values.reshape(batch_size, width, 1), "targets": targets,
                "lengths": lengths.astype(jnp.int32)}

    def _wrong(outputs, targets):
        if regression:
            return jnp.abs(outputs - targets)[:, 0] >= error_threshold
        return jnp.argmax(outputs, axis=-1) != jnp.argmax(targets, axis=-1)

    def loss(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, "latch")
        if regression:
            return jnp.mean((outputs - batch["targets"]) ** 2)
        return jnp.mean(softmax_xent(outputs, jnp.argmax(batch["targets"], axis=-1)))

    def metrics(outputs, batch):
        wrong = _wrong(outputs, batch["targets"])
        return {"loss": loss(outputs, batch), "error_rate": jnp.mean(wrong),
                "num_wrong": jnp.sum(wrong)}

    base = TARGET ** 2 if regression else float(np.log(2.0))
    return Task("latch", 1, 1 if regression else 2, "last", sample, loss, metrics, "error_rate",
                False, success=lambda m: m["error_rate"] == 0, eval_size=eval_size,
                baseline=lambda seq_len: base)
