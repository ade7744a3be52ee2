"""Lyapunov exponents of a recurrent step along a trajectory, by the QR method.

Definition. With the carry flattened to a vector of size D and
``J_t = d carry_t / d carry_{t-1}`` along the trajectory driven by ``xs`` (notation of
:mod:`~rnn_jax.diagnostics.gradient_flow`), the Lyapunov exponents are the growth rates
``lambda_i = lim (1/n) log sigma_i(J_n ... J_1)`` of the singular values of the
long-term Jacobian product, natural log, per step. The product itself under- or
overflows after a few hundred steps, so the QR method (Benettin et al. 1980; Eckmann &
Ruelle 1985; for RNNs Engelken, Wolf & Abbott 2023, arXiv 2006.02427, and the "gradient
flossing" of Engelken 2023, NeurIPS) never forms it: an orthonormal ``Q`` [D, k] is
pushed through each step and re-orthonormalised,

    Q_0 = I[:, :k];   J_t Q_{t-1} = Q_t R_t  (reduced QR);   lambda_i = (1/n) sum_t log|R_t[i, i]|

so that ``J_n ... J_1 Q_0 = Q_n R_n ... R_1``. The sums of ``log|R_ii|`` are kept as an
integer plus a fraction in [0, 1) (the log-scale numbers of ``gradient_flow``): the
integer part adds exactly, so T = 10,000 steps of float32 logs sum to ~1e-7 relative
error per term instead of the ~1e-4 that a plain float32 running sum reaches once it is
in the thousands.

Condition number at chosen lags. For the product ``P_n = J_n ... J_1`` (n steps after
the discarded transient) the QR method gives ``log|det P_n| = sum_i S_i(n)`` exactly
(``S_i(n) = sum_t log|R_t[i, i]|``, with k = D) and the estimate
``log cond(P_n) ~ max_i S_i(n) - min_i S_i(n)``. It is exact when the Jacobians are
normal and commute (diagonal or scaled-orthogonal), it never exceeds the true value
(``||P_n e_1|| = exp(S_1)`` bounds sigma_max from below and the smallest diagonal entry
of a triangular factor bounds sigma_min from above), and per step it converges to
``lambda_1 - lambda_D``. Unlike an SVD of the product it works at any magnitude
(``cond = 10^4000`` at T = 10,000 is fine).

Works for any step function ``(params, carry, x) -> (carry, y)`` and any carry pytree
(the LSTM's ``(h, c)`` gives D = 2H exponents), a user-written step included; the
Jacobian is built from D vjps per step, so steps with a custom VJP work too.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rnn_jax.diagnostics._common import (accumulation_dtype, check_batch_ndim, check_lengths,
                                         per_example)
from rnn_jax.diagnostics.gradient_flow import (_check_common, _lg_add, _lg_to_float, Step)
from rnn_jax._scan import num_steps as _num_steps

_LN10 = math.log(10.0)


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (
            hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an int {rng}, got {value!r}")
    return int(value)


def lyapunov_exponents(step: Step, params, carry, xs, *, num_exponents: int | None = None,
                       discard: int = 0, lags: Sequence[int] | None = None, lengths=None,
                       batch_ndim: int = 0, mode: str = "rev", key=None) -> dict:
    """The Lyapunov spectrum of ``step`` along the trajectory from ``carry`` driven by ``xs``.

    Args:
      step: ``(params, carry, x) -> (carry, y)``; any carry pytree of float arrays.
      params: passed to every step.
      carry: the initial carry.
      xs: ``[T, ...]`` inputs (a pytree of such arrays works).
      num_exponents: k, how many of the largest exponents to compute (default all D).
        Cost per step: D vjps for the Jacobian plus a [D, k] QR.
      discard: steps run first to forget the initial orientation of Q (a transient);
        their ``R`` is not counted. Must leave at least one step.
      lags: optional step counts n (1 <= n <= T - discard) at which to report the
        estimated ``log10`` condition number of ``J_n ... J_1`` (module docstring).
        Needs ``num_exponents`` = D (the default).
      lengths: optional int array with the carry's batch shape (a scalar for one
        sequence). Padded steps keep the carry (identity Jacobian, nothing counted), and
        each sequence's exponents are averaged over its own ``lengths - discard`` steps.
      batch_ndim: leading carry axes that are independent examples (vmapped; ``xs`` is
        ``[T, *batch, ...]``); with 0 the whole carry is one system.
      mode: how ``J_t Q`` is formed. ``"rev"`` (default): the full Jacobian from D vjps,
        works for any step (custom VJPs included). ``"fwd"``: k jvps of the linearised
        step, much cheaper for k << D (e.g. the top exponent of a large model), but the
        step must support forward mode.
      key: optional PRNG key: start from a random orthonormal ``Q_0`` instead of the first
        k unit vectors. With k < D and a short run, unit vectors that miss the slowest
        directions (e.g. an LSTM's cell state, flattened after h) need a long transient
        to find them; a random start overlaps every direction from step 1.

    Returns:
      dict with ``"exponents"``: float ``[*batch, k]``, natural log per step, in
      descending order; ``"log10_condition"``: ``[*batch, len(lags)]`` (only with
      ``lags``); ``"steps"``: ``[*batch]`` int, the number of steps averaged over.
    """
    T = _check_common(step, params, carry, xs)
    n = check_batch_ndim(batch_ndim, carry, xs)
    lengths = check_lengths(lengths, carry, xs)
    one_leaves = [np.prod(jnp.shape(l)[n:], dtype=int) for l in jax.tree_util.tree_leaves(carry)]
    D = int(sum(one_leaves))
    k = D if num_exponents is None else _check_int("num_exponents", num_exponents, 1, D)
    discard = _check_int("discard", discard, 0, T - 1)
    if mode not in ("rev", "fwd"):
        raise ValueError(f"mode must be 'rev' or 'fwd', got {mode!r}")
    lag_list = []
    if lags is not None:
        if k != D:
            raise ValueError(f"lags (condition numbers) need all D={D} exponents; got "
                             f"num_exponents={k}")
        arr = np.asarray(lags)
        if arr.dtype.kind not in "iu" or arr.size == 0:
            raise ValueError(f"lags must be a non-empty sequence of ints, got {lags!r}")
        lag_list = [int(v) for v in arr.reshape(-1)]
        bad = [v for v in lag_list if not 1 <= v <= T - discard]
        if bad:
            raise ValueError(f"lags must lie in [1, T - discard = {T - discard}], got {bad}")

    def one(s, p, c, x, length):
        return _qr_scan(s, p, c, x, k=k, discard=discard, lag_list=lag_list, length=length,
                        mode=mode, key=key)

    return per_example(one, step, params, carry, xs, lengths, n)


def _qr_scan(step, params, carry, xs, *, k, discard, lag_list, length, mode="rev", key=None):
    T = _num_steps(xs)
    flat0, unravel = ravel_pytree(carry)
    carry_dtype = flat0.dtype
    # QR and the log sums in float32 at least (no bfloat16 LAPACK; see gradient_flow).
    acc = accumulation_dtype(flat0.dtype)
    D = flat0.shape[0]
    eye = jnp.eye(D, dtype=acc)

    def step_flat(c, x):
        # The step runs in the carry's own dtype (unravel casts only mixed-dtype trees).
        return ravel_pytree(step(params, unravel(c.astype(carry_dtype)), x)[0])[0].astype(acc)

    lags = jnp.asarray(lag_list if lag_list else [0], jnp.int32)
    n_lags = lags.shape[0]
    zeros_k = (jnp.zeros((k,), jnp.int32), jnp.zeros((k,), acc))
    buf0 = (jnp.zeros((n_lags, k), jnp.int32), jnp.zeros((n_lags, k), acc))

    def body(state, inputs):
        c, q, s, buf = state
        t, x = inputs
        if mode == "fwd":
            new_c, lin = jax.linearize(lambda v: step_flat(v, x), c)
            jq = jax.vmap(lin, in_axes=1, out_axes=1)(q)  # column j = J q_j
        else:
            new_c, vjp = jax.vjp(lambda v: step_flat(v, x), c)
            jac = jax.vmap(lambda r: vjp(r)[0])(eye)      # row i = e_i^T J
            jq = jac @ q
        q_new, r = jnp.linalg.qr(jq)                      # reduced: [D, k], [k, k]
        log_r = jnp.log(jnp.abs(jnp.diagonal(r)))         # -inf for a zero pivot
        count = t >= discard
        s = jax.tree_util.tree_map(lambda new, old: jnp.where(count, new, old),
                                   _lg_add(s, log_r), s)
        # Snapshot the sums after n = t + 1 - discard counted steps.
        hit = (t + 1 - discard) == lags
        buf = (jnp.where(hit[:, None], s[0][None], buf[0]),
               jnp.where(hit[:, None], s[1][None], buf[1]))
        return (new_c, q_new, s, buf), None

    q0 = eye[:, :k]
    if key is not None:
        q0 = jnp.linalg.qr(jax.random.normal(key, (D, k), acc))[0]
    state0 = (flat0.astype(acc), q0, zeros_k, buf0)
    (_, _, s, buf), _ = jax.lax.scan(body, state0, (jnp.arange(T), xs))
    total = _lg_to_float(s)
    steps = jnp.asarray(T - discard, jnp.int32)
    if length is not None:
        steps = jnp.maximum(length - discard, 0)
    # A sequence with no counted step has no exponents: NaN, not a division by zero.
    exps = jnp.where(steps > 0, total / jnp.maximum(steps, 1).astype(acc), jnp.nan)
    out = {"exponents": -jnp.sort(-exps), "steps": steps}
    if lag_list:
        sums = _lg_to_float(buf)                          # [n_lags, D]
        out["log10_condition"] = (jnp.max(sums, axis=-1) - jnp.min(sums, axis=-1)) / _LN10
    return out


def top_exponent(step: Step, params, carry, xs, *, num_exponents: int = 1, **kwargs):
    """The largest Lyapunov exponent: ``[*batch]``, the largest of ``num_exponents`` tracked.

    Tracking a few directions (with a random start, ``key=``) finds the top one faster in
    a short run than tracking one; see :func:`lyapunov_exponents` for the other arguments.
    """
    return lyapunov_exponents(step, params, carry, xs, num_exponents=num_exponents,
                              **kwargs)["exponents"][..., 0]


__all__ = ["lyapunov_exponents", "top_exponent"]
