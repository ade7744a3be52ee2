"""The cell contract, and the shape checks and initialisation helpers every cell shares.

A :class:`Cell` is a NamedTuple of pure functions, in the manner of optax's
``GradientTransformation``::

    params = cell.init(key, input_size)          # pytree of arrays
    carry = cell.initial_carry(batch_shape=())   # zeros
    carry, y = cell.step(params, carry, x)       # the body of jax.lax.scan

``step`` is written for one example (``x: [input_size]``); leading batch dimensions
work too as long as ``x`` and the carry share them (``x: [*batch, input_size]``,
``carry: [*batch, hidden]``), and ``jax.vmap`` works as usual.

A cell may also declare faster ways to run a whole sequence. They are fields of the
cell, never attributes of ``step``: a bare step function, wrapped or not, always runs
as the plain ``jax.lax.scan`` over exactly that function.
"""

import operator
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

Params = Any
Carry = Any
Step = Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]

# A whole-sequence path: ``(params, carry, xs, *, lengths=None, resets=None,
# reverse=False, unroll=1) -> (final_carry, ys)`` with time-major ``xs: [T, *batch, I]``.
# ``lengths`` (int, the carry's batch shape or a prefix of it) and ``resets`` (bool,
# ``[T, *batch]``) arrive already checked by ``rnn_jax.unroll``. It must return what the
# plain scan over ``step`` returns, to float rounding, values and gradients alike.
SequencePath = Callable[..., tuple[Carry, jax.Array]]


class Cell(NamedTuple):
    """A recurrent cell: pure ``init``, ``initial_carry`` and ``step``, plus metadata.

    Attributes:
      init: ``(key, input_size) -> params``.
      initial_carry: ``(batch_shape=()) -> carry`` of zeros.
      step: ``(params, carry, x) -> (carry, y)``.
      hidden_size: H, the width of ``y``.
      gates: names of the stacked gate blocks in ``w_x``/``w_h``/``b``, in order.
      fast_unroll: optional whole-sequence path with a hand-written backward pass
        (custom VJP), used by ``unroll(..., fused=True)``; see :data:`SequencePath`.
      parallel_unroll: optional whole-sequence path that evaluates the recurrence with
        ``jax.lax.associative_scan`` (cells whose carry enters linearly), used by
        ``unroll(..., parallel=True)``; same signature.
      retention: optional ``(params, carry, x) -> [*batch, N]``: the fraction of each
        memory unit's content that this step keeps (the LSTM's forget gate, the GRU's
        update gate, the LRU's ``|lambda|``). ``-1/log(retention)`` is the unit's
        memory timescale in steps; ``rnn_jax.diagnostics`` reads it.
    """

    init: Callable[..., Params]
    initial_carry: Callable[..., Carry]
    step: Step
    hidden_size: int
    gates: tuple[str, ...] = ()
    fast_unroll: Optional[SequencePath] = None
    parallel_unroll: Optional[SequencePath] = None
    retention: Optional[Callable[[Params, Carry, jax.Array], jax.Array]] = None


def step_of(cell_or_step) -> Step:
    """The step function of a :class:`Cell`, or the argument itself when it is a function."""
    return cell_or_step.step if isinstance(cell_or_step, Cell) else cell_or_step

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def check_size(name: str, value) -> int:
    # operator.index accepts NumPy integers (e.g. sizes read from an array's shape
    # arithmetic) but rejects floats; bools are ints to Python but never a size.
    try:
        size = operator.index(value)
    except TypeError:
        size = None
    if size is None or isinstance(value, bool) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return size


def check_input(x, params, carry_leaf, hidden_size: int) -> None:
    """Trace-time shape checks shared by the built-in steps."""
    if not hasattr(carry_leaf, "shape"):
        raise TypeError(
            f"carry must be an array of shape [..., hidden_size={hidden_size}], "
            f"got {type(carry_leaf).__name__}")
    input_size = params["w_x"].shape[0]
    if x.ndim < 1 or x.shape[-1] != input_size:
        raise ValueError(
            f"x must have shape [..., input_size={input_size}] (the size given to init), "
            f"got shape {tuple(x.shape)}")
    expected = tuple(x.shape[:-1]) + (hidden_size,)
    if tuple(carry_leaf.shape) != expected:
        raise ValueError(
            f"carry must have shape {expected} (x's batch shape + hidden_size), "
            f"got {tuple(carry_leaf.shape)}")


def bias_like(b, like):
    # Explicit reshape instead of implicit rank promotion, so the cells run under
    # jax_numpy_rank_promotion="raise" with leading batch dimensions.
    return b.reshape((1,) * (like.ndim - 1) + b.shape)


def split_gates(z, n: int):
    return jnp.split(z, n, axis=-1)


def dense_init(key, input_size, hidden_size, n_gates, kernel_init, recurrent_init, dtype):
    """``w_x`` from ``kernel_init`` and ``w_h`` as n_gates independent [H, H] blocks."""
    k_x, k_h = jax.random.split(key)
    w_x = kernel_init(k_x, (input_size, n_gates * hidden_size), dtype)
    blocks = [recurrent_init(k, (hidden_size, hidden_size), dtype)
              for k in jax.random.split(k_h, n_gates)]
    return w_x, jnp.concatenate(blocks, axis=-1)


def zeros_carry(hidden_size, dtype, n):
    def initial_carry(batch_shape=()):
        z = jnp.zeros(tuple(batch_shape) + (hidden_size,), dtype)
        return z if n == 1 else tuple(z for _ in range(n))
    return initial_carry


