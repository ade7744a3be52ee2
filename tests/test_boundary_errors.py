"""Errors at the API's boundaries (issue 18): another cell's params, ``initial_carry(B)``,
a list carry, initializer names.

Each error must name the argument and what was expected, and come before anything is
compiled: checked eagerly and with ``jax.jit(f).lower(...)``, which traces but never
compiles (as in tests/test_errors.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, initializers as inits

T, B, I, H, P = 5, 3, 2, 4, 2
KEY = jax.random.key(0)

# (cell, the phrase naming its params, the phrase naming the cell in "this cell is ...").
BUILT_IN = {
    "rnn": (cells.rnn(H), "an Elman RNN's", "an Elman RNN"),
    "lstm": (cells.lstm(H), "an LSTM's", r"an LSTM \(gates i, f, g, o\)"),
    "peephole": (cells.lstm(H, peephole=True), "a peephole LSTM's", r"a peephole LSTM \(gates"),
    "gru": (cells.gru(H), "a GRU's", None),
    "gru_reset_after": (cells.gru(H, reset_after=True), r"a GRU's \(reset_after=True\)", None),
    "layer_norm_lstm": (cells.layer_norm_lstm(H), "a layer-norm LSTM's", "a layer-norm LSTM"),
    "lstmp": (cells.lstmp(H, P), r"a projection LSTM's \(lstmp\)", r"an LSTMP \(proj_size=2\)"),
    "lru": (cells.lru(H), "an LRU's", r"an LRU \(state_size=4\)"),
    "min_gru": (cells.min_gru(H), "a minGRU's", "a minGRU"),
    "min_lstm": (cells.min_lstm(H), "a minLSTM's", "a minLSTM"),
    "slstm": (cells.slstm(H), "an sLSTM's", r"an sLSTM \(num_heads=1\)"),
    "indrnn": (cells.indrnn(H), "an IndRNN's", "an IndRNN"),
}
PARAMS = {name: cell.init(KEY, I) for name, (cell, _, _) in BUILT_IN.items()}
XS = jnp.ones((T, B, I))


def raises_eagerly_and_under_jit(exc, match, fn, *args):
    with pytest.raises(exc, match=match):
        fn(*args)
    with pytest.raises(exc, match=match):
        jax.jit(fn).lower(*args)


# ------------------------------------------------------------ another cell's params

def test_gru_params_into_an_lstm_are_named_as_a_grus():
    lstm = cells.lstm(H)
    carry = lstm.initial_carry((B,))
    msg = (r"params look like a GRU's or a 3-gate LSTM's, hidden size 4 \(b: \[12\], "
           r"w_h: \[4, 12\], w_x: \[2, 12\]\); this cell is an LSTM \(gates i, f, g, o\), "
           r"hidden_size=4, expecting b: \[16\], w_h: \[4, 16\], w_x: \[I, 16\]")
    raises_eagerly_and_under_jit(ValueError, msg, lambda p: lstm.step(p, carry, XS[0]),
                                 PARAMS["gru"])
    # Through unroll, fused path or not: the check runs when unroll first traces the step.
    for fused in (True, False):
        raises_eagerly_and_under_jit(
            ValueError, msg, lambda p, f=fused: rnn_jax.unroll(lstm, p, carry, XS, fused=f),
            PARAMS["gru"])


def test_reset_after_gru_params_name_the_keys():
    lstm = cells.lstm(H)
    with pytest.raises(ValueError, match=r"params look like a GRU's \(reset_after=True\) \(keys "
                                         r"\['b', 'b_hn', 'w_h', 'w_x'\]\); this cell is an LSTM "
                                         r".*expecting keys \['b', 'w_h', 'w_x'\]"):
        rnn_jax.unroll(lstm, PARAMS["gru_reset_after"], lstm.initial_carry((B,)), XS)


def test_params_of_another_hidden_size():
    small, big = cells.lstm(H), cells.lstm(2 * H)
    with pytest.raises(ValueError, match=r"look like an LSTM's, hidden size 8 .*"
                                         r"this cell is an LSTM .*hidden_size=4"):
        small.step(big.init(KEY, I), small.initial_carry((B,)), XS[0])


@pytest.mark.parametrize("dest", [n for n, v in BUILT_IN.items() if v[2] is not None])
def test_every_built_in_cell_names_another_cells_params(dest):
    """Every other built-in cell's params (same H and I) are refused by ``dest``'s step,
    naming the cell they came from and ``dest`` itself. GRU <-> 3-gate LSTM params share
    one layout and cannot be told apart; those pairs are not in this table."""
    cell, _, dest_phrase = BUILT_IN[dest]
    carry = cell.initial_carry((B,))
    for src, (_, src_phrase, _) in BUILT_IN.items():
        if src == dest:
            continue
        with pytest.raises(ValueError, match=f"params look like {src_phrase}.*"
                                             f"this cell is {dest_phrase}"):
            cell.step(PARAMS[src], carry, XS[0])
    # Its own params pass the check (and the step runs).
    new, y = cell.step(PARAMS[dest], carry, XS[0])
    assert y.shape == (B, cell.hidden_size)


def test_lstm_params_into_a_gru_are_named():
    gru = cells.gru(H)
    with pytest.raises(ValueError, match="params look like an LSTM's.*this cell is a GRU"):
        gru.step(PARAMS["lstm"], gru.initial_carry((B,)), XS[0])


def test_params_that_are_not_a_dict():
    lstm = cells.lstm(H)
    with pytest.raises(TypeError, match=r"params must be a dict: this cell is an LSTM .*expecting "
                                        r"keys \['b', 'w_h', 'w_x'\]; got tuple \(a tuple or list "
                                        r"of dicts is a stack's params"):
        lstm.step((PARAMS["lstm"],), lstm.initial_carry((B,)), XS[0])


def test_unknown_params_say_which_keys():
    rnn = cells.rnn(H)
    with pytest.raises(ValueError, match=r"params have keys \['kernel'\]; this cell is an "
                                         r"Elman RNN, hidden_size=4, expecting keys"):
        rnn.step({"kernel": jnp.zeros((I, H))}, rnn.initial_carry((B,)), XS[0])


def test_extra_entries_pass_unless_another_cell_uses_their_name():
    """A user may keep their own entries in a params dict (the fast paths give them zero
    gradients, tests/test_fused.py); an extra entry named like another cell's (here the
    peepholes) means another cell's params, which would otherwise be silently ignored."""
    lstm = cells.lstm(H)
    carry = lstm.initial_carry((B,))
    for note in (jnp.ones(3), "a string", {"nested": jnp.ones(2)}):
        _, y = lstm.step(dict(PARAMS["lstm"], note=note), carry, XS[0])
        assert y.shape == (B, H)
    with pytest.raises(ValueError, match=r"params look like a peephole LSTM's, hidden size 4 "
                                         r"\(keys \['b', 'p_f', 'p_i', 'p_o', 'w_h', 'w_x'\]\); "
                                         r"this cell is an LSTM"):
        lstm.step(PARAMS["peephole"], carry, XS[0])
    # A user's entry does not hide whose params they are.
    with pytest.raises(ValueError, match="params look like a GRU's or a 3-gate LSTM's"):
        lstm.step(dict(PARAMS["gru"], note=jnp.ones(3)), carry, XS[0])


