"""Private plumbing shared by the sequence engine (ops, remat, fused) and the diagnostics.

Input checks, the length mask, the valid-part reversal, the reset flags, the
shard_map type matching, and the ONE masked scan body (:func:`masked_step`) that every
plain path scans. Nothing here is public API; ``rnn_jax.unroll`` documents the
semantics.

Padding never reaches the arithmetic: a padded step's input is replaced by zeros
*before* the step runs, and its outputs are chosen with ``where`` rather than
multiplied by a 0/1 mask. ``0 * nan`` is ``nan``, so a multiplied mask lets a NaN or
Inf in the padding into the outputs and, through the backward pass, into every weight
gradient; a ``where`` on zeroed inputs lets nothing through (issue 17).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# ------------------------------------------------------------------ shapes and checks


def num_steps(xs) -> int:
    """T, the shared leading length of every leaf of ``xs``."""
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise ValueError("xs must hold at least one array")
    if any(jnp.ndim(l) < 1 for l in leaves):
        raise ValueError("xs must have a leading time axis [T, ...]; got a scalar leaf")
    lengths = {l.shape[0] for l in leaves}
    if len(lengths) != 1:
        raise ValueError(f"every leaf of xs must share the time length, got {sorted(lengths)}")
    return lengths.pop()


def swap_time_batch(tree):
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), tree)


def flip_time(tree):
    return jax.tree_util.tree_map(lambda a: jnp.flip(a, 0), tree)


def check_carry(step, params, carry, xs) -> None:
    """Raise a ValueError when ``step`` would change the carry's structure, shape or dtype."""
    # A shape struct rather than xs[0], so that a zero-length sequence is valid too.
    x0 = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    out = jax.eval_shape(step, params, carry, x0)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("step must return a pair (carry, y)")
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), out[0])
    want = jax.tree_util.tree_map(lambda a: (tuple(jnp.shape(a)), jnp.result_type(a)), carry)
    where = _list_for_tuple(carry, out[0], "carry")
    if where is not None:
        path, kind = where
        raise TypeError(
            f"{path} is a list, but step returns {kind} there: pass it as a tuple "
            f"(e.g. tuple({path}), or use cell.initial_carry). jax.lax.scan needs the carry "
            "to come back as the same pytree, and a list and a tuple are different pytrees")
    if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(want) or got != want:
        raise ValueError(
            "carry does not match what step returns: passed "
            f"{want}, step returns {got} (shape, dtype per leaf)")


def _list_for_tuple(passed, returned, path: str):
    """``(path, kind)`` of the first list in ``passed`` where ``returned`` has a tuple.

    ``kind`` names what step returns there (``"a tuple"``, or a NamedTuple's class).
    None when there is no such place.
    """
    if isinstance(passed, list) and isinstance(returned, tuple) and len(passed) == len(returned):
        name = type(returned).__name__
        return path, ("a tuple" if type(returned) is tuple else f"a {name} (a NamedTuple)")
    if isinstance(passed, (list, tuple)) and isinstance(returned, (list, tuple)):
        pairs = [(f"{path}[{i}]", a, b) for i, (a, b) in enumerate(zip(passed, returned))]
    elif isinstance(passed, dict) and isinstance(returned, dict):
        pairs = [(f"{path}[{k!r}]", passed[k], returned[k]) for k in passed if k in returned]
    else:
        return None
    for sub, a, b in pairs:
        found = _list_for_tuple(a, b, sub)
        if found is not None:
            return found
    return None


def check_lengths(lengths, carry, T: int):
    """Validate ``lengths`` against the carry's batch shape; returns it clipped to [0, T]."""
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
        if lo < 0 or hi > T:
            raise ValueError(f"lengths must lie in [0, T={T}], got values in [{lo}, {hi}]")
    # Under jit the values cannot be inspected; clipping keeps out-of-range values defined.
    return jnp.clip(lengths, 0, T)


