"""Core contract 2.0 (issue 11) and NaN-proof padding (issue 17, item 3), part 1 of 3.

Parts 2 and 3: tests/test_resets.py, tests/test_vmap_shard.py. The whole contract:

* a bare step function, even one wrapped with functools.wraps, runs exactly itself;
* resets: a packed row equals running each sequence alone, values and gradients,
  on every cell and path (fused, plain, remat, reverse, lengths, bidirectional);
* return_carries agrees across paths and with the final carry;
* NaN/Inf in the padding change no value and no gradient, on every path;
* jax.vmap over a per-example unroll equals the batched call (values and gradients),
  and per-example gradients (vmap of grad) equal separate grads;
* shard_map over the batch axis equals the unsharded call (2 host devices, subprocess).

References are independent runs: each packed sequence alone through the plain scan
(no resets, no padding), and the same computation on clean inputs. Tolerances: every
quantity is a float32 sum of O(10) terms of size O(1) through a few tanh/sigmoid steps,
so rounding is ~1e-6 relative; 1e-5 absolute leaves a 10x margin.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax

from contract_cases import _close, _first_leaf, _setup

# ------------------------------------------------------------------ fast path is a field

def test_wrapped_step_runs_itself_not_the_cells_fast_path():
    cell, params, xs = _setup("lstm")
    carry = cell.initial_carry((2,))

    @functools.wraps(cell.step)
    def doubled(p, c, x):  # a different computation that looks like cell.step
        return cell.step(p, c, 2.0 * x)

    _, ys = rnn_jax.unroll(doubled, params, carry, xs)
    # Reference: a Python loop over the wrapper itself.
    c, ref = carry, []
    for t in range(xs.shape[0]):
        c, y = doubled(params, c, xs[t])
        ref.append(y)
    _close(ys, jnp.stack(ref))
    assert not hasattr(cell.step, "fused_unroll") and not hasattr(doubled, "fused_unroll")


def test_parallel_without_a_parallel_path_is_refused():
    cell, params, xs = _setup("gru")
    with pytest.raises(ValueError, match="parallel_unroll"):
        rnn_jax.unroll(cell, params, cell.initial_carry((2,)), xs, parallel=True)
    with pytest.raises(ValueError, match="parallel_unroll"):
        rnn_jax.unroll(cell.step, params, cell.initial_carry((2,)), xs, parallel=True)

    # A path with the base SequencePath signature cannot return every carry: said clearly.
    def path(params, carry, xs, *, lengths=None, resets=None, reverse=False, unroll=1):
        return rnn_jax.unroll(cell.step, params, carry, xs, lengths=lengths, resets=resets,
                              reverse=reverse)
    with_path = cell._replace(parallel_unroll=path)
    _close(rnn_jax.unroll(with_path, params, cell.initial_carry((2,)), xs, parallel=True),
           rnn_jax.unroll(cell, params, cell.initial_carry((2,)), xs))
    with pytest.raises(ValueError, match="return_carries=True: this cell's parallel_unroll"):
        rnn_jax.unroll(with_path, params, cell.initial_carry((2,)), xs, parallel=True,
                       return_carries=True)


def test_frozendict_and_ordereddict_params_keep_the_fast_path():
    from collections import OrderedDict
    from flax.core import FrozenDict
    cell, params, xs = _setup("lstm")
    carry = cell.initial_carry((2,))
    ref = jax.grad(lambda p: jnp.sum(rnn_jax.unroll(cell, p, carry, xs)[1]))(params)
    for kind in (FrozenDict, OrderedDict):
        p = kind(params)
        f = lambda p: jnp.sum(rnn_jax.unroll(cell, p, carry, xs)[1])
        assert "custom_vjp" in str(jax.make_jaxpr(f)(p)), kind
        g = jax.grad(f)(p)
        assert type(g) is kind
        _close(dict(g), ref)


# ------------------------------------------------------------------ all carries

@pytest.mark.parametrize("name", ["lstm"])
def test_return_carries_agree_on_every_path(name):
    cell, params, xs = _setup(name)
    carry = cell.initial_carry((2,))
    lengths = jnp.array([7, 4])
    # Every path's run and the carries' gradients in one jitted program (test time: one
    # compilation instead of an eager one per scan).
    @jax.jit
    def outputs(params, xs):
        outs = {}
        for path, kw in {"fused": {}, "plain": {"fused": False}, "remat": {"remat": 3}}.items():
            outs[path] = rnn_jax.unroll(cell, params, carry, xs, lengths=lengths,
                                        return_carries=True, **kw)
        g = {p: jax.grad(lambda q: sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(
            rnn_jax.unroll(cell, q, carry, xs, lengths=lengths, return_carries=True,
                           fused=p == "fused")[2])))(params) for p in ("fused", "plain")}
        return outs, g

    outs, g = outputs(params, xs)
    for path in ("plain", "remat"):
        _close(outs[path], outs["fused"])
    final, ys, carries = outs["fused"]
    h = carries[0] if name == "lstm" else carries
    _close(h, ys)  # h_t is the output
    # carries[L-1] is each sequence's final carry; padded steps are zeros.
    _close(jax.tree_util.tree_map(lambda a: a[3, 1], carries),
           jax.tree_util.tree_map(lambda a: a[1], final))
    for leaf in jax.tree_util.tree_leaves(carries):
        np.testing.assert_array_equal(np.asarray(leaf[4:, 1]), 0.0)
    # Gradients through the carries agree too (the LSTM's c output has its own cotangent).
    _close(g["fused"], g["plain"])


# ------------------------------------------------------------------ NaN in the padding

@pytest.mark.parametrize("name", ["lstm", "lstm_peephole", "gru", "rnn"])
def test_nan_and_inf_in_the_padding_have_no_effect(name):
    cell, params, xs = _setup(name)
    carry = cell.initial_carry((2,))
    lengths = jnp.array([7, 4])
    pad = (jnp.arange(7)[:, None] >= lengths[None])[..., None]
    dirty = jnp.where(pad, jnp.array([jnp.nan, jnp.inf, -jnp.inf, jnp.nan] * 2)[:7, None, None],
                      xs)
    paths = ({}, {"fused": False}, {"remat": 3}, {"reverse": True}) if name == "lstm" else ({},)
    for kw in paths:
        def loss(p, x):
            c, ys = rnn_jax.unroll(cell, p, carry, x, lengths=lengths, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))

        # One jitted program per path, run on the dirty and on the clean inputs: one
        # compilation instead of eager ones per scan (test time); the comparison is
        # between two runs of it that differ only in the padding's content.
        run = jax.jit(lambda p, x: (jax.value_and_grad(loss, argnums=(0, 1))(p, x),
                                    rnn_jax.unroll(cell, p, carry, x, lengths=lengths, **kw)[1]))
        got, ys = run(params, dirty)
        want, _ = run(params, xs)
        for leaf in jax.tree_util.tree_leaves(got):
            assert np.all(np.isfinite(np.asarray(leaf))), kw
        _close(got, want)
        np.testing.assert_array_equal(np.asarray(ys[4:, 1]), 0.0)


def test_nan_padding_leaves_the_diagnostics_finite():
    cell, params, xs = _setup("lstm", batch=())
    carry = cell.initial_carry()
    dirty = xs.at[5:].set(jnp.nan)
    from rnn_jax import diagnostics
    norms = diagnostics.grad_norms(cell.step, params, carry, dirty, lambda s: jnp.sum(s[0][4]),
                                   lengths=5)
    ref = diagnostics.grad_norms(cell.step, params, carry, xs[:5], lambda s: jnp.sum(s[0][4]))
    _close(jax.tree_util.tree_map(lambda a: a[:5], norms), ref)
