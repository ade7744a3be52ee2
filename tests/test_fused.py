"""The fast paths (rnn_jax.fused) against an independent plain-scan reference.

The reference runs ``jax.lax.scan`` over the cell's own ``step``, one sequence at a
time over only its valid steps (reversed for ``reverse=True``), and lets autodiff
produce the gradients. It shares no code with rnn_jax.ops or rnn_jax.fused, so a bug
in the masking or reversal of either shows up here.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, fused
from tolerances import gamma, recurrence_rtol, tree_allclose

T, B, I, H = 6, 3, 4, 5
LENGTHS = np.array([6, 2, 0])  # full, partial and empty sequences

VARIANTS = {
    "lstm": (lambda: cells.lstm(H), dict(kind="lstm", gates=("i", "f", "g", "o"))),
    "lstm_no_forget": (lambda: cells.lstm(H, forget_gate=False),
                       dict(kind="lstm", gates=("i", "g", "o"))),
    "lstm_cifg": (lambda: cells.lstm(H, coupled=True), dict(kind="lstm", gates=("f", "g", "o"))),
    "rnn_tanh": (lambda: cells.rnn(H), dict(kind="rnn", activation="tanh")),
    "rnn_relu": (lambda: cells.rnn(H, activation="relu"), dict(kind="rnn", activation="relu")),
    "gru": (lambda: cells.gru(H), dict(kind="gru", reset_after=False)),
    "gru_reset_after": (lambda: cells.gru(H, reset_after=True), dict(kind="gru", reset_after=True)),
}


def _setup(name, seed=0):
    make, opts = VARIANTS[name]
    cell = make()
    fast = fused.for_cell(**opts)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = cell.init(keys[0], I)
    # Perturb every parameter (biases start at 0 or 1) so that no gradient term
    # vanishes by symmetry and every parameter is exercised.
    leaves, tdef = jax.tree_util.tree_flatten(params)
    noise = jax.random.split(keys[1], len(leaves))
    params = tdef.unflatten([l + 0.3 * jax.random.normal(k, l.shape) for l, k in zip(leaves, noise)])
    carry = jax.tree_util.tree_map(
        lambda a: 0.5 * jax.random.normal(keys[2], a.shape), cell.initial_carry((B,)))
    xs = jax.random.normal(keys[3], (T, B, I))
    return cell, fast, params, carry, xs


def _reference(step, params, carry, xs, lengths, reverse):
    """Each sequence alone over its valid steps; ``ys`` zero-padded."""
    if lengths is None:  # the cells' steps broadcast over a leading batch axis
        x = xs[::-1] if reverse else xs
        c, ys = jax.lax.scan(lambda cc, xx: step(params, cc, xx), carry, x)
        return c, (ys[::-1] if reverse else ys)
    lengths = [int(v) for v in lengths]
    finals, outs = [], []
    for b, n in enumerate(lengths):
        c = jax.tree_util.tree_map(lambda a: a[b], carry)
        x = xs[:n, b]
        if reverse:
            x = x[::-1]
        c, ys = jax.lax.scan(lambda cc, xx: step(params, cc, xx), c, x)
        if reverse:
            ys = ys[::-1]
        finals.append(c)
        outs.append(jnp.concatenate([ys, jnp.zeros((T - n, H), ys.dtype)], axis=0))
    final = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *finals)
    return final, jnp.stack(outs, axis=1)


def _loss(fn, params, carry, xs):
    # Weights every output entry differently so that errors cannot cancel.
    c, ys = fn(params, carry, xs)
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return (sum(jnp.sum(jnp.sin(l) * (1.0 + k)) for k, l in enumerate(jax.tree_util.tree_leaves(c)))
            + jnp.sum(w * ys))


def _assert_trees_close(a, b):
    # Two float32 programs of the same math in different operation orders: a forward and a
    # backward pass of T steps (recurrence_rtol over 2T steps) plus parameter gradients that
    # accumulate T*B terms (gamma(T*B)); tests/tolerances.py. Near-zero entries are bounded
    # relative to their leaf's magnitude (scaled_atol).
    tol = recurrence_rtol(2 * T, I + H) + gamma(T * B)
    tree_allclose(a, b, rtol=tol, scaled_atol=tol)


def _value_and_grads(fn):
    """One compiled function returning the outputs and the gradients of ``_loss``."""
    def loss(params, carry, xs):
        out = fn(params, carry, xs)
        return _loss(lambda *_: out, params, carry, xs), out
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))


def _compare(name, lengths, reverse):
    cell, fast, params, carry, xs = _setup(name)
    ln = None if lengths is None else jnp.asarray(lengths)
    ref = functools.partial(_reference, cell.step, lengths=lengths, reverse=reverse)
    got = functools.partial(fast, lengths=ln, reverse=reverse)
    g_ref, out_ref = _value_and_grads(ref)(params, carry, xs)
    g_got, out_got = _value_and_grads(got)(params, carry, xs)
    _assert_trees_close(out_got, out_ref)
    _assert_trees_close(g_got, g_ref)
    # Guard against a vacuous pass: every gradient leaf is actually non-zero.
    for leaf in jax.tree_util.tree_leaves(g_got):
        assert float(jnp.max(jnp.abs(leaf))) > 1e-3


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_path_matches_plain_scan(name):
    _compare(name, None, False)


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_path_matches_plain_scan_with_lengths_and_reverse(name):
    _compare(name, LENGTHS, True)


@pytest.mark.parametrize("lengths,reverse", [(LENGTHS, False), (None, True)])
def test_lstm_lengths_and_reverse_separately(lengths, reverse):
    _compare("lstm", lengths, reverse)


def test_unbatched_and_multi_batch_shapes():
    cell, fast, params, _, _ = _setup("lstm")
    key = jax.random.PRNGKey(3)
    # One unbatched sequence: xs [T, I], carry [H], scalar length.
    xs1 = jax.random.normal(key, (T, I))
    c1 = cell.initial_carry(())
    got = jax.jit(fast)(params, c1, xs1, lengths=jnp.asarray(4))
    ref = jax.jit(_reference, static_argnums=(0, 4, 5))(cell.step, params, jax.tree_util.tree_map(lambda a: a[None], c1),
                     xs1[:, None], (4,), False)
    _assert_trees_close(got, jax.tree_util.tree_map(lambda a: a[:, 0] if a.ndim == 3 else a[0], ref))
    # Two batch axes [2, 3] equal the same sequences flattened to one axis of 6.
    xs2 = jax.random.normal(key, (T, 2, 3, I))
    lengths = jnp.array([[6, 1, 3], [0, 5, 2]])
    c2 = cell.initial_carry((2, 3))
    rev = jax.jit(functools.partial(fast, reverse=True))
    (h, c), ys = rev(params, c2, xs2, lengths=lengths)
    (hf, cf), ysf = rev(params, cell.initial_carry((6,)), xs2.reshape((T, 6, I)),
                        lengths=lengths.reshape(6))
    _assert_trees_close((h.reshape(6, H), c.reshape(6, H), ys.reshape(T, 6, H)), (hf, cf, ysf))


def test_vmap_over_unbatched_fast_path_matches_batched():
    cell, fast, params, carry, xs = _setup("gru")
    lengths = jnp.asarray(LENGTHS)

    def one(c, x, n):
        return fast(params, c, x, lengths=n)

    got = jax.jit(jax.vmap(one, in_axes=(0, 1, 0), out_axes=(0, 1)))(carry, xs, lengths)
    _assert_trees_close(got, jax.jit(fast)(params, carry, xs, lengths=lengths))


def test_zero_length_sequence_axis():
    cell, fast, params, carry, _ = _setup("lstm")
    xs = jnp.zeros((0, B, I))
    g = jax.grad(lambda p, c: jnp.sum(fast(p, c, xs)[0][0]), argnums=(0, 1))(params, carry)
    # With no steps the final carry is the initial one: d(sum h)/dh0 = 1, params get 0.
    np.testing.assert_array_equal(np.asarray(g[1][0]), np.ones((B, H)))
    assert all(float(jnp.max(jnp.abs(l))) == 0.0 for l in jax.tree_util.tree_leaves(g[0]))


def test_fast_path_gradients_match_finite_differences():
    from jax.test_util import check_grads
    cell, fast, params, carry, xs = _setup("lstm")
    f = jax.jit(lambda p, c, x: _loss(functools.partial(fast, lengths=jnp.asarray(LENGTHS)),
                                      p, c, x))
    check_grads(f, (params, carry, xs), order=1, modes=["rev"], atol=5e-2, rtol=5e-2, eps=1e-2)


def test_forward_mode_is_refused_by_the_fast_path():
    # custom_vjp has no JVP rule; the plain path is the one to use for jax.jvp, and the
    # error must say so (issue 18), whichever forward-mode transform reaches it.
    _, fast, params, carry, xs = _setup("rnn_tanh")
    with pytest.raises(TypeError, match="fused=False"):
        jax.jvp(lambda x: fast(params, carry, x)[1], (xs,), (xs,))
    cell, _, params, carry, xs = _setup("gru")
    loss = lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, carry, x)[1])
    attempts = {
        "jvp": lambda: jax.jvp(lambda x: loss(params, x), (xs,), (xs,)),
        "jit(jvp)": lambda: jax.jit(lambda x: jax.jvp(lambda x: loss(params, x), (x,), (x,)))(xs),
        "jacfwd": lambda: jax.jacfwd(loss, argnums=1)(params, xs),
        "hessian": lambda: jax.hessian(loss)(params, xs),
    }
    for name, attempt in attempts.items():
        with pytest.raises(fused.ForwardModeError, match="GRU.*Pass fused=False"):
            attempt()
    # A second reverse-mode derivative would need the hand-written backward's own
    # derivative: refused too, never a silently wrong (e.g. zero) second derivative.
    scale = lambda s: loss(params, s * xs)
    with pytest.raises(fused.ForwardModeError, match="second derivative.*Pass fused=False"):
        jax.grad(jax.grad(scale))(1.0)
    # Reverse mode passes the check (every gradient test here), and fused=False runs
    # forward mode (test_unroll_takes_the_fast_path_by_default_and_the_plain_one_on_request).


def test_for_cell_covers_only_supported_variants():
    assert fused.for_cell("lstm", gates=("i", "f", "g", "o"), peephole=True) is None
    assert fused.for_cell("rnn", activation="softplus") is None
    with pytest.raises(ValueError, match="kind"):
        fused.for_cell("mgu")
    with pytest.raises(ValueError, match="gates"):
        fused.lstm_unroll({}, None, jnp.zeros((1, 1, 1)), gates=("i", "o"))
    _, _, params, carry, xs = _setup("gru")
    with pytest.raises(ValueError, match="b_hn"):
        fused.gru_unroll(params, carry, xs, reset_after=True)


# ----------------------------------------------- integration with rnn_jax.unroll
# The fast path is the Cell's fast_unroll field; unroll(cell, ...) uses it.

def test_unroll_takes_the_fast_path_by_default_and_the_plain_one_on_request():
    cell, _, params, carry, xs = _setup("lstm")
    assert cell.fast_unroll is not None
    assert cells.lstm(H, peephole=True).fast_unroll is None
    lengths = jnp.asarray(LENGTHS)

    def jaxpr_text(**kw):
        f = lambda p: jnp.sum(rnn_jax.unroll(cell, p, carry, xs, lengths=lengths, **kw)[1])
        # Before differentiation the fast path shows up as one custom_vjp call.
        return str(jax.make_jaxpr(f)(params))

    assert "custom_vjp" in jaxpr_text()
    assert "custom_vjp" not in jaxpr_text(fused=False)
    run = lambda fused: _value_and_grads(functools.partial(
        rnn_jax.unroll, cell, lengths=lengths, reverse=True, fused=fused))(params, carry, xs)
    _assert_trees_close(run(True), run(False))
    # Forward mode works on the plain path.
    ys_dot = jax.jvp(lambda x: rnn_jax.unroll(cell, params, carry, x, fused=False)[1],
                     (xs,), (jnp.ones_like(xs),))[1]
    assert ys_dot.shape == (T, B, H)


def test_unroll_remat_matches_unroll():
    cell, _, params, carry, xs = _setup("gru")
    base = _value_and_grads(functools.partial(rnn_jax.unroll, cell))(params, carry, xs)
    ckpt = _value_and_grads(functools.partial(rnn_jax.unroll, cell, remat=4))(params, carry, xs)
    _assert_trees_close(ckpt, base)


def test_lengths_over_leading_batch_axes_match_the_plain_path():
    # lengths [2] for a batch (2, 2): each length covers a row of the leading axis.
    cell, _, params, _, _ = _setup("gru")
    xs = jax.random.normal(jax.random.PRNGKey(5), (T, 2, 2, I))
    lengths = jnp.array([1, T - 1])
    carry = cell.initial_carry((2, 2))
    run = lambda fused_: jax.value_and_grad(
        lambda p: _loss(lambda p_, c_, x_: rnn_jax.unroll(cell, p_, c_, x_, lengths=lengths,
                                                           fused=fused_), p, carry, xs))(params)
    _assert_trees_close(run(True), run(False))


def test_extra_param_leaves_get_zero_gradients_on_the_fast_path():
    cell, _, params, carry, xs = _setup("lstm")
    params = dict(params, note=jnp.ones((3,)))
    grads = jax.grad(lambda p: _loss(lambda p_, c_, x_: rnn_jax.unroll(cell, p_, c_, x_),
                                     p, carry, xs))(params)
    ref = jax.grad(lambda p: _loss(lambda p_, c_, x_: rnn_jax.unroll(cell, p_, c_, x_, fused=False),
                                   p, carry, xs))(params)
    np.testing.assert_array_equal(grads["note"], np.zeros(3))
    _assert_trees_close(grads, ref)
