"""Sequence operations: scan any step function over time.

Everything here takes a step function ``step(params, carry, x) -> (carry, y)``, a
built-in cell's or one a user writes, and composes with ``jax.jit``, ``jax.vmap`` and
``jax.grad``. Inputs are time-major (``xs: [T, ...]``) unless ``time_major=False``,
in which case they are batch-major (``[B, T, ...]``) and the outputs come back the
same way.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import inspect
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import _scan
from rnn_jax.cells.base import Cell, step_of
from rnn_jax.remat import checkpointed_unroll

Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def unroll(step: Step, params, carry, xs, *, lengths=None, resets=None, reverse: bool = False,
           unroll: int = 1, time_major: bool = True, fused: bool = True, parallel: bool = False,
           remat=None, return_carries: bool = False):
    """Run ``step`` over the time axis of ``xs`` with ``jax.lax.scan``.

    Args:
      step: a :class:`rnn_jax.Cell`, or a bare step function
        ``(params, carry, x_t) -> (carry, y_t)``. A bare function, wrapped or not,
        always runs as the plain scan over exactly that function; only a ``Cell`` can
        bring a fast path (its ``fast_unroll``/``parallel_unroll`` fields).
      params: passed unchanged to every step.
      carry: initial carry, e.g. ``cell.initial_carry(batch_shape)``.
      xs: ``[T, *batch, features]`` (a pytree of such arrays is fine).
      lengths: optional integer array with the carry's batch shape, or a prefix of it
        (each length then covers the remaining batch axes); a scalar for one unbatched
        sequence: sequence ``b`` is valid for ``t < lengths[b]`` and is
        right-padded after. The final carry is then each sequence's carry after its
        own last valid step, and ``ys`` is zero at padded steps, so a padded batch
        gives exactly what running each sequence alone gives. The padding never
        reaches the arithmetic: NaN or Inf there changes no value and no gradient.
      resets: optional bool ``[T, *batch]`` (or ``[T, *prefix]``): ``resets[t]`` marks
        that a new sequence starts at step t (packed sequences, episode boundaries).
        The carry returns to the initial ``carry`` before that step, and no gradient
        flows across the reset. With ``reverse`` the flags keep this meaning (each
        packed sequence is reversed on its own).
      reverse: run from the last valid step back to the first. With ``lengths`` only
        the valid part is reversed; ``ys`` stays aligned with ``xs``.
      unroll: passed to ``jax.lax.scan``.
      time_major: if False, ``xs`` and ``ys`` are ``[B, T, ...]``.
      fused: use the cell's fast path (``cell.fast_unroll``: the built-in LSTM without
        peepholes, GRU and RNN, see ``rnn_jax.fused``), a whole-sequence custom VJP with
        the same values and gradients to float rounding and a faster backward pass.
        ``False`` forces the plain ``jax.lax.scan``, which forward-mode AD
        (``jax.jvp``, ``jax.jacfwd``) needs. A cell without a fast path, or pytree
        inputs, fall back to the plain scan.
      parallel: evaluate the recurrence with the cell's ``parallel_unroll``
        (``jax.lax.associative_scan``, for cells whose carry enters linearly); a
        ValueError when the cell has none.
      remat: checkpoint the scan for long sequences (``rnn_jax.remat``): ``True``
        for segments of ``ceil(sqrt(T))`` steps, an int for that segment length,
        ``None``/``False`` (default) to store every step.
      return_carries: also return the carry after every step (``[T, ...]`` per leaf,
        e.g. ``(h_t, c_t)`` for the LSTM; zeros at padded steps, like ``ys``).

    Returns:
      ``(final_carry, ys)`` with ``ys: [T, *batch, out]`` (or ``[B, T, ...]``), or
      ``(final_carry, ys, carries)`` when ``return_carries``.
    """
    if not time_major:
        xs = _scan.swap_time_batch(xs)
        if resets is not None:
            resets = jnp.swapaxes(jnp.asarray(resets), 0, 1) if jnp.ndim(resets) >= 2 else resets
    T = _scan.num_steps(xs)
    cell = step if isinstance(step, Cell) else None
    step_fn = step_of(step)
    _scan.check_carry(step_fn, params, carry, xs)
    if lengths is not None:
        lengths = _scan.check_lengths(lengths, carry, T)
    if resets is not None:
        resets = _scan.check_resets(resets, carry, xs, T)
    use_remat = remat is not None and remat is not False
    if parallel:
        if cell is None or cell.parallel_unroll is None:
            name = "a bare step function" if cell is None else "this cell"
            raise ValueError(f"parallel=True needs a Cell with a parallel_unroll path; {name} "
                             "has none (use parallel=False)")
        if use_remat:
            raise ValueError("parallel=True and remat cannot be combined: the parallel path "
                             "has no sequential segments to checkpoint")
    use_fast = (not parallel and not use_remat and fused and cell is not None
                and cell.fast_unroll is not None and isinstance(xs, (jax.Array, np.ndarray))
                and isinstance(params, Mapping))
    # Under shard_map, a carry made inside the map and replicated params must vary like xs.
    params, carry = _scan.match_varying((params, carry), params, carry, xs, lengths, resets)
    extra = {"return_carries": True} if return_carries else {}
    if resets is not None:
        extra["resets"] = resets

    if return_carries and (parallel or use_fast):
        path = cell.parallel_unroll if parallel else cell.fast_unroll
        if not _accepts(path, "return_carries"):
            name = "parallel_unroll" if parallel else "fast_unroll"
            raise ValueError(f"return_carries=True: this cell's {name} does not return the "
                             f"carries; pass {'parallel' if parallel else 'fused'}=False")
    if parallel:
        out = cell.parallel_unroll(params, carry, xs, lengths=lengths, reverse=reverse,
                                   unroll=unroll, **extra)
    elif use_remat:
        out = checkpointed_unroll(step, params, carry, xs,
                                  segment=None if remat is True else remat, lengths=lengths,
                                  resets=resets, reverse=reverse, unroll=unroll, fused=fused,
                                  return_carries=return_carries)
    elif use_fast:
        # FrozenDict/OrderedDict params are read into a plain dict (the fast paths build
        # their gradient as a dict); the gradient still reaches the caller's container.
        out = cell.fast_unroll(dict(params), carry, jnp.asarray(xs), lengths=lengths,
                               reverse=reverse, unroll=unroll, **extra)
    else:
        out = _scan.masked_scan(step_fn, params, carry, xs, lengths=lengths, resets=resets,
                                reverse=reverse, unroll=unroll, return_carries=return_carries)

    if not time_major:
        out = (out[0],) + tuple(_scan.swap_time_batch(o) for o in out[1:])
    return out


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True  # cannot tell: let the call decide
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


# bidirectional/stacked take an ``unroll`` keyword that shadows the function.
_unroll = unroll

_MERGES = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: 0.5 * (a + b),
}


def bidirectional(step_fw: Step, step_bw: Step, params, carry, xs, *, lengths=None,
                  resets=None, merge: str | Callable = "concat", unroll: int = 1,
                  time_major: bool = True, fused: bool = True, remat=None):
    """A forward and a reverse run over ``xs``, outputs merged per step.

    ``params`` and ``carry`` are pairs ``(forward, backward)``. The backward run
    respects ``lengths``: it starts at each sequence's last valid step.
    ``merge`` is ``"concat"`` (default), ``"sum"``, ``"mean"`` or a function
    ``(y_fw, y_bw) -> y``. ``resets`` (sequence starts, as in :func:`unroll`) apply to
    both directions: each packed sequence is read forwards and backwards on its own.
    ``unroll``, ``time_major``, ``fused`` and ``remat`` are passed to :func:`unroll`.
    Returns ``((carry_fw, carry_bw), ys)``.
    """
    if callable(merge):
        merge_fn = merge
    elif merge in _MERGES:
        merge_fn = _MERGES[merge]
    else:
        raise ValueError(f"merge must be one of {sorted(_MERGES)} or a callable, got {merge!r}")
    if len(params) != 2 or len(carry) != 2:
        raise ValueError("params and carry must be pairs (forward, backward)")
    kw = dict(lengths=lengths, resets=resets, unroll=unroll, time_major=time_major,
              fused=fused, remat=remat)
    c_fw, y_fw = _unroll(step_fw, params[0], carry[0], xs, **kw)
    c_bw, y_bw = _unroll(step_bw, params[1], carry[1], xs, reverse=True, **kw)
    return (c_fw, c_bw), jax.tree_util.tree_map(merge_fn, y_fw, y_bw)


# stacked takes a ``bidirectional`` keyword that shadows the function.
_bidirectional = bidirectional


def stacked(steps: Sequence, params: Sequence, carries: Sequence, xs, *, lengths=None,
            resets=None, dropout_rate: float = 0.0, key=None, skip: bool = False,
            bidirectional: bool = False, merge: str | Callable = "concat",
            unroll: int = 1, time_major: bool = True, fused: bool = True, remat=None):
    """Deep RNN run layer by layer: each layer scans the whole sequence of the one below.

    Args:
      steps, params, carries: one per layer, bottom first.
      dropout_rate: dropout on each layer's outputs before they feed the next layer
        (not on the top layer's output, nor through time; Zaremba et al. 2014). Needs
        ``key`` when > 0; pass ``dropout_rate=0`` at evaluation. Layer ``l``'s mask is
        drawn from ``jax.random.fold_in(key, l)``: the same key gives the same masks.
      skip: residual connections: a layer whose input and output widths agree adds
        its input to its output.
      bidirectional: every layer is a :func:`bidirectional` pair, as PyTorch's
        ``nn.LSTM(num_layers=L, bidirectional=True, dropout=p)``: ``steps[l]`` is a pair
        ``(step_fw, step_bw)`` (or one step used for both directions), ``params[l]`` and
        ``carries[l]`` are pairs ``(forward, backward)``, and layer ``l + 1`` reads the
        merged (by default concatenated, ``[..., H_fw + H_bw]``) outputs of layer ``l``,
        after dropout. The backward runs respect ``lengths``: each starts at its
        sequence's last valid step, so padding never leaks into it.
      merge: how a bidirectional layer merges its two directions (see
        :func:`bidirectional`); ignored otherwise.
      lengths, resets, unroll, time_major, fused, remat: passed to every layer's
        :func:`unroll`.

    Returns ``(final_carries, ys)``: a tuple of per-layer final carries (pairs
    ``(carry_fw, carry_bw)`` when ``bidirectional``) and the top layer's outputs.
    """
    if not len(steps) == len(params) == len(carries) >= 1:
        raise ValueError(f"steps, params and carries need one entry per layer, got "
                         f"{len(steps)}, {len(params)} and {len(carries)}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    if dropout_rate > 0.0 and key is None:
        raise ValueError("dropout_rate > 0 needs a PRNG key: pass key=...")
    if bidirectional:
        for layer, (p, c) in enumerate(zip(params, carries)):
            if not (isinstance(p, (tuple, list)) and len(p) == 2
                    and isinstance(c, (tuple, list)) and len(c) == 2):
                raise ValueError(f"bidirectional=True: params[{layer}] and carries[{layer}] must "
                                 "be pairs (forward, backward)")
    kw = dict(lengths=lengths, resets=resets, unroll=unroll, time_major=time_major,
              fused=fused, remat=remat)
    finals = []
    for layer, (step, p, c) in enumerate(zip(steps, params, carries)):
        if bidirectional:
            # A Cell is a NamedTuple: test for it before taking a tuple for a pair.
            is_pair = isinstance(step, (tuple, list)) and not isinstance(step, Cell)
            fw, bw = step if is_pair else (step, step)
            c, ys = _bidirectional(fw, bw, p, c, xs, merge=merge, **kw)
        else:
            c, ys = _unroll(step, p, c, xs, **kw)
        finals.append(c)
        if skip and ys.shape == xs.shape:
            ys = ys + xs
        if dropout_rate > 0.0 and layer < len(steps) - 1:
            keep = jax.random.bernoulli(jax.random.fold_in(key, layer), 1.0 - dropout_rate, ys.shape)
            # where, not keep * ys: a dropped unit stays exactly 0 whatever ys holds.
            ys = jnp.where(keep, ys / (1.0 - dropout_rate), jnp.zeros_like(ys))
        xs = ys
    return tuple(finals), xs
