"""unroll / bidirectional / stacked against explicit Python loops over ``step``.

The reference runs each sequence on its own, unbatched, for exactly its own length,
so it knows nothing of padding, masking or index tricks; the library's batched,
padded, scanned result must agree with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnn_jax
from rnn_jax import cells

T, B, I, H = 6, 4, 3, 5
LENGTHS = np.array([6, 3, 0, 1])
TOL = dict(rtol=1e-5, atol=1e-5)

# Jitted entry points: one compilation per call instead of one per eager primitive,
# which is most of the run time of these tests. A few tests call the library eagerly.
unroll = jax.jit(rnn_jax.unroll, static_argnames=("step", "reverse", "unroll", "time_major"))
bidirectional = jax.jit(rnn_jax.bidirectional,
                        static_argnames=("step_fw", "step_bw", "merge", "unroll", "time_major"))
stacked = jax.jit(rnn_jax.stacked, static_argnames=("steps", "dropout_rate", "skip", "unroll", "time_major"))


def counting_rnn(hidden_size: int) -> rnn_jax.Cell:
    """A user-written cell with a dict carry: a tanh RNN plus a step counter, so that
    a masked run's final counter must equal each sequence's length."""

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {"w": jax.random.normal(k1, (input_size, hidden_size)) / input_size ** 0.5,
                "u": jax.random.normal(k2, (hidden_size, hidden_size)) / hidden_size ** 0.5}

    def initial_carry(batch_shape=()):
        return {"h": jnp.zeros(tuple(batch_shape) + (hidden_size,)),
                "n": jnp.zeros(tuple(batch_shape))}

    def step(params, carry, x):
        h = jnp.tanh(x @ params["w"] + carry["h"] @ params["u"])
        return {"h": h, "n": carry["n"] + 1.0}, h

    return rnn_jax.Cell(init, initial_carry, step, hidden_size)


# Built once, so that jit caches keyed on the step functions are shared between tests.
CELLS = {
    "rnn": cells.rnn(H),
    "lstm": cells.lstm(H, peephole=True),
    "gru_reset_after": cells.gru(H, reset_after=True),
    "user_counting": counting_rnn(H),
}


def numpy_tree(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def setup(name, batch=(B,), seed=0):
    """Cell, params, a random initial carry and inputs, all as NumPy arrays: indexing
    them in the reference loops then costs no JAX dispatch or compilation."""
    cell = CELLS[name]
    # Eager init: its small per-primitive compilations are cached across tests, while
    # a jitted init recompiles the QR of the orthogonal init for every new cell.
    params = numpy_tree(cell.init(jax.random.key(seed), I))
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T,) + batch + (I,)).astype(np.float32)
    # Random initial carries: the final carry of an empty sequence must be its initial one.
    carry = jax.tree_util.tree_map(lambda l: rng.standard_normal(l.shape).astype(np.float32),
                                   jax.eval_shape(lambda: cell.initial_carry(batch)))
    return cell, params, carry, xs


def at(tree, b):
    return jax.tree_util.tree_map(lambda a: a[b], tree)


_JITTED = {}


def loop(step, params, carry, xs, reverse=False):
    """Reference: a Python loop over one unbatched sequence ``xs: [L, I]``.

    Each step is jitted only to keep the test fast; the loop itself is plain Python."""
    step = _JITTED.setdefault(step, jax.jit(step))
    ys = [None] * len(xs)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for t in order:
        carry, ys[t] = step(params, carry, xs[t])
    return carry, ys


def assert_tree_close(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, **TOL)


def check_against_loops(step, params, carry, xs, lengths, carry_out, ys, reverse):
    for b, L in enumerate(lengths):
        c_ref, y_ref = loop(step, params, at(carry, b), xs[:L, b], reverse=reverse)
        assert_tree_close(at(carry_out, b), c_ref)
        if L:
            np.testing.assert_allclose(ys[:L, b], np.stack(y_ref), **TOL)
        np.testing.assert_array_equal(ys[L:, b], 0.0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["lstm", "gru_reset_after", "user_counting"])
def test_lengths_match_per_sequence_loops(name, reverse):
    cell, params, carry, xs = setup(name)
    c, ys = unroll(cell.step, params, carry, xs, lengths=LENGTHS, reverse=reverse)
    check_against_loops(cell.step, params, carry, xs, LENGTHS, c, ys, reverse)
    if name == "user_counting":
        np.testing.assert_array_equal(c["n"] - carry["n"], LENGTHS)


@pytest.mark.parametrize("reverse", [False, True])
def test_full_lengths_equal_no_lengths(reverse):
    cell, params, carry, xs = setup("lstm")
    c1, y1 = rnn_jax.unroll(cell.step, params, carry, xs, reverse=reverse)
    c2, y2 = rnn_jax.unroll(cell.step, params, carry, xs, reverse=reverse, lengths=np.full(B, T))
    assert_tree_close(c1, c2)
    np.testing.assert_allclose(y1, y2, **TOL)
    check_against_loops(cell.step, params, carry, xs, [T] * B, c1, y1, reverse)


def test_reverse_ignores_padding_content():
    """The backward run starts at each sequence's last valid step, so changing the
    padding must change nothing."""
    cell, params, carry, xs = setup("gru_reset_after")
    mask = (np.arange(T)[:, None] < LENGTHS[None, :])[..., None]
    noisy = jnp.where(mask, xs, 100.0)
    a = unroll(cell.step, params, carry, xs, lengths=LENGTHS, reverse=True)
    b = unroll(cell.step, params, carry, noisy, lengths=LENGTHS, reverse=True)
    assert_tree_close(a, b)


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "callable"])
def test_bidirectional_matches_two_loops(merge):
    cell_f, p_f, c_f, xs = setup("lstm", seed=1)
    cell_b, p_b, c_b, _ = setup("user_counting", seed=2)
    fn = {"concat": lambda a, b: np.concatenate([a, b], -1), "sum": np.add,
          "mean": lambda a, b: (a + b) / 2, "callable": lambda a, b: a * b}[merge]
    arg = (lambda a, b: a * b) if merge == "callable" else merge
    (cf, cb), ys = bidirectional(cell_f.step, cell_b.step, (p_f, p_b), (c_f, c_b), xs,
                                         lengths=LENGTHS, merge=arg)
    assert ys.shape == (T, B, 2 * H if merge == "concat" else H)
    for b, L in enumerate(LENGTHS):
        rf, yf = loop(cell_f.step, p_f, at(c_f, b), xs[:L, b])
        rb, yb = loop(cell_b.step, p_b, at(c_b, b), xs[:L, b], reverse=True)
        assert_tree_close(at(cf, b), rf)
        assert_tree_close(at(cb, b), rb)
        if L:
            np.testing.assert_allclose(ys[:L, b], fn(np.stack(yf), np.stack(yb)), **TOL)
        np.testing.assert_array_equal(ys[L:, b], 0.0)


@pytest.mark.parametrize("name", ["lstm", "user_counting"])
def test_vmap_of_unbatched_with_scalar_lengths_equals_batched(name):
    cell, params, carry, xs = setup(name)

    def one(x, c, L):  # x: [T, I], c: one carry, L: scalar
        return rnn_jax.unroll(cell.step, params, c, x, lengths=L, reverse=True)

    c_v, y_v = jax.vmap(one, in_axes=(1, 0, 0), out_axes=(0, 1))(xs, carry, jnp.asarray(LENGTHS))
    c_b, y_b = unroll(cell.step, params, carry, xs, lengths=LENGTHS, reverse=True)
    assert_tree_close(c_v, c_b)
    np.testing.assert_allclose(y_v, y_b, **TOL)
    # Unbatched with a plain Python int as the length.
    c1, y1 = one(xs[:, 1], at(carry, 1), int(LENGTHS[1]))
    assert_tree_close(c1, at(c_b, 1))


def test_step_with_several_batch_dims():
    cell, params, carry, xs = setup("lstm", batch=(2, 3))
    lengths = np.array([[6, 2, 0], [1, 5, 4]])
    c, ys = unroll(cell.step, params, carry, xs, lengths=lengths)
    flat = lambda a, lead: a.reshape(lead + (6,) + a.shape[len(lead) + 2:])
    c2, ys2 = unroll(cell.step, params, jax.tree_util.tree_map(lambda a: flat(a, ()), carry),
                             flat(xs, (T,)), lengths=lengths.reshape(6))
    assert_tree_close(jax.tree_util.tree_map(lambda a: flat(a, ()), c), c2)
    np.testing.assert_allclose(flat(ys, (T,)), ys2, **TOL)


@pytest.mark.parametrize("reverse", [False, True])
def test_grad_of_jitted_padded_batch_equals_sum_over_sequences_alone(reverse):
    cell, params, carry, xs = setup("gru_reset_after")
    step = _JITTED.setdefault(cell.step, jax.jit(cell.step))

    def loss(c, ys):
        return jnp.sum(ys ** 2) + jnp.sum(c)

    def loop_loss(p, c, x):  # reference: one sequence, its own length, no scan
        total = 0.0
        for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
            c, y = step(p, c, x[t])
            total = total + jnp.sum(y ** 2)
        return total + jnp.sum(c)

    @jax.jit
    def batch_loss(p, xs, lengths):
        return loss(*rnn_jax.unroll(cell.step, p, carry, xs, lengths=lengths, reverse=reverse))

    g = jax.grad(batch_loss)(params, xs, jnp.asarray(LENGTHS))
    want = jax.tree_util.tree_map(np.zeros_like, params)
    for b, L in enumerate(LENGTHS):
        gb = jax.grad(loop_loss)(params, at(carry, b), xs[:L, b])
        want = jax.tree_util.tree_map(np.add, want, numpy_tree(gb))
    assert_tree_close(g, want)
    # The same as a sum of per-example gradients: vmap of grad of unbatched unrolls, jitted.
    per_ex = jax.jit(jax.vmap(jax.grad(lambda p, c, x, L: loss(*rnn_jax.unroll(
        cell.step, p, c, x, lengths=L, reverse=reverse))), in_axes=(None, 0, 1, 0)))
    gv = per_ex(params, carry, xs, jnp.asarray(LENGTHS))
    assert_tree_close(jax.tree_util.tree_map(lambda a: a.sum(0), gv), want)


@pytest.mark.parametrize("make", [lambda: cells.lstm(H, peephole=True, dtype=jnp.float64),
                                  lambda: counting_rnn(H)], ids=["lstm", "user_counting"])
def test_gradients_through_masked_reversed_unroll_match_finite_differences(make):
    with jax.enable_x64(True):
        cell = make()
        rng = np.random.default_rng(7)
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                        cell.init(jax.random.key(0), I))
        xs = jnp.asarray(rng.standard_normal((T, B, I)))
        carry = jax.tree_util.tree_map(lambda l: jnp.asarray(rng.standard_normal(l.shape)),
                                       cell.initial_carry((B,)))

        @jax.jit
        def f(params, carry, xs):
            (c_f, c_b), ys = rnn_jax.bidirectional(cell.step, cell.step, (params, params), (carry, carry),
                                                   xs, lengths=LENGTHS, merge=lambda a, b: a * b)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(l ** 2) for l in jax.tree_util.tree_leaves((c_f, c_b)))

        check_grads(f, (params, carry, xs), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_batch_major_equals_swapped_time_major():
    cell, params, carry, xs = setup("lstm")
    xb = jnp.swapaxes(xs, 0, 1)
    runs = {}
    for reverse in (False, True):
        c1, y1 = unroll(cell.step, params, carry, xb, lengths=LENGTHS, reverse=reverse,
                                time_major=False)
        c2, y2 = unroll(cell.step, params, carry, xs, lengths=LENGTHS, reverse=reverse)
        assert y1.shape == (B, T, H)
        assert_tree_close(c1, c2)
        np.testing.assert_allclose(y1, jnp.swapaxes(y2, 0, 1), **TOL)
        runs[reverse] = y1
    _, yb = bidirectional(cell.step, cell.step, (params, params), (carry, carry), xb,
                                  lengths=LENGTHS, time_major=False)
    np.testing.assert_allclose(yb, jnp.concatenate([runs[False], runs[True]], -1), **TOL)


def test_zero_length_time_axis():
    cell, params, carry, xs = setup("lstm")
    c, ys = unroll(cell.step, params, carry, xs[:0])
    assert ys.shape == (0, B, H)
    assert_tree_close(c, carry)


def test_unroll_option_does_not_change_results():
    cell, params, carry, xs = setup("lstm")
    a = unroll(cell.step, params, carry, xs, lengths=LENGTHS)
    b = unroll(cell.step, params, carry, xs, lengths=LENGTHS, unroll=3)
    assert_tree_close(a, b)


# ------------------------------------------------------------------------ stacked

def _layers(widths_in, seed=0):
    # Module-level cells, so that compilations from the tests above are reused.
    ls = [CELLS["lstm"], CELLS["user_counting"]]
    keys = jax.random.split(jax.random.key(seed), len(ls))
    params = [numpy_tree(c.init(k, n)) for c, k, n in zip(ls, keys, widths_in)]
    return ls, params, [c.initial_carry((B,)) for c in ls]


@pytest.mark.parametrize("skip", [False, True])
def test_stacked_equals_layer_by_layer_and_stack_cell(skip):
    xs = np.random.default_rng(9).standard_normal((T, B, I)).astype(np.float32)
    ls, params, carries = _layers([I, H])
    finals, ys = stacked(tuple(c.step for c in ls), params, carries, xs, lengths=LENGTHS, skip=skip)
    # Layer by layer by hand: the first layer (I != H) cannot take a residual.
    h, want_finals = xs, []
    for layer, (c, p, c0) in enumerate(zip(ls, params, carries)):
        f, y = unroll(c.step, p, c0, h, lengths=LENGTHS)
        want_finals.append(f)
        h = y + h if skip and layer > 0 else y
    np.testing.assert_allclose(ys, h, **TOL)
    assert_tree_close(finals, tuple(want_finals))
    # The same deep RNN as one cell, stepped jointly through time.
    deep = cells.stack(ls, skip=skip)
    f2, y2 = unroll(deep.step, tuple(params), tuple(carries), xs, lengths=LENGTHS)
    np.testing.assert_allclose(y2, ys, **TOL)
    assert_tree_close(f2, finals)
    if skip:  # the residual really is there
        _, y_plain = stacked(tuple(c.step for c in ls), params, carries, xs, lengths=LENGTHS)
        assert not np.allclose(y_plain, ys)


def _passthrough(params, carry, x):
    return carry, x


def test_stacked_dropout_statistics_and_determinism():
    """A pass-through top layer exposes the dropped-out output of the layer below."""
    T_, B_, rate = 40, 25, 0.3
    xs = np.random.default_rng(0).standard_normal((T_, B_, I)).astype(np.float32)
    cell = cells.rnn(H)
    p = numpy_tree(cell.init(jax.random.key(1), I))
    steps, params, carries = (cell.step, _passthrough), [p, None], [cell.initial_carry((B_,)), ()]
    _, below = unroll(cell.step, p, carries[0], xs)
    _, y = stacked(steps, params, carries, xs, dropout_rate=rate, key=jax.random.key(5))
    y, below = np.asarray(y), np.asarray(below)
    kept = y != 0.0
    # 5000 Bernoulli(0.7) draws: std of the kept fraction is 0.0065.
    assert abs(kept.mean() - (1 - rate)) < 0.03
    np.testing.assert_allclose(y[kept], below[kept] / (1 - rate), **TOL)
    # Same key, same mask; another key, another mask; rate 0 is no dropout at all.
    _, y_again = stacked(steps, params, carries, xs, dropout_rate=rate, key=jax.random.key(5))
    _, y_other = stacked(steps, params, carries, xs, dropout_rate=rate, key=jax.random.key(6))
    np.testing.assert_array_equal(y, y_again)
    assert not np.array_equal(y, y_other)
    _, y0 = stacked(steps, params, carries, xs, dropout_rate=0.0, key=jax.random.key(5))
    np.testing.assert_allclose(y0, below, **TOL)


def test_stacked_dropout_spares_the_top_layer():
    xs = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    cell = cells.rnn(H)
    p = numpy_tree(cell.init(jax.random.key(1), I))
    # A bias keeps the top output off zero even when a whole input vector is dropped.
    p["b"] = np.full((H,), 0.3, np.float32)
    _, y = stacked((_passthrough, cell.step), [None, p], [(), cell.initial_carry((B,))], xs,
                           dropout_rate=0.5, key=jax.random.key(2))
    # Layer 1's output is xs with half of it dropped; layer 2's (the top) has no zeros.
    assert np.all(np.asarray(y) != 0.0)


def test_stacked_with_jit_and_grad():
    xs = np.random.default_rng(9).standard_normal((T, B, I)).astype(np.float32)
    ls, params, carries = _layers([I, H])

    @jax.jit
    def loss(params, key):
        _, ys = stacked(tuple(c.step for c in ls), params, carries, xs, lengths=LENGTHS,
                                dropout_rate=0.2, key=key)
        return jnp.sum(ys ** 2)

    g1 = jax.grad(loss)(params, jax.random.key(0))
    g2 = jax.grad(loss)(params, jax.random.key(0))
    assert_tree_close(g1, g2)
    assert all(np.isfinite(l).all() for l in jax.tree_util.tree_leaves(g1))
    assert any(np.abs(l).sum() > 0 for l in jax.tree_util.tree_leaves(g1[0]))
