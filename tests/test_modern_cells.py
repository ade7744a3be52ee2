"""The modern cells against float64 NumPy loops written from their papers' equations.

LRU: Orvieto et al. 2023 (arXiv 2303.06349), Sec. 3 / App. A. minGRU, minLSTM: Feng et al.
2024 (arXiv 2410.01201), Sec. 3 / App. B (log-space versions, g(.) candidate). sLSTM: Beck
et al. 2024 (arXiv 2405.04517), eqs. 8-17, here in the UNstabilised form. IndRNN: Li et
al. 2018 (arXiv 1803.04831), eq. 2.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import cells, unroll

T, B, I, H = 7, 2, 3, 4


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def g(k):
    return np.where(k >= 0, k + 0.5, sigmoid(k))


def np_params(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


def perturb(params, key, scale=0.5):
    """Random offsets on every parameter so no branch hides behind a symmetric init."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + scale * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])


# ------------------------------------------------------------------- references

def lru_ref(p, xs):
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    gam = np.exp(p["gamma_log"])
    Bm, Cm = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    x = np.zeros((xs.shape[1], Bm.shape[1]), complex)
    ys = []
    for u in xs:
        x = lam * x + gam * (u @ Bm)
        ys.append((x @ Cm).real + u @ p["D"])
    return (x.real, x.imag), np.stack(ys), np.broadcast_to(np.abs(lam), (len(xs),) + x.shape)


def min_gru_ref(p, xs):
    h = np.zeros((xs.shape[1], H))
    ys, rets = [], []
    for x in xs:
        k = x @ p["w_x"] + p["b"]
        z, ht = sigmoid(k[:, :H]), g(k[:, H:])
        rets.append(1 - z)
        h = (1 - z) * h + z * ht
        ys.append(h)
    return h, np.stack(ys), np.stack(rets)


def min_lstm_ref(p, xs):
    h = np.zeros((xs.shape[1], H))
    ys, rets = [], []
    for x in xs:
        k = x @ p["w_x"] + p["b"]
        f, i, ht = sigmoid(k[:, :H]), sigmoid(k[:, H:2 * H]), g(k[:, 2 * H:])
        fp, ip = f / (f + i), i / (f + i)
        rets.append(fp)
        h = fp * h + ip * ht
        ys.append(h)
    return h, np.stack(ys), np.stack(rets)


def block_diag(blocks):
    d = blocks[0].shape[0]
    out = np.zeros((d * len(blocks),) * 2, blocks[0].dtype)
    for k, blk in enumerate(blocks):
        out[k * d:(k + 1) * d, k * d:(k + 1) * d] = blk
    return out


def slstm_ref(p, xs, num_heads, forget_gate):
    """Unstabilised sLSTM: c_t = f c + i z, n_t = f n + i, h = o c / n."""
    R = [block_diag([p["r"][k, :, gi, :] for k in range(num_heads)]) for gi in range(4)]
    h = c = n = np.zeros((xs.shape[1], H), xs.dtype)
    ys, rets = [], []
    for x in xs:
        pre = [x @ p["w_x"][:, j * H:(j + 1) * H] + h @ R[j] + p["b"][j * H:(j + 1) * H]
               for j in range(4)]
        i = np.exp(pre[0])
        f = np.exp(pre[1]) if forget_gate == "exp" else sigmoid(pre[1])
        z, o = np.tanh(pre[2]), sigmoid(pre[3])
        n_prev = n
        c, n = f * c + i * z, f * n + i
        h = o * c / n
        rets.append(f * n_prev / n)
        ys.append(h)
    return h, np.stack(ys), np.stack(rets)


def indrnn_ref(p, xs, activation, recurrent_max):
    u = p["u"] if recurrent_max is None else np.clip(p["u"], -recurrent_max, recurrent_max)
    h = np.zeros((xs.shape[1], H))
    ys, rets = [], []
    for x in xs:
        z = x @ p["w_x"] + u * h + p["b"]
        if activation == "relu":
            h, slope = np.maximum(z, 0), (z > 0).astype(float)
        else:
            h = np.tanh(z)
            slope = 1 - h ** 2
        rets.append(np.abs(u) * slope)
        ys.append(h)
    return h, np.stack(ys), np.stack(rets)


CASES = {
    "lru": (lambda dt: cells.lru(H, state_size=5, r_min=0.4, r_max=0.95, dtype=dt),
            lambda p, xs: lru_ref(p, xs)),
    "min_gru": (lambda dt: cells.min_gru(H, dtype=dt), min_gru_ref),
    "min_lstm": (lambda dt: cells.min_lstm(H, dtype=dt), min_lstm_ref),
    "slstm_sig": (lambda dt: cells.slstm(H, num_heads=2, dtype=dt),
                  lambda p, xs: slstm_ref(p, xs, 2, "sigmoid")),
    "slstm_exp": (lambda dt: cells.slstm(H, num_heads=1, forget_gate="exp", dtype=dt),
                  lambda p, xs: slstm_ref(p, xs, 1, "exp")),
    "indrnn_relu": (lambda dt: cells.indrnn(H, dtype=dt),
                    lambda p, xs: indrnn_ref(p, xs, "relu", None)),
    "indrnn_tanh_cap": (lambda dt: cells.indrnn(H, activation="tanh", recurrent_max=0.8, dtype=dt),
                        lambda p, xs: indrnn_ref(p, xs, "tanh", 0.8)),
}


