"""Gradient-flow diagnostics: how strongly the loss and the last state depend on earlier states.

Every function takes any step function ``step(params, carry, x) -> (carry, y)`` (a
built-in cell's ``step`` or a user's own), is jittable with ``step``/``loss_fn`` held
static (``jax.jit(functools.partial(grad_norms, step, loss_fn=f))``) and composes with
``jax.vmap`` (vmap over examples to get per-example norms).

Notation, shared by all functions::

    carry_{-1} = carry
    carry_t    = step(params, carry_{t-1}, xs[t])[0]        t = 0 .. T-1
    lag k      = T - 1 - t

The vanishing-gradient problem (Hochreiter 1991; Bengio, Simard & Frasconi 1994;
Pascanu, Mikolov & Bengio 2013, arXiv 1211.5063) is the statement that
``||d carry_{T-1} / d carry_t||`` and with it ``||dL/dcarry_t||`` fall off exponentially
in the lag for a vanilla RNN; the LSTM's cell state (Hochreiter & Schmidhuber 1997)
exists to keep ``d c_{T-1} / d c_t`` near 1. A tanh RNN's gradient at lag 2000 is
around 1e-600, far below float32's smallest number, so each function has a
``log10=True`` form that renormalises the backward recursion at every step and carries
the exponent separately; it never forms the underflowing number.

Time results come in time order (index t). :func:`by_lag` flips them so that index k is
the lag.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rnn_jax.diagnostics._common import (accumulation_dtype, check_batch_ndim, check_lengths,
                                         masked, per_example)
from rnn_jax.gates import gru_gates, lstm_pointwise
from rnn_jax._scan import check_carry as _check_carry, num_steps as _num_steps

Step = Callable[[Any, Any, Any], tuple[Any, Any]]

# ------------------------------------------------------------------ log-scale numbers
#
# A log10 magnitude is kept as (k, f): an int32 integer part and a float fraction in
# [0, 1). Summing 2000 per-step log factors in one float32 would lose ~1e-3 to rounding
# (the running sum reaches ~600, where float32's spacing is 6e-5); the integer part adds
# exactly and the fraction keeps ~1e-7 absolute precision, so the sum stays good to ~1e-6.
# The magnitude of zero is k = _NEG.

_NEG = -(2 ** 30)


def _lg_from_float(x):
    """``log10`` value (may be -inf) -> (k, f)."""
    finite = jnp.isfinite(x)
    fl = jnp.floor(jnp.where(finite, x, 0.0))
    return jnp.where(finite, fl.astype(jnp.int32), _NEG), jnp.where(finite, x - fl, 0.0)


def _lg_add(lg, delta):
    """(k, f) + a float ``delta`` (may be -inf, giving zero)."""
    k, f = lg
    s = f + jnp.where(jnp.isfinite(delta), delta, 0.0)
    fl = jnp.floor(s)
    k = jnp.maximum(k + fl.astype(jnp.int32), _NEG)
    zero = (k <= _NEG // 2) | ~jnp.isfinite(delta)
    return jnp.where(zero, _NEG, k), jnp.where(zero, 0.0, s - fl)


def _lg_sub(a, b):
    """``a - b`` as a float, for exponents of 10; -inf when ``a`` is zero."""
    d = (a[0] - b[0]).astype(a[1].dtype) + (a[1] - b[1])
    return jnp.where(a[0] <= _NEG // 2, -jnp.inf, d)


def _lg_max(a, b):
    a_big = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] >= b[1]))
    return jnp.where(a_big, a[0], b[0]), jnp.where(a_big, a[1], b[1])


def _lg_to_float(lg):
    k, f = lg
    return jnp.where(k <= _NEG // 2, -jnp.inf, k.astype(f.dtype) + f)


# ------------------------------------------------------------------ safe norms

def _log10_norm(x, axes=None):
    """``log10 ||x||_2`` over ``axes`` (all by default) without squaring tiny or huge numbers.

    Squaring a float32 gradient of 1e-25 underflows to 0; scaling by the largest
    entry first keeps every gradient that float32 can hold. Zero gives -inf.
    """
    a = jnp.abs(x)
    m = jnp.max(a, axis=axes, keepdims=True)
    safe_m = jnp.where(m > 0, m, 1.0)
    ssq = jnp.sum(jnp.square(a / safe_m), axis=axes)
    m = jnp.squeeze(m, axis=axes) if axes is not None else m.reshape(())
    return jnp.where(m > 0, jnp.log10(jnp.where(m > 0, m, 1.0)) + 0.5 * jnp.log10(
        jnp.where(m > 0, ssq, 1.0)), -jnp.inf)


def _norm(x, axes=None):
    a = jnp.abs(x)
    m = jnp.max(a, axis=axes, keepdims=True)
    safe_m = jnp.where(m > 0, m, 1.0)
    out = safe_m * jnp.sqrt(jnp.sum(jnp.square(a / safe_m), axis=axes, keepdims=True))
    out = jnp.where(m > 0, out, 0.0)
    return jnp.squeeze(out, axis=axes) if axes is not None else out.reshape(())


def _scale_tree(tree, log10_factor):
    """``tree * 10**log10_factor`` for a factor <= ~0; -inf gives zeros."""
    factor = jnp.power(10.0, jnp.minimum(log10_factor, 30.0))
    factor = jnp.where(jnp.isfinite(log10_factor), factor, 0.0)
    return jax.tree_util.tree_map(lambda l: l * factor.astype(l.dtype), tree)


def _normalised(tree):
    """``(tree / ||tree||, log10 ||tree||)`` over the whole pytree; zero stays zero, log -inf.

    Dividing by the largest entry first (an exact float that the tree holds) and only
    then by the remaining norm in [1, sqrt(size)] never forms a factor outside float range.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    m = jnp.max(jnp.stack([jnp.max(jnp.abs(l)) for l in leaves]))
    ok = m > 0
    safe_m = jnp.where(ok, m, 1.0)
    tree = jax.tree_util.tree_map(lambda l: l / safe_m.astype(l.dtype), tree)
    ssq = sum(jnp.sum(jnp.square(l)) for l in jax.tree_util.tree_leaves(tree))
    n = jnp.sqrt(jnp.where(ok, ssq, 1.0))
    tree = jax.tree_util.tree_map(lambda l: l / n.astype(l.dtype), tree)
    return tree, jnp.where(ok, jnp.log10(safe_m) + jnp.log10(n), -jnp.inf)


