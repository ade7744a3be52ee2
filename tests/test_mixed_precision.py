"""Mixed precision (``cells.with_compute_dtype``): float32 params and carry, bfloat16 matmuls.

References: the float32 run of the same cell (within a bound derived from bfloat16's unit
roundoff and the sequence length), the jaxpr of the rewritten step (which dtypes the
matmuls see), and an analytic accumulation that a bfloat16 carry gets visibly wrong.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, models
from rnn_jax import nn as rnn_nn
from rnn_jax.train import config as config_lib

from tolerances import U32, gamma, recurrence_rtol

U_BF16 = 2.0 ** -8  # unit roundoff of bfloat16 (8 significant bits)
T, B, I, H = 16, 2, 3, 8
# forget_bias=0: f near 1/2 keeps the propagation factor rho of _bounds below 1.
CELLS = {"lstm": lambda: cells.lstm(H, forget_bias=0.0),
         "gru": lambda: cells.gru(H, reset_after=True),
         "rnn": lambda: cells.rnn(H)}


def _setup(kind):
    cell = CELLS[kind]()
    params = cell.init(jax.random.key(0), I)
    # Small recurrent weights make the error propagation factor rho of _bounds about 1.
    params = dict(params, w_h=0.05 * params["w_h"])
    xs = 0.5 * jax.random.normal(jax.random.key(1), (T, B, I))
    return cell, params, xs


def _bounds(kind, cell, params, xs, carries):
    """Worst-case bounds on max |mixed - float32| of the outputs, to first order in u:
    ``(one step from the same carry, the whole run of T steps)``.

    One step: each product x_k w_kj in a pre-activation has both operands rounded to
    bfloat16 once, (1 + d1)(1 + d2) with |d| <= u = 2^-8, and the sums are accumulated in
    float32 in both runs, so a pre-activation moves by at most
    ``loc = gamma(2, u) S + 2 recurrence_rtol(1, I + H) S`` with
    ``S = max_j sum_k |x_k w_xkj| + |h_k w_hkj|`` (the second term: float32's own rounding
    in either run). The pointwise update passes a pre-activation error on with a factor K
    (|sigmoid'| <= 1/4, |tanh'| <= 1): LSTM ``dh <= do/4 + dc``,
    ``dc <= (|c|/4 + 1/4 + 1) dz``, so ``K = 3/2 + max|c|/4``; reset-after GRU
    ``dh <= |h - n|/4 dz + dn`` with ``dn <= dz + dr |h W_hn + b_hn|``, so
    ``K = 3/2 + S/4``; RNN ``K = 1``. One step's error is at most ``K loc``.

    The run: an error e in the carry moves the next pre-activations by at most ``a e``
    (``a = max_j sum_k |w_hkj|``) and is carried on directly with the cell's retention
    (f for the LSTM, z for the GRU, 0 for the RNN), so ``e_t <= rho e_{t-1} + K loc`` with
    ``rho = max retention + K a``: ``e_T <= K loc (1 + rho + ... + rho^(T-1))``, at most
    ``T K loc`` when rho <= 1.
    """
    hs = carries[0] if kind == "lstm" else carries
    w_x, w_h = np.abs(np.asarray(params["w_x"])), np.abs(np.asarray(params["w_h"]))
    h_prev = np.concatenate([np.zeros_like(hs[:1]), hs[:-1]], axis=0)
    S = float(np.max(np.abs(np.asarray(xs)) @ w_x + np.abs(h_prev) @ w_h))
    a = float(np.max(np.sum(w_h, axis=0)))
    K = {"lstm": 1.5 + float(np.max(np.abs(carries[1]))) / 4 if kind == "lstm" else 0.0,
         "gru": 1.5 + S / 4, "rnn": 1.0}[kind]
    retained = 0.0
    if cell.retention is not None:
        prev = jax.tree_util.tree_map(
            lambda c: jnp.concatenate([jnp.zeros_like(c[:1]), c[:-1]], axis=0), carries)
        retained = float(jnp.max(jax.vmap(cell.retention, (None, 0, 0))(params, prev, xs)))
    rho = retained + K * a
    loc = gamma(2, U_BF16) * S + 2 * recurrence_rtol(1, I + H) * S
    return K * loc, K * loc * sum(rho ** k for k in range(T)), rho


@pytest.mark.numerics
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_bf16_compute_close_to_float32_and_gradients_float32(kind):
    cell, params, xs = _setup(kind)
    mp = cells.with_compute_dtype(cell, jnp.bfloat16)
    carry = cell.initial_carry((B,))

    def loss(c, p):
        _, ys = rnn_jax.unroll(c, p, carry, xs)
        return jnp.sum(ys ** 2), ys

    @jax.jit
    def run(p):
        _, _, carries = rnn_jax.unroll(cell, p, carry, xs, return_carries=True, fused=False)
        prev = jax.tree_util.tree_map(
            lambda c: jnp.concatenate([c[:1] * 0, c[:-1]], axis=0), carries)
        # One step of each from the same (float32) carry, at every t.
        one = jax.vmap(lambda c, x: mp.step(p, c, x)[1] - cell.step(p, c, x)[1])(prev, xs)
        return (carries, one, jax.value_and_grad(lambda q: loss(mp, q), has_aux=True)(p),
                jax.value_and_grad(lambda q: loss(cell, q), has_aux=True)(p))

    carries, one, ((_, y_mp), g_mp), ((_, y32), g32) = run(params)
    step_bound, run_bound, rho = _bounds(kind, cell, params, xs, carries)
    assert rho < 1.0, rho  # then the run's error stays below K loc / (1 - rho)
    assert y_mp.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(one))) <= step_bound
    err = float(jnp.max(jnp.abs(y_mp - y32)))
    assert err <= run_bound <= T * step_bound, (err, run_bound)
    # The bfloat16 matmuls are really in use: far above float32's own error of the run.
    assert err > 10 * recurrence_rtol(T, I + H) * float(jnp.max(jnp.abs(y32)))
    # Gradients reach the float32 params in float32. The adjoint recurrence has the same
    # Jacobians (transposed) and the same bf16 operand rounding, so the same relative bound
    # applies to it, doubled for the perturbed forward values it reads.
    rel = run_bound / float(jnp.max(jnp.abs(y32)))
    for k in params:
        assert g_mp[k].dtype == jnp.float32, k
        np.testing.assert_array_less(np.abs(g_mp[k] - g32[k]),
                                     2 * rel * float(jnp.max(jnp.abs(g32[k]))))


def test_matmuls_see_bf16_and_return_float32():
    cell, params, xs = _setup("lstm")
    mp = cells.with_compute_dtype(cell, "bfloat16")
    jaxpr = jax.make_jaxpr(mp.step)(params, cell.initial_carry((B,)), xs[0].astype(jnp.bfloat16))
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 2  # x @ w_x and h @ w_h
    for e in dots:
        assert [v.aval.dtype for v in e.invars] == [jnp.bfloat16] * 2
        assert e.outvars[0].aval.dtype == jnp.float32
    assert all(v.aval.dtype == jnp.float32 for v in jaxpr.jaxpr.outvars)  # h, c, y
    # Params and carry layout unchanged: the same init, the same initial carry.
    assert mp.init is cell.init and mp.initial_carry is cell.initial_carry


def test_fused_and_parallel_paths_are_bypassed():
    cell = cells.lstm(H)
    mp = cells.with_compute_dtype(cell, jnp.bfloat16)
    assert cell.fast_unroll is not None and mp.fast_unroll is None and mp.parallel_unroll is None
    # A float32 compute dtype on a float32 cell lowers nothing: the cell, fast path and all.
    assert cells.with_compute_dtype(cell, jnp.float32) is cell
    lru = cells.lru(H)
    p = lru.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match="parallel_unroll"):
        rnn_jax.unroll(cells.with_compute_dtype(lru, jnp.bfloat16), p, lru.initial_carry((B,)),
                       jnp.zeros((T, B, I)), parallel=True)
    with pytest.raises(ValueError, match="compute_dtype must be a floating dtype"):
        cells.with_compute_dtype(cell, jnp.int8)
    with pytest.raises(ValueError, match="compute_dtype must be a floating dtype"):
        cells.with_compute_dtype(cell, None)


@pytest.mark.numerics
def test_cell_state_accumulates_in_float32():
    """c_t = c_{t-1} + d with d = sigmoid(0) tanh(b_g) = 0.01 (forget gate exactly 1, zero
    weights): c_T = T d. In a bfloat16 carry an increment below half the spacing of c is
    lost (spacing 2^-5 at c >= 4, half of it > 0.01), so the all-bfloat16 LSTM stalls near
    4; the mixed-precision carry is float32 and reaches T d."""
    steps = 600
    d = 0.01
    b = np.concatenate([[0.0], [30.0], [np.arctanh(2 * d)], [0.0]])  # gates i, f, g, o (H=1)

    def final_c(dtype, compute):
        cell = cells.lstm(1, dtype=dtype)
        p = {"w_x": jnp.zeros((1, 4), dtype), "w_h": jnp.zeros((1, 4), dtype),
             "b": jnp.asarray(b, dtype)}
        if compute is not None:
            cell = cells.with_compute_dtype(cell, compute)
        (_, c), _ = rnn_jax.unroll(cell, p, cell.initial_carry(()), jnp.ones((steps, 1), dtype))
        return float(c[0])

    want = steps * d
    # float32 sum of 600 increments, each with a few roundings: gamma(steps + 8) relative.
    assert abs(final_c(jnp.float32, jnp.bfloat16) - want) <= gamma(steps + 8, U32) * want * 2
    stalled = final_c(jnp.bfloat16, None)
    assert stalled < 0.8 * want, stalled  # what float32 accumulation avoids


def test_flax_wrappers_and_config():
    cell = cells.lstm(H)
    xs = jax.random.normal(jax.random.key(0), (B, T, I))
    module = rnn_nn.Stacked([cell, cell], bidirectional=True, compute_dtype=jnp.bfloat16,
                            deterministic=True)
    variables = jax.jit(module.init)(jax.random.key(1), xs)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(variables))
    got = jax.jit(module.apply)(variables, xs)
    p = variables["params"]
    mp = cells.with_compute_dtype(cell, jnp.bfloat16)
    zero = cell.initial_carry((B,))
    want = jax.jit(lambda p: rnn_jax.stacked(
        [mp, mp], [(p["cell_0_fw"], p["cell_0_bw"]), (p["cell_1_fw"], p["cell_1_bw"])],
        [(zero, zero)] * 2, xs, bidirectional=True, time_major=False)[1])(p)
    np.testing.assert_array_equal(got, want)
    rnn = rnn_nn.RNN(cell, compute_dtype=jnp.bfloat16)
    got = jax.jit(rnn.apply)({"params": {"cell": p["cell_0_fw"]}}, xs)
    want = jax.jit(lambda q: rnn_jax.unroll(mp, q, zero, xs, time_major=False)[1])(p["cell_0_fw"])
    np.testing.assert_array_equal(got, want)
    # The training config: a field checked before anything compiles, and the model's cell.
    config = config_lib.default_config()
    assert config.compute_dtype == "float32"
    config.update(ml_collections.ConfigDict({"hidden_size": 4, "batch_size": 2}))
    config.task.seq_len = 25
    config.compute_dtype = "bfloat16"
    config_lib.validate(config)
    assert models.make_model(config).cell.fast_unroll is None
    config.compute_dtype = "half"
    with pytest.raises(ValueError, match="config.compute_dtype must be one of"):
        config_lib.validate(config)
