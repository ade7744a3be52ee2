"""Gradient norms against lag and Jacobian norms for the modern cells, exact in log space:
checked against float64 explicit Jacobian products."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import diagnostics

from modern_cases import H, MAKERS
from modern_cases import setup as _setup



def _explicit_log10_grad_norms(cell, params, xs, w):
    """float64: a_{T-1} = w (per leaf), a_t = J_{t+1}^T a_{t+1} with J from jacrev of the
    flattened step; returns log10 ||a_t|| per carry leaf, [T] each."""
    c = cell.initial_carry()
    flat0, unravel = jax.flatten_util.ravel_pytree(c)
    states, Js = [], []
    for t in range(xs.shape[0]):
        f = lambda v, t=t: jax.flatten_util.ravel_pytree(cell.step(params, unravel(v), xs[t])[0])[0]
        if t > 0:
            Js.append(np.asarray(jax.jacrev(f)(flat0)))
        flat0 = f(flat0)
        states.append(flat0)
    a = np.asarray(jax.flatten_util.ravel_pytree(w)[0])
    adj = [a]
    for J in reversed(Js):
        a = J.T @ a
        adj.append(a)
    adj = adj[::-1]
    sizes = [int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(c)]
    out, start = [], 0
    for n in sizes:
        out.append(np.log10([np.linalg.norm(v[start:start + n]) for v in adj]))
        start += n
    # M_{T-1} = I, M_t = M_{t+1} J_{t+1}: log10 of the Frobenius norms, [T].
    M = np.eye(len(flat0))
    fro = [np.log10(np.linalg.norm(M))]
    for J in reversed(Js):
        M = M @ J
        fro.append(np.log10(np.linalg.norm(M)))
    return out, np.array(fro[::-1])


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_grad_norms_log10_match_float64_jacobian_products(name):
    cell, params, xs = _setup(name)
    xs = xs[:, 0]
    if name == "min_gru":
        # z near 1 (bias +12): 1 - z ~ 6e-6 per step, so over 5 steps the gradient falls to
        # ~1e-26, and with T = 12 to ~1e-60: below float32's range, where only the log path
        # can still be exact.
        params = dict(params, b=params["b"].at[:H].set(12.0))
        xs = jnp.concatenate([xs, xs])
    w = jax.tree_util.tree_map(lambda c: jnp.cos(jnp.arange(c.size, dtype=c.dtype) + 1.0)
                               .reshape(c.shape), cell.initial_carry())

    def loss_fn(states):
        return sum(jnp.sum(wl * s[-1]) for wl, s in zip(jax.tree_util.tree_leaves(w),
                                                        jax.tree_util.tree_leaves(states)))

    # Both diagnostics in one jitted program (test time: one compilation, not eager ones).
    got, fro = jax.jit(lambda p, x: (
        diagnostics.grad_norms(cell.step, p, cell.initial_carry(), x, loss_fn, log10=True),
        diagnostics.jacobian_norms(cell.step, p, cell.initial_carry(), x, ord="fro",
                                   log10=True)))(params, xs)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        cell64 = MAKERS[name](jnp.float64)
        want, want_fro = _explicit_log10_grad_norms(cell64, p64, jnp.asarray(xs, jnp.float64),
                                          jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), w))
    if name == "min_gru":
        assert want[0][0] < -50  # the case really leaves float32's range
    # float32 forward states differ from float64 by ~T eps relative and each Jacobian
    # entry by ~eps * (its condition, O(10) here); log10 of a product of <= 12 such
    # factors is then off by ~12 * 10 * 6e-8 / ln 10 ~ 3e-6. Leaves whose exact norm is 0
    # (the sLSTM's m has no path to the loss) are -inf in both.
    for g, r in zip(jax.tree_util.tree_leaves(got), want):
        g = np.asarray(g, np.float64)
        finite = np.isfinite(r)
        np.testing.assert_array_equal(np.isfinite(g), finite)
        np.testing.assert_allclose(g[finite], r[finite], atol=1e-4)
    # jacobian_norms (Frobenius, log10) against the same float64 products.
    fro = np.asarray(fro, np.float64)
    np.testing.assert_allclose(fro, want_fro, atol=1e-4)