def batch_shape_of(xs) -> tuple[int, ...]:
    """The batch shape of time-major ``xs``: its first leaf without the time and feature axes."""
    leaf = jax.tree_util.tree_leaves(xs)[0]
    return tuple(leaf.shape[1:-1])


def check_resets(resets, carry, xs, T: int):
    """Validate ``resets`` (bool ``[T, *batch]``, or ``[T, *prefix]`` of the batch shape)."""
    expected = (T,) + batch_shape_of(xs)
    shape = tuple(jnp.shape(resets))
    dtype = jnp.result_type(resets)
    if dtype != jnp.bool_:
        raise TypeError(f"resets must be a boolean array of shape [T, *batch] = {expected}, "
                        f"got dtype {dtype}")
    ok = len(shape) >= 1 and shape[0] == T and all(
        tuple(jnp.shape(leaf)[:len(shape) - 1]) == shape[1:]
        for leaf in jax.tree_util.tree_leaves(carry))
    if not ok:
        raise ValueError(f"resets must have shape [T, *batch] = {expected} (T, then the "
                         f"carry's batch shape or a prefix of it), got {shape}")
    return jnp.asarray(resets)


# ------------------------------------------------------------------ masks and reversal


def where_tree(mask, new, old):
    """Per-leaf ``where`` with ``mask`` (a batch-shape prefix) broadcast over trailing axes."""
    def pick(n, o):
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(n) - mask.ndim))
        return jnp.where(m, n, o)
    return jax.tree_util.tree_map(pick, new, old)


def zeros_where_not(mask, tree):
    """``tree`` where ``mask`` holds, exact zeros elsewhere (never ``0 * x``)."""
    return where_tree(mask, tree, jax.tree_util.tree_map(jnp.zeros_like, tree))


def valid_mask(lengths, T: int):
    """``[T, *lengths.shape]`` bool: step t of sequence b is valid iff ``t < lengths[b]``."""
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    return t < lengths[None]


def reverse_valid(tree, lengths, T: int):
    """Reverse the first ``lengths`` steps of each sequence, leaving the padding in place.

    ``t -> L-1-t`` for ``t < L`` and ``t -> t`` beyond, which is its own inverse, so
    the same call maps outputs back to the original order.
    """
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    L = lengths[None]
    idx = jnp.where(t < L, L - 1 - t, t)  # [T, *batch]

    def gather(a):
        i = idx.reshape(idx.shape + (1,) * (a.ndim - idx.ndim))
        return jnp.take_along_axis(a, jnp.broadcast_to(i, a.shape), axis=0)

    return jax.tree_util.tree_map(gather, tree)


def resets_for_reverse(resets):
    """Reset flags for a run over reversed time.

    ``resets[t]`` marks that a sequence *starts* at step t of ``xs``. Run backwards, that
    sequence's predecessor ends at ``t - 1``, which the reversed run meets first, so the
    carry must return to the initial carry before step ``t - 1``: shift the flags one
    step earlier. The last step gets False (with ``lengths``, the last valid step is the
    reversed run's first, where the carry is the initial one anyway).
    """
    return jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])], axis=0)


def to_processing_order(tree, resets, lengths, reverse: bool, T: int):
    """``(tree, resets)`` in the order the scan visits the steps (``reverse`` applied)."""
    if not reverse:
        return tree, resets
    if resets is not None:
        resets = resets_for_reverse(resets)
    if lengths is None:
        return flip_time(tree), None if resets is None else jnp.flip(resets, 0)
    return (reverse_valid(tree, lengths, T),
            None if resets is None else reverse_valid(resets, lengths, T))


def from_processing_order(tree, lengths, reverse: bool, T: int):
    """Inverse of :func:`to_processing_order` for outputs aligned with the steps."""
    if not reverse:
        return tree
    return flip_time(tree) if lengths is None else reverse_valid(tree, lengths, T)


# ------------------------------------------------------------------ shard_map


