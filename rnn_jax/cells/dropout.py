"""Dropout for recurrent networks: variational (recurrent) dropout, zoneout and weight-drop.

Each takes an explicit PRNG key and is off when the key is ``None`` (evaluation):

- :func:`variational_dropout` (Gal & Ghahramani 2016, arXiv 1512.05287; Keras'
  ``dropout``/``recurrent_dropout``): one mask per sequence, the same at every step, on
  the inputs and on the hidden state the step reads. Build the cell per batch:
  ``cells.variational_dropout(cell, key=k, batch_shape=(B,), input_size=I, ...)``.
- :func:`zoneout` (Krueger et al. 2017, arXiv 1606.01305): at every step each unit keeps
  its previous value with probability ``rate``; at evaluation it keeps the expectation
  ``rate * old + (1 - rate) * new``. The per-step masks come from a key that travels in
  the carry, one per example, so ``lengths`` and ``resets`` treat it like any carry leaf.
- :func:`weight_drop` (DropConnect, Wan et al. 2013; AWD-LSTM, Merity et al. 2018): one
  mask on the recurrent weights ``w_h`` per batch: a pure function of the params.

All three scale kept values by ``1 / (1 - rate)`` where they drop (inverted dropout), so
evaluation needs no rescaling; zoneout does not drop, it mixes, and needs none either.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp

from rnn_jax.cells.base import Cell, batch_shape_tuple


def _check_rate(name: str, rate) -> float:
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {rate}")
    return rate


def _keep_mask(key, rate: float, shape, dtype):
    """0 or 1/(1 - rate) with probability rate / 1 - rate."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - rate), dtype), jnp.asarray(0.0, dtype))


def _first_leaf_replaced(carry, new_leaf):
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    return jax.tree_util.tree_unflatten(treedef, [new_leaf] + leaves[1:])


def variational_dropout(cell: Cell, *, key, batch_shape: Sequence[int] = (), input_size: int,
                        input_rate: float = 0.0, recurrent_rate: float = 0.0) -> Cell:
    """``cell`` with one dropout mask per sequence on its input and its recurrent state.

    Args:
      cell: any cell; the recurrent mask applies to the first leaf of its carry (``h`` for
        the built-in cells), as the step reads it. The carry passed on is not masked, so
        the outputs and the LSTM's cell state are untouched (Gal & Ghahramani 2016).
      key: a PRNG key, or ``None`` for evaluation (returns ``cell`` itself).
      batch_shape: the batch shape the cell will run with (an int ``B`` means ``(B,)``);
        the masks are ``[*batch_shape, input_size]`` and ``[*batch_shape, H]``.
      input_size: the width of ``x``.
      input_rate, recurrent_rate: drop probabilities in [0, 1).

    Returns:
      A Cell with the same params and carry; no fast path (``unroll`` runs the plain scan).
    """
    input_rate = _check_rate("input_rate", input_rate)
    recurrent_rate = _check_rate("recurrent_rate", recurrent_rate)
    if key is None or (input_rate == 0.0 and recurrent_rate == 0.0):
        return cell
    batch_shape = batch_shape_tuple(batch_shape)
    first = jax.tree_util.tree_leaves(cell.initial_carry(batch_shape))[0]
    k_x, k_h = jax.random.split(key)
    mask_x = _keep_mask(k_x, input_rate, batch_shape + (input_size,), first.dtype)
    mask_h = _keep_mask(k_h, recurrent_rate, first.shape, first.dtype)

    def step(params, carry, x):
        if x.shape != mask_x.shape:
            raise ValueError(f"x must have shape {mask_x.shape} (batch_shape + input_size given "
                             f"to variational_dropout), got {x.shape}")
        h = jax.tree_util.tree_leaves(carry)[0]
        return cell.step(params, _first_leaf_replaced(carry, h * mask_h), x * mask_x)

    return Cell(cell.init, cell.initial_carry, step, cell.hidden_size, cell.gates)


