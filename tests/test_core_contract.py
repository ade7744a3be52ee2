"""Core contract 2.0 (issue 11) and NaN-proof padding (issue 17, item 3).

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
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells

I, H = 3, 4
ATOL = 1e-5

CELLS = {
    "lstm": lambda: cells.lstm(H),
    "lstm_peephole": lambda: cells.lstm(H, peephole=True),
    "gru": lambda: cells.gru(H),
    "gru_after": lambda: cells.gru(H, reset_after=True),
    "rnn": lambda: cells.rnn(H),
}


def _close(a, b, atol=ATOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def _setup(name, T=7, batch=(2,), seed=0):
    cell = CELLS[name]()
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = cell.init(k1, I)
    xs = jax.random.normal(k2, (T,) + batch + (I,))
    return cell, params, xs


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


def _first_leaf(c):
    return jax.tree_util.tree_leaves(c)[0]


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("path", ["fused", "plain", "remat", "reverse"])
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

    got = jax.value_and_grad(packed, argnums=(0, 1, 2))(params, xs, carry)
    want = jax.value_and_grad(separate, argnums=(0, 1, 2))(params, xs, carry)
    _close(got, want)


def test_resets_with_lengths_bidirectional_and_stacked():
    cell, params, xs, resets, carry, w = _packed_setup("lstm")
    lengths = jnp.array([T_PACK, 6])  # row 1's last sequence [6, 9) is padding
    c0 = cell.initial_carry((2,))
    run = lambda fused: jax.value_and_grad(lambda p: jnp.sum(jnp.sin(rnn_jax.bidirectional(
        cell, cell, (p, p), (c0, c0), xs, lengths=lengths, resets=resets, fused=fused)[1])))(params)
    _close(run(True), run(False))
    # Row 1's backward direction: its sequences [0, 2) and [2, 6) each reversed alone.
    _, ys = rnn_jax.bidirectional(cell, cell, (params, params), (c0, c0), xs, lengths=lengths,
                                  resets=resets)
    for s, e in [(0, 2), (2, 6)]:
        _, ref = rnn_jax.unroll(cell.step, params, cell.initial_carry(), xs[s:e, 1], reverse=True)
        _close(ys[s:e, 1, H:], ref)
    np.testing.assert_array_equal(np.asarray(ys[6:, 1]), 0.0)
    # stacked: every layer resets; equals two unrolls with resets, the top one plain.
    p2 = cells.lstm(H).init(jax.random.PRNGKey(9), H)
    _, top = rnn_jax.stacked([cell, cell], [params, p2], [c0, c0], xs, resets=resets)
    _, mid = rnn_jax.unroll(cell, params, c0, xs, resets=resets)
    _, ref = rnn_jax.unroll(cell, p2, c0, mid, resets=resets, fused=False)
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


# ------------------------------------------------------------------ all carries

@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_return_carries_agree_on_every_path(name):
    cell, params, xs = _setup(name)
    carry = cell.initial_carry((2,))
    lengths = jnp.array([7, 4])
    outs = {}
    for path, kw in {"fused": {}, "plain": {"fused": False}, "remat": {"remat": 3}}.items():
        outs[path] = rnn_jax.unroll(cell, params, carry, xs, lengths=lengths,
                                    return_carries=True, **kw)
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
    g = {p: jax.grad(lambda q: sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(
        rnn_jax.unroll(cell, q, carry, xs, lengths=lengths, return_carries=True,
                       fused=p == "fused")[2])))(params) for p in ("fused", "plain")}
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
    for kw in ({}, {"fused": False}, {"remat": 3}, {"reverse": True}):
        def loss(p, x):
            c, ys = rnn_jax.unroll(cell, p, carry, x, lengths=lengths, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))
        got = jax.value_and_grad(loss, argnums=(0, 1))(params, dirty)
        want = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
        for leaf in jax.tree_util.tree_leaves(got):
            assert np.all(np.isfinite(np.asarray(leaf))), kw
        _close(got, want)
        ys = rnn_jax.unroll(cell, params, carry, dirty, lengths=lengths, **kw)[1]
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


# ------------------------------------------------------------------ vmap

@pytest.mark.parametrize("name", ["lstm", "gru_after", "rnn"])
def test_vmap_of_a_per_example_unroll_equals_the_batched_call(name):
    cell, params, xs = _setup(name, batch=(3,))
    xs_b = jnp.swapaxes(xs, 0, 1)  # [B, T, I]
    lengths = jnp.array([7, 5, 2])
    resets = jnp.zeros((3, 7), bool).at[0, 3].set(True)

    def one(p, x, n, r):
        c, ys = rnn_jax.unroll(cell, p, cell.initial_carry(), x, lengths=n, resets=r)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))

    def batched(p, x):
        c, ys = rnn_jax.unroll(cell, p, cell.initial_carry((3,)), x, lengths=lengths,
                               resets=resets.T)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))

    vm = lambda p, x: jnp.sum(jax.vmap(one, (None, 1, 0, 0))(p, x, lengths, resets))
    assert "custom_vmap" in str(jax.make_jaxpr(lambda p: one(p, xs[:, 0], 7, resets[0]))(params))
    _close(jax.value_and_grad(vm, argnums=(0, 1))(params, xs),
           jax.value_and_grad(batched, argnums=(0, 1))(params, xs))
    # Per-example gradients (vmap of grad) equal one grad per example.
    per = jax.vmap(jax.grad(one), (None, 0, 0, 0))(params, xs_b, lengths, resets)
    for b in range(3):
        _close(jax.tree_util.tree_map(lambda a: a[b], per),
               jax.grad(one)(params, xs_b[b], lengths[b], resets[b]))
    # Per-example params (an ensemble) still batch correctly.
    ens = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a, -a]), params)
    got = jax.vmap(jax.value_and_grad(one), (0, 0, 0, 0))(ens, xs_b, lengths, resets)
    for b in range(3):
        _close(jax.tree_util.tree_map(lambda a: a[b], got),
               jax.value_and_grad(one)(jax.tree_util.tree_map(lambda a: a[b], ens), xs_b[b],
                                       lengths[b], resets[b]))


# ------------------------------------------------------------------ shard_map

_SHARD_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    import rnn_jax
    from rnn_jax import cells
    assert jax.device_count() == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    out = {}
    for name, cell in [("lstm", cells.lstm(4)), ("gru", cells.gru(4))]:
        params = cell.init(jax.random.PRNGKey(0), 3)
        xs = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 3))
        lengths = jnp.array([5, 3, 2, 4])
        for fused in (True, False):
            def local(p, x, n):
                c, ys = rnn_jax.unroll(cell, p, cell.initial_carry((x.shape[1],)), x,
                                       lengths=n, fused=fused)
                return jax.lax.psum(jnp.sum(jnp.sin(ys)), "data")
            sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, "data"), P("data")),
                                    out_specs=P())
            full = lambda p, x, n: jnp.sum(jnp.sin(rnn_jax.unroll(
                cell, p, cell.initial_carry((4,)), x, lengths=n, fused=fused)[1]))
            a = jax.jit(jax.value_and_grad(sharded))(params, xs, lengths)
            b = jax.value_and_grad(full)(params, xs, lengths)
            out[f"{name}-{fused}"] = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                                         for u, v in zip(jax.tree_util.tree_leaves(a),
                                                         jax.tree_util.tree_leaves(b)))
    print(json.dumps(out))
""")


def test_unroll_inside_shard_map_equals_the_unsharded_call():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _SHARD_SCRIPT], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(diffs) == {"lstm-True", "lstm-False", "gru-True", "gru-False"}
    for k, d in diffs.items():
        assert d < ATOL, (k, d)
