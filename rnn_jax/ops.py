"""Sequence operations: scan any step function over time.

Everything here takes a step function ``step(params, carry, x) -> (carry, y)``, a
built-in cell's or one a user writes, and composes with ``jax.jit``, ``jax.vmap`` and
``jax.grad``. Inputs are time-major (``xs: [T, ...]``) unless ``time_major=False``,
in which case they are batch-major (``[B, T, ...]``) and the outputs come back the
same way.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.cells.base import Cell

Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def _num_steps(xs) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise ValueError("xs must hold at least one array")
    if any(jnp.ndim(l) < 1 for l in leaves):
        raise ValueError("xs must have a leading time axis [T, ...]; got a scalar leaf")
    lengths = {l.shape[0] for l in leaves}
    if len(lengths) != 1:
        raise ValueError(f"every leaf of xs must share the time length, got {sorted(lengths)}")
    return lengths.pop()


def _swap_time_batch(tree):
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), tree)


def _check_carry(step, params, carry, xs) -> None:
    """Raise a ValueError when ``step`` would change the carry's structure, shape or dtype."""
    # A shape struct rather than xs[0], so that a zero-length sequence is valid too.
    x0 = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    out = jax.eval_shape(step, params, carry, x0)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("step must return a pair (carry, y)")
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), out[0])
    want = jax.tree_util.tree_map(lambda a: (tuple(jnp.shape(a)), jnp.result_type(a)), carry)
    if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(want) or got != want:
        raise ValueError(
            "carry does not match what step returns: passed "
            f"{want}, step returns {got} (shape, dtype per leaf)")


def _check_lengths(lengths, carry, num_steps: int):
    # Read concrete values before jnp.asarray: under jit, jnp.asarray turns even a
    # closed-over NumPy array into a tracer, which would skip the range check.
    concrete = None if isinstance(lengths, jax.core.Tracer) else np.asarray(lengths)
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be an integer array, got dtype {lengths.dtype}")
    for leaf in jax.tree_util.tree_leaves(carry):
        if tuple(jnp.shape(leaf)[:lengths.ndim]) != tuple(lengths.shape):
            raise ValueError(
                f"lengths must have the carry's batch shape, a prefix of every carry leaf's "
                f"shape; got lengths.shape={tuple(lengths.shape)} and a carry leaf of shape "
                f"{tuple(jnp.shape(leaf))} (for one sequence, lengths is a scalar)")
    if concrete is not None and concrete.size:
        lo, hi = int(np.min(concrete)), int(np.max(concrete))
        if lo < 0 or hi > num_steps:
            raise ValueError(f"lengths must lie in [0, T={num_steps}], got values in [{lo}, {hi}]")
    # Under jit the values cannot be inspected; clipping keeps out-of-range values defined.
    return jnp.clip(lengths, 0, num_steps)


def _where(mask, new, old):
    """Per-leaf ``where`` with ``mask`` (batch shape) broadcast over trailing axes."""
    def pick(n, o):
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(n) - mask.ndim))
        return jnp.where(m, n, o)
    return jax.tree_util.tree_map(pick, new, old)


def _reverse_valid(tree, lengths, num_steps: int):
    """Reverse the first ``lengths`` steps of each sequence, leaving the padding in place.

    ``t -> L-1-t`` for ``t < L`` and ``t -> t`` beyond, which is its own inverse, so
    the same call maps outputs back to the original order.
    """
    t = jnp.arange(num_steps).reshape((num_steps,) + (1,) * lengths.ndim)
    L = lengths[None]
    idx = jnp.where(t < L, L - 1 - t, t)  # [T, *batch]

    def gather(a):
        i = idx.reshape(idx.shape + (1,) * (a.ndim - idx.ndim))
        return jnp.take_along_axis(a, jnp.broadcast_to(i, a.shape), axis=0)

    return jax.tree_util.tree_map(gather, tree)


