"""Memory timescales (Cell.retention) and parameter sensitivity ||d carry_t / d theta||."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, diagnostics

# ----------------------------------------------------------------------------- timescales


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_constant_forget_lstm_timescale_is_analytic():
    H, I = 3, 2
    cell = cells.lstm(H)
    p = cell.init(jax.random.PRNGKey(0), I)
    # Zero every weight into the forget gate: f = sigmoid(b_f), constant.
    fsl = slice(H, 2 * H)  # gate order (i, f, g, o)
    assert cell.gates[1] == "f"
    b_f = jnp.array([0.0, 2.0, 5.0])
    p = dict(p, w_x=p["w_x"].at[:, fsl].set(0.0), w_h=p["w_h"].at[:, fsl].set(0.0),
             b=p["b"].at[fsl].set(b_f))
    xs = jax.random.normal(jax.random.PRNGKey(1), (7, 2, I))
    out = diagnostics.timescales(cell, p, cell.initial_carry((2,)), xs)
    want = -1.0 / np.log(_sigmoid(np.asarray(b_f, np.float64)))
    # float32 sigmoid and log near f = 0.993: relative error ~ eps / (1 - f) ~ 2e-5.
    np.testing.assert_allclose(out["timescale"], want, rtol=1e-4)
    assert np.all(np.asarray(out["count"]) == 14)


def test_lstm_timescales_match_float64_loop_with_lengths():
    H, I, T = 2, 3, 6
    cell = cells.lstm(H)
    p = cell.init(jax.random.PRNGKey(2), I)
    xs = jax.random.normal(jax.random.PRNGKey(3), (T, 2, I))
    lengths = np.array([6, 3])
    xs_nan = xs.at[3:, 1].set(jnp.nan)
    out = diagnostics.timescales(cell, p, cell.initial_carry((2,)), xs_nan, lengths=lengths)
    q = {k: np.asarray(v, np.float64) for k, v in p.items()}
    logs = []
    for b in range(2):  # the LSTM equations of Gers et al. 2000, in float64
        h, c = np.zeros(H), np.zeros(H)
        for t in range(lengths[b]):
            z = np.asarray(xs[t, b], np.float64) @ q["w_x"] + h @ q["w_h"] + q["b"]
            i, f, g, o = np.split(z, 4)
            i, f, o, g = _sigmoid(i), _sigmoid(f), _sigmoid(o), np.tanh(g)
            logs.append(np.log(f))
            c = f * c + i * g
            h = o * np.tanh(c)
    want = -1.0 / np.mean(logs, axis=0)
    # Forget gates near 0.5-0.9: float32 gate and log errors ~1e-6 relative.
    np.testing.assert_allclose(out["timescale"], want, rtol=1e-5)


def test_user_cell_and_gru_retention():
    # A cell written here: h_t = a * h_{t-1} + x_t with retention a (per unit).
    a = jnp.array([0.5, 0.9, 1.0])

    def step(p, h, x):
        return p * h + x, h

    user = cells.Cell(lambda k, i: a, lambda batch_shape=(): jnp.zeros(batch_shape + (3,)), step,
                      3, retention=lambda p, h, x: jnp.broadcast_to(p, h.shape))
    out = diagnostics.timescales(user, a, jnp.zeros(3), jnp.ones((4, 3)))
    np.testing.assert_allclose(out["timescale"][:2], -1 / np.log(np.asarray(a[:2], np.float64)),
                               rtol=1e-6)
    assert np.isinf(out["timescale"][2])
    gru = cells.gru(2)
    p = gru.init(jax.random.PRNGKey(0), 1)
    r = diagnostics.retention_trace(gru, p, gru.initial_carry(), jnp.ones((3, 1)))
    assert r.shape == (3, 2) and np.all((r > 0) & (r < 1))
    with pytest.raises(ValueError, match="retention"):
        diagnostics.timescales(cells.rnn(2), cells.rnn(2).init(jax.random.PRNGKey(0), 1),
                               jnp.zeros(2), jnp.ones((3, 1)))


def test_histogram_figure(tmp_path):
    paths = diagnostics.plot_timescale_histograms(
        {"a": [1.0, 3.0, 20.0], "b": [5.0, float("inf")]}, str(tmp_path / "tau"))
    assert [p.endswith(e) for p, e in zip(paths, ["png", "pdf"])] == [True, True]

# ----------------------------------------------------------------------------- sensitivity


def test_scalar_linear_sensitivity_closed_form_and_finite_differences():
    lam, gamma, T = 0.9, 0.5, 8
    x = np.random.default_rng(0).normal(size=T)

    def step(p, h, xt):
        return p["lam"] * h + p["gamma"] * xt, h

    p = {"lam": jnp.array([lam]), "gamma": jnp.array([gamma])}
    xs = jnp.asarray(x, jnp.float32)[:, None]
    s = diagnostics.param_sensitivity(step, p, jnp.zeros(1), xs, wrt=("lam",))
    # d h_t / d lam = gamma * sum_{k>=1} k lam^(k-1) x_{t-k}  (h_{-1} = 0)
    want = np.array([abs(gamma * sum(k * lam ** (k - 1) * x[t - k] for k in range(1, t + 1)))
                     for t in range(T)])
    # float32 forward-mode tangents: a few ulps per step on values of order 1.
    np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
    # Finite differences (float64 NumPy) of h_{T-1} in lam and gamma together.
    def h_last(l, g):
        h = 0.0
        for xt in x:
            h = l * h + g * xt
        return h
    eps = 1e-6
    d_lam = (h_last(lam + eps, gamma) - h_last(lam - eps, gamma)) / (2 * eps)
    d_gam = (h_last(lam, gamma + eps) - h_last(lam, gamma - eps)) / (2 * eps)
    both = diagnostics.param_sensitivity(step, p, jnp.zeros(1), xs, log10=True)
    np.testing.assert_allclose(both[-1], np.log10(math.hypot(d_lam, d_gam)), atol=1e-5)


def test_sensitivity_batch_and_lengths():
    cell = cells.rnn(3)
    p = cell.init(jax.random.PRNGKey(0), 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 2, 2))
    xs_nan = xs.at[3:, 1].set(jnp.inf)
    s = diagnostics.param_sensitivity(cell.step, p, cell.initial_carry((2,)), xs_nan,
                                      wrt=("w_h",), lengths=jnp.array([5, 3]), batch_ndim=1)
    assert s.shape == (2, 5)
    for b, L in enumerate([5, 3]):
        one = diagnostics.param_sensitivity(cell.step, p, cell.initial_carry(), xs[:L, b],
                                            wrt=("w_h",))
        np.testing.assert_allclose(s[b, :L], one, rtol=1e-5)
        np.testing.assert_allclose(s[b, L:], one[-1], rtol=1e-5)   # padding keeps the carry
    with pytest.raises(ValueError, match="wrt names"):
        diagnostics.param_sensitivity(cell.step, p, cell.initial_carry(), xs[:, 0], wrt=("nope",))


def test_builtin_rnn_sensitivity_matches_float64_finite_differences():
    H, T = 2, 6
    cell = cells.rnn(H)
    p = cell.init(jax.random.PRNGKey(4), 1)
    xs = jax.random.normal(jax.random.PRNGKey(5), (T, 1))
    got = diagnostics.param_sensitivity(cell.step, p, cell.initial_carry(), xs, wrt=("w_h",))
    q = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x64 = np.asarray(xs, np.float64)

    def h_last(w_h):  # the Elman equations in float64
        h = np.zeros(H)
        for x in x64:
            h = np.tanh(x @ q["w_x"] + h @ w_h + q["b"])
        return h

    eps = 1e-6
    cols = []
    for idx in np.ndindex(H, H):
        d = np.zeros((H, H))
        d[idx] = eps
        cols.append((h_last(q["w_h"] + d) - h_last(q["w_h"] - d)) / (2 * eps))
    # Central differences in float64: error ~1e-10; float32 tangents ~1e-6 relative.
    np.testing.assert_allclose(got[-1], np.linalg.norm(np.stack(cols)), rtol=1e-5)
