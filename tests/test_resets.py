"""Core contract 2.0 (issue 11), part 2 of 3: resets. The whole contract, the references
and the tolerance are in test_core_contract.py's docstring.

Reference: each packed sequence run alone through the plain scan (no resets, no padding).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells

from contract_cases import H, _close, _first_leaf, _setup

# ------------------------------------------------------------------ resets

# Row 0: sequences [0, 4), [4, 9); row 1: [0, 2), [2, 6), [6, 9).
T_PACK = 9
STARTS = ({0, 4}, {0, 2, 6})


def _packed_setup(name):
    cell, params, xs = _setup(name, T=T_PACK)
    resets = np.zeros((T_PACK, 2), bool)
    for b, starts in enumerate(STARTS):
        for s in starts:
            resets[s, b] = True
    k = jax.random.PRNGKey(7)
    carry = jax.tree_util.tree_map(lambda z: jax.random.normal(k, z.shape),
                                   cell.initial_carry((2,)))
    w = jax.random.normal(jax.random.PRNGKey(3), (T_PACK, 2, H))
    return cell, params, xs, jnp.asarray(resets), carry, w


def _segments(b):
    s = sorted(STARTS[b]) + [T_PACK]
    return list(zip(s[:-1], s[1:]))


# Every path on the LSTM; every other cell on one path (all share the fused plumbing).
@pytest.mark.parametrize("name,path", [
    ("lstm", "fused"), ("lstm", "plain"), ("lstm", "remat"), ("lstm", "reverse"),
    ("lstm_peephole", "plain"), ("gru", "fused"), ("gru_after", "reverse"), ("rnn", "fused")])
def test_packed_row_equals_each_sequence_alone(name, path):
    cell, params, xs, resets, carry, w = _packed_setup(name)
    kw = {"fused": path != "plain", "remat": 2 if path == "remat" else None,
          "reverse": path == "reverse"}

    def packed(p, x, c0):
        c, ys = rnn_jax.unroll(cell, p, c0, x, resets=resets, **kw)
        return jnp.sum(jnp.sin(ys) * w) + jnp.sum(_first_leaf(c))

    def separate(p, x, c0):
        total = 0.0
        for b in range(2):
            c_b = jax.tree_util.tree_map(lambda a: a[b], c0)
            for s, e in _segments(b):
                c, ys = rnn_jax.unroll(cell.step, p, c_b, x[s:e, b], reverse=kw["reverse"])
                total = total + jnp.sum(jnp.sin(ys) * w[s:e, b])
            # The final carry is the last sequence's: forwards the last one run, backwards
            # the first one (it ends the reversed run).
            if kw["reverse"]:
                s, e = _segments(b)[0]
                c = rnn_jax.unroll(cell.step, p, c_b, x[s:e, b], reverse=True)[0]
            total = total + jnp.sum(_first_leaf(c))
        return total

    # Both sides in one jitted program: one XLA compilation rather than an eager
    # per-primitive one for each of the five differently long reference scans.
    got, want = jax.jit(lambda p, x, c0: (
        jax.value_and_grad(packed, argnums=(0, 1, 2))(p, x, c0),
        jax.value_and_grad(separate, argnums=(0, 1, 2))(p, x, c0)))(params, xs, carry)
    _close(got, want)


def test_resets_with_lengths_bidirectional_and_stacked():
    cell, params, xs, resets, carry, w = _packed_setup("lstm")
    lengths = jnp.array([T_PACK, 6])  # row 1's last sequence [6, 9) is padding
    c0 = cell.initial_carry((2,))
    p2 = cells.lstm(H).init(jax.random.PRNGKey(9), H)

    @jax.jit  # every computation below in one compiled program (test time)
    def outputs(params, p2, xs):
        run = lambda fused: jax.value_and_grad(lambda p: jnp.sum(jnp.sin(rnn_jax.bidirectional(
            cell, cell, (p, p), (c0, c0), xs, lengths=lengths, resets=resets,
            fused=fused)[1])))(params)
        _, ys = rnn_jax.bidirectional(cell, cell, (params, params), (c0, c0), xs,
                                      lengths=lengths, resets=resets)
        refs = [rnn_jax.unroll(cell.step, params, cell.initial_carry(), xs[s:e, 1],
                               reverse=True)[1] for s, e in [(0, 2), (2, 6)]]
        _, top = rnn_jax.stacked([cell, cell], [params, p2], [c0, c0], xs, resets=resets)
        _, mid = rnn_jax.unroll(cell, params, c0, xs, resets=resets)
        _, ref = rnn_jax.unroll(cell, p2, c0, mid, resets=resets, fused=False)
        return run(True), run(False), ys, refs, top, ref

    fused, plain, ys, refs, top, ref = outputs(params, p2, xs)
    _close(fused, plain)
    # Row 1's backward direction: its sequences [0, 2) and [2, 6) each reversed alone.
    for (s, e), r in zip([(0, 2), (2, 6)], refs):
        _close(ys[s:e, 1, H:], r)
    np.testing.assert_array_equal(np.asarray(ys[6:, 1]), 0.0)
    # stacked: every layer resets; equals two unrolls with resets, the top one plain.
    _close(top, ref)


def test_bad_resets_are_refused_naming_resets():
    cell, params, xs = _setup("gru")
    carry = cell.initial_carry((2,))
    with pytest.raises(TypeError, match="resets must be a boolean"):
        rnn_jax.unroll(cell, params, carry, xs, resets=jnp.zeros((7, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"resets must have shape \[T, \*batch\] = \(7, 2\)"):
        rnn_jax.unroll(cell, params, carry, xs, resets=jnp.zeros((6, 2), bool))
    with pytest.raises(ValueError, match="resets must have shape"):
        rnn_jax.unroll(cell, params, carry, xs, resets=jnp.zeros((7, 3), bool))
