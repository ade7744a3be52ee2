"""The flax wrappers expose fused, remat, resets, a learned initial carry and flax's
``seq_lengths`` name (issue 18), and FrozenDict params keep the fast path.

References are the pure functions (``rnn_jax.unroll``/``bidirectional``/``stacked``)
called with the module's params; float32 tolerance 1e-5 as in test_core_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

import rnn_jax
from rnn_jax import cells, nn

B, T, I, H = 2, 6, 3, 4


def _close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=0)


def _data():
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)
    return xs, jnp.array([T, 4]), resets


def test_rnn_options_match_the_pure_call():
    xs, lengths, resets = _data()
    cell = cells.lstm(H)
    model = nn.RNN(cell, remat=2, learn_initial_carry=True)
    v = model.init(jax.random.PRNGKey(0), xs)
    assert jax.tree_util.tree_map(jnp.shape, v["params"]["initial_carry"]) == ((H,), (H,))
    # A non-zero learned carry, so that the broadcast and the resets to it are visible.
    h0 = (jnp.linspace(-1, 1, H), jnp.linspace(1, -1, H))
    v = {"params": dict(v["params"], initial_carry=h0)}
    ys = model.apply(v, xs, seq_lengths=lengths, resets=resets)
    carry = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (B, H)), h0)
    _, ref = rnn_jax.unroll(cell, v["params"]["cell"], carry, xs, lengths=lengths,
                            resets=resets, time_major=False, fused=False)
    _close(ys, ref)
    assert np.abs(np.asarray(ys - model.apply(v, xs, lengths=lengths))).max() > 1e-3
    # The learned carry gets a gradient (the reset in row 0 reads it too).
    g = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, xs, resets=resets)))(v["params"])
    for leaf in jax.tree_util.tree_leaves(g["initial_carry"]):
        assert np.abs(np.asarray(leaf)).max() > 0
    with pytest.raises(ValueError, match="seq_lengths"):
        model.apply(v, xs, lengths=lengths, seq_lengths=lengths)


def test_frozendict_params_keep_the_fast_path_in_the_wrappers():
    xs, lengths, _ = _data()
    model = nn.RNN(cells.gru(H))
    v = model.init(jax.random.PRNGKey(0), xs)
    frozen = FrozenDict(v)
    f = lambda variables: jnp.sum(model.apply(variables, xs, lengths=lengths))
    assert "custom_vjp" in str(jax.make_jaxpr(f)(frozen))
    assert "custom_vjp" not in str(jax.make_jaxpr(lambda w: jnp.sum(nn.RNN(
        cells.gru(H), fused=False).apply(w, xs)))(frozen))
    _close(jax.grad(f)(frozen).unfreeze(), jax.grad(f)(v))


def test_bidirectional_and_stacked_pass_resets_and_lengths():
    xs, lengths, resets = _data()
    c = cells.rnn(H)
    bi = nn.Bidirectional(c, c, learn_initial_carry=True)
    v = bi.init(jax.random.PRNGKey(0), xs)
    assert set(v["params"]) == {"cell_fw", "cell_bw", "initial_carry_fw", "initial_carry_bw"}
    p = v["params"]
    zeros = c.initial_carry((B,))
    _close(bi.apply(v, xs, seq_lengths=lengths, resets=resets),
           rnn_jax.bidirectional(c, c, (p["cell_fw"], p["cell_bw"]), (zeros, zeros), xs,
                                 lengths=lengths, resets=resets, time_major=False)[1])
    st = nn.Stacked([c, c], fused=False, deterministic=True)
    v = st.init(jax.random.PRNGKey(0), xs)
    p = v["params"]
    _close(st.apply(v, xs, lengths=lengths, resets=resets),
           rnn_jax.stacked([c, c], [p["cell_0"], p["cell_1"]], [zeros, zeros], xs,
                           lengths=lengths, resets=resets, time_major=False)[1])