def test_the_check_accepts_other_mappings_and_dtypes():
    """FrozenDict-like mappings and params stored in another precision are not refused."""
    from types import MappingProxyType
    lstm = cells.lstm(H)
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), PARAMS["lstm"])
    lstm.step(MappingProxyType(PARAMS["lstm"]), lstm.initial_carry((B,)), XS[0])
    c16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), lstm.initial_carry((B,)))
    _, y = lstm.step(p16, c16, XS[0].astype(jnp.bfloat16))
    assert y.dtype == jnp.bfloat16


# -------------------------------------------------------------------- initial_carry

def _all_cells():
    out = [v[0] for v in BUILT_IN.values()] + [cells.stack([cells.rnn(H), cells.lstm(H)])]
    out.append(cells.zoneout(cells.lstm(H), key=KEY, rate=0.1))
    return out


def test_initial_carry_of_an_int_is_one_batch_axis():
    """``initial_carry(8)`` means ``initial_carry((8,))``, as ``numpy.zeros(8)`` does."""
    for cell in _all_cells():
        a, b = cell.initial_carry(8), cell.initial_carry((8,))
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            assert x.shape == y.shape and x.shape[0] == 8 and x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    # NumPy integers too; and the variational-dropout wrapper's batch_shape.
    assert cells.rnn(H).initial_carry(np.int64(3)).shape == (3, H)
    vd = cells.variational_dropout(cells.rnn(H), key=KEY, batch_shape=B, input_size=I,
                                   input_rate=0.5)
    assert vd.step(PARAMS["rnn"], vd.initial_carry(B), XS[0])[1].shape == (B, H)


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (2.5, TypeError), (True, TypeError),
                                     ("8", ValueError), ((3, -1), ValueError),
                                     ((2.0,), ValueError), (None, TypeError)])
def test_initial_carry_refuses_what_is_not_a_batch_shape(bad, exc):
    with pytest.raises(exc, match="batch_shape must"):
        cells.lstm(H).initial_carry(bad)