def zoneout(cell: Cell, *, key, rate: Any = 0.0) -> Cell:
    """``cell`` with zoneout on its carry (Krueger et al. 2017).

    Args:
      cell: any cell.
      key: a PRNG key for training, or ``None`` for evaluation, where every unit keeps
        the expectation ``rate * old + (1 - rate) * new`` (the paper's test-time rule).
      rate: the probability that a unit keeps its previous value: one float for every
        carry leaf, or one per leaf, e.g. ``(0.05, 0.5)`` for an LSTM's ``(h, c)``
        (the paper's character-level setting).

    The output ``y`` is the zoned-out carry leaf when the step outputs its carry's first
    leaf (``y = h``, every built-in gated cell), and the cell's own output otherwise.

    Returns:
      At evaluation a Cell with the same carry. In training a Cell whose carry is
      ``(cell_carry, keys)`` with ``keys: uint32 [*batch, 2]``, one raw key per example
      derived from ``key``; read the wrapped carry as ``carry[0]``.
    """
    leaves, treedef = jax.tree_util.tree_flatten(cell.initial_carry())
    if isinstance(rate, (int, float)):
        rates = [_check_rate("rate", rate)] * len(leaves)
    else:
        rates = [_check_rate("rate", r) for r in jax.tree_util.tree_leaves(rate)]
        if len(rates) != len(leaves):
            raise ValueError(f"rate must be a float or one per carry leaf ({len(leaves)} for this "
                             f"cell), got {rate!r}")

    def mix(old, new, weights):
        return jax.tree_util.tree_unflatten(treedef, [
            w * o + (1 - w) * n for o, n, w in zip(jax.tree_util.tree_leaves(old),
                                                   jax.tree_util.tree_leaves(new), weights)])

    if key is None:
        def eval_step(params, carry, x):
            new, y = cell.step(params, carry, x)
            mixed = mix(carry, new, rates)
            return mixed, _output(y, new, mixed)
        return Cell(cell.init, cell.initial_carry, eval_step, cell.hidden_size, cell.gates)

    raw = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key

    def initial_carry(batch_shape=()):
        batch_shape = batch_shape_tuple(batch_shape)
        n = 1
        for d in batch_shape:
            n *= d
        keys = jax.random.split(jax.random.wrap_key_data(raw), max(n, 1))[:n]
        return cell.initial_carry(batch_shape), jax.random.key_data(keys).reshape(batch_shape + (2,))

    def step(params, carry, x):
        inner, keys = carry
        new, y = cell.step(params, inner, x)
        batch = keys.shape[:-1]
        flat = jax.random.wrap_key_data(keys.reshape(-1, 2))
        split = jax.vmap(lambda k: jax.random.split(k, len(rates) + 1))(flat)  # [n, L+1]
        masks = []
        for i, (leaf, r) in enumerate(zip(jax.tree_util.tree_leaves(new), rates)):
            units = leaf.shape[len(batch):]
            keep_old = jax.vmap(lambda k: jax.random.bernoulli(k, r, units))(split[:, i + 1])
            masks.append(keep_old.reshape(batch + units).astype(leaf.dtype))
        mixed = mix(inner, new, masks)
        keys = jax.random.key_data(split[:, 0]).reshape(batch + (2,))
        return (mixed, keys), _output(y, new, mixed)

    return Cell(cell.init, initial_carry, step, cell.hidden_size, cell.gates)


def _output(y, new, mixed):
    # A step that outputs its carry's first leaf (every built-in gated cell: y = h) then
    # outputs the zoned-out value, as in the paper. The check is on object identity at
    # trace time, so a step whose output merely has h's shape keeps its own output.
    return jax.tree_util.tree_leaves(mixed)[0] if y is jax.tree_util.tree_leaves(new)[0] else y


def weight_drop(key, params: dict, rate: float, *, names: Sequence[str] = ("w_h",)) -> dict:
    """DropConnect on the recurrent weights: ``params`` with ``names`` masked once.

    Call it per batch in training with a fresh key and pass the result to ``unroll``; at
    evaluation use ``params`` as they are. Dropped entries are 0, kept ones scaled by
    ``1 / (1 - rate)``. Returns a new dict; ``params`` is not changed.
    """
    rate = _check_rate("rate", rate)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params have no {missing} to drop (they have {sorted(params)})")
    out = dict(params)
    for i, name in enumerate(names):
        w = params[name]
        out[name] = w * _keep_mask(jax.random.fold_in(key, i), rate, w.shape, w.dtype)
    return out


__all__ = ["variational_dropout", "weight_drop", "zoneout"]
