"""Temporal order problems: classify a sequence by the order of a few widely separated symbols.

Two families:

* :func:`hochreiter_schmidhuber` with ``num_relevant=2`` (Exp. 6a) or 3 (Exp. 6b) of
  Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Neural Computation 9(8).
* :func:`pascanu` -- the variant of Pascanu, Mikolov & Bengio 2013, "On the difficulty
  of training recurrent neural networks" (arXiv 1211.5063), whose generator is public
  (``tempOrder.py`` in github.com/pascanur/trainingRNNs).

In both, the sequence length T is the variable to sweep and the positions of the
relevant symbols scale with it. Batches (``output_mode="last"``)::

    inputs  [B, W, n_symbols] float32 one-hot, zero beyond ``lengths``
    targets [B, n_classes]    float32 one-hot class
    lengths [B]               int32

Outputs scored by ``loss``/``metrics`` are logits ``[B, n_classes]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.layers import softmax_xent
from rnn_jax.tasks._common import check_outputs, check_size, randint, sigmoid_bce
from rnn_jax.tasks.base import Task

# H&S 1997 alphabet: four distractors, the two relevant symbols, start and trigger.
HS_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "E", "B")
_HS_X, _HS_E, _HS_B = 4, 6, 7
# Ranges of the relevant positions (1-based, inclusive) as percent of T: at T=100
# they are the paper's t1 in [10, 20], t2 in [50, 60] (6a) and t1 in [10, 20],
# t2 in [33, 43], t3 in [66, 76] (6b).
_HS_RANGES = {2: ((10, 20), (50, 60)), 3: ((10, 20), (33, 43), (66, 76))}
_HS_EVAL = 2560
_HS_MAX_WRONG = 3
# Hochreiter & Schmidhuber 1997, Sec. 5.6: training stopped once "the average training
# error was below 0.1" and the 2000 most recent sequences were classified correctly. The
# paper does not say whether the average is per output unit or per sequence; we take the
# squared error summed over the output units (per sequence), the stricter reading.
_HS_MAX_SQ_ERROR = 0.1

# Pascanu et al. 2013 alphabet: the relevant symbols A, B then four distractors.
PASCANU_SYMBOLS = ("A", "B", "c", "d", "e", "f")


def hs_positions(seq_len: int, num_relevant: int) -> tuple[tuple[int, int], ...]:
    """0-based inclusive ranges ``(lo, hi)`` of the relevant positions for length parameter T."""
    return tuple((seq_len * lo // 100 - 1, seq_len * hi // 100 - 1)
                 for lo, hi in _HS_RANGES[num_relevant])


def hochreiter_schmidhuber(num_relevant: int = 2, *, error_threshold: float = 0.3) -> Task:
    """Temporal order task of Hochreiter & Schmidhuber 1997, Exp. 6a (2 symbols) / 6b (3).

    Eight locally coded input symbols ``a, b, c, d, X, Y, E, B`` (that index order).
    A sequence starts with ``E``, ends with the trigger ``B`` and is otherwise uniform
    over the distractors ``{a, b, c, d}``, except at the relevant positions, which
    hold ``X`` or ``Y`` with probability 1/2 each. Its length is a uniform integer in
    [T, T + T/10] (right-padded to ``T + T // 10``). The relevant positions (1-based)
    are uniform in [0.1T, 0.2T] and [0.5T, 0.6T] for 6a, and in [0.1T, 0.2T],
    [0.33T, 0.43T], [0.66T, 0.76T] for 6b (integer parts; the paper's T=100 gives
    its 100-110 length, t1 in [10, 20], t2 in [50, 60], t3 in [66, 76]).

    The class is the order of X/Y read as a binary number (X=0, Y=1, first symbol
    most significant): 6a has 4 classes (paper's Q, R, S, U for XX, XY, YX, YY),
    6b has 8. Targets are locally coded.

    Readout: the paper's output units are sigmoids, so ``outputs`` are logits of
    ``2**num_relevant`` independent sigmoid units and the loss is their binary
    cross-entropy (summed over units, averaged over the batch) -- the paper used
    squared error; cross-entropy has the same minimiser and better gradients. A
    sequence is classified correctly when every unit satisfies
    ``|sigmoid(output) - target| < error_threshold`` (0.3 in the paper). Success:
    at most 3 wrong out of ``eval_size=2560`` fresh sequences (paper: 1/2560 for 6a
    after ~31k training sequences, 2/2560 for 6b after ~571k) AND the paper's second
    condition (Sec. 5.6), an average error below 0.1: metric ``sq_error``, the mean over
    sequences of ``sum_units (sigmoid(output) - target)**2``. ``baseline(T)`` is
    the loss of predicting every unit's prior ``1/C`` -- a predictor that is wrong on
    every sequence.

    ``seq_len`` (T) must be >= 20 so that the position ranges stay disjoint and
    clear of ``E``.
    """
    if num_relevant not in _HS_RANGES:
        raise ValueError(f"num_relevant must be 2 (Exp. 6a) or 3 (Exp. 6b), got {num_relevant!r}")
    if not 0 < error_threshold < 1:
        raise ValueError(f"error_threshold must be in (0, 1), got {error_threshold}")
    n_classes = 2 ** num_relevant
    name = {2: "temporal_order_6a", 3: "temporal_order_6b"}[num_relevant]

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len, 20)
        width = seq_len + seq_len // 10
        k_sym, k_int = jax.random.split(key)
        symbols = randint(k_sym, (batch_size, width), 0, 4)
        # Columns: length, then per relevant symbol its position and X/Y bit.
        ranges = hs_positions(seq_len, num_relevant)
        low = [seq_len] + [b for lo, _ in ranges for b in (lo, 0)]
        high = [width + 1] + [b for _, hi in ranges for b in (hi + 1, 2)]
        ints = randint(k_int, (batch_size, len(low)), low, high)
        lengths = ints[:, 0]
        t = jnp.arange(width).reshape(1, width)
        label = jnp.zeros((batch_size,), jnp.int32)
        for i in range(num_relevant):
            pos, bit = ints[:, 1 + 2 * i], ints[:, 2 + 2 * i]
            symbols = jnp.where(t == pos.reshape(-1, 1), _HS_X + bit.reshape(-1, 1), symbols)
            label = 2 * label + bit
        symbols = jnp.where(t == 0, _HS_E, symbols)
        symbols = jnp.where(t == lengths.reshape(-1, 1) - 1, _HS_B, symbols)
        valid = (t < lengths.reshape(-1, 1)).reshape(batch_size, width, 1)
        inputs = jax.nn.one_hot(symbols, len(HS_SYMBOLS)) * valid.astype(jnp.float32)
        targets = jax.nn.one_hot(label, n_classes)
        return {"inputs": inputs, "targets": targets, "lengths": lengths.astype(jnp.int32)}

    def loss(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, name)
        return jnp.mean(sigmoid_bce(outputs, batch["targets"]))

    def metrics(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, name)
        targets = batch["targets"]
        max_err = jnp.max(jnp.abs(jax.nn.sigmoid(outputs) - targets), axis=-1)
        wrong = max_err >= error_threshold
        correct_class = jnp.argmax(outputs, axis=-1) == jnp.argmax(targets, axis=-1)
        sq_error = jnp.sum((jax.nn.sigmoid(outputs) - targets) ** 2, axis=-1)
        return {"bce": jnp.mean(sigmoid_bce(outputs, targets)), "error_rate": jnp.mean(wrong),
                "num_wrong": jnp.sum(wrong), "accuracy": jnp.mean(correct_class),
                "sq_error": jnp.mean(sq_error)}

    def success(m):
        return ((m["error_rate"] < (_HS_MAX_WRONG + 0.5) / _HS_EVAL)
                & (m["sq_error"] < _HS_MAX_SQ_ERROR))

    prior = 1.0 / n_classes
    prior_bce = float(-np.log(prior) - (n_classes - 1) * np.log(1.0 - prior))
    return Task(name, len(HS_SYMBOLS), n_classes, "last", sample, loss, metrics, "error_rate",
                False, success=success, eval_size=_HS_EVAL, baseline=lambda seq_len: prior_bce)


def pascanu(*, max_error_rate: float = 0.01) -> Task:
    """Temporal order task of Pascanu, Mikolov & Bengio 2013 (arXiv 1211.5063), Sec. 4.1.

    Six locally coded symbols ``A, B, c, d, e, f`` (that index order); length exactly
    T. Every step is uniform over the distractors ``{c, d, e, f}`` except two: one
    position uniform in ``[T//10, 2*(T//10))`` and one in ``[T//2, T//2 + T//10)``
    (0-based, half-open, as in the authors' generator) each hold ``A`` or ``B`` with
    probability 1/2. The 4 classes are the order AA, BA, AB, BB coded as
    ``v0 + 2*v1`` with A=0, B=1 (the authors' coding: the first symbol is the low bit).

    Readout: softmax over 4 logits, cross-entropy loss. A sequence is misclassified
    when the argmax is wrong; success, as in the paper's Fig. 7 study, is fewer than
    1% misclassified (``max_error_rate``) on ``eval_size=10000`` fresh sequences.
    ``baseline(T) = log 4`` is the loss of the uniform predictor.

    ``seq_len`` (T) must be >= 10 so that both position ranges are non-empty.
    """
    if not 0 < max_error_rate < 1:
        raise ValueError(f"max_error_rate must be in (0, 1), got {max_error_rate}")

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len, 10)
        tenth, half = seq_len // 10, seq_len // 2
        k_sym, k_int = jax.random.split(key)
        symbols = randint(k_sym, (batch_size, seq_len), 2, 6)
        ints = randint(k_int, (batch_size, 4), [tenth, half, 0, 0],
                       [2 * tenth, half + tenth, 2, 2])
        p0, p1 = ints[:, 0:1], ints[:, 1:2]
        v0, v1 = ints[:, 2], ints[:, 3]
        t = jnp.arange(seq_len).reshape(1, seq_len)
        symbols = jnp.where(t == p0, v0.reshape(-1, 1), symbols)
        symbols = jnp.where(t == p1, v1.reshape(-1, 1), symbols)
        return {"inputs": jax.nn.one_hot(symbols, len(PASCANU_SYMBOLS)),
                "targets": jax.nn.one_hot(v0 + 2 * v1, 4),
                "lengths": jnp.full((batch_size,), seq_len, jnp.int32)}

    def loss(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, "temporal_order_pascanu")
        return jnp.mean(softmax_xent(outputs, jnp.argmax(batch["targets"], axis=-1)))

    def metrics(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, "temporal_order_pascanu")
        labels = jnp.argmax(batch["targets"], axis=-1)
        wrong = jnp.argmax(outputs, axis=-1) != labels
        return {"cross_entropy": jnp.mean(softmax_xent(outputs, labels)),
                "error_rate": jnp.mean(wrong), "num_wrong": jnp.sum(wrong)}

    return Task("temporal_order_pascanu", len(PASCANU_SYMBOLS), 4, "last", sample, loss, metrics,
                "error_rate", False, success=lambda m: m["error_rate"] < max_error_rate,
                eval_size=10000, baseline=lambda seq_len: float(np.log(4.0)))
