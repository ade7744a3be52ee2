"""Ragged sequences to a padded batch and back (host-side: ragged lists cannot be traced).

    xs, lengths = pad_sequences([a, b, c])          # a: [T_a, *features], ...
    carry, ys = rnn_jax.unroll(cell, params, cell.initial_carry((3,)), xs, lengths=lengths)
    outs = unpad_sequences(ys, lengths)              # [ys_a, ys_b, ys_c], each [T_i, ...]

The padding is on the right, the layout ``rnn_jax.unroll(..., lengths=)`` expects.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def pad_sequences(seqs: Sequence, *, time_major: bool = True, max_len: int | None = None,
                  pad_value: float = 0.0, dtype=None):
    """Stack sequences of different lengths into one right-padded array.

    Args:
      seqs: a non-empty list of arrays ``[T_i, *features]`` with equal feature shapes.
      time_major: return ``xs: [T, B, *features]`` (default) or ``[B, T, *features]``.
      max_len: the padded length T (default the longest ``T_i``); a longer sequence is
        an error, never silently cut.
      pad_value: the value of padded steps (``unroll`` ignores it whatever it is).
      dtype: default the sequences' common dtype.

    Returns:
      ``(xs, lengths)`` with ``lengths: [B]`` int32.
    """
    if isinstance(seqs, (np.ndarray, jax.Array)) or len(seqs) == 0:
        raise ValueError("seqs must be a non-empty list of arrays [T_i, *features]")
    arrays = [np.asarray(s) for s in seqs]
    for i, a in enumerate(arrays):
        if a.ndim < 1:
            raise ValueError(f"seqs[{i}] must have a leading time axis, got a scalar")
        if a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"every sequence must have the feature shape of seqs[0], "
                             f"{arrays[0].shape[1:]}; seqs[{i}] has {a.shape[1:]}")
    lengths = np.array([a.shape[0] for a in arrays], np.int32)
    longest = int(lengths.max())
    T = longest if max_len is None else int(max_len)
    if T < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest sequence "
                         f"(seqs[{int(lengths.argmax())}] has {longest} steps)")
    dtype = np.result_type(*arrays) if dtype is None else dtype
    out = np.full((len(arrays), T) + arrays[0].shape[1:], pad_value, dtype)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    if time_major:
        out = np.swapaxes(out, 0, 1)
    return jnp.asarray(out), jnp.asarray(lengths)


def unpad_sequences(ys, lengths, *, time_major: bool = True) -> list:
    """The inverse of :func:`pad_sequences`: a list of ``[T_i, *features]`` NumPy arrays.

    ``ys`` is ``[T, B, ...]`` (or ``[B, T, ...]`` with ``time_major=False``) and
    ``lengths: [B]``.
    """
    ys, lengths = np.asarray(ys), np.asarray(lengths)
    if ys.ndim < 2:
        raise ValueError(f"ys must be [T, B, ...] or [B, T, ...], got shape {ys.shape}")
    if not time_major:
        ys = np.swapaxes(ys, 0, 1)
    T, B = ys.shape[:2]
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be an integer array of shape ({B},) (ys's batch), "
                         f"got {lengths.dtype} {lengths.shape}")
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [0, T={T}], got [{lengths.min()}, {lengths.max()}]")
    return [ys[:int(n), b] for b, n in enumerate(lengths)]


__all__ = ["pad_sequences", "unpad_sequences"]
