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
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import _scan
from rnn_jax.cells.base import Cell, step_of


def _leaves_batch_shape(carry):
    leaf = jax.tree_util.tree_leaves(carry)[0]
    return tuple(jnp.shape(leaf)[:-1])


def checkpointed_unroll(step, params, carry, xs, *, segment: int | None = None,
                        lengths=None, resets=None, reverse: bool = False, unroll: int = 1,
                        fused: bool = True, return_carries: bool = False):
    """``rnn_jax.unroll`` with the scan checkpointed every ``segment`` steps.

    Same arguments, semantics and results as ``rnn_jax.unroll`` (time-major
    ``xs: [T, *batch, I]``, right-padded ``lengths``, ``resets`` to the initial carry,
    ``reverse`` over the valid part, ``return_carries``), and gradients equal to float
    rounding; only the memory/compute trade differs.

    Args:
      step: a :class:`rnn_jax.Cell` or a bare step function.
      segment: steps per checkpointed segment, default ``ceil(sqrt(T))``. ``T`` need
        not be a multiple: the last segment is padded with masked steps.
      fused: inside each segment, use the cell's fast path (``cell.fast_unroll``,
        see ``rnn_jax.fused``) when it has one; ``False`` forces the plain scan.

    Returns:
      ``(final_carry, ys)`` (or ``(final_carry, ys, carries)``) as ``rnn_jax.unroll``.
    """
    T = _scan.num_steps(xs)
    if segment is None:
        segment = max(1, math.ceil(math.sqrt(T)))
    if (not isinstance(segment, (int, np.integer)) or isinstance(segment, bool)
            or segment < 1):
        raise ValueError(f"segment must be a positive int, got {segment!r}")
    fast = step.fast_unroll if (fused and isinstance(step, Cell)) else None
    step = step_of(step)
    _scan.check_carry(step, params, carry, xs)
    if fast is not None and not (isinstance(xs, jax.Array | np.ndarray)
                                 and isinstance(params, Mapping)):
        fast = None  # the fast paths take a single input array and a params mapping
    if fast is not None:
        params = dict(params)

    user_lengths = lengths is not None
    if user_lengths:
        lengths = _scan.check_lengths(lengths, carry, T)
    if resets is not None:
        resets = _scan.check_resets(resets, carry, xs, T)
    xs, resets = _scan.to_processing_order(xs, resets, lengths, reverse, T)
    reset_carry = carry

    n_seg = max(1, -(-T // segment))
    pad = n_seg * segment - T
    masked = lengths is not None or pad > 0
    if masked and lengths is None:
        # Padding only: the valid length is T for every sequence.
        lengths = jnp.full(_leaves_batch_shape(carry) if fast is not None else (), T, jnp.int32)

    def split(a):
        a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) if pad else a
        return a.reshape((n_seg, segment) + a.shape[1:])

    xs_seg = jax.tree_util.tree_map(split, xs)
    resets_seg = None if resets is None else split(resets)
    starts = jnp.arange(n_seg) * segment

    def run_segment(c, inp):
        t0, x, r = inp
        local = None if not masked else jnp.clip(lengths - t0, 0, segment)
        if fast is not None:
            extra = {"return_carries": True} if return_carries else {}
            if r is not None:
                extra.update(resets=r, reset_carry=reset_carry)
            out = fast(params, c, x, lengths=local, reverse=False, unroll=unroll, **extra)
        else:
            out = _scan.masked_scan(step, params, c, x, lengths=local, resets=r, unroll=unroll,
                                    return_carries=return_carries, reset_carry=reset_carry)
        return out[0], out[1:]

    # prevent_cse=False is safe (and faster) inside a scan body, per jax.checkpoint docs.
    carry, outs = jax.lax.scan(jax.checkpoint(run_segment, prevent_cse=False), carry,
                               (starts, xs_seg, resets_seg))
    outs = jax.tree_util.tree_map(
        lambda a: a.reshape((n_seg * segment,) + a.shape[2:])[:T], outs)
    outs = _scan.from_processing_order(outs, lengths if user_lengths else None, reverse, T)
    return (carry,) + tuple(outs)
