"""Shared plumbing of the diagnostics: ``lengths`` (padding) and per-example batching.

``lengths``. A padded step (``t >= lengths``) keeps the carry unchanged, the convention
of :func:`rnn_jax.unroll`. The padded inputs are replaced by zeros *before* the step and
the new carry is chosen with ``where`` (never by multiplying with a mask), so NaN or Inf
in the padding has no effect at all: not on the values, and not on a vjp, where
``0 * NaN`` would otherwise leak through the discarded branch (issue 17, item 3). The
Jacobian of a padded step is therefore exactly the identity.

``batch_ndim``. The Jacobian diagnostics flatten the carry into one vector. A carry with
batch axes ``[*batch, H]`` then gives one block-diagonal ``(B H) x (B H)`` matrix: B^2
times the memory and B times the vjps of B separate ``H x H`` products (29.7 s at B=8
against 2.2 s at B=1, issue 18). ``batch_ndim=n`` instead treats the leading ``n`` axes
of every carry leaf (and axes ``1..n`` of every ``xs`` leaf, axes ``0..n-1`` of
``lengths``) as independent examples and ``jax.vmap``\\ s the diagnostic over them, so
each result gains those leading axes.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from rnn_jax import _scan


def check_batch_ndim(batch_ndim, carry, xs) -> int:
    """``batch_ndim`` as an int, checked against the carry's and the inputs' shapes."""
    try:
        n = operator.index(batch_ndim)
    except TypeError:
        n = -1
    if isinstance(batch_ndim, bool) or n < 0:
        raise ValueError(f"batch_ndim must be an int >= 0, got {batch_ndim!r}")
    if n == 0:
        return 0
    c_leaves = jax.tree_util.tree_leaves(carry)
    x_leaves = jax.tree_util.tree_leaves(xs)
    batch = tuple(jnp.shape(c_leaves[0])[:n]) if c_leaves else ()
    for leaf in c_leaves:
        if jnp.ndim(leaf) <= n or tuple(jnp.shape(leaf)[:n]) != batch:
            raise ValueError(f"batch_ndim={n}: every carry leaf must have the same {n} leading "
                             f"batch axes and a feature axis, got carry leaf shapes "
                             f"{[tuple(jnp.shape(l)) for l in c_leaves]}")
    for leaf in x_leaves:
        if tuple(jnp.shape(leaf)[1:n + 1]) != batch:
            raise ValueError(f"batch_ndim={n}: every xs leaf must be [T, *batch={batch}, ...] "
                             f"like the carry, got shape {tuple(jnp.shape(leaf))}")
    return n


def per_example(fn, step, params, carry, xs, lengths, batch_ndim: int):
    """``fn(step, params, carry, xs, length)`` for each example, vmapped ``batch_ndim``
    times over the leading carry axes (axis 1 of ``xs``).

    With ``lengths`` (checked by :func:`check_lengths`), ``step`` and ``xs`` arrive
    padded-aware (:func:`masked`: the carry is kept at padded steps) and ``length`` is the
    example's own length; without, they arrive as given and ``length`` is None.
    """
    def one(p, c, x, *length):
        if not length:
            return fn(step, p, c, x, None)
        s, x = masked(step, x, length[0])
        return fn(s, p, c, x, length[0])

    with_lengths = lengths is not None
    for _ in range(batch_ndim):
        one = jax.vmap(one, in_axes=(None, 0, 1, 0) if with_lengths else (None, 0, 1))
    return one(params, carry, xs, *((lengths,) if with_lengths else ()))


def masked(step, xs, lengths):
    """``(step, xs)`` with padding: a step on ``(x, valid)`` that keeps the carry where invalid.

    ``lengths`` has the carry's batch shape (a scalar for one sequence) and was checked
    by :func:`check_lengths`. Returns ``(masked_step, (xs, valid))``; ``valid`` is bool
    ``[T, *lengths.shape]``.
    """
    T = _scan.num_steps(xs)
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    valid = t < lengths[None]

    def step_m(params, carry, x_v):
        x, v = x_v
        # Zero the padded inputs first: NaN padding must not reach the step at all.
        new, y = step(params, carry, _scan.zeros_where_not(v, x))
        return _scan.where_tree(v, new, carry), y

    return step_m, (xs, valid)


def check_lengths(lengths, carry, xs):
    """Checked ``lengths`` (int array, clipped to [0, T]) or None."""
    if lengths is None:
        return None
    return _scan.check_lengths(lengths, carry, _scan.num_steps(xs))


def accumulation_dtype(dtype):
    """float64 for float64 data, float32 otherwise: products, norms and SVDs of bfloat16 or
    float16 factors are accumulated in float32 (LAPACK has neither; ~3 digits per step
    would be lost). Written out because ``jnp.promote_types`` refuses bfloat16 with
    float32 under strict dtype promotion."""
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
