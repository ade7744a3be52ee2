"""The cell contract, and the shape checks and initialisation helpers every cell shares.

A :class:`Cell` is a NamedTuple of pure functions, in the manner of optax's
``GradientTransformation``::

    params = cell.init(key, input_size)          # pytree of arrays
    carry = cell.initial_carry(batch_shape=())   # zeros; initial_carry(8) == initial_carry((8,))
    carry, y = cell.step(params, carry, x)       # the body of jax.lax.scan

``step`` is written for one example (``x: [input_size]``); leading batch dimensions
work too as long as ``x`` and the carry share them (``x: [*batch, input_size]``,
``carry: [*batch, hidden]``), and ``jax.vmap`` works as usual.

A cell may also declare faster ways to run a whole sequence. They are fields of the
cell, never attributes of ``step``: a bare step function, wrapped or not, always runs
as the plain ``jax.lax.scan`` over exactly that function.
"""

import operator
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from rnn_jax import initializers as inits

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
      initial_carry: ``(batch_shape=()) -> carry`` of zeros, each leaf
        ``[*batch_shape, width]``; an int ``B`` means ``(B,)`` for the built-in cells.
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
    """``value`` as a positive Python int, or a ValueError naming the argument ``name``.

    Accepts NumPy integers (sizes read from shape arithmetic); refuses floats, bools and
    values below 1.
    """
    # operator.index accepts NumPy integers but rejects floats; bools are ints to
    # Python but never a size.
    try:
        size = operator.index(value)
    except TypeError:
        size = None
    if size is None or isinstance(value, bool) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return size


def batch_shape_tuple(batch_shape) -> tuple[int, ...]:
    """The argument of ``initial_carry`` as a shape tuple.

    An int ``B`` means one batch axis, ``(B,)``, as ``numpy.zeros(B)`` does: the cell's
    own width is fixed when it is built, so an int can mean nothing else. ``()`` (the
    default) is one unbatched example. Anything else that is not a sequence of
    non-negative ints is refused with a TypeError/ValueError naming ``batch_shape``.
    """
    if isinstance(batch_shape, bool):
        raise TypeError(f"batch_shape must be an int (one batch axis) or a tuple of ints, "
                        f"got {batch_shape!r}")
    try:
        dims = (operator.index(batch_shape),)
    except TypeError:
        try:
            dims = tuple(batch_shape)
        except TypeError:
            raise TypeError(f"batch_shape must be an int (one batch axis) or a tuple of ints, "
                            f"got {type(batch_shape).__name__}") from None
    out = []
    for d in dims:
        try:
            d_int = None if isinstance(d, bool) else operator.index(d)
        except TypeError:
            d_int = None
        if d_int is None or d_int < 0:
            raise ValueError(f"batch_shape must hold non-negative ints, e.g. (8,) or 8 for a "
                             f"batch of 8, got {batch_shape!r}")
        out.append(d_int)
    return tuple(out)


# ------------------------------------------------------------------ parameter layouts

# What a built-in cell's params look like, for the error that names a wrong cell's
# params: (keys, phrase). The phrase is completed by _looks_like with the gate count or
# hidden size where the keys alone do not tell the cells apart.
_DENSE = frozenset({"w_x", "w_h", "b"})
_LOOKS = (
    (_DENSE | {"b_hn"}, "a GRU's (reset_after=True)"),
    (_DENSE | {"w_r"}, "a projection LSTM's (lstmp)"),
    (frozenset({"w_x", "r", "b"}), "an sLSTM's"),
    (frozenset({"w_x", "u", "b"}), "an IndRNN's"),
    (frozenset({"nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D"}),
     "an LRU's"),
)
_BY_GATE_COUNT = {1: "an Elman RNN's", 3: "a GRU's or a 3-gate LSTM's", 4: "an LSTM's"}
# Every name a built-in cell's params use. Other extra entries are the user's own (a
# params dict may carry them; the fast paths give them zero gradients), but an extra
# name from this set means another cell's params (a peephole LSTM's into a plain one).
_CELL_KEYS = frozenset().union(_DENSE, {"p_i", "p_f", "p_o"}, *(k for k, _ in _LOOKS))


