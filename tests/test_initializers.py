"""Initializers and the initial parameters of the built-in cells, against the facts
their docstrings state (spectra, distributions, which bias block holds what)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, initializers as inits


def _block(params, cell, gate, key="b"):
    k = cell.gates.index(gate)
    H = cell.hidden_size
    return np.asarray(params[key][..., k * H:(k + 1) * H])


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.7])
def test_orthogonal_square_has_all_singular_values_equal_to_scale(scale):
    w = np.asarray(inits.orthogonal(jax.random.key(0), (16, 16), scale=scale), np.float64)
    np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), scale, rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(w)), scale, rtol=1e-4)


@pytest.mark.parametrize("shape", [(3, 7), (7, 3)])
def test_orthogonal_rectangular_is_orthonormal_along_the_short_side(shape):
    w = np.asarray(inits.orthogonal(jax.random.key(1), shape, scale=2.0), np.float64)
    assert w.shape == shape
    gram = w @ w.T if shape[0] < shape[1] else w.T @ w
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(shape)), atol=1e-5)


def test_orthogonal_is_float64_accurate_when_asked():
    with jax.enable_x64(True):
        w = np.asarray(inits.orthogonal(jax.random.key(2), (32, 32), jnp.float64))
        assert w.dtype == np.float64
        np.testing.assert_allclose(w.T @ w, np.eye(32), atol=1e-12)


def test_orthogonal_is_haar_not_sign_biased():
    # Plain QR returns a sign-biased q (e.g. q[0, 0] < 0 always for Householder QR);
    # for Haar-distributed 4x4 matrices q[0, 0] has mean 0 and variance 1/4.
    qs = jax.vmap(lambda k: inits.orthogonal(k, (4, 4)))(jax.random.split(jax.random.key(3), 400))
    q00 = np.asarray(qs[:, 0, 0])
    assert abs(q00.mean()) < 4 * math.sqrt(0.25 / 400)
    assert abs(q00.var() - 0.25) < 0.06


def test_identity_and_its_shape_check():
    np.testing.assert_array_equal(inits.identity(None, (5, 5), scale=0.7), 0.7 * np.eye(5, dtype=np.float32))
    with pytest.raises(ValueError, match="square"):
        inits.identity(None, (3, 4))


def test_gaussian_std_and_spectral_radius():
    n = 256
    w = np.asarray(inits.gaussian(jax.random.key(4), (n, n), scale=1.5), np.float64)
    # 65536 entries: the sample std has relative sd 0.3%, so 1.5% is a 5-sigma bound.
    assert abs(w.std() / (1.5 / math.sqrt(n)) - 1.0) < 0.015
    assert abs(w.mean()) < 5 * 1.5 / math.sqrt(n) / n
    # Circular law: the spectral radius approaches the scale for large n.
    assert abs(np.abs(np.linalg.eigvals(w)).max() / 1.5 - 1.0) < 0.1


def test_uniform_and_glorot_bounds():
    w = np.asarray(inits.uniform(jax.random.key(5), (50, 64)))
    bound = 1.0 / math.sqrt(64)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    w = np.asarray(inits.glorot_uniform(jax.random.key(6), (30, 70)))
    bound = math.sqrt(6.0 / 100)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    np.testing.assert_array_equal(inits.zeros(None, (2, 3)), np.zeros((2, 3)))


def test_recurrent_lookup():
    w = inits.recurrent("identity", 0.3)(jax.random.key(0), (4, 4))
    np.testing.assert_allclose(w, 0.3 * np.eye(4))
    with pytest.raises(ValueError, match="recurrent_init"):
        inits.recurrent("xavier")


def test_chrono_range_sign_and_distribution():
    t_max = 50.0
    b_f, b_i = inits.chrono(jax.random.key(7), 4000, t_max=t_max)
    b_f, b_i = np.asarray(b_f), np.asarray(b_i)
    # Tallec & Ollivier 2018 eq. (16): b_f = log U[1, T_max - 1], b_i = -b_f.
    assert b_f.min() >= 0.0 and b_f.max() <= math.log(t_max - 1) + 1e-6
    np.testing.assert_array_equal(b_i, -b_f)
    # exp(b_f) is uniform on [1, T_max - 1]: compare its empirical CDF (KS distance).
    u = np.sort(np.exp(b_f))
    cdf = (u - 1.0) / (t_max - 2.0)
    assert np.abs(cdf - (np.arange(1, u.size + 1) / u.size)).max() < 0.03
    with pytest.raises(ValueError, match="t_max"):
        inits.chrono(jax.random.key(0), 4, t_max=2.0)


def test_lstm_chrono_sets_forget_and_input_blocks():
    cell = cells.lstm(16, chrono_t_max=20.0)
    p = cell.init(jax.random.key(0), 3)
    b_f, b_i = _block(p, cell, "f"), _block(p, cell, "i")
    assert b_f.min() >= 0.0 and b_f.max() <= math.log(19.0) + 1e-6 and b_f.std() > 0.1
    np.testing.assert_array_equal(b_i, -b_f)
    np.testing.assert_array_equal(_block(p, cell, "g"), 0.0)
    np.testing.assert_array_equal(_block(p, cell, "o"), 0.0)
    # CIFG has no input gate: only the forget block is chrono-initialised.
    cifg = cells.lstm(8, coupled=True, chrono_t_max=20.0)
    assert _block(cifg.init(jax.random.key(0), 3), cifg, "f").min() >= 0.0


@pytest.mark.parametrize("kw, gates", [({}, ("i", "f", "g", "o")),
                                       ({"coupled": True}, ("f", "g", "o")),
                                       ({"forget_gate": False}, ("i", "g", "o"))])
def test_lstm_forget_bias_and_gate_layout(kw, gates):
    H, I = 5, 3
    cell = cells.lstm(H, forget_bias=2.5, peephole=True, **kw)
    assert cell.gates == gates
    p = cell.init(jax.random.key(0), I)
    G = len(gates)
    assert p["w_x"].shape == (I, G * H) and p["w_h"].shape == (H, G * H) and p["b"].shape == (G * H,)
    assert sorted(k for k in p if k.startswith("p_")) == sorted("p_" + g for g in gates if g != "g")
    for g in gates:
        np.testing.assert_array_equal(_block(p, cell, g), 2.5 if g == "f" else 0.0)
    # Each recurrent gate block is orthogonal on its own (the default recurrent_init).
    for g in gates:
        blk = np.asarray(_block(p, cell, g, "w_h"), np.float64)
        np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=1e-5)


def test_gru_layout():
    for reset_after in (False, True):
        cell = cells.gru(6, reset_after=reset_after)
        p = cell.init(jax.random.key(0), 2)
        assert cell.gates == ("r", "z", "n")
        assert p["w_x"].shape == (2, 18) and p["w_h"].shape == (6, 18) and p["b"].shape == (18,)
        assert ("b_hn" in p) == reset_after


def test_irnn_is_relu_with_identity_recurrence():
    """Le et al. 2015: with w_h = I, b = 0 and zero input a ReLU RNN holds any
    nonnegative state exactly, and with recurrent_scale = s it multiplies it by s."""
    cell = cells.rnn(6, activation="relu", recurrent_init="identity", recurrent_scale=0.5)
    p = cell.init(jax.random.key(0), 3)
    np.testing.assert_array_equal(p["w_h"], 0.5 * np.eye(6, dtype=np.float32))
    np.testing.assert_array_equal(p["b"], 0.0)
    h = jnp.asarray([0.0, 1.0, 2.0, 3.0, 0.5, 4.0])
    h1, _ = cell.step(p, h, jnp.zeros(3))
    np.testing.assert_allclose(h1, 0.5 * h)
    # A negative pre-activation is cut to zero: this is the relu, not tanh.
    h2, _ = cell.step(p, -h, jnp.zeros(3))
    np.testing.assert_array_equal(h2, 0.0)


@pytest.mark.parametrize("name, scale", [("orthogonal", 0.8), ("identity", 1.2)])
def test_rnn_recurrent_scale_is_the_spectral_radius(name, scale):
    cell = cells.rnn(12, recurrent_init=name, recurrent_scale=scale)
    w = np.asarray(cell.init(jax.random.key(0), 3)["w_h"], np.float64)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(w)).max(), scale, rtol=1e-5)


def test_kernel_init_is_used_and_user_initializers_work():
    def constant(key, shape, dtype=jnp.float32):
        return jnp.full(shape, 0.25, dtype)

    cell = cells.gru(3, kernel_init=constant, recurrent_init=inits.zeros)
    p = cell.init(jax.random.key(0), 2)
    np.testing.assert_array_equal(p["w_x"], 0.25)
    np.testing.assert_array_equal(p["w_h"], 0.0)


def test_init_is_deterministic_in_the_key_and_respects_dtype():
    cell = cells.lstm(4, dtype=jnp.bfloat16)
    a, b = cell.init(jax.random.key(1), 3), cell.init(jax.random.key(1), 3)
    c = cell.init(jax.random.key(2), 3)
    for k in a:
        assert a[k].dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(a[k], np.float32), np.asarray(b[k], np.float32))
    assert not np.array_equal(np.asarray(a["w_x"], np.float32), np.asarray(c["w_x"], np.float32))
    assert cell.initial_carry((2,))[0].dtype == jnp.bfloat16
