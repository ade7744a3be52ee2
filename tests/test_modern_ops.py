"""The modern cells through every sequence op (lengths, reverse, bidirectional, stacked,
remat) and the flax wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import nn

from modern_cases import B, H, MAKERS
from modern_cases import setup as _setup

LENGTHS = np.array([6, 3])


def _close(a, b, tol=1e-6):
    # float32, at most T = 6 sequential steps of O(1) values computed in the same order or
    # with a different padding/reversal gather: differences are a few ulp.
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_ops_lengths_reverse_bidirectional_stacked_remat_flax(name):
    cell, params, xs = _setup(name)
    c0 = cell.initial_carry((B,))
    p2 = cell.init(jax.random.key(5), H)

    # Every library call and every reference of this test in ONE jitted program: one XLA
    # compilation per cell instead of eager per-primitive ones (test time: CI budget).
    @jax.jit
    def outputs(params, p2, xs):
        out = {}
        for reverse in (False, True):
            out[f"batch_{reverse}"] = rnn_jax.unroll(cell, params, c0, xs, lengths=LENGTHS,
                                                   reverse=reverse)
            out[f"alone_{reverse}"] = [
                rnn_jax.unroll(cell, params, cell.initial_carry(), xs[:L, b], reverse=reverse)
                for b, L in enumerate(LENGTHS)]
        out["bi"] = rnn_jax.bidirectional(cell, cell, (params, params), (c0, c0), xs,
                                          lengths=LENGTHS)[1]
        out["rev"] = rnn_jax.unroll(cell, params, cell.initial_carry(), xs[:3, 1],
                                    reverse=True)[1]
        out["stacked"] = rnn_jax.stacked([cell, cell], [params, p2], [c0, c0], xs,
                                         lengths=LENGTHS)[1]
        y1 = rnn_jax.unroll(cell, params, c0, xs, lengths=LENGTHS)[1]
        out["layer2"] = rnn_jax.unroll(cell, p2, c0, y1, lengths=LENGTHS)[1]

        def loss(p, remat):
            f, ys = rnn_jax.unroll(cell, p, c0, xs, lengths=LENGTHS, remat=remat)
            return jnp.sum(ys ** 2)
        out["remat"] = jax.value_and_grad(loss)(params, 2)
        out["no_remat"] = jax.value_and_grad(loss)(params, None)
        return out

    out = outputs(params, p2, xs)
    # Padded batch == each sequence alone, forward and reverse.
    for reverse in (False, True):
        final, ys = out[f"batch_{reverse}"]
        for b in range(B):
            L = LENGTHS[b]
            f_b, y_b = out[f"alone_{reverse}"][b]
            _close(ys[:L, b], y_b)
            assert np.all(np.asarray(ys[L:, b]) == 0)
            _close(jax.tree_util.tree_map(lambda a: a[b], final), f_b)
    # Bidirectional: the backward half at step t is the reverse run alone.
    _close(out["bi"][:3, 1, H:], out["rev"])
    # Stacked: layer 2 sees layer 1's outputs.
    _close(out["stacked"], out["layer2"])
    # remat: same values and gradients.
    _close(out["remat"], out["no_remat"], 1e-5)
    # flax wrapper: the module calls unroll on params["cell"].
    model = nn.RNN(cell)
    xs_bm = jnp.swapaxes(xs, 0, 1)
    variables = model.init(jax.random.key(3), xs_bm)
    got = model.apply(variables, xs_bm, lengths=LENGTHS)
    _, want = rnn_jax.unroll(cell, variables["params"]["cell"], c0, xs_bm, lengths=LENGTHS,
                             time_major=False)
    _close(got, want, 0.0)
