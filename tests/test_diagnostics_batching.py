"""Jacobian diagnostics: bfloat16 (issue 17), per-example batching and lengths (issue 18)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, diagnostics

# ------------------------------------------------- Jacobian diagnostics: bf16, batch, lengths


def test_jacobian_norms_batch_per_example_equals_loop():
    cell = cells.lstm(3)
    p = cell.init(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (6, 2, 2))
    lengths = jnp.array([6, 3])
    xs_nan = xs.at[3:, 1].set(jnp.nan)
    kw = dict(lengths=lengths, batch_ndim=1)
    jn = diagnostics.jacobian_norms(cell.step, p, cell.initial_carry((2,)), xs_nan, log10=True, **kw)
    sp = diagnostics.jacobian_spectra(cell.step, p, cell.initial_carry((2,)), xs_nan, [1], **kw)
    assert jn.shape == (2, 6) and sp.shape == (2, 1, 6)
    for b, L in enumerate([6, 3]):
        one = diagnostics.jacobian_norms(cell.step, p, cell.initial_carry(), xs[:L, b], log10=True)
        # Same float32 operations, batched differently: rounding only.
        np.testing.assert_allclose(jn[b, :L], one, atol=1e-5)
        # Padded steps have the identity Jacobian: norm 1 (log 0), up to renormalisation.
        np.testing.assert_allclose(jn[b, L:], 0.0, atol=1e-5)
        # Lags count back from each sequence's own last valid step.
        one_sp = diagnostics.jacobian_spectra(cell.step, p, cell.initial_carry(), xs[:L, b], [1])
        np.testing.assert_allclose(sp[b], one_sp, atol=1e-4)
        assert np.abs(np.asarray(one_sp)).max() > 1e-2   # a real product, not the identity
    # grad_norms with lengths: a loss on the last state reads the last valid one.
    g = diagnostics.grad_norms(cell.step, p, cell.initial_carry(), xs_nan[:, 1],
                               lambda s: jnp.sum(s[0][-1] ** 2), lengths=3)
    ref = diagnostics.grad_norms(cell.step, p, cell.initial_carry(), xs[:3, 1],
                                 lambda s: jnp.sum(s[0][-1] ** 2))
    assert np.all(np.isfinite(g[0]))
    np.testing.assert_allclose(g[0][:3], ref[0], rtol=1e-5)


def test_jacobian_diagnostics_accept_bfloat16():
    # Issue 17 item 7: "Unsupported dtype bfloat16" from the norm/SVD.
    cell = cells.rnn(3, dtype=jnp.bfloat16)
    p = cell.init(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 2)).astype(jnp.bfloat16)
    jn = diagnostics.jacobian_norms(cell.step, p, cell.initial_carry(), xs, log10=True)
    sp = diagnostics.jacobian_spectra(cell.step, p, cell.initial_carry(), xs, [2])
    assert jn.dtype == jnp.float32 and sp.dtype == jnp.float32
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p)
    ref = diagnostics.jacobian_norms(cells.rnn(3).step, p32, jnp.zeros(3), xs.astype(jnp.float32),
                                     log10=True)
    # bfloat16 steps carry 8 bits (rel. 4e-3) per step; over 4 factors ~1e-2 relative,
    # i.e. ~5e-3 in log10.
    np.testing.assert_allclose(jn, ref, atol=1e-2)
    with pytest.raises(ValueError, match="batch_ndim"):
        diagnostics.jacobian_norms(cell.step, p, cell.initial_carry(), xs, batch_ndim=-1)