# ------------------------------------------------------------------ checks

def _check_common(step, params, carry, xs) -> int:
    if not callable(step):
        raise TypeError(f"step must be a function (params, carry, x) -> (carry, y), got {type(step)}")
    num_steps = _num_steps(xs)
    if num_steps < 1:
        raise ValueError("xs must hold at least one time step (T >= 1), got T=0")
    _check_carry(step, params, carry, xs)
    for leaf in jax.tree_util.tree_leaves(carry):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"every carry leaf must be a float array, got dtype {jnp.result_type(leaf)}")
    return num_steps


def _forward_states(step, params, carry, xs):
    """``states``: the carries ``carry_0 .. carry_{T-1}`` stacked on a leading time axis."""
    def body(c, x):
        c, _ = step(params, c, x)
        return c, c
    return jax.lax.scan(body, carry, xs)[1]


def _check_loss(loss_fn, states):
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function states -> scalar, got {type(loss_fn)}")
    out = jax.eval_shape(loss_fn, states)
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss_fn(states) must return a float scalar, got {out}")


# ------------------------------------------------------------------ gradient norms

def grad_norms(step: Step, params, carry, xs, loss_fn: Callable[[Any], jax.Array], *,
               log10: bool = False, lengths=None):
    """Per-step norms of the total derivative ``dL/dcarry_t``, in one backward pass.

    Definition. With ``carry_t`` as in the module docstring, ``states`` is the pytree of
    ``carry_0 .. carry_{T-1}`` stacked on a new leading axis of length T, and
    ``L = loss_fn(states)``. For each leaf of the carry and each t, the result holds
    ``||dL/dcarry_t||_2`` restricted to that leaf (all the leaf's other axes, batch
    axes included, are inside the norm): the TOTAL derivative, the direct term
    ``d loss_fn / d states[t]`` plus every path through ``carry_{t+1} .. carry_{T-1}``.
    For the LSTM's ``(h, c)`` carry this gives the hidden path and the cell-state path
    separately. Index t is time; :func:`by_lag` reorders by lag k = T-1-t.

    Cost: one forward and one backward pass.

    * ``log10=False``: ``L`` is differentiated with respect to zero perturbations
      ``eps_t`` added to each ``carry_t``; ``dL/deps_t`` is the total derivative, so a
      single ``jax.grad`` yields all T of them. Norms are computed without squaring tiny
      numbers, so they are exact down to float32's smallest number (~1e-38 after the
      backward pass flushes), and 0 below.
    * ``log10=True``: the adjoint recursion ``a_t = dL/dstates[t] + J_{t+1}^T a_{t+1}``,
      ``J_{t+1} = d carry_{t+1} / d carry_t``, run as a reverse scan of ``jax.vjp`` of
      ``step`` (one vjp per step, w.r.t. the carry only). The adjoint is stored as a
      unit-norm pytree times ``10**s`` with the exponent ``s`` kept separately (integer
      plus fraction), renormalised at every step, so values like 1e-600 or 1e+600 come out
      right in float32. All leaves share one exponent per step: a leaf more than ~1e37
      times smaller than the largest leaf at the same step reads as -inf.

    Args:
      step: ``(params, carry, x) -> (carry, y)``; ``y`` is ignored.
      params: passed to every step.
      carry: ``carry_{-1}``, any pytree of float arrays.
      xs: ``[T, ...]`` inputs (a pytree of such arrays works).
      loss_fn: ``states -> scalar``; for example the task loss of a readout of
        ``states[-1]``.
      log10: return ``log10`` of the norms (``-inf`` for an exactly zero gradient).
      lengths: optional int array with the carry's batch shape (a scalar for one
        sequence): steps ``t >= lengths`` are padding and keep the carry unchanged, so
        ``states[t]`` for ``t >= lengths`` repeats the last valid carry (``loss_fn`` may
        read ``states[-1]``). NaN/Inf in the padding has no effect.

    Returns:
      A pytree with the carry's structure, each leaf float ``[T]``.
    """
    num_steps = _check_common(step, params, carry, xs)
    lengths = check_lengths(lengths, carry, xs)
    if lengths is not None:
        step, xs = masked(step, xs, lengths)
    states_shape = jax.eval_shape(lambda p, c, x: _forward_states(step, p, c, x), params, carry, xs)
    _check_loss(loss_fn, states_shape)
    if not log10:
        return _grad_norms_direct(step, params, carry, xs, loss_fn)
    return _grad_norms_log(step, params, carry, xs, loss_fn, num_steps)


