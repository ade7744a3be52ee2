"""Helpers shared by the task modules: argument checks, masks and losses.

Everything here is shape-explicit (no implicit rank promotion) and jittable.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np


def check_size(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise naming ``name`` and the expectation.

    Samplers are called with Python ints (static under ``jax.jit``); a traced or
    fractional size would silently change the compiled shapes, so it is refused.
    """
    try:
        as_int = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a Python int, got {type(value).__name__} "
                        f"({value!r})") from None
    if as_int < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {as_int}")
    return as_int


def randint(key: jax.Array, shape: tuple, low, high) -> jax.Array:
    """int32 integers uniform in ``[low, high)``, from one draw of 32 random bits each.

    ``low`` and ``high`` are Python ints or 1-D integer sequences matched to the last
    axis of ``shape``, so one call yields independent columns with different ranges.
    Samplers draw all their integers through this: one threefry call instead of one
    ``jax.random.randint`` per range, each of which added about 0.3 s of CPU compile
    time in our measurements. Taking 32 random bits modulo the range size n biases
    each value's probability by at most n / 2**32 relative (below 1e-6 for n < 4000).
    """
    low, high = np.asarray(low, np.int64), np.asarray(high, np.int64)
    if np.any(high <= low) or np.any(high - low > 2 ** 31):
        raise ValueError(f"randint needs low < high with high - low <= 2**31, got low={low}, "
                         f"high={high}")
    if low.ndim == 1 or high.ndim == 1:
        low, high = np.broadcast_arrays(low, high)
        if low.shape[0] != shape[-1]:
            raise ValueError(f"randint bounds have {low.shape[0]} columns, shape {shape} "
                             f"has {shape[-1]}")
        full = (1,) * (len(shape) - 1) + (shape[-1],)
        low, high = low.reshape(full), high.reshape(full)
    bits = jax.random.bits(key, tuple(shape), jnp.uint32)
    span = jnp.asarray(high - low, jnp.uint32)
    return (bits % span).astype(jnp.int32) + jnp.asarray(low, jnp.int32)


def step_mask(lengths: jax.Array, width: int) -> jax.Array:
    """``[B, width]`` bool, True at the valid steps ``t < lengths[b]``."""
    return jnp.arange(width).reshape(1, width) < lengths.reshape(-1, 1)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` [B, T] over the True entries of ``mask`` [B, T]."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sigmoid_bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Binary cross-entropy of independent sigmoid units, summed over the last axis.

    ``logits`` and ``targets`` share a shape ``[..., K]``; returns ``[...]``. Written
    with ``log_sigmoid`` so that large logits do not overflow.
    """
    per_unit = -(targets * jax.nn.log_sigmoid(logits)
                 + (1.0 - targets) * jax.nn.log_sigmoid(-logits))
    return jnp.sum(per_unit, axis=-1)


def check_outputs(outputs: jax.Array, expected_shape: tuple, task: str) -> None:
    """Raise a ValueError when model outputs do not have the shape the task scores."""
    if tuple(outputs.shape) != tuple(expected_shape):
        raise ValueError(f"{task}: outputs must have shape {tuple(expected_shape)}, got "
                         f"{tuple(outputs.shape)}")