# ------------------------------------------------------------------------ list carry

def test_a_list_carry_is_pointed_out_as_a_list():
    lstm = cells.lstm(H)
    h, c = lstm.initial_carry((B,))
    raises_eagerly_and_under_jit(
        TypeError, r"carry is a list, but step returns a tuple there: pass it as a tuple",
        lambda h, c: rnn_jax.unroll(lstm, PARAMS["lstm"], [h, c], XS), h, c)
    # Nested: a stack's carry with one layer's (h, c) as a list.
    deep = cells.stack([cells.rnn(H), lstm])
    p = deep.init(KEY, I)
    r0, (h1, c1) = deep.initial_carry((B,))
    with pytest.raises(TypeError, match=r"carry\[1\] is a list"):
        rnn_jax.unroll(deep, p, (r0, [h1, c1]), XS)
    with pytest.raises(TypeError, match=r"^carry is a list"):
        rnn_jax.unroll(deep, p, [r0, (h1, c1)], XS)


def test_a_list_where_step_returns_a_namedtuple():
    from typing import NamedTuple

    class State(NamedTuple):
        h: jax.Array
        n: jax.Array

    def step(params, carry, x):
        h, n = carry
        return State(h + x.sum(-1, keepdims=True), n + 1), h

    with pytest.raises(TypeError, match=r"carry is a list, but step returns a State "
                                        r"\(a NamedTuple\) there"):
        rnn_jax.unroll(step, None, [jnp.zeros((B, 1)), jnp.zeros((B, 1))], XS)


# -------------------------------------------------------------------- initializer names

@pytest.mark.parametrize("make", [cells.lstm, cells.gru, cells.layer_norm_lstm, cells.slstm,
                                  lambda h, **kw: cells.lstmp(h, P, **kw)])
def test_recurrent_and_kernel_init_take_names(make):
    """A name gives the params its function gives (same key, same arrays)."""
    by_name = make(H, recurrent_init="orthogonal", kernel_init="glorot_uniform").init(KEY, I)
    by_fn = make(H, recurrent_init=inits.orthogonal, kernel_init=inits.glorot_uniform).init(KEY, I)
    for a, b in zip(jax.tree_util.tree_leaves(by_name), jax.tree_util.tree_leaves(by_fn)):
        np.testing.assert_array_equal(a, b)
    # Another name reaches the recurrent weights (w_h, or the sLSTM's r) and only them.
    zero = make(H, recurrent_init="zeros").init(KEY, I)
    rec = "r" if "r" in zero else "w_h"
    np.testing.assert_array_equal(zero[rec], 0.0)
    assert np.abs(np.asarray(zero["w_x"])).max() > 0


@pytest.mark.parametrize("make", [cells.min_gru, cells.min_lstm, cells.indrnn])
def test_kernel_init_takes_names(make):
    p = make(H, kernel_init="zeros").init(KEY, I)
    np.testing.assert_array_equal(p["w_x"], 0.0)


def test_rnn_takes_callables_as_well_as_names():
    a = cells.rnn(H, recurrent_init=inits.orthogonal).init(KEY, I)
    b = cells.rnn(H, recurrent_init="orthogonal").init(KEY, I)
    np.testing.assert_array_equal(a["w_h"], b["w_h"])
    # recurrent_scale multiplies a callable's or another name's matrix.
    g1 = cells.rnn(H, recurrent_init="glorot_uniform").init(KEY, I)["w_h"]
    g2 = cells.rnn(H, recurrent_init="glorot_uniform", recurrent_scale=0.5).init(KEY, I)["w_h"]
    np.testing.assert_allclose(g2, 0.5 * g1, rtol=0, atol=0)


@pytest.mark.parametrize("make", [cells.rnn, cells.lstm, cells.layer_norm_lstm, cells.slstm,
                                  lambda h, **kw: cells.lstmp(h, P, **kw)])
def test_unknown_initializer_names_are_refused_when_the_cell_is_built(make):
    with pytest.raises(ValueError, match=r"recurrent_init must be one of \[.*'orthogonal'.*\] "
                                         r"or a callable init\(key, shape, dtype\), got 'he'"):
        make(H, recurrent_init="he")
    with pytest.raises(TypeError, match="kernel_init must be one of .* or a callable"):
        make(H, kernel_init=3)


def test_gru_refuses_an_unknown_name_at_init():
    """The GRU resolves names in the shared ``dense_init``: the error comes at ``init``."""
    with pytest.raises(ValueError, match="recurrent_init must be one of"):
        cells.gru(H, recurrent_init="he").init(KEY, I)
