"""Lyapunov exponents (QR method): analytic cases, a float64 NumPy reference, batching, lengths."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, diagnostics


def _diag_step(p, h, x):
    # A cell written here: h_t = diag(lam) h_{t-1} + x_t.
    return p["lam"] * h + x, h


def test_diagonal_linear_gives_sorted_log_abs_lambda():
    lam = np.array([0.5, -1.3, 0.9, 0.05], np.float32)
    T = 12
    xs = jax.random.normal(jax.random.PRNGKey(0), (T, 4))
    out = diagnostics.lyapunov_exponents(_diag_step, {"lam": jnp.asarray(lam)}, jnp.zeros(4), xs,
                                         lags=[1, 5, 12])
    want = np.sort(np.log(np.abs(lam)))[::-1]
    # J = diag(lam) exactly: R_ii = lam_i up to one rounding, so |error| ~ 1e-7 per step.
    np.testing.assert_allclose(out["exponents"], want, atol=1e-6)
    # The QR estimate is exact for commuting normal Jacobians: cond = (max/min)^n.
    cond = np.log10(np.abs(lam).max() / np.abs(lam).min()) * np.array([1, 5, 12])
    np.testing.assert_allclose(out["log10_condition"], cond, rtol=1e-5)
    assert int(out["steps"]) == T
    # From a random orthonormal start the individual sums differ over a finite run, but
    # their total is log|det| of the product whatever Q_0 is: T * sum log|lam_i|.
    rnd = diagnostics.lyapunov_exponents(_diag_step, {"lam": jnp.asarray(lam)}, jnp.zeros(4), xs,
                                         key=jax.random.PRNGKey(5), mode="fwd")
    np.testing.assert_allclose(np.sum(rnd["exponents"]), np.sum(np.log(np.abs(lam))), atol=1e-5)


def test_scaled_orthogonal_gives_log_a_everywhere_pytree_carry():
    a = 0.7
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0].astype(np.float32)
    w = jnp.asarray(a * q)

    def step(p, carry, x):  # dict carry: the same linear map on two independent parts
        return {"u": carry["u"] @ p, "v": carry["v"] @ p + x}, x

    carry = {"u": jnp.ones(3), "v": jnp.zeros(3)}
    xs = jnp.ones((10, 3))
    out = diagnostics.lyapunov_exponents(step, w, carry, xs)
    assert out["exponents"].shape == (6,)
    # |R_ii| = a for an orthogonal times a; float32 QR rounding ~ 1e-7 relative per step.
    np.testing.assert_allclose(out["exponents"], math.log(a), atol=2e-6)


def test_long_sequence_is_exact():
    # T = 10,000: the log sums reach ~ -7000, where a plain float32 running sum has a spacing
    # of 5e-4, i.e. up to ~2.5e-4 error per step. The integer + fraction sum rounds each
    # addition in [0, 1) (half-ulp 3e-8) plus the float32 log's own rounding: <= 1e-7 per
    # step on the exponent, and <= 1e4 * 2e-7 / ln 10 ~ 1e-3 on the log10 condition number.
    lam = jnp.array([0.5, 0.99])
    lam64 = np.asarray(lam, np.float64)               # the float32 values, exactly
    xs = jnp.zeros((10_000, 2))
    out = diagnostics.lyapunov_exponents(_diag_step, {"lam": lam}, jnp.ones(2), xs, lags=[10_000])
    np.testing.assert_allclose(out["exponents"], np.log(lam64)[::-1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(out["log10_condition"], [10_000 * np.log10(lam64[1] / lam64[0])],
                               rtol=0, atol=1e-3)


def _numpy_qr_reference(w_x, w_h, b, xs, k):
    """float64 QR method on h_t = tanh(x_t w_x + h_{t-1} w_h + b), written from the equations."""
    H = w_h.shape[0]
    h = np.zeros(H)
    q = np.eye(H)[:, :k]
    sums = np.zeros(k)
    prod = np.eye(H)
    prods = []
    for x in xs:
        h = np.tanh(x @ w_x + h @ w_h + b)
        jac = (1 - h ** 2)[:, None] * w_h.T            # d h_t / d h_{t-1}
        q, r = np.linalg.qr(jac @ q)
        sums += np.log(np.abs(np.diag(r)))
        prod = jac @ prod
        prods.append(prod.copy())
    return np.sort(sums / len(xs))[::-1], sums / len(xs), prods


def test_tanh_rnn_matches_float64_reference():
    H, T = 4, 15
    cell = cells.rnn(H, recurrent_scale=1.5)
    p = cell.init(jax.random.PRNGKey(1), 2)
    xs = jax.random.normal(jax.random.PRNGKey(2), (T, 2))

    # The four estimates below in one jitted program (test time: one compilation, not
    # eager ones per call).
    @jax.jit
    def estimates(p, xs):
        c0 = cell.initial_carry()
        return (diagnostics.lyapunov_exponents(cell.step, p, c0, xs, lags=[3, 8]),
                diagnostics.lyapunov_exponents(cell.step, p, c0, xs, num_exponents=2),
                diagnostics.top_exponent(cell.step, p, c0, xs),
                diagnostics.top_exponent(cell.step, p, c0, xs, mode="fwd"))

    out, k2, top, top_fwd = estimates(p, xs)
    f64 = {k: np.asarray(v, np.float64) for k, v in p.items()}
    want, unsorted, prods = _numpy_qr_reference(f64["w_x"], f64["w_h"], f64["b"], np.asarray(xs, np.float64), H)
    # float32 trajectory and QR against float64: per-step logs differ by ~1e-6 (a few ulps
    # through tanh' and an H=4 Householder QR), averaged over T.
    np.testing.assert_allclose(out["exponents"], want, atol=2e-5)
    for n, c in zip([3, 8], np.asarray(out["log10_condition"])):
        sv = np.linalg.svd(prods[n - 1], compute_uv=False)
        true = np.log10(sv[0] / sv[-1])
        assert c <= true + 1e-4                    # the estimate never exceeds the true value
        assert c >= 0.3 * true                     # and it is not a trivial bound
    # The first k columns of Q evolve independently of the others: k = 2 gives the first
    # two diagonal sums of the full run (in QR order, then sorted).
    np.testing.assert_allclose(k2["exponents"], np.sort(unsorted[:2])[::-1], atol=2e-5)
    np.testing.assert_allclose(top, unsorted[0], atol=2e-5)
    np.testing.assert_allclose(top_fwd, unsorted[0], atol=2e-5)


def test_batch_lengths_and_nan_padding():
    H, T = 3, 9
    cell = cells.lstm(H)
    p = cell.init(jax.random.PRNGKey(3), 2)
    xs = jax.random.normal(jax.random.PRNGKey(4), (T, 2, 2))
    lengths = jnp.array([9, 5])
    xs_nan = xs.at[5:, 1].set(jnp.nan)

    # The batched run and both references in one jitted program (test time).
    @jax.jit
    def estimates(p, xs, xs_nan):
        out = diagnostics.lyapunov_exponents(cell.step, p, cell.initial_carry((2,)), xs_nan,
                                             lengths=lengths, batch_ndim=1, discard=1)
        ones = [diagnostics.lyapunov_exponents(cell.step, p, cell.initial_carry(), xs[:L, b],
                                               discard=1) for b, L in enumerate([9, 5])]
        return out, ones

    out, ones = estimates(p, xs, xs_nan)
    assert out["exponents"].shape == (2, 2 * H)
    for b, L in enumerate([9, 5]):
        one = ones[b]
        # Same float32 operations in a different batch layout: rounding only.
        np.testing.assert_allclose(out["exponents"][b], one["exponents"], rtol=1e-5, atol=1e-5)
        assert int(out["steps"][b]) == L - 1


def test_bfloat16_runs_in_float32():
    lam = jnp.array([0.5, 0.25], jnp.bfloat16)
    out = diagnostics.lyapunov_exponents(_diag_step, {"lam": lam}, jnp.zeros(2, jnp.bfloat16),
                                         jnp.ones((5, 2), jnp.bfloat16))
    assert out["exponents"].dtype == jnp.float32
    # 0.5 and 0.25 are exact in bfloat16, so are their products with the identity.
    np.testing.assert_allclose(out["exponents"], np.log([0.5, 0.25]), atol=1e-6)


def test_bad_arguments():
    xs = jnp.zeros((4, 2))
    args = (_diag_step, {"lam": jnp.ones(2)}, jnp.zeros(2), xs)
    with pytest.raises(ValueError, match="num_exponents"):
        diagnostics.lyapunov_exponents(*args, num_exponents=3)
    with pytest.raises(ValueError, match="discard"):
        diagnostics.lyapunov_exponents(*args, discard=4)
    with pytest.raises(ValueError, match="lags must lie"):
        diagnostics.lyapunov_exponents(*args, lags=[0])
    with pytest.raises(ValueError, match="need all"):
        diagnostics.lyapunov_exponents(*args, lags=[1], num_exponents=1)
    with pytest.raises(ValueError, match="batch_ndim"):
        diagnostics.lyapunov_exponents(*args, batch_ndim=2)
