"""The adding problem, in the two variants used in the literature."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnn_jax.tasks.base import Task


def _marker_positions(key, batch_size, first_half_end, lengths):
    """One marked step uniformly in [0, first_half_end) and one in [first_half_end, length)."""
    k1, k2 = jax.random.split(key)
    p1 = jax.random.randint(k1, (batch_size,), 0, first_half_end)
    p2 = jax.random.randint(k2, (batch_size,), first_half_end, lengths)
    return p1, p2


def hochreiter_schmidhuber(*, error_threshold: float = 0.04) -> Task:
    """Adding problem of Hochreiter & Schmidhuber 1997, Experiment 4.

    Each step carries two inputs: a value uniform in [-1, 1] and a marker. Sequence
    length is uniform in [T, 1.1T] (inputs are right-padded to floor(1.1T)). One of
    the first 10 steps is marked (marker 1.0), then a second, different one among the
    first T/2 - 1 steps. The markers of the first and last valid step are -1 unless a
    mark falls there; all other markers are 0. If step 0 is marked its value counts
    as X = 0, as in the paper. The target, given at the end, is
    ``0.5 + (X1 + X2) / 4.0`` for the marked values X1, X2 (so it lies in [0, 1]). A sequence is wrong when ``|prediction - target| >= 0.04``; the paper
    reports success as at most 3 wrong out of 2560 fresh test sequences (T=100: 1/2560
    after ~74k training sequences).
    """

    def sample(key, batch_size, seq_len):
        if seq_len < 22:
            raise ValueError(f"seq_len must be >= 22 for the 1997 adding problem (both marks "
                             f"fall in the first T/2 - 1 steps), got {seq_len}")
        width = int(math.floor(1.1 * seq_len))
        k_len, k_val, k1, k2 = jax.random.split(key, 4)
        lengths = jax.random.randint(k_len, (batch_size,), seq_len, width + 1)
        values = jax.random.uniform(k_val, (batch_size, width), minval=-1.0, maxval=1.0)
        p1 = jax.random.randint(k1, (batch_size,), 0, 10)
        # Second mark uniform over the first T/2 - 1 steps other than p1 (p1 < 10 <= T/2 - 1).
        p2 = jax.random.randint(k2, (batch_size,), 0, seq_len // 2 - 2)
        p2 = jnp.where(p2 >= p1, p2 + 1, p2)
        t = jnp.arange(width)[None, :]
        marked = (t == p1[:, None]) | (t == p2[:, None])
        ends = (t == 0) | (t == lengths[:, None] - 1)
        marker = jnp.where(marked, 1.0, jnp.where(ends, -1.0, 0.0))
        valid = t < lengths[:, None]
        values = jnp.where(t == 0, jnp.where(marked[:, :1], 0.0, values), values)
        x1 = jnp.take_along_axis(values, p1[:, None], axis=1)[:, 0]
        x2 = jnp.take_along_axis(values, p2[:, None], axis=1)[:, 0]
        targets = (0.5 + (x1 + x2) / 4.0)[:, None]
        inputs = jnp.stack([values * valid, marker * valid], axis=-1)
        return {"inputs": inputs, "targets": targets, "lengths": lengths.astype(jnp.int32)}

    def loss(outputs, batch):
        return jnp.mean((outputs - batch["targets"]) ** 2)

    def metrics(outputs, batch):
        err = jnp.abs(outputs - batch["targets"])[:, 0]
        return {"mse": jnp.mean(err ** 2), "error_rate": jnp.mean(err >= error_threshold),
                "num_wrong": jnp.sum(err >= error_threshold)}

    return Task("adding", 2, 1, "last", sample, loss, metrics, "error_rate", False,
                success=lambda m: m["error_rate"] <= 3 / 2560, eval_size=2560)


def le_et_al() -> Task:
    """Adding problem of Le, Jaitly & Hinton 2015 (arXiv 1504.00941), also Arjovsky et al. 2016.

    Length exactly T; values uniform in [0, 1]; exactly two markers of 1.0, one in
    each half of the sequence; target ``X1 + X2``. Predicting the mean target 1.0
    gives MSE Var(X1 + X2) = 2/12 = 0.167, the baseline to beat. We count success as
    test MSE below 10% of that baseline (the papers report curves, not a criterion).
    """

    def sample(key, batch_size, seq_len):
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        k_val, k_pos = jax.random.split(key)
        values = jax.random.uniform(k_val, (batch_size, seq_len))
        half = seq_len // 2
        p1, p2 = _marker_positions(k_pos, batch_size, half, jnp.full((batch_size,), seq_len))
        t = jnp.arange(seq_len)[None, :]
        marker = ((t == p1[:, None]) | (t == p2[:, None])).astype(values.dtype)
        targets = jnp.sum(values * marker, axis=1, keepdims=True)
        return {"inputs": jnp.stack([values, marker], axis=-1), "targets": targets,
                "lengths": jnp.full((batch_size,), seq_len, jnp.int32)}

    def loss(outputs, batch):
        return jnp.mean((outputs - batch["targets"]) ** 2)

    def metrics(outputs, batch):
        return {"mse": jnp.mean((outputs - batch["targets"]) ** 2)}

    return Task("adding_le", 2, 1, "last", sample, loss, metrics, "mse", False,
                success=lambda m: m["mse"] < 0.1 * (1 / 6), eval_size=2560,
                baseline=lambda seq_len: 1 / 6)
