"""Deep bidirectional stacks (PyTorch's ``nn.LSTM(num_layers=2, bidirectional=True, dropout=p)``).

References: a float64 NumPy loop of PyTorch's documented LSTM equations (torch.nn.LSTM docs:
``i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)``, ``c' = f c + i g``, ``h' = o tanh(c')``;
layer ``l + 1`` reads the concatenation of layer ``l``'s forward and backward outputs), run on
each sequence of the batch alone, which is what a packed sequence means; and the real
``torch.nn.LSTM`` on a packed batch when torch is installed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, convert
from rnn_jax import nn as rnn_nn

T, B, I, H, L = 7, 3, 4, 5, 2
LENGTHS = np.array([7, 4, 1])


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _state_dict(seed=0):
    """Random weights in torch.nn.LSTM's state-dict layout, as float64 NumPy."""
    rng = np.random.default_rng(seed)
    sd = {}
    for layer in range(L):
        in_size = I if layer == 0 else 2 * H
        for sfx in (f"_l{layer}", f"_l{layer}_reverse"):
            sd[f"weight_ih{sfx}"] = 0.5 * rng.standard_normal((4 * H, in_size))
            sd[f"weight_hh{sfx}"] = 0.5 * rng.standard_normal((4 * H, H))
            sd[f"bias_ih{sfx}"] = 0.5 * rng.standard_normal(4 * H)
            sd[f"bias_hh{sfx}"] = 0.5 * rng.standard_normal(4 * H)
    return sd


def _direction(sd, sfx, xs, reverse):
    """One direction over one unpadded sequence ``xs: [t, in]``; returns (ys [t, H], h, c)."""
    h, c = np.zeros(H), np.zeros(H)
    ys = np.zeros((len(xs), H))
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        z = sd[f"weight_ih{sfx}"] @ xs[t] + sd[f"bias_ih{sfx}"] + sd[f"weight_hh{sfx}"] @ h \
            + sd[f"bias_hh{sfx}"]
        i, f, g, o = np.split(z, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        ys[t] = h
    return ys, h, c


def _reference(sd, xs, lengths):
    """PyTorch's deep bidirectional LSTM, each sequence alone: ys ``[T, B, 2H]`` (zeros past
    each length, as ``pad_packed_sequence`` gives) and h_n, c_n ``[2L, B, H]``."""
    ys = np.zeros((T, B, 2 * H))
    h_n, c_n = np.zeros((2 * L, B, H)), np.zeros((2 * L, B, H))
    for b, n in enumerate(lengths):
        x = xs[:n, b]
        for layer in range(L):
            outs = []
            for d, sfx in enumerate((f"_l{layer}", f"_l{layer}_reverse")):
                y, h_n[2 * layer + d, b], c_n[2 * layer + d, b] = _direction(sd, sfx, x, d == 1)
                outs.append(y)
            x = np.concatenate(outs, axis=-1)
        ys[:n, b] = x
    return ys, h_n, c_n


def _ours(layers, xs, lengths, fused=True, remat=None):
    cell = cells.lstm(H, dtype=jnp.float64)
    zero = cell.initial_carry((B,))
    finals, ys = rnn_jax.stacked([cell] * L, layers, [(zero, zero)] * L, xs, lengths=lengths,
                                 bidirectional=True, fused=fused, remat=remat)
    h_n = np.stack([np.asarray(c[0]) for layer in finals for c in layer])
    c_n = np.stack([np.asarray(c[1]) for layer in finals for c in layer])
    return np.asarray(ys), h_n, c_n


# The fused fast path, and the plain scan checkpointed in segments of 3 steps.
@pytest.mark.parametrize("fused,remat", [(True, None), (False, 3)])
def test_matches_pytorch_equations_with_lengths(fused, remat):
    sd = _state_dict()
    xs = np.random.default_rng(1).standard_normal((T, B, I))
    want_y, want_h, want_c = _reference(sd, xs, LENGTHS)
    # Padding holds NaN: if any of it reached the backward direction (which starts at each
    # sequence's last valid step) or layer 2, the outputs would be NaN.
    xs_nan = np.where(np.arange(T)[:, None, None] < LENGTHS[None, :, None], xs, np.nan)
    with jax.enable_x64(True):
        layers = convert.from_torch(sd, "lstm", num_layers=L, bidirectional=True)
        got_y, got_h, got_c = _ours(layers, jnp.asarray(xs_nan), jnp.asarray(LENGTHS), fused, remat)
    # float64 on both sides, only the summation order differs: a few ulps after 2 layers.
    np.testing.assert_allclose(got_y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_h, want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_c, want_c, rtol=1e-12, atol=1e-12)


def test_matches_real_torch_packed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True).double()
    xs = np.random.default_rng(2).standard_normal((T, B, I))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(xs), torch.from_numpy(LENGTHS), enforce_sorted=False)
    out, (h_n, c_n) = module(packed)
    want_y = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0].detach().numpy()
    with jax.enable_x64(True):
        layers = convert.from_torch(module.state_dict(), "lstm", num_layers=L, bidirectional=True)
        got_y, got_h, got_c = _ours(layers, jnp.asarray(xs), jnp.asarray(LENGTHS))
        # The flax wrapper with the same weights, batch-major, gives the same.
        params = {f"cell_{l}{s}": p for l, pair in enumerate(layers)
                  for s, p in zip(("_fw", "_bw"), pair)}
        # Evaluation mode: the dropout_rate below must change nothing.
        module_jax = rnn_nn.Stacked([cells.lstm(H, dtype=jnp.float64)] * L, bidirectional=True,
                                    dropout_rate=0.5, deterministic=True)
        got_flax = module_jax.apply({"params": params}, jnp.asarray(xs.swapaxes(0, 1)),
                                    seq_lengths=jnp.asarray(LENGTHS))
    # float64 both sides; torch sums the two biases and the matmuls in its own order.
    np.testing.assert_allclose(got_y, want_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_h, h_n.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_c, c_n.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(got_flax).swapaxes(0, 1), want_y, rtol=1e-10, atol=1e-10)


