"""The GRU's one gate function (``rnn_jax.gates.gru_gates``, issue 12) against Cho et al.
2014's equations in float64 NumPy, both forms, and its three users agreeing with it:
``cells.gru``'s step, the fast path and ``diagnostics.gate_activations``.

Tolerances (tests/tolerances.py): one step is dot products of length I + H plus the
pointwise update, so a float32 run of T steps with contracting Jacobians (weights of
scale 0.3, saturating gates) stays within ``recurrence_rtol(T, I + H)`` of float64,
relative to values of order 1; one step (T = 1) within ``recurrence_rtol(1, I + H)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells, diagnostics as dg
from rnn_jax.gates import gru_gates

from tolerances import assert_close, recurrence_rtol

T, B, I, H = 6, 2, 3, 4


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _np_gates(p, h, x, reset_after):
    """Cho et al. 2014, eqs. (5)-(8), float64; blocks (r, z, n) of w_x, w_h, b."""
    blk = lambda a, k: a[..., k * H:(k + 1) * H]
    wx, wh, b = p["w_x"], p["w_h"], p["b"]
    r = _sig(x @ blk(wx, 0) + h @ blk(wh, 0) + blk(b, 0))
    z = _sig(x @ blk(wx, 1) + h @ blk(wh, 1) + blk(b, 1))
    if reset_after:
        n = np.tanh(x @ blk(wx, 2) + r * (h @ blk(wh, 2) + p["b_hn"]) + blk(b, 2))
    else:
        n = np.tanh(x @ blk(wx, 2) + (r * h) @ blk(wh, 2) + blk(b, 2))
    return r, z, n, z * h + (1.0 - z) * n


def _setup(reset_after):
    cell = cells.gru(H, reset_after=reset_after)
    params = cell.init(jax.random.PRNGKey(1), I)
    rng = np.random.default_rng(1)
    # Every leaf perturbed, so zero-initialised biases (b, b_hn) take part.
    params = {k: v + 0.3 * jnp.asarray(rng.standard_normal(v.shape), v.dtype)
              for k, v in params.items()}
    xs = jax.random.normal(jax.random.PRNGKey(2), (T, B, I))
    return cell, params, xs


@pytest.mark.numerics
@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_gates_and_its_users_match_the_equations(reset_after):
    cell, params, xs = _setup(reset_after)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x64 = np.asarray(xs, np.float64)
    h = np.zeros((B, H))
    want = {"r": [], "z": [], "h": []}
    for t in range(T):
        r, z, _, h = _np_gates(p, h, x64[t], reset_after)
        for k, v in (("r", r), ("z", z), ("h", h)):
            want[k].append(v)
    want = {k: np.stack(v) for k, v in want.items()}
    rtol_run = recurrence_rtol(T, I + H)

    # The function itself, one step from a nonzero state.
    h0 = np.asarray(0.5 * jax.random.normal(jax.random.PRNGKey(3), (B, H)), np.float32)
    zx = xs[0] @ params["w_x"] + params["b"].reshape((1, -1))
    got = gru_gates(zx, jnp.asarray(h0), params["w_h"], params.get("b_hn"))
    one = dict(zip("rznh", _np_gates(p, h0.astype(np.float64), x64[0], reset_after)))
    assert (got.h_n is not None) == reset_after
    for k in "rznh":
        assert_close(getattr(got, k), one[k], atol=recurrence_rtol(1, I + H), err_msg=k)

    # Its users: the cell's step (plain scan), the fast path, the diagnostics.
    carry = cell.initial_carry((B,))
    for fused in (False, True):
        _, ys = rnn_jax.unroll(cell, params, carry, xs, fused=fused)
        assert_close(ys, want["h"], atol=rtol_run, err_msg=f"ys, fused={fused}")
    acts = dg.gate_activations(cell, params, carry, xs)
    assert sorted(acts) == ["r", "z"]
    for k in ("r", "z"):
        assert_close(acts[k], want[k], atol=rtol_run, err_msg=k)
