"""Variational dropout, zoneout and weight-drop: masks, evaluation mode and references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells
from tolerances import POINTWISE_OPS_PER_STEP, gamma

T, B, I, H = 20, 64, 5, 16


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _echo_cell():
    """y_t = x_t and carry = x_t: shows exactly what the step receives."""
    def step(params, carry, x):
        return x, x
    return cells.Cell(lambda key, n: {}, lambda batch_shape=(): jnp.zeros(tuple(batch_shape) + (I,)),
                      step, I)


def test_variational_input_mask_is_fixed_over_time_and_has_the_rate():
    xs = jnp.ones((T, B, I))
    cell = cells.variational_dropout(_echo_cell(), key=jax.random.key(0), batch_shape=(B,),
                                     input_size=I, input_rate=0.25)
    _, ys = rnn_jax.unroll(cell, {}, cell.initial_carry((B,)), xs)
    ys = np.asarray(ys)
    np.testing.assert_array_equal(ys, np.broadcast_to(ys[0], ys.shape))  # one mask per sequence
    assert set(np.unique(ys)) <= {0.0, np.float32(1 / 0.75)}
    dropped = np.mean(ys[0] == 0)
    # B*I = 320 Bernoulli(0.25) draws: 4 standard deviations is 0.097.
    assert abs(dropped - 0.25) < 0.097


def test_variational_lstm_matches_numpy_reference_and_is_off_without_key():
    lstm = cells.lstm(H)
    params = lstm.init(jax.random.key(1), I)
    xs = jax.random.normal(jax.random.key(2), (T, B, I))
    key = jax.random.key(3)
    cell = cells.variational_dropout(lstm, key=key, batch_shape=(B,), input_size=I,
                                     input_rate=0.2, recurrent_rate=0.3)
    _, ys = rnn_jax.unroll(cell, params, cell.initial_carry((B,)), xs)
    # Recover the two masks as the wrapper draws them, then run the equations in float64.
    k_x, k_h = jax.random.split(key)
    m_x = np.where(np.asarray(jax.random.bernoulli(k_x, 0.8, (B, I))), 1 / 0.8, 0.0)
    m_h = np.where(np.asarray(jax.random.bernoulli(k_h, 0.7, (B, H))), 1 / 0.7, 0.0)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h, c, want = np.zeros((B, H)), np.zeros((B, H)), []
    for x in np.asarray(xs, np.float64):
        i, f, g, o = np.split((x * m_x) @ p["w_x"] + (h * m_h) @ p["w_h"] + p["b"], 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        want.append(h)
    # float32 against float64 over T=20 contracting steps: ~1e-6 relative.
    np.testing.assert_allclose(ys, np.stack(want), rtol=1e-4, atol=1e-5)
    off = cells.variational_dropout(lstm, key=None, batch_shape=(B,), input_size=I, input_rate=0.5)
    assert off is lstm


def test_zoneout_keeps_or_updates_each_unit_and_evaluates_the_expectation():
    gru = cells.gru(H)
    params = gru.init(jax.random.key(4), I)
    xs = jax.random.normal(jax.random.key(5), (T, B, I))
    cell = cells.zoneout(gru, key=jax.random.key(6), rate=0.4)
    (h_final, _), ys = rnn_jax.unroll(cell, params, cell.initial_carry((B,)), xs)
    prev = np.concatenate([np.zeros((1, B, H)), np.asarray(ys[:-1])])
    fresh = np.stack([np.asarray(gru.step(params, jnp.asarray(p_), x)[1]) for p_, x in zip(prev, xs)])
    # The scan's fused step and the eager step round differently (XLA contracts and
    # reorders at its default optimisation level): "equal" means within one GRU step's
    # rounding bound, a dot product of length I + H plus the pointwise update
    # (tests/tolerances.py); |h| <= 1, so the bound is absolute.
    tol = gamma(I + H + POINTWISE_OPS_PER_STEP)
    kept = np.isclose(prev, np.asarray(ys), rtol=0, atol=tol)
    updated = np.isclose(fresh, np.asarray(ys), rtol=0, atol=tol)
    assert np.all(kept | updated)  # every unit is either its old or its new value
    frac = np.mean(kept & ~updated)
    # T*B*H = 20480 Bernoulli(0.4) draws (minus rare ties): 4 sigma = 0.014.
    assert abs(frac - 0.4) < 0.014
    np.testing.assert_array_equal(h_final, ys[-1])
    # Evaluation: the expectation 0.4 * old + 0.6 * new.
    evaluate = cells.zoneout(gru, key=None, rate=0.4)
    _, ys_eval = rnn_jax.unroll(evaluate, params, gru.initial_carry((B,)), xs)
    h, want = np.zeros((B, H), np.float32), []
    for x in xs:
        h = 0.4 * h + 0.6 * np.asarray(gru.step(params, jnp.asarray(h), x)[1])
        want.append(h)
    np.testing.assert_allclose(ys_eval, np.stack(want), rtol=1e-5, atol=1e-6)


def test_zoneout_per_leaf_rates_and_lengths():
    lstm = cells.lstm(H)
    params = lstm.init(jax.random.key(7), I)
    xs = jax.random.normal(jax.random.key(8), (T, 4, I))
    lengths = jnp.array([T, 3, 0, 11])
    cell = cells.zoneout(lstm, key=jax.random.key(9), rate=(0.0, 0.999999))
    ((h, c), keys), ys = rnn_jax.unroll(cell, params, cell.initial_carry((4,)), xs, lengths=lengths)
    assert keys.shape == (4, 2) and keys.dtype == jnp.uint32
    np.testing.assert_array_equal(c, 0.0)  # the cell state (almost) never updates
    np.testing.assert_array_equal(ys[3:, 1], 0.0)  # padding stays zero
    with pytest.raises(ValueError, match="one per carry leaf"):
        cells.zoneout(lstm, key=jax.random.key(0), rate=(0.1, 0.2, 0.3))


def test_weight_drop():
    params = cells.lstm(H).init(jax.random.key(10), I)
    dropped = cells.weight_drop(jax.random.key(11), params, 0.5)
    w, d = np.asarray(params["w_h"]), np.asarray(dropped["w_h"])
    assert np.all((d == 0) | np.isclose(d, 2 * w, rtol=1e-7))
    assert abs(np.mean(d == 0) - 0.5) < 4 * np.sqrt(0.25 / w.size)
    np.testing.assert_array_equal(dropped["w_x"], params["w_x"])
    assert params["w_h"] is not dropped["w_h"]
    with pytest.raises(ValueError, match=r"no \['w_hh'\]"):
        cells.weight_drop(jax.random.key(0), params, 0.5, names=("w_hh",))
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\)"):
        cells.weight_drop(jax.random.key(0), params, 1.0)