def _time_norms(tree):
    return jax.tree_util.tree_map(lambda g: _norm(g, tuple(range(1, g.ndim))) if g.ndim > 1
                                  else jnp.abs(g), tree)


def _grad_norms_direct(step, params, carry, xs, loss_fn):
    T = _num_steps(xs)
    eps = jax.tree_util.tree_map(lambda c: jnp.zeros((T,) + jnp.shape(c), jnp.result_type(c)),
                                 carry)

    def loss_of_eps(eps):
        def body(c, x_e):
            x, e = x_e
            c, _ = step(params, c, x)
            c = jax.tree_util.tree_map(jnp.add, c, e)
            return c, c
        return loss_fn(jax.lax.scan(body, carry, (xs, eps))[1])

    return _time_norms(jax.grad(loss_of_eps)(eps))


def _leaf_log_norms(u, lg):
    """Per leaf: log10 of ``||u_leaf|| * 10**lg``."""
    s = _lg_to_float(lg)
    return jax.tree_util.tree_map(lambda l: _log10_norm(l) + s, u)


def _grad_norms_log(step, params, carry, xs, loss_fn, T):
    states = _forward_states(step, params, carry, xs)
    direct = jax.grad(loss_fn)(states)
    at = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)

    u_last, lg_last = _normalised(at(direct, T - 1))
    scale_last = _lg_from_float(lg_last)
    out_last = _leaf_log_norms(u_last, scale_last)
    if T == 1:
        return jax.tree_util.tree_map(lambda a: a[None], out_last)

    def body(state, inputs):
        u, scale = state
        c_t, x_next, d_t = inputs
        _, vjp = jax.vjp(lambda c: step(params, c, x_next)[0], c_t)
        v, = vjp(u)
        # a_t = 10**scale * v + d_t, with both terms brought to unit norm first.
        v_hat, lg_v = _normalised(v)
        d_hat, lg_d = _normalised(d_t)
        m_v = _lg_add(scale, lg_v)
        m_d = _lg_from_float(lg_d)
        new = _lg_max(m_v, m_d)
        u = jax.tree_util.tree_map(
            jnp.add, _scale_tree(v_hat, _lg_sub(m_v, new)), _scale_tree(d_hat, _lg_sub(m_d, new)))
        u, lg_u = _normalised(u)
        new = _lg_add(new, lg_u)
        return (u, new), _leaf_log_norms(u, new)

    prev = jax.tree_util.tree_map(lambda a: a[:-1], states)
    x_next = jax.tree_util.tree_map(lambda a: a[1:], xs)
    d_prev = jax.tree_util.tree_map(lambda a: a[:-1], direct)
    _, outs = jax.lax.scan(body, (u_last, scale_last), (prev, x_next, d_prev), reverse=True)
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), outs, out_last)


