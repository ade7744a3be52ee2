"""Sensitivity of the hidden state to the recurrent parameters, ``||d carry_t / d theta||``.

Zucchet & Orvieto 2024 ("Recurrent neural networks: vanishing and exploding gradients
are not the end of the story", arXiv 2405.21064) point out that the gradient of a loss
with respect to a recurrent parameter contains ``d h_t / d theta``, which grows without
bound as a linear recurrence's memory ``|lambda| -> 1`` even when ``d h_t / d h_s``
never explodes. For ``h_t = lambda h_{t-1} + gamma x_t`` with white unit-variance input,
``d h_t / d lambda = sum_k k lambda^(k-1) gamma x_{t-k}``, whose stationary second
moment is ``gamma^2 (1 + lambda^2) / (1 - lambda^2)^3``. The input normalisation
``gamma = sqrt(1 - lambda^2)`` of the LRU (Orvieto et al. 2023) keeps ``E[h^2]`` at 1
and removes one power; the exponential parametrisation of lambda removes the rest
(:mod:`rnn_jax.studies.sensitivity` measures all three).

:func:`param_sensitivity` measures ``S_t = ||d carry_t / d theta||_F`` for every t, for
any step function and carry pytree, by forward-mode differentiation along the scan:
the tangent ``dC_t = d carry_t / d theta`` (one tangent per parameter entry) follows

    dC_t = (d step / d carry) dC_{t-1} + (d step / d theta)

with one ``jax.linearize`` of the step per time step, applied to all tangents at once.
Cost: P (the number of selected parameter entries) tangent steps per time step, so
select the recurrent parameters (``wrt=("w_h",)``) rather than all of them. The step
must support forward-mode differentiation (every built-in cell's ``step`` does).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from rnn_jax.diagnostics._common import (accumulation_dtype, check_batch_ndim, check_lengths,
                                         per_example)
from rnn_jax.diagnostics.gradient_flow import _check_common, _log10_norm, _norm, Step


def _split(params, wrt):
    """``(theta, merge)``: the selected sub-dict of ``params`` and ``theta -> params``."""
    if wrt is None:
        return params, lambda theta: theta
    if isinstance(wrt, str) or not all(isinstance(k, str) for k in wrt) or not wrt:
        raise ValueError(f"wrt must be None (all parameters) or a non-empty sequence of "
                         f"parameter names, got {wrt!r}")
    if not isinstance(params, dict):
        raise TypeError(f"wrt names parameters, so params must be a dict, got {type(params).__name__}")
    missing = [k for k in wrt if k not in params]
    if missing:
        raise ValueError(f"wrt names parameters {missing} that params does not have; "
                         f"params has {sorted(params)}")
    theta = {k: params[k] for k in wrt}
    return theta, lambda th: {**params, **th}


def param_sensitivity(step: Step, params, carry, xs, *, wrt: Sequence[str] | None = None,
                      log10: bool = False, lengths=None, batch_ndim: int = 0):
    """``||d carry_t / d theta||_F`` for every step t, theta = the parameters named by ``wrt``.

    Args:
      step: ``(params, carry, x) -> (carry, y)``, forward-mode differentiable.
      params: a pytree; with ``wrt`` a dict whose named entries are differentiated.
      carry: the initial carry (treated as a constant, not a function of theta).
      xs: ``[T, ...]`` inputs.
      wrt: names of the parameters (top-level keys) to differentiate, e.g. ``("w_h",)``;
        None: all of them.
      log10: return ``log10`` of the norms (computed without squaring tiny numbers).
      lengths: optional int array with the carry's batch shape; padded steps keep the
        carry and its tangent (their sensitivity repeats the last valid step's).
      batch_ndim: leading carry axes that are independent examples (vmapped, each gets
        its own norm); with 0 they are inside the one norm.

    Returns:
      float ``[*batch, T]``: ``S_t`` (Frobenius norm over all parameter entries and all
      carry leaves and entries).
    """
    _check_common(step, params, carry, xs)
    theta, _ = _split(params, wrt)
    n = check_batch_ndim(batch_ndim, carry, xs)
    lengths = check_lengths(lengths, carry, xs)

    def one(s, p, c, x, length):
        return _forward_tangents(s, p, c, x, wrt, log10)

    return per_example(one, step, params, carry, xs, lengths, n)


def _forward_tangents(step, params, carry, xs, wrt, log10):
    theta, merge = _split(params, wrt)
    theta_flat, unravel = ravel_pytree(theta)
    P = theta_flat.shape[0]
    eye = jnp.eye(P, dtype=theta_flat.dtype)
    d0 = jax.tree_util.tree_map(lambda c: jnp.zeros((P,) + jnp.shape(c), jnp.result_type(c)), carry)

    def body(state, x):
        c, dc = state
        f = lambda th, cc: step(merge(unravel(th)), cc, x)[0]
        new_c, lin = jax.linearize(f, theta_flat, c)
        dc = jax.vmap(lin)(eye, dc)
        leaves = jax.tree_util.tree_leaves(dc)
        flat = jnp.concatenate([l.reshape(-1).astype(accumulation_dtype(l.dtype))
                                for l in leaves])
        return (new_c, dc), (_log10_norm(flat) if log10 else _norm(flat))

    return jax.lax.scan(body, (carry, d0), xs)[1]


__all__ = ["param_sensitivity"]
