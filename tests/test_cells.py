"""Cells against independent references.

Three kinds of reference: a float64 NumPy transcription of the equations in each
cell's docstring (parameters read block by block in the order of ``cell.gates``),
flax.linen's cells with their weights mapped into our layout, and finite differences
for the gradients of one step (gradients through time are in test_ops.py). A cell written here, outside the library, goes through the same
tests to show that ``unroll``/``bidirectional``/``stacked`` take any step function.
"""

from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnn_jax
from rnn_jax import cells
from tolerances import recurrence_rtol, tree_allclose

T, B, I, H = 5, 2, 3, 4


# ------------------------------------------------------------------ a user's own cell

def leaky_tanh(hidden_size: int, dtype=jnp.float32) -> rnn_jax.Cell:
    """Leaky-integrator tanh unit: ``h_t = (1-a) h_{t-1} + a tanh(x W + h U + b)``
    with a learnt per-unit rate ``a = sigmoid(leak)``. Written only against the
    ``Cell`` interface, to check that nothing in the library assumes a built-in cell."""

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {"w": 0.5 * jax.random.normal(k1, (input_size, hidden_size), dtype),
                "u": 0.5 * jax.random.normal(k2, (hidden_size, hidden_size), dtype),
                "b": jnp.zeros((hidden_size,), dtype),
                "leak": jnp.zeros((hidden_size,), dtype)}

    def initial_carry(batch_shape=()):
        return jnp.zeros(tuple(batch_shape) + (hidden_size,), dtype)

    def step(params, h, x):
        lead = (1,) * (h.ndim - 1) + (hidden_size,)
        a = jax.nn.sigmoid(params["leak"]).reshape(lead)
        n = jnp.tanh(x @ params["w"] + h @ params["u"] + params["b"].reshape(lead))
        h = (1.0 - a) * h + a * n
        return h, h

    return rnn_jax.Cell(init, initial_carry, step, hidden_size, ("h",))


# --------------------------------------------------------------- NumPy references

def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _blocks(params, gates, hidden):
    """Split w_x, w_h, b into per-gate blocks following ``cell.gates``."""
    out = {}
    for k, g in enumerate(gates):
        sl = slice(k * hidden, (k + 1) * hidden)
        out[g] = (params["w_x"][:, sl], params["w_h"][:, sl], params["b"][sl])
    return out


def np_rnn(act):
    def step(p, h, x):
        h = act(x @ p["w_x"] + h @ p["w_h"] + p["b"])
        return h, h
    return step


def np_lstm(gates):
    """Docstring equations of cells.lstm; a missing gate takes its documented value."""
    def step(p, carry, x):
        h, c = carry
        blk = _blocks(p, gates, h.shape[-1])

        def pre(g):
            wx, wh, b = blk[g]
            return x @ wx + h @ wh + b

        peep = lambda g, cell: p["p_" + g] * cell if "p_" + g in p else 0.0
        f = _sig(pre("f") + peep("f", c)) if "f" in gates else 1.0
        i = _sig(pre("i") + peep("i", c)) if "i" in gates else 1.0 - f
        g = np.tanh(pre("g"))
        c_new = f * c + i * g
        o = _sig(pre("o") + peep("o", c_new))
        h_new = o * np.tanh(c_new)
        return (h_new, c_new), h_new
    return step


def np_gru(reset_after):
    def step(p, h, x):
        blk = _blocks(p, ("r", "z", "n"), h.shape[-1])
        (wxr, whr, br), (wxz, whz, bz), (wxn, whn, bn) = blk["r"], blk["z"], blk["n"]
        r = _sig(x @ wxr + h @ whr + br)
        z = _sig(x @ wxz + h @ whz + bz)
        if reset_after:
            n = np.tanh(x @ wxn + r * (h @ whn + p["b_hn"]) + bn)
        else:
            n = np.tanh(x @ wxn + (r * h) @ whn + bn)
        h = z * h + (1.0 - z) * n
        return h, h
    return step


def np_leaky(p, h, x):
    a = _sig(p["leak"])
    h = (1.0 - a) * h + a * np.tanh(x @ p["w"] + h @ p["u"] + p["b"])
    return h, h


def np_stack(refs, skip):
    def step(p, carry, x):
        new = []
        for ref, pl, cl in zip(refs, p, carry):
            cl, y = ref(pl, cl, x)
            new.append(cl)
            x = y + x if skip and y.shape == x.shape else y
        return tuple(new), x
    return step


relu = lambda z: np.maximum(z, 0.0)