# ------------------------------------------------------------------ Jacobian norms

_ORDS = (2, "fro")


def _check_ord(ord):
    if isinstance(ord, bool) or ord not in _ORDS:
        raise ValueError(f"ord must be 2 or 'fro', got {ord!r}")


def _matrix_log_norm(n, ord):
    if ord == "fro":
        return _log10_norm(n)
    return jnp.log10(jnp.linalg.norm(n, 2))


def _jacobian_scan(step, params, carry, xs, *, ord, log10, lag_list, last=None):
    """Reverse scan of ``M_t = M_{t+1} J_{t+1}``, ``M_{T-1} = I``, with optional renormalisation.

    Returns per-step ``log10 ||M_t||`` (or ``||M_t||``) and, for the lags in ``lag_list``,
    ``(N, scale)`` with ``M = N * 10**scale``. Lags count back from ``last`` (default
    T-1; a padded sequence's last valid step).
    """
    T = _num_steps(xs)
    last_valid = T - 1 if last is None else last
    flat0, unravel = ravel_pytree(carry)
    carry_dtype = flat0.dtype
    # The product, its norms and its SVD are kept in float32 (or wider) whatever the
    # carry's dtype: LAPACK has no bfloat16/float16 SVD, and a product of many bfloat16
    # factors would lose ~3 digits per step. Each step itself still runs in its own dtype
    # (unravel casts the float32 vector back to the carry's leaf dtypes).
    acc = accumulation_dtype(flat0.dtype)
    flat0 = flat0.astype(acc)
    D = flat0.shape[0]
    states = _forward_states(step, params, carry, xs)
    flat_states = jax.vmap(lambda s: ravel_pytree(s)[0].astype(acc))(states)

    def step_flat(c, x):
        # The step runs in the carry's own dtype (unravel casts only mixed-dtype trees).
        return ravel_pytree(step(params, unravel(c.astype(carry_dtype)), x)[0])[0].astype(acc)

    eye = jnp.eye(D, dtype=flat0.dtype)
    lags = jnp.asarray(lag_list, jnp.int32).reshape(-1)
    n_lags = lags.shape[0]
    buf = jnp.broadcast_to(eye, (n_lags, D, D))
    zero_lg = (jnp.zeros((), jnp.int32), jnp.zeros((), flat0.dtype))
    buf_lg = (jnp.zeros((n_lags,), jnp.int32), jnp.zeros((n_lags,), flat0.dtype))

    def measure(n, lg):
        if log10:
            return _matrix_log_norm(n, ord) + _lg_to_float(lg)
        return jnp.linalg.norm(n, 2) if ord == 2 else _norm(n)

    def body(state, inputs):
        n, lg, buf, buf_lg = state
        t, c_t, x_next = inputs
        _, vjp = jax.vjp(lambda c: step_flat(c, x_next), c_t)
        # Row r of M_{t+1} J_{t+1} is J_{t+1}^T r: one vjp per row.
        n = jax.vmap(lambda r: vjp(r)[0])(n)
        if log10:
            lg_n = _log10_norm(n)
            n = n * jnp.where(jnp.isfinite(lg_n), jnp.power(10.0, -lg_n), 0.0).astype(n.dtype)
            lg = _lg_add(lg, lg_n)
        hit = (last_valid - t) == lags
        buf = jnp.where(hit.reshape(n_lags, 1, 1), n[None], buf)
        buf_lg = (jnp.where(hit, lg[0], buf_lg[0]), jnp.where(hit, lg[1], buf_lg[1]))
        return (n, lg, buf, buf_lg), measure(n, lg)

    at_last = measure(eye, zero_lg)  # M_{T-1} = I
    if T == 1:
        return at_last[None], (buf, buf_lg)
    inputs = (jnp.arange(T - 1), flat_states[:-1],
              jax.tree_util.tree_map(lambda a: a[1:], xs))
    (_, _, buf, buf_lg), outs = jax.lax.scan(body, (eye, zero_lg, buf, buf_lg), inputs,
                                             reverse=True)
    return jnp.concatenate([outs, at_last[None]]), (buf, buf_lg)