def _is_cell_key(name) -> bool:
    return name in _CELL_KEYS or (isinstance(name, str) and name.startswith("ln_"))


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _layout_str(shapes: dict) -> str:
    return ", ".join(f"{k}: {_shape_str(shapes[k])}" for k in sorted(shapes))


def _looks_like(params, hidden_size: int) -> Optional[str]:
    """A phrase naming the built-in cell whose params these look like, or None.

    Only the names a built-in cell uses count; a user's extra entries are ignored."""
    keys = frozenset(k for k in params if _is_cell_key(k))
    shapes = {k: tuple(getattr(params[k], "shape", ())) for k in keys}
    for known, phrase in _LOOKS:
        if keys == known:
            return phrase
    if keys and _DENSE <= keys and keys - _DENSE <= {"p_i", "p_f", "p_o"}:
        w_h = shapes["w_h"]
        if len(w_h) != 2 or w_h[0] < 1 or w_h[1] % w_h[0]:
            return None
        h, g = w_h[0], w_h[1] // w_h[0]
        if keys != _DENSE:
            return f"a peephole LSTM's, hidden size {h}"
        if g in _BY_GATE_COUNT:
            return f"{_BY_GATE_COUNT[g]}, hidden size {h}"
        return None
    if keys and _DENSE <= keys and any(k.startswith("ln_") for k in keys):
        return "a layer-norm LSTM's"
    if keys == {"w_x", "b"}:
        n, rest = divmod(shapes["b"][0], hidden_size) if shapes["b"] else (0, 1)
        return {(2, 0): "a minGRU's", (3, 0): "a minLSTM's"}.get((n, rest),
                                                                 "a minGRU's or minLSTM's")
    return None


def _layout_of(init):
    """``(base, coef)``: each param's shape is ``base + coef * input_size`` per axis.

    Read from the shapes ``init`` gives for two input sizes (``jax.eval_shape``: no
    arrays are made), so the layout cannot drift from what ``init`` builds.
    """
    key = jax.eval_shape(lambda: jax.random.key(0))
    s2, s3 = (jax.tree_util.tree_map(lambda a: tuple(a.shape),
                                     jax.eval_shape(lambda k, n=n: init(k, n), key),
                                     is_leaf=lambda a: isinstance(a, jax.ShapeDtypeStruct))
              for n in (2, 3))
    coef = {k: tuple(b - a for a, b in zip(s2[k], s3[k])) for k in s2}
    base = {k: tuple(a - 2 * c for a, c in zip(s2[k], coef[k])) for k in s2}
    return base, coef


def _expected_str(base, coef, input_size=None) -> str:
    def dim(b, c):
        if not c:
            return str(b)
        if input_size is not None:
            return str(b + c * input_size)
        i = "I" if c == 1 else f"{c}I"
        return i if not b else f"{i}+{b}"
    return ", ".join(f"{k}: [" + ", ".join(dim(b, c) for b, c in zip(base[k], coef[k])) + "]"
                     for k in sorted(base))


