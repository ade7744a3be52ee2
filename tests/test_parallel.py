"""The associative-scan paths (rnn_jax.parallel) equal the sequential scan: values and
gradients, with lengths, reverse, resets and arbitrary initial carries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, parallel, unroll

T, B, I, H = 13, 3, 2, 4
LENGTHS = jnp.array([13, 6, 0])

MAKERS = {
    "lru": lambda dt: cells.lru(H, state_size=3, r_min=0.5, r_max=0.99, dtype=dt),
    "min_gru": lambda dt: cells.min_gru(H, dtype=dt),
    "min_lstm": lambda dt: cells.min_lstm(H, dtype=dt),
}

# Error analysis for float32 (eps = 6e-8): each state is a sum of <= T terms, each a
# product of <= T coefficients of modulus <= 1; the scan and the loop round in different
# orders, so they differ by at most ~2 T eps relative to the largest term (O(1) here),
# plus, in log space, |log h| * eps from exp/log (|log h| < 10). 2 * 13 * 6e-8 + 10 * 6e-8
# ~ 2.2e-6; gradients are the same sums transposed. We allow 1e-5.
TOL32 = 1e-5


def _setup(name, dtype, key=0):
    cell = MAKERS[name](dtype)
    k = jax.random.split(jax.random.key(key), 4)
    params = cell.init(k[0], I)
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(k[1], a.shape, a.dtype)
                                    if a.ndim == 2 else a, params)
    xs = jax.random.normal(k[2], (T, B, I), dtype)
    # A non-zero initial carry of either sign: the log-space path takes h0 apart.
    carry = jax.tree_util.tree_map(
        lambda c: jax.random.normal(k[3], c.shape, c.dtype), cell.initial_carry((B,)))
    return cell, params, carry, xs


def _loss(ys, final):
    w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree_util.tree_leaves(final))


def _run(cell, parallel_path, **kw):
    def f(params, carry, xs):
        if parallel_path:
            final, ys = cell.parallel_unroll(params, carry, xs, **kw)
        else:
            final, ys = unroll(cell, params, carry, xs, fused=False, **kw)
        return _loss(ys, final), (final, ys)
    return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)


def _compare(a, b, tol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("kw", [{}, {"lengths": LENGTHS, "reverse": True}],
                         ids=["plain", "lengths-reverse"])  # lengths alone: the resets test
def test_parallel_equals_sequential_float32(name, kw):
    cell, params, carry, xs = _setup(name, jnp.float32)
    got = _run(cell, True, **kw)(params, carry, xs)
    want = _run(cell, False, **kw)(params, carry, xs)
    _compare(got, want, TOL32)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_parallel_equals_sequential_float64_with_resets(name):
    """Resets: the carry is replaced by the initial carry before the flagged steps; the
    reference is a plain scan that does exactly that. float64, so 1e-12."""
    with jax.enable_x64(True):
        cell, params, carry, xs = _setup(name, jnp.float64, key=1)
        resets = jnp.zeros((T, B), bool).at[4, 0].set(True).at[9, :].set(True).at[0, 1].set(True)
        lengths = jnp.array([13, 8, 2])

        def reference(params, carry, xs):
            def body(c_in, trx):
                t, r, x = trx
                c = jax.tree_util.tree_map(
                    lambda a, a0: jnp.where(r.reshape(r.shape + (1,)), a0, a), c_in, carry)
                new, y = cell.step(params, c, x)
                v = (t < lengths).reshape(B, 1)
                # Padding (and a reset inside it) leaves the carry as it was.
                new = jax.tree_util.tree_map(lambda n, o: jnp.where(v, n, o), new, c_in)
                return new, jnp.where(v, y, 0.0)
            final, ys = jax.lax.scan(body, carry, (jnp.arange(T), resets, xs))
            return _loss(ys, final), (final, ys)

        want = jax.value_and_grad(reference, argnums=(0, 1, 2), has_aux=True)(params, carry, xs)
        got = _run(cell, True, lengths=lengths, resets=resets)(params, carry, xs)
        _compare(got, want, 1e-12)
        # No gradient crosses a reset: sequence 0's outputs from step 4 on do not depend on
        # its inputs before step 4.
        late = lambda x: jnp.sum(cell.parallel_unroll(params, carry, x, resets=resets)[1][4:, 0])
        g = jax.grad(late)(xs)
        assert np.all(np.asarray(g[:4, 0]) == 0) and np.any(np.asarray(g[4:, 0]) != 0)


def test_reverse_without_lengths():
    """The whole-sequence flip (no lengths), on the complex form; the real and log forms
    share the same _prepare/_finish code."""
    cell, params, carry, xs = _setup("lru", jnp.float32)
    _compare(_run(cell, True, reverse=True)(params, carry, xs),
             _run(cell, False, reverse=True)(params, carry, xs), TOL32)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_padding_has_no_effect(name):
    """NaN and huge values in the padding change nothing (jnp.where, not a mask product)."""
    cell, params, carry, xs = _setup(name, jnp.float32)
    valid = (jnp.arange(T).reshape(T, 1) < LENGTHS.reshape(1, B)).reshape(T, B, 1)
    f0, y0 = cell.parallel_unroll(params, carry, jnp.where(valid, xs, 0.0), lengths=LENGTHS)
    f1, y1 = cell.parallel_unroll(params, carry, jnp.where(valid, xs, jnp.nan), lengths=LENGTHS)
    _compare((f0, y0), (f1, y1), 0.0)
    assert np.all(np.asarray(y0)[~np.asarray(valid[..., 0])] == 0)
    g = [jax.grad(lambda p, x: _loss(*cell.parallel_unroll(p, carry, x, lengths=LENGTHS)[::-1]))(
        params, jnp.where(valid, xs, fill)) for fill in (0.0, 1e3)]
    _compare(g[0], g[1], 0.0)
    # The length-0 sequence keeps its initial carry exactly.
    for leaf_f, leaf_c in zip(jax.tree_util.tree_leaves(f0), jax.tree_util.tree_leaves(carry)):
        np.testing.assert_array_equal(np.asarray(leaf_f)[2], np.asarray(leaf_c)[2])


def test_log_space_survives_where_linear_space_underflows():
    """Coefficients 1e-30 per step: the product over 4 steps (1e-120) underflows float32 in
    linear space; the log-space scan carries it as a sum of logs. The exact answer of
    h_t = a h_{t-1} + b with a = 1e-30, b = 1 is 1 + 1e-30 + ... = 1 (float32), and with a
    = 1 - 1e-7 it is t+1 to ~t^2 eps."""
    log_a = jnp.full((6, 1), jnp.log(jnp.float32(1e-30)))
    log_b = jnp.zeros((6, 1))
    final, hs = parallel.log_linear_scan(log_a, log_b, jnp.array([5.0]))
    np.testing.assert_allclose(np.asarray(hs[:, 0]), 1.0, rtol=1e-6)
    g = jax.grad(lambda la: parallel.log_linear_scan(la, log_b, jnp.array([5.0]))[0][0])(log_a)
    assert np.all(np.isfinite(np.asarray(g)))
    hs = parallel.log_linear_scan(jnp.full((6, 1), jnp.log1p(-1e-7)), log_b, jnp.zeros(1))[1]
    np.testing.assert_allclose(np.asarray(hs[:, 0]), np.arange(1, 7), rtol=1e-6)


def test_linear_scan_real_matches_loop():
    """The real form (no cell uses it yet) against a NumPy loop, with lengths and resets."""
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (9, 2, 3)).astype(np.float32)
    b = rng.normal(size=(9, 2, 3)).astype(np.float32)
    h0 = rng.normal(size=(2, 3)).astype(np.float32)
    resets = np.zeros((9, 2), bool)
    resets[5, 1] = True
    lengths = np.array([9, 7])
    final, hs = parallel.linear_scan(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0),
                                     lengths=jnp.asarray(lengths), resets=jnp.asarray(resets))
    for j in range(2):
        h = h0[j].astype(np.float64)
        for t in range(lengths[j]):
            h = a[t, j] * (h0[j] if resets[t, j] else h) + b[t, j]
            np.testing.assert_allclose(np.asarray(hs[t, j]), h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(final[j]), h, rtol=1e-5, atol=1e-6)


def test_cells_without_a_parallel_form_say_so():
    for cell in (cells.slstm(4), cells.indrnn(4), cells.lstm(4)):
        assert cell.parallel_unroll is None
