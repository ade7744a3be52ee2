"""Parallel evaluation over time of diagonal linear recurrences ``h_t = a_t * h_{t-1} + b_t``.

A step ``h -> a h + b`` composes with another into one of the same form,
``(a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2)``, an associative operation, so
``jax.lax.associative_scan`` evaluates all T states in O(log T) depth (Blelloch 1990;
Martin & Cundy 2018 for RNNs). Three forms:

- :func:`linear_scan`: real ``a, b``.
- :func:`complex_linear_scan`: complex ``a, b`` held as real pairs ``(re, im)`` (the LRU).
- :func:`log_linear_scan`: positive ``a, b`` given as logs, combined in log space (Feng et
  al. 2024, App. B; Heinsen 2023): ``(la1, lb1) then (la2, lb2) = (la1 + la2,
  logaddexp(la2 + lb1, lb2))``. Products of many gates near 0 underflow in linear space but
  not as sums of logs. The initial carry enters through a second, linear coefficient so
  it may have any sign.

Every function takes time-major ``[T, *batch, N]`` arrays and the keywords of
:data:`rnn_jax.cells.base.SequencePath`:

- ``lengths`` (int, a prefix of the batch shape): steps ``t >= lengths`` are padding and
  have no effect: their element is replaced (``jnp.where``, never a multiplication, so a
  NaN or inf in padding cannot leak) by the identity ``(a, b) = (1, 0)``. The final
  carry is then simply the state at ``T - 1``.
- ``resets`` (bool ``[T, *batch]``): where true the carry is replaced by the initial
  carry before that step: the element becomes ``(0, a_t h0 + b_t)``, so no gradient
  crosses it. Resets in padding are ignored.
- ``reverse``: the valid part of each sequence is reversed (``t -> L-1-t``), scanned
  forward and mapped back, so outputs stay aligned with the inputs. ``resets[t]`` marks a
  sequence starting at step t, as in ``rnn_jax.unroll``: run in reverse, the carry
  returns to the initial carry before step t - 1.

They return ``(final, hs)``, ``hs`` the state after each step in the original time order
(at padded steps the carried state, which cells replace by a zero output).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax import _scan

# A finite stand-in for log(0): exp(_NEG - m) is exactly 0 with a zero gradient, and
# sums of up to ~1e18 of them stay finite in float32, so no -inf (whose arithmetic
# gives NaN gradients) ever enters the scan.
_NEG = -1e20


def _bcast(mask, like):
    """``mask: [T, *b]`` reshaped to broadcast against ``like: [T, *b, ...]``."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def _prepare(num_steps, lengths, resets, reverse, arrays):
    """``(arrays, valid, resets)`` in processing order, by the same rules as the plain scan
    (:func:`rnn_jax._scan.to_processing_order`), resets inside padding dropped."""
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    if resets is not None:
        resets = jnp.asarray(resets, bool)
    arrays, resets = _scan.to_processing_order(arrays, resets, lengths, reverse, num_steps)
    # reverse_valid maps valid steps onto valid steps, so the mask is the same either way.
    valid = None if lengths is None else _scan.valid_mask(lengths, num_steps)
    if resets is not None and valid is not None:
        resets = resets & _bcast(valid, resets)
    return arrays, valid, resets


def _finish(hs, lengths, reverse, num_steps):
    lengths = None if lengths is None else jnp.asarray(lengths)
    return _scan.from_processing_order(hs, lengths, reverse, num_steps)


def _first(mask_shape_like, T):
    """Bool ``[T, 1...]``: true at t = 0."""
    return (jnp.arange(T) == 0).reshape((T,) + (1,) * (mask_shape_like.ndim - 1))


# ----------------------------------------------------------------------- real, linear

def linear_scan(a, b, h0, *, lengths=None, resets=None, reverse=False):
    """``h_t = a_t h_{t-1} + b_t`` for real ``a, b: [T, *batch, N]``, ``h0: [*batch, N]``.

    Returns ``(h_{T-1} after the last valid step, hs: [T, *batch, N])``.
    """
    T = b.shape[0]
    if T == 0:
        return h0, b
    a = jnp.broadcast_to(a, b.shape)
    (a, b), valid, resets = _prepare(T, lengths, resets, reverse, (a, b))
    h0b = jnp.broadcast_to(h0[None], b.shape)
    if valid is not None:
        v = _bcast(valid, b)
        a, b = jnp.where(v, a, 1.0), jnp.where(v, b, 0.0)
    inject = _first(b, T) if resets is None else (_first(b, T) | _bcast(resets, b))
    # Injecting h0 at t = 0 and at resets: the element becomes (0, a_t h0 + b_t).
    b = jnp.where(inject, a * h0b + b, b)
    a = jnp.where(inject, 0.0, a)

    def combine(e1, e2):
        a1, b1 = e1
        a2, b2 = e2
        return a2 * a1, a2 * b1 + b2

    _, hs = jax.lax.associative_scan(combine, (a, b))
    return hs[-1], _finish(hs, lengths, reverse, T)


