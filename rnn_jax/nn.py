"""flax.linen modules over the pure cells and sequence ops.

These hold no recurrent math of their own: each module registers a cell's
``init`` as a flax parameter and calls :func:`rnn_jax.unroll`,
:func:`rnn_jax.bidirectional` or :func:`rnn_jax.stacked`. Calling those functions
directly with ``variables["params"]`` gives the same result, which is how the
modules are tested.

Inputs are batch-major by default (``[B, T, features]``, flax's convention);
pass ``time_major=True`` for ``[T, *batch, features]``, which also covers a
single unbatched sequence ``[T, features]``.

Example::

    model = RNN(rnn_jax.cells.lstm(64))
    variables = model.init(key, xs)               # params["cell"] = cell.init(key, I)
    ys = model.apply(variables, xs, lengths=lengths)  # [B, T, 64]
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax

from rnn_jax import ops
from rnn_jax.cells import Cell


def _batch_shape(xs, time_major: bool) -> tuple[int, ...]:
    """The carry's batch shape: xs without its time and feature axes."""
    leaf = jax.tree_util.tree_leaves(xs)[0]
    if time_major:
        if leaf.ndim < 2:
            raise ValueError(f"time-major xs must be [T, *batch, features], got shape {leaf.shape}")
        return tuple(leaf.shape[1:-1])
    if leaf.ndim < 3:
        raise ValueError(
            f"batch-major xs must be [B, T, *batch, features], got shape {leaf.shape}; "
            "for one unbatched sequence [T, features] pass time_major=True")
    return (leaf.shape[0],) + tuple(leaf.shape[2:-1])


def _input_size(xs) -> int:
    return jax.tree_util.tree_leaves(xs)[0].shape[-1]


class RNN(nn.Module):
    """One recurrent layer: ``cell`` scanned over time.

    Attributes:
      cell: any :class:`rnn_jax.Cell`. Its params live under the name ``"cell"``.
      unroll: passed to ``jax.lax.scan``.
    """

    cell: Cell
    unroll: int = 1

    @nn.compact
    def __call__(self, xs, *, lengths=None, initial_carry=None, reverse: bool = False,
                 time_major: bool = False, return_carry: bool = False):
        """Args:
          xs: ``[B, T, I]`` (or ``[T, *batch, I]`` with ``time_major=True``).
          lengths: optional integer ``[B]``; see :func:`rnn_jax.unroll`.
          initial_carry: defaults to ``cell.initial_carry(batch_shape)`` (zeros).
          reverse: run from each sequence's last valid step back to the first.
          return_carry: also return the final carry.

        Returns ``ys`` (``[B, T, H]``), or ``(final_carry, ys)`` if ``return_carry``.
        """
        params = self.param("cell", lambda key: self.cell.init(key, _input_size(xs)))
        if initial_carry is None:
            initial_carry = self.cell.initial_carry(_batch_shape(xs, time_major))
        carry, ys = ops.unroll(self.cell, params, initial_carry, xs, lengths=lengths,
                               reverse=reverse, unroll=self.unroll, time_major=time_major)
        return (carry, ys) if return_carry else ys


class Bidirectional(nn.Module):
    """A forward and a backward layer with outputs merged per step.

    Attributes:
      cell_fw, cell_bw: cells of the two directions (params ``"cell_fw"``, ``"cell_bw"``).
      merge: ``"concat"``, ``"sum"``, ``"mean"`` or ``(y_fw, y_bw) -> y``.
      unroll: passed to ``jax.lax.scan``.
    """

    cell_fw: Cell
    cell_bw: Cell
    merge: str | Callable = "concat"
    unroll: int = 1

    @nn.compact
    def __call__(self, xs, *, lengths=None, initial_carry=None, time_major: bool = False,
                 return_carry: bool = False):
        """``initial_carry`` is a pair ``(forward, backward)``; the backward run starts
        at each sequence's last valid step. Returns ``ys`` or ``((c_fw, c_bw), ys)``."""
        size = _input_size(xs)
        p_fw = self.param("cell_fw", lambda key: self.cell_fw.init(key, size))
        p_bw = self.param("cell_bw", lambda key: self.cell_bw.init(key, size))
        if initial_carry is None:
            batch = _batch_shape(xs, time_major)
            initial_carry = (self.cell_fw.initial_carry(batch), self.cell_bw.initial_carry(batch))
        carry, ys = ops.bidirectional(self.cell_fw, self.cell_bw, (p_fw, p_bw),
                                      initial_carry, xs, lengths=lengths, merge=self.merge,
                                      unroll=self.unroll, time_major=time_major)
        return (carry, ys) if return_carry else ys


class Stacked(nn.Module):
    """Deep RNN run layer by layer, with dropout between layers (Zaremba et al. 2014,
    arXiv 1409.2329) and optional residual connections.

    Attributes:
      cells: one cell per layer, bottom first (params ``"cell_0"``, ``"cell_1"``, ...).
      dropout_rate: on each layer's outputs except the top one's. Active only when
        ``deterministic`` is False; it then draws from the ``"dropout"`` rng stream.
      skip: a layer whose input and output widths agree adds its input to its output.
      deterministic: default for the call argument of the same name, as in
        ``flax.linen.Dropout``.
      unroll: passed to ``jax.lax.scan``.
    """

    cells: Sequence[Cell]
    dropout_rate: float = 0.0
    skip: bool = False
    deterministic: bool | None = None
    unroll: int = 1

    @nn.compact
    def __call__(self, xs, *, lengths=None, initial_carry=None, time_major: bool = False,
                 deterministic: bool | None = None, return_carry: bool = False):
        """``initial_carry``: one carry per layer (default zeros). Returns the top
        layer's ``ys`` or ``(final_carries, ys)``."""
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if not self.cells:
            raise ValueError("cells must hold at least one Cell")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        size = _input_size(xs)
        params = []
        for layer, cell in enumerate(self.cells):
            params.append(self.param(f"cell_{layer}", lambda key, c=cell, n=size: c.init(key, n)))
            size = cell.hidden_size
        if initial_carry is None:
            batch = _batch_shape(xs, time_major)
            initial_carry = tuple(c.initial_carry(batch) for c in self.cells)
        rate = 0.0 if deterministic else self.dropout_rate
        key = self.make_rng("dropout") if rate > 0.0 else None
        carries, ys = ops.stacked(list(self.cells), params, initial_carry, xs,
                                  lengths=lengths, dropout_rate=rate, key=key, skip=self.skip,
                                  unroll=self.unroll, time_major=time_major)
        return (carries, ys) if return_carry else ys

