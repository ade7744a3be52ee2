"""Layer-normalised LSTM and LSTMP against float64 NumPy loops of their papers' equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnn_jax
from rnn_jax import cells, diagnostics, nn

T, B, I, H, P = 7, 3, 4, 6, 3


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _ln(z, scale, offset, eps):
    mean = z.mean(-1, keepdims=True)
    var = ((z - mean) ** 2).mean(-1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps) * scale + offset


def _noisy(params, seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(np.asarray(v) + 0.3 * rng.standard_normal(v.shape)) for k, v in params.items()}


def _reference_ln_lstm(p, xs, h, c, eps):
    p = {k: np.asarray(v) for k, v in p.items()}
    ys = []
    for x in xs:
        z = (_ln(h @ p["w_h"], p["ln_h_scale"], p["ln_h_offset"], eps)
             + _ln(x @ p["w_x"], p["ln_x_scale"], p["ln_x_offset"], eps) + p["b"])
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(_ln(c, p["ln_c_scale"], p["ln_c_offset"], eps))
        ys.append(h)
    return (h, c), np.stack(ys)


def _reference_lstmp(p, xs, r, c):
    # torch.nn.LSTM's documented equations with proj_size: h_t = W_hr (o_t * tanh(c_t)).
    p = {k: np.asarray(v) for k, v in p.items()}
    ys = []
    for x in xs:
        i, f, g, o = np.split(x @ p["w_x"] + r @ p["w_h"] + p["b"], 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        r = (_sigmoid(o) * np.tanh(c)) @ p["w_r"]
        ys.append(r)
    return (r, c), np.stack(ys)


@pytest.mark.parametrize("kind", ["ln", "proj"])
def test_matches_float64_reference(kind):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, B, I))
    with jax.enable_x64(True):
        cell = (cells.layer_norm_lstm(H, dtype=jnp.float64) if kind == "ln"
                else cells.lstmp(H, P, dtype=jnp.float64))
        params = _noisy(cell.init(jax.random.key(1), I), 2)
        h0 = 0.5 * rng.standard_normal((B, cell.hidden_size))
        c0 = 0.5 * rng.standard_normal((B, H))
        (h, c), ys = rnn_jax.unroll(cell, params, (jnp.asarray(h0), jnp.asarray(c0)), jnp.asarray(xs))
    (h_ref, c_ref), ys_ref = (_reference_ln_lstm(params, xs, h0, c0, 1e-5) if kind == "ln"
                              else _reference_lstmp(params, xs, h0, c0))
    for got, want in ((ys, ys_ref), (h, h_ref), (c, c_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert ys.shape == (T, B, cell.hidden_size)


@pytest.mark.parametrize("kind", ["ln", "proj"])
def test_gradients_match_finite_differences(kind):
    with jax.enable_x64(True):
        cell = (cells.layer_norm_lstm(H, dtype=jnp.float64) if kind == "ln"
                else cells.lstmp(H, P, dtype=jnp.float64))
        params = _noisy(cell.init(jax.random.key(3), I), 4)
        xs = jax.random.normal(jax.random.key(5), (4, 2, I), jnp.float64)
        lengths = jnp.array([4, 2])

        def loss(p, xs):
            (h, c), ys = rnn_jax.unroll(cell, p, cell.initial_carry((2,)), xs, lengths=lengths)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(c ** 2)

        check_grads(loss, (params, xs), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_through_ops_wrappers_and_diagnostics():
    cell = cells.lstmp(H, P)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    (_, _), ys = rnn_jax.bidirectional(cell, cell, (params, params),
                                       (cell.initial_carry((B,)),) * 2, xs)
    assert ys.shape == (T, B, 2 * P)
    module = nn.RNN(cells.layer_norm_lstm(H))
    variables = module.init(jax.random.key(2), xs)
    assert module.apply(variables, xs).shape == (T, B, H)
    norms = diagnostics.grad_norms(cell.step, params, cell.initial_carry(), xs[:, 0],
                                   lambda s: jnp.sum(s[0][-1]), log10=True)
    assert norms[0].shape == (T,) and norms[1].shape == (T,)
    assert np.all(np.isfinite(np.asarray(norms[0])))


def test_errors():
    with pytest.raises(ValueError, match="proj_size must be smaller than hidden_size=4"):
        cells.lstmp(4, 4)
    with pytest.raises(ValueError, match="eps must be > 0"):
        cells.layer_norm_lstm(4, eps=0.0)
    cell = cells.lstmp(H, P)
    params = cell.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"carry h must have shape \[\.\.\., 3\]"):
        cell.step(params, (jnp.zeros((B, H)), jnp.zeros((B, H))), jnp.zeros((B, I)))
    with pytest.raises(ValueError, match="input_size=4"):
        cell.step(params, cell.initial_carry((B,)), jnp.zeros((B, I + 1)))