# -------------------------------------------------------------------- complex, linear

def complex_linear_scan(a, b, h0, *, lengths=None, resets=None, reverse=False):
    """As :func:`linear_scan` with complex ``a, b, h0`` each given as a pair ``(re, im)``.

    Returns ``((re, im) final, (re, im) hs)``.
    """
    a_re, a_im = a
    b_re, b_im = b
    T = b_re.shape[0]
    if T == 0:
        return h0, b
    a_re, a_im = jnp.broadcast_to(a_re, b_re.shape), jnp.broadcast_to(a_im, b_re.shape)
    (a_re, a_im, b_re, b_im), valid, resets = _prepare(T, lengths, resets, reverse,
                                                       (a_re, a_im, b_re, b_im))
    h_re = jnp.broadcast_to(h0[0][None], b_re.shape)
    h_im = jnp.broadcast_to(h0[1][None], b_re.shape)
    if valid is not None:
        v = _bcast(valid, b_re)
        a_re, a_im = jnp.where(v, a_re, 1.0), jnp.where(v, a_im, 0.0)
        b_re, b_im = jnp.where(v, b_re, 0.0), jnp.where(v, b_im, 0.0)
    inject = _first(b_re, T) if resets is None else (_first(b_re, T) | _bcast(resets, b_re))
    b_re, b_im = (jnp.where(inject, a_re * h_re - a_im * h_im + b_re, b_re),
                  jnp.where(inject, a_re * h_im + a_im * h_re + b_im, b_im))
    a_re, a_im = jnp.where(inject, 0.0, a_re), jnp.where(inject, 0.0, a_im)

    def combine(e1, e2):
        ar1, ai1, br1, bi1 = e1
        ar2, ai2, br2, bi2 = e2
        return (ar2 * ar1 - ai2 * ai1, ar2 * ai1 + ai2 * ar1,
                ar2 * br1 - ai2 * bi1 + br2, ar2 * bi1 + ai2 * br1 + bi2)

    _, _, hs_re, hs_im = jax.lax.associative_scan(combine, (a_re, a_im, b_re, b_im))
    hs = _finish((hs_re, hs_im), lengths, reverse, T)
    return (hs_re[-1], hs_im[-1]), hs


# ---------------------------------------------------------------------- log space

def _logaddexp(x, y):
    # The result does not depend on m, so m needs no gradient; exp(x - m) + exp(y - m)
    # lies in [1, 2], so the log never sees 0 (jnp.logaddexp's rule for infinities
    # does not arise because _NEG is finite).
    m = jax.lax.stop_gradient(jnp.maximum(x, y))
    return m + jnp.log(jnp.exp(x - m) + jnp.exp(y - m))


def log_linear_scan(log_a, log_b, h0, *, lengths=None, resets=None, reverse=False):
    """``h_t = a_t h_{t-1} + b_t`` with ``a = exp(log_a) > 0``, ``b = exp(log_b) > 0``.

    ``h_t = Q_t + P_t h0``: ``Q`` (the inputs' part, positive) and ``P`` (the initial
    carry's coefficient, positive) are both scanned in log space, sharing the
    coefficients; ``h0`` itself may have any sign. At a reset ``P`` restarts at ``a_t``
    and ``Q`` at ``b_t``.

    Returns ``(final, hs)`` as :func:`linear_scan`.
    """
    T = log_b.shape[0]
    if T == 0:
        return h0, log_b
    log_a = jnp.broadcast_to(log_a, log_b.shape)
    (la, lb), valid, resets = _prepare(T, lengths, resets, reverse, (log_a, log_b))
    if valid is not None:
        v = _bcast(valid, lb)
        la, lb = jnp.where(v, la, 0.0), jnp.where(v, lb, _NEG)
    inject = _first(lb, T) if resets is None else (_first(lb, T) | _bcast(resets, lb))
    lc = jnp.where(inject, la, _NEG)       # P's input: a_t where h0 is injected
    la = jnp.where(inject, _NEG, la)       # nothing of the past crosses an injection

    def combine(e1, e2):
        la1, lb1, lc1 = e1
        la2, lb2, lc2 = e2
        return la1 + la2, _logaddexp(la2 + lb1, lb2), _logaddexp(la2 + lc1, lc2)

    _, lq, lp = jax.lax.associative_scan(combine, (la, lb, lc))
    hs = jnp.exp(lq) + jnp.exp(lp) * jnp.broadcast_to(h0[None], lq.shape)
    return hs[-1], _finish(hs, lengths, reverse, T)


def zero_padding(ys, lengths):
    """``ys: [T, *batch, ...]`` with the steps ``t >= lengths`` set to 0 (``jnp.where``)."""
    if lengths is None:
        return ys
    return _scan.zeros_where_not(_scan.valid_mask(jnp.asarray(lengths), ys.shape[0]), ys)


__all__ = ["complex_linear_scan", "linear_scan", "log_linear_scan", "zero_padding"]