def _identity(params, carry, x):
    return carry, x


def test_dropout_between_layers_only():
    """Identity layers make the masks visible: the top output is layer 1's merged output
    after ONE dropout (between the layers), never a second one on top."""
    rate = 0.5
    xs = 1.0 + jax.random.uniform(jax.random.key(0), (20, B, 4))  # no exact zeros
    pair = ((), ())
    run = jax.jit(lambda xs, key: rnn_jax.stacked([_identity] * 2, [pair] * 2, [pair] * 2, xs,
                                                  dropout_rate=rate, key=key, bidirectional=True))
    _, ys = run(xs, jax.random.key(1))
    # Layer 1 concatenates [x, x] (8 wide); layer 2 concatenates [d, d] of the dropped d.
    assert ys.shape == (20, B, 16)
    d = ys[..., :8]
    np.testing.assert_array_equal(ys[..., 8:], d)  # no dropout after the top layer
    kept = d != 0
    # Kept units are scaled by exactly 1 / (1 - rate) (a power of two here: exact).
    np.testing.assert_array_equal(np.where(kept, d, 0), np.where(kept, 2.0 * jnp.tile(xs, 2), 0))
    # One Bernoulli(0.5) mask over 480 units: the fraction kept is within 5 sigma of 0.5.
    n = kept.size
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    # The mask acts on the merged output: the forward and backward halves get their own.
    assert not np.array_equal(kept[..., :4], kept[..., 4:])


def test_dropout_key_determinism_and_eval_mode():
    cell = cells.rnn(H)  # the cheapest cell to compile: this test is about the masks
    xs = jax.random.normal(jax.random.key(0), (B, T, I))
    module = rnn_nn.Stacked([cell, cell], bidirectional=True, dropout_rate=0.3)
    variables = jax.jit(lambda k: module.init({"params": k}, xs, deterministic=True))(
        jax.random.key(1))
    assert variables["params"]["cell_1_fw"]["w_x"].shape == (2 * H, H)
    run = jax.jit(lambda key, det: module.apply(variables, xs, seq_lengths=jnp.asarray(LENGTHS),
                                                deterministic=det, rngs={"dropout": key}),
                  static_argnums=1)
    a, a_again, b = run(jax.random.key(2), False), run(jax.random.key(2), False), \
        run(jax.random.key(3), False)
    np.testing.assert_array_equal(a, a_again)
    assert not np.allclose(a, b)
    # Evaluation: no randomness (test_matches_real_torch_packed shows it is no dropout at
    # all: a module with dropout_rate=0.5 and deterministic=True matches torch's eval).
    ev = run(jax.random.key(2), True)
    np.testing.assert_array_equal(ev, run(jax.random.key(3), True))
    assert not np.allclose(a, ev)


def test_sum_merge_widths_and_padding_zeros():
    cell = cells.gru(H)
    xs = jax.random.normal(jax.random.key(0), (B, T, I))
    module = rnn_nn.Stacked([cell, (cell, cells.gru(H, reset_after=True))], bidirectional=True,
                            merge="sum", deterministic=True)
    variables = jax.jit(module.init)(jax.random.key(1), xs)
    assert variables["params"]["cell_1_fw"]["w_x"].shape == (H, 3 * H)  # sum keeps H
    assert "b_hn" in variables["params"]["cell_1_bw"]
    ys = jax.jit(lambda v: module.apply(v, xs, lengths=jnp.asarray(LENGTHS)))(variables)
    assert ys.shape == (B, T, H)
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    np.testing.assert_array_equal(np.asarray(ys)[pad], 0.0)


def test_errors_name_the_argument():
    cell = cells.lstm(H)
    zero = cell.initial_carry((B,))
    xs = jnp.zeros((T, B, I))
    with pytest.raises(ValueError, match=r"params\[0\] and carries\[0\] must be pairs"):
        rnn_jax.stacked([cell], [{}], [zero], xs, bidirectional=True)  # checked before any use
    with pytest.raises(ValueError, match=r"cells\[0\] must be a Cell or a pair"):
        rnn_nn.Stacked([(cell, cell, cell)], bidirectional=True, deterministic=True).init(
            jax.random.key(0), xs.swapaxes(0, 1))
    with pytest.raises(ValueError, match="merge must be one of"):
        rnn_nn.Stacked([cell], bidirectional=True, merge="max", deterministic=True).init(
            jax.random.key(0), xs.swapaxes(0, 1))