# name -> (cell factory taking dtype, NumPy reference step (params, carry, x) -> (carry, y))
CELLS = {
    "rnn_tanh": (lambda d: cells.rnn(H, dtype=d), np_rnn(np.tanh)),
    "rnn_relu": (lambda d: cells.rnn(H, activation="relu", dtype=d), np_rnn(relu)),
    "rnn_irnn": (lambda d: cells.rnn(H, activation="relu", recurrent_init="identity",
                                     recurrent_scale=0.9, dtype=d), np_rnn(relu)),
    "rnn_gaussian": (lambda d: cells.rnn(H, recurrent_init="gaussian", recurrent_scale=1.3,
                                         dtype=d), np_rnn(np.tanh)),
    "lstm": (lambda d: cells.lstm(H, dtype=d), np_lstm(("i", "f", "g", "o"))),
    "lstm_peephole": (lambda d: cells.lstm(H, peephole=True, dtype=d), np_lstm(("i", "f", "g", "o"))),
    "lstm_no_forget": (lambda d: cells.lstm(H, forget_gate=False, peephole=True, dtype=d),
                       np_lstm(("i", "g", "o"))),
    "lstm_cifg": (lambda d: cells.lstm(H, coupled=True, peephole=True, dtype=d), np_lstm(("f", "g", "o"))),
    "lstm_chrono": (lambda d: cells.lstm(H, chrono_t_max=30.0, dtype=d), np_lstm(("i", "f", "g", "o"))),
    "gru": (lambda d: cells.gru(H, dtype=d), np_gru(False)),
    "gru_reset_after": (lambda d: cells.gru(H, reset_after=True, dtype=d), np_gru(True)),
    "stack": (lambda d: cells.stack([cells.lstm(H, dtype=d), cells.gru(H, dtype=d)]),
              np_stack([np_lstm(("i", "f", "g", "o")), np_gru(False)], skip=False)),
    "stack_skip": (lambda d: cells.stack([cells.rnn(H, dtype=d), cells.gru(H, reset_after=True, dtype=d),
                                          leaky_tanh(H, d)], skip=True),
                   np_stack([np_rnn(np.tanh), np_gru(True), np_leaky], skip=True)),
    "user_leaky": (lambda d: leaky_tanh(H, d), np_leaky),
}


def perturbed_params(cell, seed=0, dtype=jnp.float32):
    """Initial params plus N(0, 0.3) noise on every leaf, so that biases and peepholes
    (which start at zero or a constant) enter the comparison."""
    params = cell.init(jax.random.key(seed), I)
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(np.asarray(l, np.float64) + 0.3 * rng.standard_normal(l.shape), dtype)
              for l in leaves]
    return jax.tree_util.tree_unflatten(tree, leaves)


def to_np(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def run_reference(ref, params, carry, xs):
    params, carry, xs = to_np(params), to_np(carry), np.asarray(xs, np.float64)
    ys = []
    for x in xs:
        carry, y = ref(params, carry, x)
        ys.append(y)
    return carry, np.stack(ys)


@pytest.mark.numerics
@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_matches_numpy_equations(name):
    make, ref = CELLS[name]
    cell = make(jnp.float32)
    params = perturbed_params(cell)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    # A nonzero initial carry so that the first step already exercises w_h.
    carry0 = jax.tree_util.tree_map(
        lambda z: 0.5 * jax.random.normal(jax.random.key(2), z.shape, z.dtype),
        cell.initial_carry((B,)))
    carry, ys = rnn_jax.unroll(cell.step, params, carry0, xs)
    carry_ref, ys_ref = run_reference(ref, params, carry0, xs)
    # float32 against float64: T steps of dot products of length I + H plus the pointwise
    # update (tests/tolerances.py, recurrence_rtol); near-zero entries are bounded relative
    # to their leaf's magnitude.
    tol = recurrence_rtol(T, I + H)
    tree_allclose((carry, ys), (carry_ref, ys_ref), rtol=tol, scaled_atol=tol)
    assert ys.shape == (T, B, cell.hidden_size)


def test_lstm_variants_really_differ():
    """Guards the reference test: the variants must not collapse to the same function."""
    xs = jax.random.normal(jax.random.key(1), (T, I))
    outs = {}
    for name in ("lstm", "lstm_peephole", "lstm_cifg", "lstm_no_forget"):
        cell = CELLS[name][0](jnp.float32)
        _, outs[name] = rnn_jax.unroll(cell.step, perturbed_params(cell), cell.initial_carry(), xs)
    names = sorted(outs)
    for a in names:
        for b in names:
            if a < b:
                assert not np.allclose(outs[a], outs[b], atol=1e-3), (a, b)


# ---------------------------------------------------------------- flax.linen cells

def _flax_run(module, variables, carry, xs):
    ys = []
    for x in xs:
        carry, y = module.apply(variables, carry, x)
        ys.append(y)
    return carry, jnp.stack(ys)


def _perturb_flax(variables, seed):
    # flax starts its biases at zero; noise makes the bias mapping matter.
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda a: a + jnp.asarray(0.3 * rng.standard_normal(a.shape), a.dtype), variables)


