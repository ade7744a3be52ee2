"""The task interface: a benchmark is a NamedTuple of pure functions.

Batches are dicts of batch-major arrays::

    {"inputs": [B, T, input_size] float32,
     "targets": [B, output_size] ("last") or [B, T] int / [B, T, output_size] ("all"),
     "lengths": [B] int32 (valid steps; inputs are right-padded beyond)}

``outputs`` passed to ``loss``/``metrics`` are the model's predictions: ``[B, output_size]``
read at each sequence's last valid step when ``output_mode == "last"``, else
``[B, T, output_size]`` for every step. For classification ``output_size`` is the
number of classes and outputs are logits.
"""

from typing import Any, Callable, NamedTuple

import jax

Batch = dict[str, jax.Array]


class Task(NamedTuple):
    """A sequence task.

    Attributes:
      name: registry name.
      input_size, output_size: feature widths of inputs and model outputs.
      output_mode: ``"last"`` (one prediction per sequence) or ``"all"`` (per step).
      sample: ``(key, batch_size, seq_len) -> Batch``, pure and jittable; ``seq_len``
        is the task's length parameter T (the padded width may be larger, e.g. 1.1T).
      loss: ``(outputs, batch) -> scalar`` training loss.
      metrics: ``(outputs, batch) -> dict[str, scalar]``; includes the key ``metric_name``.
      metric_name: the task metric reported and used for "best" checkpoints.
      higher_is_better: direction of ``metric_name``.
      success: ``(metrics) -> bool`` the paper's success criterion, applied to metrics
        computed on ``eval_size`` fresh sequences.
      eval_size: how many fresh test sequences the criterion is defined on.
      baseline: the loss of the trivial predictor named in the docstring, or None.
    """

    name: str
    input_size: int
    output_size: int
    output_mode: str
    sample: Callable[[jax.Array, int, int], Batch]
    loss: Callable[[jax.Array, Batch], jax.Array]
    metrics: Callable[[jax.Array, Batch], dict[str, Any]]
    metric_name: str
    higher_is_better: bool
    success: Callable[[dict[str, Any]], Any]
    eval_size: int = 2560
    baseline: Callable[[int], float] | None = None
