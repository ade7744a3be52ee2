"""Checkpointed (rematerialised) scan for long sequences.

Backpropagation through a scan of ``T`` steps stores every step's intermediates, so
memory grows as ``T`` times the per-step residuals (tens of kB per step for a
batch-8, width-128 LSTM; gigabytes at ``T = 100,000``). ``checkpointed_unroll`` splits
the sequence into segments of ``S`` steps, runs an outer scan over segments whose body
is wrapped in ``jax.checkpoint``, and so stores only the carry at each segment
boundary; in the backward pass each segment's forward is recomputed once, then
differentiated. With ``S ~ sqrt(T)`` the residual memory is ``O(sqrt(T))`` carries plus
one segment's intermediates, for about one extra forward pass of compute (Chen et
al. 2016, "Training deep nets with sublinear memory cost", arXiv 1604.06174;
Griewank & Walther 2000 for the general binomial schedule).

The outputs ``ys: [T, ...]`` are still returned in full; a loss that only reads the
final carry still pays for them (4 bytes per step per output unit).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import ops
from rnn_jax.cells.base import Cell


def _leaves_batch_shape(carry):
    leaf = jax.tree_util.tree_leaves(carry)[0]
    return tuple(jnp.shape(leaf)[:-1])


def checkpointed_unroll(step, params, carry, xs, *, segment: int | None = None,
                        lengths=None, reverse: bool = False, unroll: int = 1,
                        fused: bool = True):
    """``rnn_jax.unroll`` with the scan checkpointed every ``segment`` steps.

    Same arguments, semantics and results as ``rnn_jax.unroll`` (time-major
    ``xs: [T, *batch, I]``, right-padded ``lengths``, ``reverse`` over the valid part),
    and gradients equal to float rounding; only the memory/compute trade differs.

    Args:
      segment: steps per checkpointed segment, default ``ceil(sqrt(T))``. ``T`` need
        not be a multiple: the last segment is padded with masked steps.
      fused: inside each segment, use the step's fast path (``step.fused_unroll``,
        see ``rnn_jax.fused``) when it has one; ``False`` forces the plain scan.

    Returns:
      ``(final_carry, ys)`` as ``rnn_jax.unroll``.
    """
    num_steps = ops._num_steps(xs)
    if segment is None:
        segment = max(1, math.ceil(math.sqrt(num_steps)))
    if (not isinstance(segment, (int, np.integer)) or isinstance(segment, bool)
            or segment < 1):
        raise ValueError(f"segment must be a positive int, got {segment!r}")
    fast = step.fast_unroll if (fused and isinstance(step, Cell)) else None
    step = step.step if isinstance(step, Cell) else step
    ops._check_carry(step, params, carry, xs)
    if fast is not None and not isinstance(xs, jax.Array | np.ndarray):
        fast = None  # the fast paths take a single input array

    user_lengths = lengths is not None
    if user_lengths:
        lengths = ops._check_lengths(lengths, carry, num_steps)
        if reverse:
            xs = ops._reverse_valid(xs, lengths, num_steps)
    elif reverse:
        xs = jax.tree_util.tree_map(lambda a: jnp.flip(a, 0), xs)

    n_seg = max(1, -(-num_steps // segment))
    pad = n_seg * segment - num_steps
    masked = lengths is not None or pad > 0
    if masked and lengths is None:
        # Padding only: the valid length is T for every sequence.
        lengths = jnp.full(_leaves_batch_shape(carry) if fast is not None else (),
                           num_steps, jnp.int32)

    def split(a):
        a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) if pad else a
        return a.reshape((n_seg, segment) + a.shape[1:])

    xs_seg = jax.tree_util.tree_map(split, xs)
    starts = jnp.arange(n_seg) * segment

    def run_segment(c, inp):
        t0, x = inp
        local = None if not masked else jnp.clip(lengths - t0, 0, segment)
        if fast is not None:
            return fast(params, c, x, lengths=local, reverse=False, unroll=unroll)
        if local is None:
            return jax.lax.scan(lambda cc, xx: step(params, cc, xx), c, x, unroll=unroll)

        def body(cc, tx):
            t, xx = tx
            new_c, y = step(params, cc, xx)
            valid = t < local
            zeros = jax.tree_util.tree_map(jnp.zeros_like, y)
            return ops._where(valid, new_c, cc), ops._where(valid, y, zeros)

        return jax.lax.scan(body, c, (jnp.arange(segment), x), unroll=unroll)

    # prevent_cse=False is safe (and faster) inside a scan body, per jax.checkpoint docs.
    carry, ys = jax.lax.scan(jax.checkpoint(run_segment, prevent_cse=False), carry,
                             (starts, xs_seg))
    ys = jax.tree_util.tree_map(
        lambda a: a.reshape((n_seg * segment,) + a.shape[2:])[:num_steps], ys)
    if reverse:
        ys = (ops._reverse_valid(ys, lengths, num_steps) if user_lengths
              else jax.tree_util.tree_map(lambda a: jnp.flip(a, 0), ys))
    return carry, ys
