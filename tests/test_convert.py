"""Weight converters: PyTorch state dicts and flax.linen params, both ways.

References: float64 NumPy loops written from PyTorch's documented equations
(torch.nn.LSTM / GRU / RNN docs), the real flax cells, and the real torch modules when
torch is installed (the ``bench`` extra).
"""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, convert

T, B, I, H = 6, 3, 4, 5
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _torch_layer_reference(cell, sd, sfx, xs, h0, c0, reverse=False):
    """One direction of one layer, from PyTorch's documented equations, in float64."""
    w_ih, w_hh = sd[f"weight_ih{sfx}"], sd[f"weight_hh{sfx}"]
    b_ih, b_hh = sd[f"bias_ih{sfx}"], sd[f"bias_hh{sfx}"]
    out = sd[f"weight_hh{sfx}"].shape[1]
    h, c = h0[..., :out].copy(), c0.copy()
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    ys = np.zeros(xs.shape[:-1] + (out,))
    for t in order:
        gi = xs[t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, g, o = np.split(gi + gh, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            if f"weight_hr{sfx}" in sd:  # proj_size > 0: h_t = W_hr (o_t * tanh(c_t))
                h = h @ sd[f"weight_hr{sfx}"].T
        elif cell == "gru":
            i_r, i_z, i_n = np.split(gi, 3, axis=-1)
            h_r, h_z, h_n = np.split(gh, 3, axis=-1)
            r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
            n = np.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
        else:
            h = np.tanh(gi + gh)
        ys[t] = h
    return ys


def _torch_reference(cell, sd, xs, num_layers, bidirectional):
    zeros = np.zeros((xs.shape[1], H))
    for layer in range(num_layers):
        outs = [_torch_layer_reference(cell, sd, f"_l{layer}", xs, zeros, zeros)]
        if bidirectional:
            outs.append(_torch_layer_reference(cell, sd, f"_l{layer}_reverse", xs, zeros, zeros,
                                               reverse=True))
        xs = np.concatenate(outs, axis=-1)
    return xs


def _random_state_dict(cell, num_layers, bidirectional, seed=0, proj=0):
    rng = np.random.default_rng(seed)
    n, sd = GATES[cell], {}
    out = proj or H
    for layer in range(num_layers):
        in_size = I if layer == 0 else out * (2 if bidirectional else 1)
        for sfx in [f"_l{layer}"] + ([f"_l{layer}_reverse"] if bidirectional else []):
            sd[f"weight_ih{sfx}"] = 0.5 * rng.standard_normal((n * H, in_size))
            sd[f"weight_hh{sfx}"] = 0.5 * rng.standard_normal((n * H, out))
            if proj:
                sd[f"weight_hr{sfx}"] = 0.5 * rng.standard_normal((proj, H))
            sd[f"bias_ih{sfx}"] = 0.5 * rng.standard_normal(n * H)
            sd[f"bias_hh{sfx}"] = 0.5 * rng.standard_normal(n * H)
    return sd


def _our_cell(cell, dtype=jnp.float64, proj=0):
    if proj:
        return cells.lstmp(H, proj, dtype=dtype)
    return {"lstm": cells.lstm(H, dtype=dtype), "gru": cells.gru(H, reset_after=True, dtype=dtype),
            "rnn": cells.rnn(H, dtype=dtype)}[cell]


def _run_ours(cell, layers, xs, bidirectional, proj=0):
    c = _our_cell(cell, proj=proj)
    carry = c.initial_carry((xs.shape[1],))
    for params in layers:
        if bidirectional:
            _, xs = rnn_jax.bidirectional(c, c, params, (carry, carry), xs)
        else:
            _, xs = rnn_jax.unroll(c, params, carry, xs)
    return xs


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_from_torch_matches_torch_equations(cell, num_layers, bidirectional):
    sd = _random_state_dict(cell, num_layers, bidirectional)
    xs = np.random.default_rng(1).standard_normal((T, B, I))
    want = _torch_reference(cell, sd, xs, num_layers, bidirectional)
    with jax.enable_x64(True):
        layers = convert.from_torch(sd, cell, num_layers=num_layers, bidirectional=bidirectional)
        got = _run_ours(cell, layers, jnp.asarray(xs), bidirectional)
    # float64 on both sides; only the summation order differs.
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_lstm_proj_size_matches_torch_equations():
    sd = _random_state_dict("lstm", 2, True, proj=2)
    xs = np.random.default_rng(1).standard_normal((T, B, I))
    want = _torch_reference("lstm", sd, xs, 2, True)
    assert want.shape == (T, B, 4)
    with jax.enable_x64(True):
        layers = convert.from_torch(sd, "lstm", num_layers=2, bidirectional=True)
        got = _run_ours("lstm", layers, jnp.asarray(xs), True, proj=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    back = convert.to_torch(layers, "lstm", bidirectional=True)
    assert set(back) == set(sd)
    for k in sd:
        if k.startswith("weight"):
            np.testing.assert_array_equal(back[k], sd[k])
        elif k.startswith("bias_ih"):  # the two biases merge into bias_ih
            np.testing.assert_allclose(back[k], sd[k] + sd[k.replace("_ih", "_hh")], rtol=1e-15)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_torch_round_trip(cell):
    sd = _random_state_dict(cell, 2, True, seed=2)
    with jax.enable_x64(True):  # keep float64 so that the round trip can be exact
        layers = convert.from_torch(sd, cell, num_layers=2, bidirectional=True)
    back = convert.to_torch(layers, cell, bidirectional=True)
    assert set(back) == set(sd)
    # Ours -> torch -> ours is exact; torch -> ours -> torch keeps the function but moves
    # the mergeable part of bias_hh into bias_ih.
    with jax.enable_x64(True):
        again = convert.from_torch(back, cell, num_layers=2, bidirectional=True)
    jax.tree_util.tree_map(np.testing.assert_array_equal, again, layers)
    xs = np.random.default_rng(3).standard_normal((T, B, I))
    np.testing.assert_allclose(_torch_reference(cell, back, xs, 2, True),
                               _torch_reference(cell, sd, xs, 2, True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_against_real_torch(cell):
    torch = pytest.importorskip("torch")
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        I, H, num_layers=2, bidirectional=True).double()
    xs = np.random.default_rng(4).standard_normal((T, B, I))
    want = module(torch.from_numpy(xs))[0].detach().numpy()
    with jax.enable_x64(True):
        layers = convert.from_torch(module.state_dict(), cell, num_layers=2, bidirectional=True)
        got = _run_ours(cell, layers, jnp.asarray(xs), True)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in convert.to_torch(
        layers, cell, bidirectional=True).items()})
    np.testing.assert_allclose(module(torch.from_numpy(xs))[0].detach().numpy(), want,
                               rtol=1e-10, atol=1e-10)


_FLAX = {"lstm": fnn.LSTMCell, "gru": fnn.GRUCell, "rnn": fnn.SimpleCell}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_flax_both_ways(cell):
    # float64 params: strict dtype promotion (conftest) refuses float32 params on float64 inputs.
    module = _FLAX[cell](features=H, param_dtype=jnp.float64)
    xs = np.random.default_rng(5).standard_normal((T, B, I))
    with jax.enable_x64(True):
        xs = jnp.asarray(xs)
        carry0 = jax.tree_util.tree_map(lambda a: 0.3 + a.astype(jnp.float64),
                                        module.initialize_carry(jax.random.key(1), (B, I)))
        variables = module.init(jax.random.key(2), carry0, xs[0])
        rng = np.random.default_rng(6)  # flax's biases start at zero: noise makes them matter
        variables = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape),
                                           variables)
        want, carry = [], carry0
        for x in xs:
            carry, y = module.apply(variables, carry, x)
            want.append(y)
        params = convert.from_flax(variables, cell)
        ours = _our_cell(cell)
        ours_carry = (carry0[1], carry0[0]) if cell == "lstm" else carry0  # flax: (c, h)
        _, got = rnn_jax.unroll(ours, params, ours_carry, xs)
        np.testing.assert_allclose(got, jnp.stack(want), rtol=1e-12, atol=1e-12)
        back = convert.to_flax(params, cell)
        jax.tree_util.tree_map(np.testing.assert_array_equal, back, variables)


def test_errors_name_the_problem():
    sd = _random_state_dict("lstm", 1, False)
    with pytest.raises(ValueError, match="cell must be one of"):
        convert.from_torch(sd, "transformer")
    with pytest.raises(ValueError, match="only an LSTM has"):
        convert.from_torch(dict(_random_state_dict("gru", 1, False), weight_hr_l0=np.zeros((2, H))), "gru")
    with pytest.raises(ValueError, match=r"lacks \['weight_ih_l1'"):
        convert.from_torch(sd, "lstm", num_layers=2)
    with pytest.raises(ValueError, match="does not account for"):
        convert.from_torch(_random_state_dict("lstm", 2, False), "lstm", num_layers=1)
    with pytest.raises(ValueError, match=r"\[3\*H, H\]"):
        convert.from_torch(sd, "gru")  # LSTM weights given as a GRU
    with pytest.raises(ValueError, match="reset_after"):
        convert.to_torch(cells.gru(H).init(jax.random.key(0), I), "gru")
