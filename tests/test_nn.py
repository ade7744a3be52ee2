"""The flax.linen wrappers add no math: their outputs equal the pure functions called
with the module's own params, and they train inside an ordinary flax model."""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnn_jax
from rnn_jax import cells
from rnn_jax import nn as rnn_nn

B, T, I, H = 3, 5, 4, 6
LENGTHS = np.array([5, 2, 0])
TOL = dict(rtol=1e-6, atol=1e-6)


def _xs(seed=0, shape=(B, T, I)):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **TOL)


def test_rnn_module_equals_unroll_with_its_params():
    reverse = True  # the harder path; the forward one is covered by Bidirectional below
    cell = cells.lstm(H, peephole=True)
    xs = _xs()
    module = rnn_nn.RNN(cell)
    variables = module.init(jax.random.key(0), xs)
    p = variables["params"]["cell"]
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(cell.init(jax.random.key(0), I))
    carry, ys = module.apply(variables, xs, lengths=LENGTHS, reverse=reverse, return_carry=True)
    want = rnn_jax.unroll(cell.step, p, cell.initial_carry((B,)), xs, lengths=LENGTHS,
                          reverse=reverse, time_major=False)
    assert ys.shape == (B, T, H)  # batch-major by default
    _close((carry, ys), want)
    # A given initial carry is used as is.
    c0 = (jnp.ones((B, H)), -jnp.ones((B, H)))
    ys2 = module.apply(variables, xs, initial_carry=c0)
    _close(ys2, rnn_jax.unroll(cell.step, p, c0, xs, time_major=False)[1])


def test_rnn_module_time_major_and_unbatched():
    cell = cells.gru(H, reset_after=True)
    module = rnn_nn.RNN(cell)
    xs = _xs(1, (T, I))  # one unbatched sequence
    variables = module.init(jax.random.key(1), xs, time_major=True)
    ys = module.apply(variables, xs, time_major=True)
    _close(ys, rnn_jax.unroll(cell.step, variables["params"]["cell"], cell.initial_carry(), xs)[1])
    with pytest.raises(ValueError, match="time_major=True"):
        module.apply(variables, xs)


def test_bidirectional_module_equals_function():
    fw, bw = cells.lstm(H), cells.gru(H)
    xs = _xs(2)
    module = rnn_nn.Bidirectional(fw, bw, merge="sum")
    variables = module.init(jax.random.key(2), xs)
    p = variables["params"]
    carry, ys = module.apply(variables, xs, lengths=LENGTHS, return_carry=True)
    want = rnn_jax.bidirectional(fw.step, bw.step, (p["cell_fw"], p["cell_bw"]),
                                 (fw.initial_carry((B,)), bw.initial_carry((B,))), xs,
                                 lengths=LENGTHS, merge="sum", time_major=False)
    assert ys.shape == (B, T, H)
    _close((carry, ys), want)


def test_stacked_module_equals_function_and_dropout_behaves():
    layers = [cells.lstm(H), cells.rnn(H), cells.gru(H)]
    xs = _xs(3)
    module = rnn_nn.Stacked(layers, dropout_rate=0.5, skip=True)
    # The module's params are one cell.init per layer, named cell_<i>, sized bottom-up.
    # eval_shape checks that layout without running (or compiling) the forward pass.
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(3), xs, deterministic=True))
    params = [c.init(jax.random.key(i), n) for i, (c, n) in enumerate(zip(layers, [I, H, H]))]
    assert (jax.tree_util.tree_map(lambda a: a.shape, shapes["params"])
            == {f"cell_{i}": jax.tree_util.tree_map(lambda a: a.shape, p) for i, p in enumerate(params)})
    variables = {"params": {f"cell_{i}": p for i, p in enumerate(params)}}
    apply = jax.jit(module.apply, static_argnames=("deterministic", "return_carry"))
    carries = [c.initial_carry((B,)) for c in layers]
    eval_out = apply(variables, xs, lengths=LENGTHS, deterministic=True, return_carry=True)
    want = jax.jit(lambda p, x: rnn_jax.stacked([c.step for c in layers], p, carries, x,
                                                lengths=LENGTHS, skip=True, time_major=False))(params, xs)
    _close(eval_out, want)
    # Training mode: reproducible given the 'dropout' rng, different from evaluation.
    run = lambda seed: apply(variables, xs, lengths=LENGTHS, deterministic=False,
                             rngs={"dropout": jax.random.key(seed)})
    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, eval_out[1])
    with pytest.raises(Exception, match="dropout"):  # no 'dropout' rng given
        jax.eval_shape(lambda: module.apply(variables, xs, deterministic=False))


class Classifier(fnn.Module):
    """Embedding -> RNN -> Dense on the last valid step: the shape of a typical model."""
    vocab: int
    classes: int

    @fnn.compact
    def __call__(self, tokens, lengths):
        x = fnn.Embed(self.vocab, 8)(tokens)
        carry, _ = rnn_nn.RNN(cells.lstm(16))(x, lengths=lengths, return_carry=True)
        return fnn.Dense(self.classes)(carry[0])


# Exception to strict dtype promotion (conftest): this test drives optax.adam directly,
# whose bias correction computes ``decay ** count`` with an int32 count.
@pytest.mark.standard_dtype_promotion
def test_flax_model_trains_with_optax():
    # Task: output the first token of a variable-length sequence, which the LSTM must
    # carry to its last valid step.
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=(32, 7))
    lengths = rng.integers(2, 8, size=32)
    labels = tokens[:, 0]
    model = Classifier(vocab=4, classes=4)
    params = jax.jit(model.init)(jax.random.key(0), tokens, lengths)["params"]
    opt = optax.adam(2e-2)
    state = opt.init(params)

    def loss_fn(params):
        logits = model.apply({"params": params}, tokens, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def train_step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(40):
        params, state, loss = train_step(params, state)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
