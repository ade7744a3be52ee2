"""checkpointed_unroll (rnn_jax.remat) equals an un-checkpointed scan.

The reference is ``jax.lax.scan`` over the cell's step for each sequence alone, so
segment padding, ``lengths`` and ``reverse`` are all checked against the obvious
definition, for a segment length that does not divide T.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, fused
from rnn_jax.remat import checkpointed_unroll

T, B, I, H = 7, 2, 3, 4
LENGTHS = (7, 3)


def _reference(step, params, carry, xs, lengths, reverse):
    finals, outs = [], []
    for b, n in enumerate(lengths):
        x = xs[:n, b][::-1] if reverse else xs[:n, b]
        c, ys = jax.lax.scan(lambda cc, xx: step(params, cc, xx),
                             jax.tree_util.tree_map(lambda a: a[b], carry), x)
        ys = ys[::-1] if reverse else ys
        finals.append(c)
        outs.append(jnp.concatenate([ys, jnp.zeros((T - n, H), ys.dtype)]))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *finals), jnp.stack(outs, axis=1)


def _loss(fn, params, carry, xs):
    c, ys = fn(params, carry, xs)
    w = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    loss = jnp.sum(w * ys) + sum(jnp.sum(jnp.cos(l)) for l in jax.tree_util.tree_leaves(c))
    return loss, (c, ys)


def _step_with_fast_path(cell):
    return cell._replace(fast_unroll=fused.for_cell("lstm", gates=cell.gates))


@pytest.mark.parametrize("use_fast,lengths,reverse", [
    (False, None, False), (False, LENGTHS, True), (True, None, True), (True, LENGTHS, False)])
def test_checkpointed_unroll_matches_plain_scan(use_fast, lengths, reverse):
    cell = cells.lstm(H)
    step = _step_with_fast_path(cell) if use_fast else cell.step
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = cell.init(keys[0], I)
    carry = tuple(0.5 * jax.random.normal(k, (B, H)) for k in jax.random.split(keys[1]))
    xs = jax.random.normal(keys[2], (T, B, I))
    ln = None if lengths is None else jnp.asarray(lengths)
    # fused=use_fast: the built-in step carries a fast path, so the plain-scan segments
    # are only exercised when it is switched off.
    got = functools.partial(checkpointed_unroll, step, segment=3, lengths=ln, reverse=reverse,
                            fused=use_fast)
    ref = functools.partial(_reference, cell.step, lengths=lengths or (T,) * B, reverse=reverse)
    grad = lambda f: jax.jit(jax.grad(functools.partial(_loss, f), argnums=(0, 1, 2),
                                      has_aux=True))
    got_all, ref_all = grad(got)(params, carry, xs), grad(ref)(params, carry, xs)
    # Outputs (final carry, ys) and gradients of params, initial carry and inputs.
    for a, b in zip(jax.tree_util.tree_leaves(got_all), jax.tree_util.tree_leaves(ref_all)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_checkpointing_stores_segment_boundaries_not_every_step():
    # The residuals kept between the forward and backward pass: with checkpointing
    # they shrink from O(T) per-step intermediates to O(T / segment) carries.
    cell = cells.rnn(16)
    params = cell.init(jax.random.PRNGKey(0), 2)
    xs = jnp.ones((400, 2))
    carry = cell.initial_carry()

    def saved_bytes(fn):
        _, vjp = jax.vjp(lambda p: fn(cell.step, p, carry, xs)[0], params)
        return sum(l.size * l.dtype.itemsize for l in jax.tree_util.tree_leaves(vjp)
                   if hasattr(l, "size"))

    plain = saved_bytes(lambda s, p, c, x: jax.lax.scan(lambda cc, xx: s(p, cc, xx), c, x))
    ckpt = saved_bytes(functools.partial(checkpointed_unroll, segment=20))
    assert ckpt < plain / 4, (ckpt, plain)


def test_bad_segment_is_rejected():
    cell = cells.rnn(H)
    params = cell.init(jax.random.PRNGKey(0), I)
    with pytest.raises(ValueError, match="segment"):
        checkpointed_unroll(cell.step, params, cell.initial_carry(), jnp.ones((T, I)), segment=0)
