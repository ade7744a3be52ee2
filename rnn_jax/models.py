"""A sequence model from a config: one recurrent cell, scanned over time, plus a linear readout.

``make_model(config)`` reads

* ``config.cell``: a name in :data:`CELLS` (``rnn_jax.cells``): ``"rnn"``, ``"lstm"``,
  ``"gru"``, or the modern ``"lru"``, ``"min_gru"``, ``"min_lstm"``, ``"slstm"``,
  ``"indrnn"``;
* ``config.hidden_size``: H;
* ``config.cell_kwargs``: keyword arguments of that cell's constructor (e.g.
  ``forget_bias``, ``chrono_t_max`` for the LSTM; ``activation``, ``recurrent_init``,
  ``recurrent_scale`` for the RNN; ``reset_after`` for the GRU; ``r_min``, ``r_max``,
  ``state_size`` for the LRU; ``num_heads``, ``forget_gate`` for the sLSTM;
  ``activation``, ``recurrent_max`` for the IndRNN);
* ``config.compute_dtype`` (optional, default ``"float32"``): ``"bfloat16"`` or
  ``"float16"`` run the cell's matmuls in that dtype with float32 accumulation, float32
  parameters and carry (:func:`rnn_jax.cells.with_compute_dtype`);
* ``config.task.name`` and ``config.task.kwargs``: the task (``rnn_jax.tasks.get``),
  which fixes the input width, output width and whether the model predicts once per
  sequence (``output_mode == "last"``) or at every step (``"all"``).

Parameters are ``{"cell": cell_params, "readout": {"w": [H, out], "b": [out]}}``.
"""

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax import cells as cells_lib
from rnn_jax import layers
from rnn_jax import tasks as tasks_lib
from rnn_jax.cells import Cell
from rnn_jax.ops import unroll
from rnn_jax.tasks.base import Task

CELLS = {"rnn": cells_lib.rnn, "lstm": cells_lib.lstm, "gru": cells_lib.gru,
         "lru": cells_lib.lru, "min_gru": cells_lib.min_gru, "min_lstm": cells_lib.min_lstm,
         "slstm": cells_lib.slstm, "indrnn": cells_lib.indrnn}


def num_params(tree) -> int:
    """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct``s)."""
    return int(sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(tree)))


class Model(NamedTuple):
    """A recurrent model as pure functions.

    Attributes:
      init: ``(key) -> params``.
      apply: ``(params, batch) -> outputs``; ``batch["inputs"]: [B, T, I]`` and
        ``batch["lengths"]: [B]``; outputs ``[B, out]`` for ``output_mode == "last"``,
        ``[B, T, out]`` for ``"all"`` (zero rows beyond each sequence's length, plus
        the readout bias).
      cell: the :class:`~rnn_jax.cells.Cell`.
      task: the :class:`~rnn_jax.tasks.base.Task` the model is built for.
    """

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, Mapping[str, jax.Array]], jax.Array]
    cell: Cell
    task: Task


def _as_dict(maybe_config) -> dict:
    if maybe_config is None:
        return {}
    if hasattr(maybe_config, "to_dict"):
        return maybe_config.to_dict()
    return dict(maybe_config)


# config.compute_dtype names: the matmul operand dtype (rnn_jax.cells.with_compute_dtype).
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def make_cell(config) -> Cell:
    """``rnn_jax.cells.<config.cell>(config.hidden_size, **config.cell_kwargs)``, with its
    matmuls in ``config.compute_dtype`` when that is given and not ``"float32"``."""
    name = config.cell
    if name not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {name!r}")
    compute = config.get("compute_dtype", "float32")
    if compute not in COMPUTE_DTYPES:
        raise ValueError(f"config.compute_dtype must be one of {list(COMPUTE_DTYPES)}, "
                         f"got {compute!r}")
    kwargs = _as_dict(config.get("cell_kwargs", None))
    try:
        cell = CELLS[name](config.hidden_size, **kwargs)
    except TypeError as e:
        raise TypeError(f"cell_kwargs {sorted(kwargs)} do not fit cell {name!r}: {e}") from e
    if COMPUTE_DTYPES[compute] is None:
        return cell
    return cells_lib.with_compute_dtype(cell, COMPUTE_DTYPES[compute])


def make_task(config) -> Task:
    """``rnn_jax.tasks.get(config.task.name, **config.task.kwargs)``."""
    kwargs = _as_dict(config.task.get("kwargs", None))
    try:
        return tasks_lib.get(config.task.name, **kwargs)
    except TypeError as e:
        raise TypeError(f"task.kwargs {sorted(kwargs)} do not fit task "
                        f"{config.task.name!r}: {e}") from e


def last_output(ys, lengths):
    """``ys[b, lengths[b] - 1]`` for batch-major ``ys: [B, T, H]`` (zeros where
    ``lengths[b] == 0``): each sequence's output at its last valid step.

    The readout of ``output_mode == "last"`` reads this rather than the final carry, since
    a cell's output need not be a leaf of its carry (the LRU's ``y = Re(C x) + D u``; the
    sLSTM's carry ``(h, c, n, m)``). For the RNN, LSTM and GRU, ``y_t = h_t`` and the two
    agree exactly.
    """
    idx = jnp.clip(lengths - 1, 0, ys.shape[1] - 1).reshape(-1, 1, 1)
    y = jnp.take_along_axis(ys, jnp.broadcast_to(idx, (ys.shape[0], 1, ys.shape[2])), axis=1)[:, 0]
    return jnp.where((lengths > 0).reshape(-1, 1), y, 0.0)


def make_model(config) -> Model:
    """Build the :class:`Model` described by ``config`` (see the module docstring)."""
    cell = make_cell(config)
    task = make_task(config)
    if task.output_mode not in ("last", "all"):
        raise ValueError(f"task {task.name!r} has output_mode {task.output_mode!r}; "
                         "expected 'last' or 'all'")
    H, out = cell.hidden_size, task.output_size

    def init(key):
        k_cell, k_out = jax.random.split(key)
        return {"cell": cell.init(k_cell, task.input_size),
                "readout": layers.init_dense(k_out, H, out)}

    def apply(params, batch):
        inputs, lengths = batch["inputs"], batch["lengths"]
        if inputs.ndim != 3 or inputs.shape[-1] != task.input_size:
            raise ValueError(f"batch['inputs'] must have shape [B, T, {task.input_size}], "
                             f"got {tuple(inputs.shape)}")
        carry0 = cell.initial_carry((inputs.shape[0],))
        _, ys = unroll(cell, params["cell"], carry0, inputs, lengths=lengths,
                       time_major=False)
        w, b = params["readout"]["w"], params["readout"]["b"]
        if task.output_mode == "last":
            h = last_output(ys, lengths)  # [B, H], each sequence's output at its last valid step
            return h @ w + b.reshape(1, out)
        return jnp.einsum("bth,ho->bto", ys, w) + b.reshape(1, 1, out)

    return Model(init, apply, cell, task)