def unroll(step: Step, params, carry, xs, *, lengths=None, reverse: bool = False,
           unroll: int = 1, time_major: bool = True, fused: bool = True, remat=None):
    """Run ``step`` over the time axis of ``xs`` with ``jax.lax.scan``.

    Args:
      step: ``(params, carry, x_t) -> (carry, y_t)``.
      params: passed unchanged to every step.
      carry: initial carry, e.g. ``cell.initial_carry(batch_shape)``.
      xs: ``[T, *batch, features]`` (a pytree of such arrays is fine).
      lengths: optional integer array with the carry's batch shape, or a prefix of it
        (each length then covers the remaining batch axes); a scalar for one unbatched
        sequence: sequence ``b`` is valid for ``t < lengths[b]`` and is
        right-padded after. The final carry is then each sequence's carry after its
        own last valid step, and ``ys`` is zero at padded steps, so a padded batch
        gives exactly what running each sequence alone gives.
      reverse: run from the last valid step back to the first. With ``lengths`` only
        the valid part is reversed; ``ys`` stays aligned with ``xs``.
      unroll: passed to ``jax.lax.scan``.
      time_major: if False, ``xs`` and ``ys`` are ``[B, T, ...]``.
      fused: use the step's fast path when it has one (built-in LSTM without
        peepholes, GRU and RNN: ``step.fused_unroll``, see ``rnn_jax.fused``), a
        whole-sequence custom VJP with the same values and gradients to float
        rounding and a faster backward pass. ``False`` forces the plain
        ``jax.lax.scan`` over ``step``, which forward-mode AD (``jax.jvp``,
        ``jax.jacfwd``) needs.
      remat: checkpoint the scan for long sequences (``rnn_jax.remat``): ``True``
        for segments of ``ceil(sqrt(T))`` steps, an int for that segment length,
        ``None``/``False`` (default) to store every step.

    Returns:
      ``(final_carry, ys)`` with ``ys: [T, *batch, out]`` (or ``[B, T, ...]``).
    """
    if not time_major:
        xs = _swap_time_batch(xs)
    num_steps = _num_steps(xs)
    fast = step.fast_unroll if (fused and isinstance(step, Cell)) else None
    cell, step = step, (step.step if isinstance(step, Cell) else step)
    _check_carry(step, params, carry, xs)

    if remat is not None and remat is not False:
        from rnn_jax.remat import checkpointed_unroll  # rnn_jax.remat imports this module
        carry, ys = checkpointed_unroll(cell, params, carry, xs,
                                        segment=None if remat is True else remat,
                                        lengths=lengths, reverse=reverse, unroll=unroll,
                                        fused=fused)
    elif fast is not None and isinstance(xs, (jax.Array, np.ndarray)) and type(params) is dict:
        if lengths is not None:
            lengths = _check_lengths(lengths, carry, num_steps)
        carry, ys = fast(params, carry, jnp.asarray(xs), lengths=lengths, reverse=reverse,
                         unroll=unroll)
    elif lengths is None:
        carry, ys = jax.lax.scan(lambda c, x: step(params, c, x), carry, xs,
                                 reverse=reverse, unroll=unroll)
    else:
        lengths = _check_lengths(lengths, carry, num_steps)
        if reverse:
            xs = _reverse_valid(xs, lengths, num_steps)

        def body(c, tx):
            t, x = tx
            new_c, y = step(params, c, x)
            valid = t < lengths
            return _where(valid, new_c, c), _where(valid, y, jax.tree_util.tree_map(jnp.zeros_like, y))

        carry, ys = jax.lax.scan(body, carry, (jnp.arange(num_steps), xs), unroll=unroll)
        if reverse:
            ys = _reverse_valid(ys, lengths, num_steps)

    if not time_major:
        ys = _swap_time_batch(ys)
    return carry, ys


# bidirectional/stacked take an ``unroll`` keyword that shadows the function.
_unroll = unroll

_MERGES = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: 0.5 * (a + b),
}


def bidirectional(step_fw: Step, step_bw: Step, params, carry, xs, *, lengths=None,
                  merge: str | Callable = "concat", unroll: int = 1, time_major: bool = True,
                  fused: bool = True):
    """A forward and a reverse run over ``xs``, outputs merged per step.

    ``params`` and ``carry`` are pairs ``(forward, backward)``. The backward run
    respects ``lengths``: it starts at each sequence's last valid step.
    ``merge`` is ``"concat"`` (default), ``"sum"``, ``"mean"`` or a function
    ``(y_fw, y_bw) -> y``. ``unroll``, ``time_major`` and ``fused`` are passed to
    :func:`unroll`. Returns ``((carry_fw, carry_bw), ys)``.
    """
    if callable(merge):
        merge_fn = merge
    elif merge in _MERGES:
        merge_fn = _MERGES[merge]
    else:
        raise ValueError(f"merge must be one of {sorted(_MERGES)} or a callable, got {merge!r}")
    if len(params) != 2 or len(carry) != 2:
        raise ValueError("params and carry must be pairs (forward, backward)")
    kw = dict(lengths=lengths, unroll=unroll, time_major=time_major, fused=fused)
    c_fw, y_fw = _unroll(step_fw, params[0], carry[0], xs, **kw)
    c_bw, y_bw = _unroll(step_bw, params[1], carry[1], xs, reverse=True, **kw)
    return (c_fw, c_bw), jax.tree_util.tree_map(merge_fn, y_fw, y_bw)


def stacked(steps: Sequence[Step], params: Sequence, carries: Sequence, xs, *, lengths=None,
            dropout_rate: float = 0.0, key=None, skip: bool = False, unroll: int = 1,
            time_major: bool = True, fused: bool = True):
    """Deep RNN run layer by layer: each layer scans the whole sequence of the one below.

    Args:
      steps, params, carries: one per layer, bottom first.
      dropout_rate: dropout on each layer's outputs before they feed the next layer
        (not on the top layer's output, nor through time; Zaremba et al. 2014). Needs
        ``key`` when > 0; pass ``dropout_rate=0`` at evaluation.
      skip: residual connections: a layer whose input and output widths agree adds
        its input to its output.

    Returns ``(final_carries, ys)``: a tuple of per-layer final carries and the top
    layer's outputs.
    """
    if not len(steps) == len(params) == len(carries) >= 1:
        raise ValueError(f"steps, params and carries need one entry per layer, got "
                         f"{len(steps)}, {len(params)} and {len(carries)}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    if dropout_rate > 0.0 and key is None:
        raise ValueError("dropout_rate > 0 needs a PRNG key: pass key=...")
    finals = []
    for layer, (step, p, c) in enumerate(zip(steps, params, carries)):
        c, ys = _unroll(step, p, c, xs, lengths=lengths, unroll=unroll, time_major=time_major,
                        fused=fused)
        finals.append(c)
        if skip and ys.shape == xs.shape:
            ys = ys + xs
        if dropout_rate > 0.0 and layer < len(steps) - 1:
            keep = jax.random.bernoulli(jax.random.fold_in(key, layer), 1.0 - dropout_rate, ys.shape)
            ys = jnp.where(keep, ys / (1.0 - dropout_rate), 0.0)
        xs = ys
    return tuple(finals), xs