def params_check(cell: str, hidden_size: int, init) -> Callable[[Params], int]:
    """A trace-time check that ``params`` have the layout ``init`` builds.

    Args:
      cell: the cell's name with its article, for messages (``"an LSTM"``).
      hidden_size: H, quoted in messages.
      init: the cell's ``init(key, input_size)``. Its layout is read once, on the first
        check, with ``jax.eval_shape``.

    Returns:
      ``check(params) -> input_size``. It raises a TypeError when ``params`` is not a
      mapping and a ValueError when an entry of ``init``'s is missing or has another
      shape, or when an extra entry bears a name another built-in cell uses (``b_hn``,
      ``p_f``, ``w_r`` ...), naming the built-in cell the params look like (a GRU's
      params passed to an LSTM say so). Other extra entries are allowed (a user's own
      notes), and dtypes are not checked (params may be stored in another precision).
    """
    layout = []
    accepted: dict = {}  # shape signature -> input size, so a repeated check is a lookup

    def check(params) -> int:
        if isinstance(params, Mapping):
            try:
                sig = tuple((k, tuple(v.shape)) for k, v in params.items())
            except AttributeError:
                sig = None
            if sig is not None and sig in accepted:
                return accepted[sig]
        if not layout:
            layout.append(_layout_of(init))
        base, coef = layout[0]
        want = f"{cell}, hidden_size={hidden_size}, expecting"
        if not isinstance(params, Mapping):
            hint = (" (a tuple or list of dicts is a stack's params, one per layer)"
                    if isinstance(params, (tuple, list)) else "")
            raise TypeError(f"params must be a dict: this cell is {want} keys "
                            f"{sorted(base)}; got {type(params).__name__}{hint}")
        missing = set(base) - set(params)
        foreign = {k for k in set(params) - set(base) if _is_cell_key(k)}
        if missing or foreign:
            seen = _looks_like(params, hidden_size)
            got = (f"params look like {seen} (keys {sorted(params)})" if seen
                   else f"params have keys {sorted(params)}")
            raise ValueError(f"{got}; this cell is {want} keys {sorted(base)}")
        # Only the cell's own entries are checked; the user's extra ones pass untouched.
        shapes = {k: tuple(getattr(params[k], "shape", ())) for k in base}
        # The input size, from the first axis that grows with it.
        input_size = None
        for k in sorted(base):
            for b, c, d in zip(base[k], coef[k], shapes[k]):
                if c and input_size is None and (d - b) % c == 0 and (d - b) // c >= 1:
                    input_size = (d - b) // c
        expected = {k: tuple(b + c * (input_size or 0) for b, c in zip(base[k], coef[k]))
                    for k in base}
        if input_size is None or shapes != expected:
            seen = _looks_like(params, hidden_size)
            got = f"params look like {seen}" if seen else "params do not fit"
            raise ValueError(f"{got} ({_layout_str(shapes)}); this cell is {want} "
                             f"{_expected_str(base, coef)} (I = input_size)")
        if sig is not None and len(accepted) < 64:
            accepted[sig] = input_size
        return input_size

    return check


def check_input(x, params, carry_leaf, hidden_size: int, check_params=None) -> None:
    """Trace-time shape checks shared by the built-in steps.

    ``x: [..., I]`` with I the input size of ``params``, ``carry_leaf: [..., H]`` with
    the same leading (batch) axes. ``check_params``, when given, is the cell's
    :func:`params_check`, run first so that another cell's params are named as such.
    """
    if not hasattr(carry_leaf, "shape"):
        raise TypeError(
            f"carry must be an array of shape [..., hidden_size={hidden_size}], "
            f"got {type(carry_leaf).__name__}")
    if check_params is not None:
        input_size = check_params(params)
    else:
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
    """``b: [N]`` reshaped to broadcast against ``like: [*batch, N]``.

    An explicit reshape instead of implicit rank promotion, so the cells run under
    ``jax_numpy_rank_promotion="raise"`` with leading batch dimensions.
    """
    return b.reshape((1,) * (like.ndim - 1) + b.shape)


def split_gates(z, n: int):
    """``z: [..., n*H]`` split into ``n`` gate blocks, each ``[..., H]``, in order."""
    return jnp.split(z, n, axis=-1)


def dense_init(key, input_size, hidden_size, n_gates, kernel_init, recurrent_init, dtype):
    """``w_x: [I, n_gates*H]`` from ``kernel_init`` and ``w_h: [H, n_gates*H]`` as n_gates
    independent [H, H] blocks from ``recurrent_init`` (either a callable or a name, see
    :func:`rnn_jax.initializers.resolve`)."""
    kernel_init = inits.resolve(kernel_init, "kernel_init")
    recurrent_init = inits.resolve(recurrent_init, "recurrent_init")
    k_x, k_h = jax.random.split(key)
    w_x = kernel_init(k_x, (input_size, n_gates * hidden_size), dtype)
    blocks = [recurrent_init(k, (hidden_size, hidden_size), dtype)
              for k in jax.random.split(k_h, n_gates)]
    return w_x, jnp.concatenate(blocks, axis=-1)


def zeros_carry(hidden_size, dtype, n):
    """An ``initial_carry(batch_shape=())`` giving zeros ``[*batch_shape, H]``, or a tuple of ``n``.

    ``batch_shape`` may be an int ``B``, meaning ``(B,)`` (see :func:`batch_shape_tuple`).
    """
    def initial_carry(batch_shape=()):
        z = jnp.zeros(batch_shape_tuple(batch_shape) + (hidden_size,), dtype)
        return z if n == 1 else tuple(z for _ in range(n))
    return initial_carry