def jacobian_norms(step: Step, params, carry, xs, *, ord: int | str = 2, log10: bool = False,
                   lengths=None, batch_ndim: int = 0):
    """Norms of ``d carry_{T-1} / d carry_t`` for every t.

    Definition. With the carry flattened to a vector of size D (``jax.flatten_util``
    order), ``M_t = d carry_{T-1} / d carry_t`` is a D x D matrix,
    ``M_{T-1} = I`` and ``M_t = M_{t+1} J_{t+1}`` with ``J_{t+1} = d carry_{t+1}/d carry_t``.
    The result ``[T]`` holds ``||M_t||`` in the chosen norm: ``ord=2`` the largest
    singular value, ``ord="fro"`` the Frobenius norm. Index t is time; lag k = T-1-t.

    The products are built by one reverse scan that applies D vjps of ``step`` per step
    (cost ~ D backward steps per step, memory D x D). With ``log10=True`` the product is
    divided by its Frobenius norm at every step and the exponent is accumulated
    separately (integer plus fraction), so e.g. ``(0.5 Q)^2000`` gives -602.06 in float32
    (Pascanu et al. 2013, arXiv 1211.5063, give the linear-case bound
    ``||M_t|| <= ||W||^(T-1-t)``). Without ``log10`` the plain product is returned and
    underflows to 0 once it drops below float32's range. The product and its norms are
    computed in float32 for a bfloat16/float16 carry.

    Args:
      lengths: optional int array with the carry's batch shape (a scalar for one
        sequence): steps ``t >= lengths`` are padding and keep the carry (their Jacobian
        is the identity, so ``M_t`` for ``t < lengths`` is ``d carry_{lengths-1} /
        d carry_t``). NaN/Inf in the padding has no effect.
      batch_ndim: the number of leading carry axes that index independent examples
        (``xs`` is then ``[T, *batch, ...]``). 0 (default) flattens the whole carry,
        batch axes included, into one D (a block-diagonal Jacobian, B^2 times the
        memory); ``batch_ndim=1`` vmaps over a ``[B, H]`` carry and returns ``[B, T]``.

    Returns:
      float ``[*batch, T]``: ``||M_t||`` or ``log10 ||M_t||``.
    """
    _check_ord(ord)
    _check_common(step, params, carry, xs)
    n = check_batch_ndim(batch_ndim, carry, xs)
    lengths = check_lengths(lengths, carry, xs)

    def one(s, p, c, x, length):
        return _jacobian_scan(s, p, c, x, ord=ord, log10=log10, lag_list=[0])[0]

    return per_example(one, step, params, carry, xs, lengths, n)


