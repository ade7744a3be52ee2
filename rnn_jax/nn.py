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

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnn_jax import ops
from rnn_jax.cells import Cell, with_compute_dtype


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


def _lengths(lengths, seq_lengths):
    """``seq_lengths`` is flax.linen.RNN's name for ``lengths``; accept either, not both."""
    if lengths is not None and seq_lengths is not None:
        raise ValueError("pass lengths or seq_lengths (flax's name for it), not both")
    return lengths if seq_lengths is None else seq_lengths


def _compute(cell: Cell, compute_dtype) -> Cell:
    """``cell`` with its matmuls in ``compute_dtype`` (None: unchanged); see
    :func:`rnn_jax.cells.with_compute_dtype`. Parameters keep the cell's own dtype."""
    return cell if compute_dtype is None else with_compute_dtype(cell, compute_dtype)


def _initial_carry(module, name, cell, batch, learned: bool):
    """Zeros, or a learned parameter ``name`` (the cell's unbatched initial carry, zeros at
    init) broadcast over the batch."""
    if not learned:
        return cell.initial_carry(batch)
    p = module.param(name, lambda key: cell.initial_carry(()))
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, batch + a.shape), p)


class RNN(nn.Module):
    """One recurrent layer: ``cell`` scanned over time.

    Attributes:
      cell: any :class:`rnn_jax.Cell`. Its params live under the name ``"cell"``.
      unroll: passed to ``jax.lax.scan``.
      fused, remat: passed to :func:`rnn_jax.unroll` (the cell's fast path; the
        checkpointed scan).
      learn_initial_carry: the initial carry is a parameter ``"initial_carry"`` (zeros at
        init, shape of ``cell.initial_carry(())``) broadcast over the batch; resets
        return to it too.
      compute_dtype: mixed precision: e.g. ``jnp.bfloat16`` runs the cell's matmuls on
        bfloat16 operands with float32 accumulation, while the parameters (the cell's
        ``dtype``), nonlinearities and carry stay float32
        (:func:`rnn_jax.cells.with_compute_dtype`; the fused path is then bypassed).
        ``None`` (default): everything in the cell's dtype.
    """

    cell: Cell
    unroll: int = 1
    fused: bool = True
    remat: bool | int | None = None
    learn_initial_carry: bool = False
    compute_dtype: Any = None

    @nn.compact
    def __call__(self, xs, *, lengths=None, seq_lengths=None, resets=None, initial_carry=None,
                 reverse: bool = False, time_major: bool = False, return_carry: bool = False):
        """Args:
          xs: ``[B, T, I]`` (or ``[T, *batch, I]`` with ``time_major=True``).
          lengths: optional integer ``[B]``; see :func:`rnn_jax.unroll`. ``seq_lengths``
            (flax.linen.RNN's name) is the same.
          resets: optional bool ``[B, T]`` (``[T, *batch]`` time-major): a new sequence
            starts there; see :func:`rnn_jax.unroll`.
          initial_carry: defaults to ``cell.initial_carry(batch_shape)`` (zeros), or the
            learned one.
          reverse: run from each sequence's last valid step back to the first.
          return_carry: also return the final carry.

        Returns ``ys`` (``[B, T, H]``), or ``(final_carry, ys)`` if ``return_carry``.
        """
        params = self.param("cell", lambda key: self.cell.init(key, _input_size(xs)))
        if initial_carry is None:
            initial_carry = _initial_carry(self, "initial_carry", self.cell,
                                           _batch_shape(xs, time_major), self.learn_initial_carry)
        cell = _compute(self.cell, self.compute_dtype)
        carry, ys = ops.unroll(cell, params, initial_carry, xs,
                               lengths=_lengths(lengths, seq_lengths), resets=resets,
                               reverse=reverse, unroll=self.unroll, time_major=time_major,
                               fused=self.fused, remat=self.remat)
        return (carry, ys) if return_carry else ys