def _retentions(cell, params, xs):
    """cell.retention at every step of a sequential run, ``[T, B, N]``."""
    def body(c, x):
        return cell.step(params, c, x)[0], cell.retention(params, c, x)
    return jax.lax.scan(body, cell.initial_carry((B,)), xs)[1]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_float64_reference(name):
    make, ref = CASES[name]
    with jax.enable_x64(True):
        cell = make(jnp.float64)
        params = cell.init(jax.random.key(0), I)
        if not name.startswith("lru"):  # the LRU's init is already generic; keep |lambda| < 1
            params = perturb(params, jax.random.key(1))
        xs = jax.random.normal(jax.random.key(2), (T, B, I), jnp.float64)
        # One jitted program for both runs (test time: one compilation, not eager ones).
        final, ys, rets = jax.jit(lambda p, x: unroll(cell, p, cell.initial_carry((B,)), x)
                                  + (_retentions(cell, p, x),))(params, xs)
        r_final, r_ys, r_rets = ref(np_params(params), np.asarray(xs))
        # float64 against float64: only rounding differs (~T * 1e-16).
        np.testing.assert_allclose(np.asarray(ys), r_ys, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(rets), r_rets, rtol=1e-10, atol=1e-12)
        got_final = final[:2] if name == "lru" else (final[0] if isinstance(final, tuple) else final)
        np.testing.assert_allclose(np.asarray(got_final), np.asarray(r_final), rtol=1e-10, atol=1e-12)
        assert np.all((np.asarray(rets) >= 0) & (np.asarray(rets) <= 1 + 1e-12)) or "indrnn" in name


def test_lru_ring_init():
    r_min, r_max, max_phase = 0.9, 0.99, 0.3
    cell = cells.lru(8, state_size=64, r_min=r_min, r_max=r_max, max_phase=max_phase)
    p = cell.init(jax.random.key(0), 3)
    mod = np.exp(-np.exp(np.asarray(p["nu_log"], np.float64)))
    phase = np.exp(np.asarray(p["theta_log"], np.float64))
    # float32 parameters: |lambda| = exp(-exp(nu_log)) carries ~1e-6 relative error.
    assert mod.min() >= r_min - 1e-5 and mod.max() <= r_max + 1e-5
    assert phase.min() >= 0 and phase.max() <= max_phase * (1 + 1e-5)
    np.testing.assert_allclose(np.exp(np.asarray(p["gamma_log"], np.float64)),
                               np.sqrt(1 - mod ** 2), rtol=1e-4)
    # The ring is sampled uniformly in |lambda|^2: the mean of |lambda|^2 is the midpoint.
    assert abs(np.mean(mod ** 2) - (r_min ** 2 + r_max ** 2) / 2) < 0.03
    # r_max = 1 and r_min = 0 stay finite (|lambda| < 1 strictly, 0 allowed).
    p = cells.lru(4, state_size=256, r_min=0.0, r_max=1.0).init(jax.random.key(1), 2)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in p.values())
    assert np.all(np.exp(-np.exp(np.asarray(p["nu_log"]))) < 1)


def test_slstm_stabilised_equals_unstabilised_and_survives_overflow():
    cell = cells.slstm(H, num_heads=2, forget_gate="exp")
    params = perturb(cell.init(jax.random.key(0), I), jax.random.key(1))
    # Input-gate and forget-gate biases of 60: exp(60) ~ 1e26 per step, and c, n grow as
    # products of these, so the unstabilised float32 form overflows (inf/inf = nan)
    # within a few steps; the stabilised one keeps c, n <= O(T).
    b = params["b"].at[:2 * H].add(60.0)
    params = dict(params, b=b)
    xs = jax.random.normal(jax.random.key(2), (T, B, I))
    _, ys = unroll(cell, params, cell.initial_carry((B,)), xs)
    with np.errstate(over="ignore", invalid="ignore"):
        p32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
        _, unstab32, _ = slstm_ref(p32, np.asarray(xs, np.float32), 2, "exp")
    assert not np.all(np.isfinite(unstab32))  # the unstabilised form really overflows here
    _, r_ys, _ = slstm_ref(np_params(params), np.asarray(xs, np.float64), 2, "exp")
    assert np.all(np.isfinite(r_ys))  # float64 (max ~1e308) still holds it
    # h = o * c/n is a convex mixture of tanh values: O(1), float32 error ~ a few eps per step.
    np.testing.assert_allclose(np.asarray(ys), r_ys, rtol=1e-5, atol=1e-5)