def jacobian_spectra(step: Step, params, carry, xs, lags: Sequence[int], *, log10: bool = True,
                     lengths=None, batch_ndim: int = 0):
    """Singular values of ``M_t = d carry_{T-1} / d carry_t`` at chosen lags k = T-1-t.

    Same product as :func:`jacobian_norms` (``lengths`` and ``batch_ndim`` as there;
    with ``lengths`` each sequence's lags count back from its own last valid step, and a
    lag beyond a sequence's length reads as the identity, all zeros in log10).
    Returns ``[*batch, len(lags), D]``, each row in descending order: ``log10`` of the
    singular values when ``log10=True`` (default), else the values. The product is
    renormalised per step as in :func:`jacobian_norms`, so the overall scale never
    underflows; within one matrix float32 resolves singular values down to ~1e-7 times
    the largest, smaller ones are rounding noise. The SVD runs in float32 for a
    bfloat16/float16 carry.
    """
    T = _check_common(step, params, carry, xs)
    lag_list = _check_lags(lags, T)
    n = check_batch_ndim(batch_ndim, carry, xs)
    lengths = check_lengths(lengths, carry, xs)

    def one(s, p, c, x, length):
        last = None if length is None else length - 1
        _, (buf, buf_lg) = _jacobian_scan(s, p, c, x, ord="fro", log10=True, lag_list=lag_list,
                                          last=last)
        sv = jnp.linalg.svd(buf, compute_uv=False)
        tiny = sv <= 0
        log_sv = jnp.where(tiny, -jnp.inf, jnp.log10(jnp.where(tiny, 1.0, sv)))
        return log_sv + _lg_to_float(buf_lg)[:, None]

    log_sv = per_example(one, step, params, carry, xs, lengths, n)
    return log_sv if log10 else jnp.power(10.0, log_sv)


def _check_lags(lags, T):
    if isinstance(lags, jax.core.Tracer):
        raise TypeError("lags must be concrete integers (a list or NumPy array), got a traced array")
    arr = np.asarray(lags)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lags must be integers, got {lags!r} (dtype {arr.dtype})")
    lag_list = [int(k) for k in arr.reshape(-1)]
    if not lag_list:
        raise ValueError("lags must hold at least one lag, got an empty sequence")
    bad = [k for k in lag_list if not 0 <= k < T]
    if bad:
        raise ValueError(f"lags must lie in [0, T-1={T - 1}], got {bad}")
    return lag_list


# ------------------------------------------------------------------ helpers

def by_lag(tree):
    """Reorder time-indexed results (leading axis t) by lag: ``out[k] = in[T-1-k]``."""
    return jax.tree_util.tree_map(lambda a: jnp.flip(a, axis=0), tree)