@pytest.mark.parametrize("flax_cls", [fnn.LSTMCell, fnn.OptimizedLSTMCell])
def test_lstm_matches_flax(flax_cls):
    xs = jax.random.normal(jax.random.key(0), (T, B, I))
    module = flax_cls(features=H)
    c0 = module.initialize_carry(jax.random.key(1), (B, I))
    c0 = (0.3 * jnp.ones_like(c0[0]), -0.2 * jnp.ones_like(c0[1]))
    variables = _perturb_flax(module.init(jax.random.key(2), c0, xs[0]), 3)
    fp = variables["params"]
    ours = cells.lstm(H, forget_bias=0.0)
    # Both flax classes name their params "i<gate>" (input kernel, no bias) and
    # "h<gate>" (recurrent kernel + the gate's only bias).
    kernel = lambda pre, g: fp[pre + g]["kernel"]
    bias = lambda g: fp["h" + g]["bias"]
    params = {"w_x": jnp.concatenate([kernel("i", g) for g in ours.gates], axis=1),
              "w_h": jnp.concatenate([kernel("h", g) for g in ours.gates], axis=1),
              "b": jnp.concatenate([bias(g) for g in ours.gates])}
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ours.init(jax.random.key(0), I))
    (c_f, h_f), ys_f = _flax_run(module, variables, c0, xs)
    (h, c), ys = rnn_jax.unroll(ours.step, params, (c0[1], c0[0]), xs)  # flax carry is (c, h)
    np.testing.assert_allclose(ys, ys_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, c_f, rtol=1e-5, atol=1e-5)


def test_gru_reset_after_matches_flax():
    xs = jax.random.normal(jax.random.key(0), (T, B, I))
    module = fnn.GRUCell(features=H)
    h0 = 0.4 * jnp.ones((B, H))
    variables = _perturb_flax(module.init(jax.random.key(2), h0, xs[0]), 4)
    fp = variables["params"]
    ours = cells.gru(H, reset_after=True)
    params = {"w_x": jnp.concatenate([fp["i" + g]["kernel"] for g in ours.gates], axis=1),
              "w_h": jnp.concatenate([fp["h" + g]["kernel"] for g in ours.gates], axis=1),
              "b": jnp.concatenate([fp["i" + g]["bias"] for g in ours.gates]),
              "b_hn": fp["hn"]["bias"]}
    h_f, ys_f = _flax_run(module, variables, h0, xs)
    h, ys = rnn_jax.unroll(ours.step, params, h0, xs)
    np.testing.assert_allclose(ys, ys_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_f, rtol=1e-5, atol=1e-5)


def test_tanh_rnn_matches_flax_simple_cell():
    xs = jax.random.normal(jax.random.key(0), (T, B, I))
    module = fnn.SimpleCell(features=H)
    h0 = -0.3 * jnp.ones((B, H))
    variables = _perturb_flax(module.init(jax.random.key(2), h0, xs[0]), 5)
    fp = variables["params"]
    ours = cells.rnn(H)
    params = {"w_x": fp["i"]["kernel"], "w_h": fp["h"]["kernel"], "b": fp["i"]["bias"]}
    h_f, ys_f = _flax_run(module, variables, h0, xs)
    h, ys = rnn_jax.unroll(ours.step, params, h0, xs)
    np.testing.assert_allclose(ys, ys_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, h_f, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- gradients

# rnn_irnn, rnn_gaussian and lstm_chrono differ from rnn_relu, rnn_tanh and lstm only
# in their initial values, not in their step, so they are left out here to save time.
@pytest.mark.parametrize("name", sorted(set(CELLS) - {"rnn_irnn", "rnn_gaussian", "lstm_chrono"}))
def test_step_gradients_match_finite_differences(name):
    """One step, differentiated in params, carry and input (float64). Gradients through
    time (scan, masking, reversal) are checked in test_ops.py."""
    make, _ = CELLS[name]
    with jax.enable_x64(True):
        cell = make(jnp.float64)
        params = perturbed_params(cell, seed=3, dtype=jnp.float64)
        rng = np.random.default_rng(4)
        x = jnp.asarray(rng.standard_normal((B, I)))
        carry = jax.tree_util.tree_map(lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape)),
                                       cell.initial_carry((B,)))
        w = jnp.asarray(rng.standard_normal((B, cell.hidden_size)))

        @jax.jit
        def loss(params, carry, x):
            carry, y = cell.step(params, carry, x)
            # Weighting y and adding the carry makes every output and carry leaf count.
            return jnp.sum(w * y) + sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(carry))

        check_grads(loss, (params, carry, x), order=1, modes=("rev", "fwd"), atol=1e-6, rtol=1e-6)