def test_slstm_heads_are_block_diagonal():
    """With 2 heads, head 0's next h does not depend on head 1's previous h."""
    cell = cells.slstm(H, num_heads=2)
    params = perturb(cell.init(jax.random.key(0), I), jax.random.key(1))
    carry = tuple(jax.random.normal(k, (H,)) for k in jax.random.split(jax.random.key(3), 4))
    carry = (carry[0], carry[1], jnp.abs(carry[2]) + 1, carry[3])
    x = jax.random.normal(jax.random.key(4), (I,))
    J = np.asarray(jax.jacrev(lambda h: cell.step(params, (h,) + carry[1:], x)[1])(carry[0]))
    d = H // 2
    assert np.all(J[:d, d:] == 0) and np.all(J[d:, :d] == 0)
    assert np.any(J[:d, :d] != 0) and np.any(J[d:, d:] != 0)


def test_indrnn_cap_and_init():
    cell = cells.indrnn(H, recurrent_max=2 ** (1 / 10))
    p = cell.init(jax.random.key(0), I)
    assert np.all((np.asarray(p["u"]) >= 0) & (np.asarray(p["u"]) <= 1))
    p = dict(p, u=jnp.array([3.0, -3.0, 0.5, 1.2]))
    with jax.enable_x64(False):
        ret = cell.retention(p, jnp.ones((H,)), jnp.ones((I,)) * 10)
    cap = 2 ** (1 / 10)
    # Where active (relu' = 1) the retention is |u| clipped at the cap.
    active = np.asarray(ret) > 0
    np.testing.assert_allclose(np.asarray(ret)[active],
                               np.minimum(np.abs([3.0, -3.0, 0.5, 1.2]), cap)[active], rtol=1e-6)


def test_retention_is_the_diagonal_jacobian_for_diagonal_cells():
    """minGRU, minLSTM, IndRNN: d h_t / d h_{t-1} is diagonal and equals the retention
    (up to sign for IndRNN); LRU: the complex diagonal entry has modulus |lambda|."""
    x = jax.random.normal(jax.random.key(0), (I,))
    for cell in (cells.min_gru(H), cells.min_lstm(H), cells.indrnn(H, activation="tanh")):
        p = perturb(cell.init(jax.random.key(1), I), jax.random.key(2))
        h = jax.random.normal(jax.random.key(3), (H,))
        J = np.asarray(jax.jacrev(lambda c: cell.step(p, c, x)[0])(h))
        np.testing.assert_allclose(np.abs(np.diag(J)), np.asarray(cell.retention(p, h, x)),
                                   rtol=1e-5)
        assert np.allclose(J - np.diag(np.diag(J)), 0)
    cell = cells.lru(H)
    p = cell.init(jax.random.key(1), I)
    c = cell.initial_carry()
    J_re = np.asarray(jax.jacrev(lambda a: cell.step(p, (a, c[1]), x)[0])(c[0]))
    # d re'/d re = Re(lambda) and d im'/d re = Im(lambda): diagonal blocks.
    mod = np.hypot(np.diag(J_re[0]), np.diag(J_re[1]))
    np.testing.assert_allclose(mod, np.asarray(cell.retention(p, c, x)), rtol=1e-5)


@pytest.mark.parametrize("make, match", [
    (lambda: cells.lru(4, r_min=-0.1), "r_min"),
    (lambda: cells.lru(4, r_min=1.0, r_max=1.0), "r_min"),
    (lambda: cells.lru(4, r_max=1.5), "r_max"),
    (lambda: cells.lru(4, r_min=0.9, r_max=0.5), "r_min must not exceed r_max"),
    (lambda: cells.lru(4, state_size=0), "state_size"),
    (lambda: cells.lru(4, max_phase=-1.0), "max_phase"),
    (lambda: cells.slstm(6, num_heads=4), "num_heads must divide hidden_size"),
    (lambda: cells.slstm(4, forget_gate="tanh"), "forget_gate"),
    (lambda: cells.indrnn(4, activation="gelu"), "activation"),
    (lambda: cells.indrnn(4, recurrent_max=0.0), "recurrent_max"),
    (lambda: cells.min_gru(0), "hidden_size"),
])
def test_bad_arguments_raise_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_shapes_raise_naming_the_argument():
    for cell in (cells.lru(4), cells.min_gru(4), cells.min_lstm(4), cells.slstm(4),
                 cells.indrnn(4)):
        p = cell.init(jax.random.key(0), 3)
        with pytest.raises(ValueError, match="x must have shape"):
            cell.step(p, cell.initial_carry((2,)), jnp.ones((2, 5)))
        with pytest.raises((ValueError, TypeError), match="carry"):
            cell.step(p, cell.initial_carry((3,)), jnp.ones((2, 3)))
    assert math.isfinite(0.0)