class Bidirectional(nn.Module):
    """A forward and a backward layer with outputs merged per step.

    Attributes:
      cell_fw, cell_bw: cells of the two directions (params ``"cell_fw"``, ``"cell_bw"``).
      merge: ``"concat"``, ``"sum"``, ``"mean"`` or ``(y_fw, y_bw) -> y``.
      unroll, fused, remat, learn_initial_carry, compute_dtype: as in :class:`RNN`
        (learned carries ``"initial_carry_fw"``, ``"initial_carry_bw"``).
    """

    cell_fw: Cell
    cell_bw: Cell
    merge: str | Callable = "concat"
    unroll: int = 1
    fused: bool = True
    remat: bool | int | None = None
    learn_initial_carry: bool = False
    compute_dtype: Any = None

    @nn.compact
    def __call__(self, xs, *, lengths=None, seq_lengths=None, resets=None, initial_carry=None,
                 time_major: bool = False, return_carry: bool = False):
        """``initial_carry`` is a pair ``(forward, backward)``; the backward run starts
        at each sequence's last valid step. ``lengths``/``seq_lengths`` and ``resets`` as
        in :class:`RNN`. Returns ``ys`` or ``((c_fw, c_bw), ys)``."""
        size = _input_size(xs)
        p_fw = self.param("cell_fw", lambda key: self.cell_fw.init(key, size))
        p_bw = self.param("cell_bw", lambda key: self.cell_bw.init(key, size))
        if initial_carry is None:
            batch = _batch_shape(xs, time_major)
            learn = self.learn_initial_carry
            initial_carry = (_initial_carry(self, "initial_carry_fw", self.cell_fw, batch, learn),
                             _initial_carry(self, "initial_carry_bw", self.cell_bw, batch, learn))
        carry, ys = ops.bidirectional(_compute(self.cell_fw, self.compute_dtype),
                                      _compute(self.cell_bw, self.compute_dtype), (p_fw, p_bw),
                                      initial_carry, xs, lengths=_lengths(lengths, seq_lengths),
                                      resets=resets, merge=self.merge, unroll=self.unroll,
                                      time_major=time_major, fused=self.fused, remat=self.remat)
        return (carry, ys) if return_carry else ys