def _vma(x) -> frozenset:
    """The mesh axes ``x`` varies over inside ``shard_map`` (empty outside)."""
    try:
        aval = jax.typeof(x)
    except TypeError:
        return frozenset()
    # JAX 0.10 keeps the varying axes in aval.manual_axis_type.varying; earlier
    # releases had aval.vma.
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return frozenset(getattr(mat, "varying", frozenset()))
    return frozenset(getattr(aval, "vma", frozenset()))


def match_varying(tree, *refs):
    """Cast ``tree``'s leaves to vary over every mesh axis that any leaf of ``refs`` varies over.

    Inside ``jax.shard_map`` (default ``check_vma=True``) a scan's carry must keep its
    type: a carry created inside the map (``cell.initial_carry``) or replicated params
    are invariant, while anything computed from the sharded ``xs`` varies over the
    mesh axis, so the scan body would change the carry's type. Casting up front keeps it
    fixed; the cast's transpose sums the gradient over the axis, as a replicated
    parameter's gradient must be. Outside ``shard_map`` this does nothing.
    """
    axes = frozenset()
    for leaf in jax.tree_util.tree_leaves(refs):
        axes |= _vma(leaf)
    if not axes:
        return tree

    def cast(leaf):
        missing = tuple(sorted(axes - _vma(leaf)))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree_util.tree_map(cast, tree)


# ------------------------------------------------------------------ the masked scan body


def masked_step(step, params, reset_carry, *, masked: bool, with_resets: bool,
                return_carries: bool = False):
    """The one scan body for the plain paths: ``(carry, (t, valid, reset, x)) -> (carry, out)``.

    ``valid`` (bool, a batch-shape prefix; ignored when not ``masked``) marks real steps:
    at a padded step the input is zeroed before ``step`` sees it, the carry is held and
    ``y`` (and the carry output) is exact zeros. ``reset`` (used when ``with_resets``)
    sends the carry back to ``reset_carry`` before the step; ``where`` cuts the gradient
    across the reset. ``out`` is ``y``, or ``(y, carry_t)`` when ``return_carries``.
    """
    def body(c, inp):
        valid, reset, x = inp
        if with_resets:
            r = reset if not masked else reset & valid
            c = where_tree(r, reset_carry, c)
        if masked:
            x = zeros_where_not(valid, x)
        new_c, y = step(params, c, x)
        if masked:
            new_c = where_tree(valid, new_c, c)
            y = zeros_where_not(valid, y)
        if not return_carries:
            return new_c, y
        return new_c, (y, new_c if not masked else zeros_where_not(valid, new_c))
    return body


def masked_scan(step, params, carry, xs, *, lengths=None, resets=None, reverse: bool = False,
                unroll: int = 1, return_carries: bool = False, reset_carry=None):
    """The plain path: ``jax.lax.scan`` over :func:`masked_step`, with ``reverse`` applied.

    ``lengths`` and ``resets`` must be checked already (:func:`check_lengths`,
    :func:`check_resets`). ``reset_carry`` is the carry a reset returns to (default
    ``carry``). Returns ``(final_carry, ys)`` or ``(final_carry, ys, carries)``.
    """
    T = num_steps(xs)
    if lengths is None and resets is None:
        # Nothing to mask: the bare scan (XLA sees exactly the user's step).
        body = lambda c, x: step(params, c, x)
        if not return_carries:
            return jax.lax.scan(body, carry, xs, reverse=reverse, unroll=unroll)

        def body_c(c, x):
            c, y = step(params, c, x)
            return c, (y, c)
        carry, (ys, cs) = jax.lax.scan(body_c, carry, xs, reverse=reverse, unroll=unroll)
        return carry, ys, cs

    xs, resets = to_processing_order(xs, resets, lengths, reverse, T)
    valid = valid_mask(lengths, T) if lengths is not None else None
    body = masked_step(step, params, carry if reset_carry is None else reset_carry,
                       masked=lengths is not None, with_resets=resets is not None,
                       return_carries=return_carries)
    carry, out = jax.lax.scan(body, carry, (valid, resets, xs), unroll=unroll)
    out = from_processing_order(out, lengths, reverse, T)
    if not return_carries:
        return carry, out
    return carry, out[0], out[1]