def lag_slope(log10_curve, *, start: int = 0, stop: int | None = None) -> float:
    """Least-squares slope (orders of magnitude per lag) of a by-lag log10 curve over [start, stop)."""
    y = np.asarray(log10_curve, np.float64)[start:stop]
    k = np.arange(start, start + y.shape[0], dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(k[ok], y[ok], 1)[0])


def gate_activations(cell, params, carry, xs):
    """Gate activations of a built-in LSTM or GRU along a run, recomputed from its carries.

    Uses the parameter layout of :mod:`rnn_jax.cells` (gate blocks stacked on the last
    axis of ``w_x``/``w_h``/``b`` in the order ``cell.gates``). Returns a dict gate name
    -> ``[T, *batch, H]``: for the LSTM the sigmoid gates ``"i"``, ``"f"``, ``"o"`` that
    exist (``"i" = 1 - f`` for CIFG); for the GRU ``"r"`` and ``"z"`` (Cho et al. 2014:
    ``h_t = z_t h_{t-1} + (1 - z_t) n_t``, so z plays the forget gate's role).
    """
    gates = tuple(getattr(cell, "gates", ()))
    is_lstm = "g" in gates and gates[-1] == "o"
    is_gru = gates == ("r", "z", "n")
    if not (is_lstm or is_gru):
        raise ValueError(f"cell must be a built-in LSTM or GRU (gates containing 'f'/'i' or "
                         f"('r', 'z', 'n')), got a cell with gates {gates}")
    _check_common(cell.step, params, carry, xs)
    states = _forward_states(cell.step, params, carry, xs)
    prev = jax.tree_util.tree_map(lambda c0, s: jnp.concatenate([c0[None], s[:-1]]), carry, states)
    n = len(gates)
    h_prev = prev[0] if is_lstm else prev
    z = jnp.einsum("t...i,ij->t...j", xs, params["w_x"])
    b = params["b"].reshape((1,) * (z.ndim - 1) + params["b"].shape)
    if is_gru:
        act = gru_gates(z + b, h_prev, params["w_h"], params.get("b_hn"))
        return {"r": act.r, "z": act.z}
    z = z + b + jnp.einsum("t...i,ij->t...j", h_prev, params["w_h"])
    peep = {g: params["p_" + g] for g in "ifo" if "p_" + g in params}
    act = lstm_pointwise(dict(zip(gates, jnp.split(z, n, axis=-1))), prev[1], peep)
    return ({} if act.f is None else {"f": act.f}) | {"i": act.i, "o": act.o}


def forget_gate_stats(cell, params, carry, xs):
    """Forget-gate statistics that explain the LSTM's cell-state gradient path.

    Along the constant-error-carousel path ``d c_{T-1} / d c_t`` contains the product
    ``prod_{s>t} diag(f_s)`` (Hochreiter & Schmidhuber 1997; Gers et al. 2000), so the
    mean of ``log10 f`` is the slope, in orders of magnitude per lag, that this path
    alone would have. For the GRU the update gate z takes f's place. Without a forget
    gate (the 1997 LSTM) f = 1.

    Returns a dict of scalars: ``"mean"`` (mean activation over time, batch and units),
    ``"mean_log10"`` (mean of log10 of the activation), ``"frac_above_0.9"`` and
    ``"per_step_mean"`` ``[T]``.
    """
    acts = gate_activations(cell, params, carry, xs)
    key = "z" if "z" in acts else "f"
    if key not in acts:
        f = jnp.ones_like(acts["i"])
    else:
        f = acts[key]
    axes = tuple(range(1, f.ndim))
    return {"mean": jnp.mean(f), "mean_log10": jnp.mean(jnp.log10(f)),
            "frac_above_0.9": jnp.mean(f > 0.9), "per_step_mean": jnp.mean(f, axis=axes)}


__all__ = ["by_lag", "forget_gate_stats", "gate_activations", "grad_norms", "jacobian_norms",
           "jacobian_spectra", "lag_slope"]
