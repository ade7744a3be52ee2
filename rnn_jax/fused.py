"""Fast paths: whole-sequence custom VJPs for the built-in cells.

The plain path (``jax.lax.scan`` over ``cell.step``, differentiated by autodiff) saves
every intermediate of every step and, in its backward scan, forms the weight
gradients step by step as small ``[H, B] @ [B, G*H]`` products summed over time. The
fast path does what cuDNN and oneDNN do (Appleyard, Kocisky & Blunsom 2016,
arXiv 1604.01946):

* the forward scan stores, per step, only the elementwise derivative factors of the
  gate pre-activations;
* the backward scan carries only the recurrence (``dh_{t-1} = dZ_t @ W_h^T`` plus the
  cell-state path) and writes the pre-activation gradients ``dZ`` of every step;
* after the scan, the weight gradients ``X^T @ dZ`` and ``H_prev^T @ dZ`` and the input
  gradient ``dZ @ W_x^T`` are each one large matmul over all ``T * B`` rows.

Each fast path computes the same math as the matching ``rnn_jax.cells`` step, so
values and gradients agree with the plain path to float rounding
(tests/test_fused.py). Not covered, and left to the plain path: LSTM peepholes,
user-written steps, pytree inputs. ``jax.custom_vjp`` functions do not support
forward-mode AD (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``'s inner jvp); for those
use the plain path (``rnn_jax.unroll(..., fused=False)``).

Every ``*_unroll`` function here has the signature ``(params, carry, xs, *,
lengths=None, reverse=False, unroll=1, <cell options>) -> (carry, ys)`` with the
semantics of ``rnn_jax.unroll``: time-major ``xs: [T, *batch, I]``, carry leaves
``[*batch, H]``, ``ys: [T, *batch, H]``; ``lengths`` (integers with the batch shape)
must already be validated and clipped to ``[0, T]``, as ``rnn_jax.unroll`` does.
Nothing here is specific to a backend: the same code runs on CPU, GPU and TPU.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from rnn_jax.gates import lstm_pointwise
from rnn_jax.ops import _reverse_valid

LSTM_GATES = (("i", "f", "g", "o"), ("i", "g", "o"), ("f", "g", "o"))


# ------------------------------------------------------------------ shared plumbing

def _rows(a):
    return a.reshape((-1, a.shape[-1]))


def _mm_tn(a, b):
    """``a^T @ b`` summed over all leading axes: ``[..., M], [..., N] -> [M, N]``."""
    return _rows(a).T @ _rows(b)


def _blend(m, new, old):
    """``new`` where the step is valid (``m == 1``), else ``old``; ``m: [B, 1]`` in {0, 1}."""
    # where, not m*new + (1-m)*old: an inf produced at a padded step must not become NaN.
    return new if m is None else jnp.where(m > 0, new, old)


def _h_prev(h0, ys):
    """``[h_0, h_1, ..., h_{T-1}]``. With ``lengths`` the valid steps are a prefix, so
    at every valid step ``t >= 1`` the output ``y_{t-1}`` is the carried state; at
    padded steps ``dZ = 0`` and the value is irrelevant."""
    # The slice keeps T = 0 valid.
    return jnp.concatenate([h0[None], ys[:-1]], axis=0)[:ys.shape[0]]


def _input_grads(xs, w_x, dzx):
    """``(dW_x, db, dxs)`` from the input pre-activation gradients ``dzx: [T, B, G*H]``."""
    return _mm_tn(xs, dzx), jnp.sum(_rows(dzx), axis=0), (_rows(dzx) @ w_x.T).reshape(xs.shape)


def _run(kind, cfg, unroll, params, carry, xs, lengths, reverse):
    """Flatten the batch, apply ``reverse``/``lengths``, and call the custom-VJP core."""
    T = xs.shape[0]
    batch = tuple(xs.shape[1:-1])
    B = math.prod(batch)
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    carry2 = treedef.unflatten([l.reshape((B, l.shape[-1])) for l in leaves])
    xs2 = xs.reshape((T, B, xs.shape[-1]))
    mask, lengths2 = None, None
    if lengths is not None:
        # lengths may cover only the leading batch axes (see ops.unroll): align it on
        # the left before broadcasting, as the plain path does.
        lengths = lengths.reshape(lengths.shape + (1,) * (len(batch) - lengths.ndim))
        lengths2 = jnp.broadcast_to(lengths, batch).reshape((B,))
        mask = (jnp.arange(T).reshape((T, 1)) < lengths2.reshape((1, B)))
        mask = mask.astype(xs.dtype).reshape((T, B, 1))
    if reverse:
        xs2 = jnp.flip(xs2, 0) if lengths is None else _reverse_valid(xs2, lengths2, T)
    carry2, ys = _core(kind, cfg, unroll, params, carry2, xs2, mask)
    if reverse:
        ys = jnp.flip(ys, 0) if lengths is None else _reverse_valid(ys, lengths2, T)
    carry = jax.tree_util.tree_map(lambda a: a.reshape(batch + (a.shape[-1],)), carry2)
    return carry, ys.reshape((T,) + batch + (ys.shape[-1],))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _core(kind, cfg, unroll, params, carry, xs, mask):
    return _IMPL[kind][0](cfg, unroll, params, carry, xs, mask, keep=False)


def _core_fwd(kind, cfg, unroll, params, carry, xs, mask):
    carry_T, ys, res = _IMPL[kind][0](cfg, unroll, params, carry, xs, mask, keep=True)
    return (carry_T, ys), (params, carry, xs, mask, ys, res)


def _core_bwd(kind, cfg, unroll, saved, cts):
    params, carry, xs, mask, ys, res = saved
    dcarry, dys = cts
    if mask is not None:
        dys = dys * mask  # outputs at padded steps are constant zeros
    dparams, dcarry0, dxs = _IMPL[kind][1](cfg, unroll, params, carry, xs, mask, ys, res,
                                           dcarry, dys)
    # Leaves the cell never reads (a user may keep extra entries in its params dict)
    # get zero gradients, so the cotangent has the params' structure.
    dparams = {k: dparams[k] if k in dparams else jnp.zeros_like(v) for k, v in params.items()}
    return dparams, dcarry0, dxs, None


_core.defvjp(_core_fwd, _core_bwd)


def _scan_inputs(seq, mask):
    return seq if mask is None else seq + (mask,)


# --------------------------------------------------------------------------- LSTM

def _lstm_forward(gates, unroll, params, carry, xs, mask, keep):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    H = w_h.shape[0]

    def body(state, inp):
        h, c = state
        x, m = (inp[0], inp[1] if mask is not None else None)
        z = x @ w_x + h @ w_h + b
        act = lstm_pointwise({g: z[:, k * H:(k + 1) * H] for k, g in enumerate(gates)}, c)
        h_new, c_new = act.h, act.c
        y = h_new if m is None else m * h_new
        h_new, c_new = _blend(m, h_new, h), _blend(m, c_new, c)
        if not keep:
            return (h_new, c_new), y
        # Derivative factors of the pre-activations: the backward scan then only
        # multiplies, dZ = [dc, ..., dc, dh] * a with dc += dh * a_c.
        i, f, g, o, tc = act.i, act.f, act.g, act.o, act.tanh_c
        fac = {"i": g * i * (1 - i), "g": i * (1 - g * g), "o": tc * o * (1 - o)}
        if f is not None:
            fac["f"] = (c if "i" in gates else c - g) * f * (1 - f)
        a = jnp.concatenate([fac[k] for k in gates], axis=-1)
        res = (a, o * (1 - tc * tc)) + ((f,) if f is not None else ())
        return (h_new, c_new), (y, res)

    (h, c), out = jax.lax.scan(body, carry, _scan_inputs((xs,), mask), unroll=unroll)
    if not keep:
        return (h, c), out
    ys, res = out
    return (h, c), ys, res


def _lstm_backward(gates, unroll, params, carry, xs, mask, ys, res, dcarry, dys):
    w_hT = params["w_h"].T
    n = len(gates)
    has_f = "f" in gates

    def body(state, inp):
        dh, dc = state
        dy, a, a_c = inp[:3]
        f = inp[3] if has_f else None
        m = inp[-1] if mask is not None else None
        dh = dh + dy
        dc_tot = dc + dh * a_c
        dz = jnp.concatenate([dc_tot] * (n - 1) + [dh], axis=-1) * a
        if m is not None:
            dz = m * dz
        dh_prev = dz @ w_hT
        dc_prev = dc_tot if f is None else dc_tot * f
        return (_blend(m, dh_prev, dh), _blend(m, dc_prev, dc)), dz

    (dh0, dc0), dz = jax.lax.scan(body, dcarry, _scan_inputs((dys,) + res, mask),
                                  reverse=True, unroll=unroll)
    dw_x, db, dxs = _input_grads(xs, params["w_x"], dz)
    dw_h = _mm_tn(_h_prev(carry[0], ys), dz)
    return {"w_x": dw_x, "w_h": dw_h, "b": db}, (dh0, dc0), dxs


def lstm_unroll(params, carry, xs, *, lengths=None, reverse=False, unroll=1,
                gates=("i", "f", "g", "o")):
    """Fast path of ``rnn_jax.cells.lstm`` without peepholes.

    ``gates`` is the cell's ``gates`` field: ``("i", "f", "g", "o")`` (default),
    ``("i", "g", "o")`` (no forget gate, Hochreiter & Schmidhuber 1997) or
    ``("f", "g", "o")`` (CIFG, ``i = 1 - f``). Params ``{"w_x": [I, G*H],
    "w_h": [H, G*H], "b": [G*H]}``, carry ``(h, c)``.
    """
    gates = tuple(gates)
    if gates not in LSTM_GATES:
        raise ValueError(f"gates must be one of {LSTM_GATES}, got {gates!r}")
    H, width = params["w_h"].shape
    if width != len(gates) * H or any(k.startswith("p_") for k in params):
        raise ValueError(f"params do not match gates={gates} without peepholes: w_h has shape "
                         f"{(H, width)}, expected {(H, len(gates) * H)}; keys {sorted(params)}")
    return _run("lstm", gates, unroll, params, tuple(carry), xs, lengths, reverse)


# ---------------------------------------------------------------------------- RNN

_RNN_ACTS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _rnn_forward(activation, unroll, params, carry, xs, mask, keep):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    act = _RNN_ACTS[activation]

    def body(h, inp):
        x, m = (inp[0], inp[1] if mask is not None else None)
        h_new = act(x @ w_x + h @ w_h + b)
        y = h_new if m is None else m * h_new
        return _blend(m, h_new, h), y

    h, ys = jax.lax.scan(body, carry, _scan_inputs((xs,), mask), unroll=unroll)
    return (h, ys, ()) if keep else (h, ys)


def _rnn_backward(activation, unroll, params, carry, xs, mask, ys, res, dcarry, dys):
    w_hT = params["w_h"].T
    # f'(z) from the outputs, in one pass over the whole sequence: tanh' = 1 - h^2;
    # relu' = [h > 0] (0 at z = 0, as jax.nn.relu's derivative).
    d = 1 - ys * ys if activation == "tanh" else (ys > 0).astype(ys.dtype)

    def body(dh, inp):
        dy, d_t = inp[:2]
        m = inp[-1] if mask is not None else None
        dh = dh + dy
        dz = dh * d_t if m is None else m * dh * d_t
        return _blend(m, dz @ w_hT, dh), dz

    dh0, dz = jax.lax.scan(body, dcarry, _scan_inputs((dys, d), mask), reverse=True,
                           unroll=unroll)
    dw_x, db, dxs = _input_grads(xs, params["w_x"], dz)
    return {"w_x": dw_x, "w_h": _mm_tn(_h_prev(carry, ys), dz), "b": db}, dh0, dxs


def rnn_unroll(params, carry, xs, *, lengths=None, reverse=False, unroll=1,
               activation="tanh"):
    """Fast path of ``rnn_jax.cells.rnn``: params ``{"w_x", "w_h", "b"}``, carry ``h``."""
    if activation not in _RNN_ACTS:
        raise ValueError(f"activation must be one of {sorted(_RNN_ACTS)}, got {activation!r}")
    return _run("rnn", activation, unroll, params, carry, xs, lengths, reverse)


# ---------------------------------------------------------------------------- GRU

def _gru_forward(reset_after, unroll, params, carry, xs, mask, keep):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    H = w_h.shape[0]
    if reset_after:
        b_hn = params["b_hn"].reshape((1, -1))
    else:
        w_rz, w_n = w_h[:, :2 * H], w_h[:, 2 * H:]

    def body(h, inp):
        x, m = (inp[0], inp[1] if mask is not None else None)
        zx = x @ w_x + b
        if reset_after:
            zh = h @ w_h
            r = jax.nn.sigmoid(zx[:, :H] + zh[:, :H])
            z = jax.nn.sigmoid(zx[:, H:2 * H] + zh[:, H:2 * H])
            hn = zh[:, 2 * H:] + b_hn
            n = jnp.tanh(zx[:, 2 * H:] + r * hn)
        else:
            zh = h @ w_rz
            r = jax.nn.sigmoid(zx[:, :H] + zh[:, :H])
            z = jax.nn.sigmoid(zx[:, H:2 * H] + zh[:, H:])
            n = jnp.tanh(zx[:, 2 * H:] + (r * h) @ w_n)
        h_new = z * h + (1.0 - z) * n
        y = h_new if m is None else m * h_new
        if not keep:
            return _blend(m, h_new, h), y
        a_z = (h - n) * z * (1 - z)
        a_n = (1 - z) * (1 - n * n)
        dr = r * (1 - r)
        # dZ_x = dh * a; with reset_after the r block also needs (W_hn h + b_hn).
        a = jnp.concatenate([a_n * hn * dr if reset_after else dr * h, a_z, a_n], axis=-1)
        return _blend(m, h_new, h), (y, (a, z, r))

    h, out = jax.lax.scan(body, carry, _scan_inputs((xs,), mask), unroll=unroll)
    if not keep:
        return h, out
    ys, res = out
    return h, ys, res


def _gru_backward(reset_after, unroll, params, carry, xs, mask, ys, res, dcarry, dys):
    w_h = params["w_h"]
    H = w_h.shape[0]
    w_hT = w_h.T
    w_rzT, w_nT = w_hT[:2 * H], w_hT[2 * H:]

    def body(dh, inp):
        dy, a, z, r = inp[:4]
        m = inp[-1] if mask is not None else None
        dh = dh + dy
        if reset_after:
            dzx = jnp.concatenate([dh, dh, dh], axis=-1) * a
            dzh = jnp.concatenate([dzx[:, :2 * H], dzx[:, 2 * H:] * r], axis=-1)
            if m is not None:
                dzx, dzh = m * dzx, m * dzh
            dh_prev = dh * z + dzh @ w_hT
        else:
            dz_n = dh * a[:, 2 * H:]
            if m is not None:
                dz_n = m * dz_n
            d_rh = dz_n @ w_nT  # gradient of r * h_prev
            dzx = jnp.concatenate([d_rh * a[:, :H], dh * a[:, H:2 * H], dz_n], axis=-1)
            if m is not None:
                dzx = m * dzx
            dh_prev = dh * z + d_rh * r + dzx[:, :2 * H] @ w_rzT
        return _blend(m, dh_prev, dh), dzx

    dh0, dzx = jax.lax.scan(body, dcarry, _scan_inputs((dys,) + res, mask), reverse=True,
                            unroll=unroll)
    dw_x, db, dxs = _input_grads(xs, params["w_x"], dzx)
    h_prev = _h_prev(carry, ys)
    r = res[2]
    if reset_after:
        dz_hn = dzx[..., 2 * H:] * r
        dw_h = jnp.concatenate([_mm_tn(h_prev, dzx[..., :2 * H]), _mm_tn(h_prev, dz_hn)], axis=-1)
        dparams = {"w_x": dw_x, "w_h": dw_h, "b": db, "b_hn": jnp.sum(_rows(dz_hn), axis=0)}
    else:
        dw_h = jnp.concatenate([_mm_tn(h_prev, dzx[..., :2 * H]),
                                _mm_tn(r * h_prev, dzx[..., 2 * H:])], axis=-1)
        dparams = {"w_x": dw_x, "w_h": dw_h, "b": db}
    return dparams, dh0, dxs


def gru_unroll(params, carry, xs, *, lengths=None, reverse=False, unroll=1,
               reset_after=False):
    """Fast path of ``rnn_jax.cells.gru``: params ``{"w_x", "w_h", "b"}`` (+ ``"b_hn"``
    when ``reset_after``), carry ``h``."""
    if ("b_hn" in params) != bool(reset_after):
        raise ValueError(f"params {'lack' if reset_after else 'have'} 'b_hn': they do not come "
                         f"from cells.gru(reset_after={bool(reset_after)})")
    return _run("gru", bool(reset_after), unroll, params, carry, xs, lengths, reverse)


_IMPL = {
    "lstm": (_lstm_forward, _lstm_backward),
    "rnn": (_rnn_forward, _rnn_backward),
    "gru": (_gru_forward, _gru_backward),
}


def for_cell(kind: str, **options):
    """The fast ``unroll`` for a built-in cell, or ``None`` when the variant has none.

    ``kind`` is ``"lstm"`` (options ``gates``, ``peephole``), ``"gru"``
    (``reset_after``) or ``"rnn"`` (``activation``). Used by ``rnn_jax.cells`` to
    attach ``step.fused_unroll``.
    """
    if kind == "lstm":
        if options.get("peephole", False):
            return None  # peepholes put c into the gates; not covered, plain path
        return functools.partial(lstm_unroll, gates=tuple(options["gates"]))
    if kind == "gru":
        return functools.partial(gru_unroll, reset_after=bool(options.get("reset_after", False)))
    if kind == "rnn":
        act = options.get("activation", "tanh")
        return functools.partial(rnn_unroll, activation=act) if act in _RNN_ACTS else None
    raise ValueError(f"kind must be 'lstm', 'gru' or 'rnn', got {kind!r}")
