"""Bad input raises ValueError/TypeError naming the argument, at trace time.

"Trace time" is checked with ``jax.jit(f).lower(...)``: lowering traces but never
compiles, so an error raised there cannot be an XLA error.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, initializers as inits

T, B, I, H = 6, 3, 2, 4
RNN = cells.rnn(H)
LSTM = cells.lstm(H)
P_RNN = RNN.init(jax.random.key(0), I)
P_LSTM = LSTM.init(jax.random.key(0), I)
XS = jnp.zeros((T, B, I))


def _unroll(cell, params, carry, xs, **kw):
    return rnn_jax.unroll(cell.step, params, carry, xs, **kw)


def raises_eagerly_and_under_jit(exc, match, fn, *args):
    """``fn(*args)`` raises ``exc`` matching ``match`` both eagerly and when traced by jit."""
    with pytest.raises(exc, match=match):
        fn(*args)
    with pytest.raises(exc, match=match):
        jax.jit(fn).lower(*args)


# ------------------------------------------------------------------ inputs and carries

def test_wrong_input_size():
    raises_eagerly_and_under_jit(ValueError, r"x must have shape \[\.\.\., input_size=2\]",
                                 lambda xs: _unroll(RNN, P_RNN, RNN.initial_carry((B,)), xs),
                                 jnp.zeros((T, B, I + 1)))


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (H,)])
def test_carry_of_wrong_shape(shape):
    raises_eagerly_and_under_jit(ValueError, r"carry must have shape \(3, 4\)",
                                 lambda c: _unroll(RNN, P_RNN, c, XS), jnp.zeros(shape))


def test_carry_of_wrong_structure():
    # An LSTM needs (h, c); an Elman RNN needs one array.
    raises_eagerly_and_under_jit(TypeError, r"LSTM carry must be a pair \(h, c\)",
                                 lambda c: _unroll(LSTM, P_LSTM, c, XS), jnp.zeros((B, H)))
    raises_eagerly_and_under_jit(TypeError, "carry must be an array",
                                 lambda c: _unroll(RNN, P_RNN, c, XS), (jnp.zeros((B, H)),) * 2)
    with pytest.raises(ValueError, match=r"carry \(h, c\) must have equal shapes"):
        _unroll(LSTM, P_LSTM, (jnp.zeros((B, H)), jnp.zeros((B, H + 1))), XS)
    with pytest.raises(TypeError, match="params and carry of a stack must be tuples"):
        deep = cells.stack([RNN, RNN])
        _unroll(deep, deep.init(jax.random.key(0), I), jnp.zeros((B, H)), XS)


# Exception to strict dtype promotion (conftest): a float16 carry into a float32 cell is
# refused by JAX's own TypePromotionError under strict promotion before our check can name
# the carry; users run JAX's default (standard) promotion, where our message is the one seen.
@pytest.mark.standard_dtype_promotion
def test_carry_that_step_changes():
    """A user step whose new carry differs from the one passed in (structure, shape
    or dtype) is caught before lax.scan reports it in its own terms."""
    def grows(params, carry, x):
        return (carry, carry), x

    def widens(params, carry, x):
        return jnp.concatenate([carry, carry], -1), x

    for step in (grows, widens):
        raises_eagerly_and_under_jit(ValueError, "carry does not match what step returns",
                                     lambda xs, s=step: rnn_jax.unroll(s, None, jnp.zeros((B, H)), xs),
                                     XS)
    # float16 carry into a float32 cell comes back float32.
    with pytest.raises(ValueError, match="carry does not match what step returns"):
        _unroll(RNN, P_RNN, jnp.zeros((B, H), jnp.float16), XS)
    with pytest.raises(TypeError, match=r"step must return a pair \(carry, y\)"):
        rnn_jax.unroll(lambda p, c, x: c, None, jnp.zeros((B, H)), XS)


def test_xs_without_a_common_time_axis():
    step = lambda p, c, x: (c, x["a"])
    with pytest.raises(ValueError, match="share the time length"):
        rnn_jax.unroll(step, None, jnp.zeros(B), {"a": jnp.zeros((T, B)), "b": jnp.zeros((T + 1, B))})
    with pytest.raises(ValueError, match="leading time axis"):
        rnn_jax.unroll(step, None, jnp.zeros(()), {"a": jnp.zeros(())})
    with pytest.raises(ValueError, match="at least one array"):
        rnn_jax.unroll(step, None, jnp.zeros(()), {})


# --------------------------------------------------------------------------- lengths

@pytest.mark.parametrize("lengths", [np.array([1.0, 2.0, 3.0]), np.array([True, False, True]),
                                     [1.5, 2, 3]])
def test_non_integer_lengths(lengths):
    raises_eagerly_and_under_jit(TypeError, "lengths must be an integer array",
                                 lambda L: _unroll(RNN, P_RNN, RNN.initial_carry((B,)), XS, lengths=L),
                                 np.asarray(lengths))


@pytest.mark.parametrize("lengths", [[1, 2, T + 1], [-1, 2, 3]])
def test_out_of_range_lengths(lengths):
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=6\]"):
        _unroll(RNN, P_RNN, RNN.initial_carry((B,)), XS, lengths=np.array(lengths))
    # Concrete lengths closed over by a jitted function are still checked.
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=6\]"):
        jax.jit(lambda xs: _unroll(RNN, P_RNN, RNN.initial_carry((B,)), xs,
                                   lengths=np.array(lengths))).lower(XS)


def test_traced_lengths_are_clipped_to_the_valid_range():
    """Traced values cannot be checked; unroll documents that they are clipped."""
    f = jax.jit(lambda L: _unroll(RNN, P_RNN, RNN.initial_carry((B,)), XS + 1.0, lengths=L))
    big, ok = f(jnp.array([T + 3, 2, -4])), f(jnp.array([T, 2, 0]))
    for a, b in zip(jax.tree_util.tree_leaves(big), jax.tree_util.tree_leaves(ok)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(B + 1,), (B, 1)])
def test_lengths_of_wrong_shape(shape):
    raises_eagerly_and_under_jit(ValueError, "lengths must have the carry's batch shape",
                                 lambda L: _unroll(RNN, P_RNN, RNN.initial_carry((B,)), XS, lengths=L),
                                 np.ones(shape, np.int32))


# ------------------------------------------------------------------ constructor args

@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4", None])
def test_bad_hidden_size(bad):
    for make in (cells.rnn, cells.lstm, cells.gru):
        with pytest.raises(ValueError, match="hidden_size must be a positive int"):
            make(bad)


def test_numpy_integer_sizes_are_accepted():
    cell = cells.rnn(np.int64(H), recurrent_init="identity")
    assert cell.hidden_size == H and type(cell.hidden_size) is int
    assert cell.init(jax.random.key(0), np.int32(I))["w_x"].shape == (I, H)


def test_bad_input_size():
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        RNN.init(jax.random.key(0), 0)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'tanh'\], got 'gelu'"):
        cells.rnn(H, activation="gelu")
    with pytest.raises(ValueError, match="recurrent_init must be one of .*got 'he'"):
        cells.rnn(H, recurrent_init="he")
    with pytest.raises(ValueError, match=r"merge must be one of \['concat', 'mean', 'sum'\] or a callable"):
        rnn_jax.bidirectional(RNN.step, RNN.step, (P_RNN, P_RNN), (RNN.initial_carry((B,)),) * 2, XS,
                              merge="max")


def test_inconsistent_lstm_options():
    with pytest.raises(ValueError, match="coupled=True"):
        cells.lstm(H, coupled=True, forget_gate=False)
    with pytest.raises(ValueError, match="chrono_t_max"):
        cells.lstm(H, chrono_t_max=10.0, forget_gate=False)
    with pytest.raises(ValueError, match="t_max > 2"):
        cells.lstm(H, chrono_t_max=2.0).init(jax.random.key(0), I)
    with pytest.raises(ValueError, match="square"):
        inits.identity(None, (3, 4))


def test_bad_stack_and_sequence_op_arguments():
    carry = RNN.initial_carry((B,))
    with pytest.raises(ValueError, match="cells must hold at least one Cell"):
        cells.stack([])
    with pytest.raises(ValueError, match="params and carry must be pairs"):
        rnn_jax.bidirectional(RNN.step, RNN.step, (P_RNN,), (carry, carry), XS)
    with pytest.raises(ValueError, match="one entry per layer"):
        rnn_jax.stacked([RNN.step, RNN.step], [P_RNN], [carry, carry], XS)
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\)"):
        rnn_jax.stacked([RNN.step], [P_RNN], [carry], XS, dropout_rate=1.0)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        rnn_jax.stacked([RNN.step], [P_RNN], [carry], XS, dropout_rate=0.1)


@pytest.mark.parametrize("module", ["classify", "lm", "forecast", "seq2seq"])
def test_applications_name_a_bad_optimizer_field(module):
    import importlib
    mod = importlib.import_module(f"rnn_jax.apps.{module}")
    config = mod.default_config()
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = config.num_steps  # warmup would fill the whole run
    with pytest.raises(ValueError, match="optimizer.warmup_steps"):
        mod.validate(config)
    config = mod.default_config()
    config.optimizer.name = "adamm"
    with pytest.raises(ValueError, match="optimizer.name"):
        mod.validate(config)