class Stacked(nn.Module):
    """Deep RNN run layer by layer, with dropout between layers (Zaremba et al. 2014,
    arXiv 1409.2329) and optional residual connections; with ``bidirectional=True``
    every layer runs both directions, as PyTorch's
    ``nn.LSTM(num_layers=L, bidirectional=True, dropout=p)``.

    Attributes:
      cells: one cell per layer, bottom first (params ``"cell_0"``, ``"cell_1"``, ...).
        With ``bidirectional``, each entry is a pair ``(cell_fw, cell_bw)`` or one cell
        used for both directions (own params each: ``"cell_0_fw"``, ``"cell_0_bw"``, ...).
      dropout_rate: on each layer's outputs except the top one's (with
        ``bidirectional``, on the merged outputs that feed the next layer). Active only
        when ``deterministic`` is False; it then draws from the ``"dropout"`` rng stream.
      skip: a layer whose input and output widths agree adds its input to its output.
      bidirectional, merge: see :func:`rnn_jax.stacked`; layer ``l + 1``'s input width
        is the merged width (``H_fw + H_bw`` for ``"concat"``).
      deterministic: default for the call argument of the same name, as in
        ``flax.linen.Dropout``.
      unroll, fused, remat, learn_initial_carry, compute_dtype: as in :class:`RNN`
        (learned carries ``"initial_carry_0"``, ... and ``"initial_carry_0_fw"``,
        ``"initial_carry_0_bw"``, ... when ``bidirectional``).
    """

    cells: Sequence
    dropout_rate: float = 0.0
    skip: bool = False
    bidirectional: bool = False
    merge: str | Callable = "concat"
    deterministic: bool | None = None
    unroll: int = 1
    fused: bool = True
    remat: bool | int | None = None
    learn_initial_carry: bool = False
    compute_dtype: Any = None

    @nn.compact
    def __call__(self, xs, *, lengths=None, seq_lengths=None, resets=None, initial_carry=None,
                 time_major: bool = False, deterministic: bool | None = None,
                 return_carry: bool = False):
        """``initial_carry``: one carry per layer (pairs when ``bidirectional``; default
        zeros, or learned). ``lengths``/``seq_lengths`` and ``resets`` as in :class:`RNN`.
        Returns the top layer's ``ys`` or ``(final_carries, ys)``."""
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if not self.cells:
            raise ValueError("cells must hold at least one Cell")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        layers = [self._layer_cells(k, c) for k, c in enumerate(self.cells)]
        widths = [self._output_size(pair) for pair in layers]  # checks merge before any init
        size = _input_size(xs)
        params = []
        for layer, pair in enumerate(layers):
            names = self._names()
            ps = tuple(self.param(f"cell_{layer}{sfx}", lambda key, c=c, n=size: c.init(key, n))
                       for sfx, c in zip(names, pair))
            params.append(ps if self.bidirectional else ps[0])
            size = widths[layer]
        if initial_carry is None:
            batch = _batch_shape(xs, time_major)
            initial_carry = []
            for layer, pair in enumerate(layers):
                cs = tuple(_initial_carry(self, f"initial_carry_{layer}{sfx}", c, batch,
                                          self.learn_initial_carry)
                           for sfx, c in zip(self._names(), pair))
                initial_carry.append(cs if self.bidirectional else cs[0])
        rate = 0.0 if deterministic else self.dropout_rate
        key = self.make_rng("dropout") if rate > 0.0 else None
        steps = [tuple(_compute(c, self.compute_dtype) for c in pair) for pair in layers]
        steps = [pair if self.bidirectional else pair[0] for pair in steps]
        carries, ys = ops.stacked(steps, params, tuple(initial_carry), xs,
                                  lengths=_lengths(lengths, seq_lengths), resets=resets,
                                  dropout_rate=rate, key=key, skip=self.skip,
                                  bidirectional=self.bidirectional, merge=self.merge,
                                  unroll=self.unroll, time_major=time_major, fused=self.fused,
                                  remat=self.remat)
        return (carries, ys) if return_carry else ys

    def _layer_cells(self, layer, entry) -> tuple:
        """The cells of one layer: ``(cell,)``, or ``(cell_fw, cell_bw)`` when bidirectional."""
        if self.bidirectional:
            # A Cell is a NamedTuple: test for it before taking a tuple for a pair.
            is_pair = isinstance(entry, (tuple, list)) and not isinstance(entry, Cell)
            pair = tuple(entry) if is_pair else (entry, entry)
        else:
            pair = (entry,)
        if len(pair) not in (1, 2) or not all(isinstance(c, Cell) for c in pair):
            want = "a Cell or a pair (cell_fw, cell_bw)" if self.bidirectional else "a Cell"
            raise ValueError(f"cells[{layer}] must be {want}, got {entry!r}")
        return pair

    def _names(self) -> tuple[str, ...]:
        return ("_fw", "_bw") if self.bidirectional else ("",)

    def _output_size(self, pair) -> int:
        """The width a layer hands up: its hidden size, or the merged width of its pair."""
        if not self.bidirectional:
            return pair[0].hidden_size
        merge = ops._MERGES.get(self.merge) if isinstance(self.merge, str) else self.merge
        if merge is None:
            raise ValueError(f"merge must be one of {sorted(ops._MERGES)} or a callable, "
                             f"got {self.merge!r}")
        y = jax.eval_shape(merge, *(jax.ShapeDtypeStruct((1, c.hidden_size), jnp.float32)
                                    for c in pair))
        return y.shape[-1]
