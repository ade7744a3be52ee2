"""Fast paths: whole-sequence hand-written backward passes for the built-in cells.

The plain path (``jax.lax.scan`` over ``cell.step``, differentiated by autodiff) saves
every intermediate of every step and, in its backward scan, forms the weight
gradients step by step as small ``[H, B] @ [B, G*H]`` products summed over time. The
fast path does what cuDNN and oneDNN do (Appleyard, Kocisky & Blunsom 2016,
arXiv 1604.01946):

* the forward scan stores, per step, only the elementwise derivative factors of the
  gate pre-activations;
* the backward scan carries only the recurrence (``dh_{t-1} = dZ_t @ W_h^T`` plus the
  cell-state path) and writes the pre-activation gradients ``dZ`` of every step;
* after the scan, the weight gradients ``X^T @ dZ`` and ``H_prev^T @ dZ`` and the input
  gradient ``dZ @ W_x^T`` are each one large matmul over all ``T * B`` rows. JAX forms
  them, as the transposes of "taps" ``X @ W_x`` and ``H_prev @ W_h`` (see
  ``_sequence_fn``), so that under ``grad(vmap(...))`` they also span every example.

Each fast path computes the same math as the matching ``rnn_jax.cells`` step, so
values and gradients agree with the plain path to float rounding
(tests/test_fused.py). Not covered, and left to the plain path: LSTM peepholes,
user-written steps, pytree inputs. ``jax.custom_vjp`` functions do not support
forward-mode AD (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``'s inner jvp); for those
use the plain path (``rnn_jax.unroll(..., fused=False)``): a fast path that sees
forward-mode tracers raises ``ForwardModeError`` saying so. So does a second reverse-mode
derivative (``grad`` of a gradient): the hand-written backward is not differentiable.

Every ``*_unroll`` function here has the signature ``(params, carry, xs, *,
lengths=None, resets=None, reverse=False, unroll=1, return_carries=False,
reset_carry=None, <cell options>) -> (carry, ys[, carries])`` with the semantics of
``rnn_jax.unroll``: time-major ``xs: [T, *batch, I]``, carry leaves ``[*batch, H]``,
``ys: [T, *batch, H]``; ``lengths`` (integers with the batch shape) and ``resets``
(bool ``[T, *batch]``) must already be validated, as ``rnn_jax.unroll`` does.
``reset_carry`` (default ``carry``) is what a reset returns to; ``rnn_jax.remat`` uses
it for segments after the first.

Padding: the padded inputs are replaced by zeros before the scan and every masked
quantity is chosen with ``where``, so NaN or Inf in the padding never reaches a value
or a gradient. Resets: the forward scan swaps in the reset carry; the backward scan
sends the gradient at a reset step to the reset carry, not to the previous step.
Under ``jax.vmap`` over examples both scans run as one merged batch
(``jax.custom_batching.custom_vmap``) and the weight gradients are one matmul over all
examples' rows, so a per-example call vmapped costs what the batched call costs, while
``vmap(grad(...))`` still gets one gradient per example.
Nothing here is specific to a backend: the same code runs on CPU, GPU and TPU.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.interpreters.ad
import jax.numpy as jnp

from rnn_jax import _scan
from rnn_jax.gates import gru_gates, lstm_pointwise

LSTM_GATES = (("i", "f", "g", "o"), ("i", "g", "o"), ("f", "g", "o"))


# ------------------------------------------------------------------ shared plumbing

def _rows(a):
    return a.reshape((-1, a.shape[-1]))


def _where_valid(m, new, old):
    """``new`` where the step is valid (``m``: bool ``[B, 1]``), else ``old``."""
    # where, not m*new + (1-m)*old: an inf produced at a padded step must not become NaN.
    return new if m is None else jnp.where(m, new, old)


def _zero_padded(m, a):
    return a if m is None else jnp.where(m, a, jnp.zeros_like(a))


def _h_prev(h0, ys, init_h=None, resets=None):
    """``[h_0, h_1, ..., h_{T-1}]``, the state each step reads. With ``lengths`` the
    valid steps are a prefix, so at every valid step ``t >= 1`` the output ``y_{t-1}`` is
    the carried state; at padded steps ``dZ = 0`` and the value is irrelevant. After a
    reset the step reads ``init_h`` instead."""
    # The slice keeps T = 0 valid.
    hp = jnp.concatenate([h0[None], ys[:-1]], axis=0)[:ys.shape[0]]
    return hp if resets is None else jnp.where(resets, init_h[None], hp)


def _row_sum(a):
    """``a`` summed over every axis but the last (a bias gradient)."""
    return jnp.sum(_rows(a), axis=0)


def _forward_scan(body, carry, init, seq, mask, resets, unroll):
    """Scan ``body(carry, seq_t, m_t) -> (carry, out_t)`` with resets applied first:
    where ``resets[t]`` the carry returns to ``init`` before step t."""
    def wrapped(c, inp):
        s, m, r = inp
        if r is not None:
            c = jax.tree_util.tree_map(lambda i, v: jnp.where(r, i, v), init, c)
        return body(c, s, m)
    return jax.lax.scan(wrapped, carry, (seq, mask, resets), unroll=unroll)


def _backward_scan(body, dcarry, seq, mask, resets, unroll):
    """Reverse scan of ``body(d, seq_t, m_t) -> (d_prev, out_t)``; at a reset step the
    gradient ``d_prev`` goes to the reset carry's accumulator instead of to step t-1
    (nothing flows across a reset). Returns ``(d_carry0, d_init or None, outs)``."""
    def wrapped(state, inp):
        d, acc = state
        s, m, r = inp
        d_prev, out = body(d, s, m)
        if r is not None:
            acc = jax.tree_util.tree_map(lambda a, g: a + jnp.where(r, g, 0), acc, d_prev)
            d_prev = jax.tree_util.tree_map(lambda g: jnp.where(r, jnp.zeros_like(g), g), d_prev)
        return (d_prev, acc), out
    acc0 = None if resets is None else jax.tree_util.tree_map(jnp.zeros_like, dcarry)
    (d0, acc), outs = jax.lax.scan(wrapped, (dcarry, acc0), (seq, mask, resets), reverse=True,
                                   unroll=unroll)
    return d0, acc, outs


FORWARD_MODE_MESSAGE = (
    "forward-mode differentiation (jax.jvp, jax.jacfwd, jax.hessian) "
    "reached the fast path of a built-in {kind} cell, a jax.custom_vjp, which has only a "
    "reverse-mode rule. Pass fused=False to rnn_jax.unroll (and to bidirectional, stacked, "
    "checkpointed_unroll or the flax wrappers) to run the plain scan, which forward-mode "
    "differentiates. Reverse mode (jax.grad, jax.vjp, jax.jacrev) works on both paths.")


SECOND_ORDER_MESSAGE = (
    "a second derivative (jax.grad of a gradient, jax.hessian, jacrev(jacrev)) reached the "
    "fast path of a built-in {kind} cell: its hand-written backward pass is not itself "
    "differentiable. Pass fused=False to rnn_jax.unroll (and to bidirectional, stacked, "
    "checkpointed_unroll or the flax wrappers) to run the plain scan.")


class ForwardModeError(TypeError):
    """Forward-mode or higher-order AD through a fast path (a TypeError, as JAX's own
    error is)."""


def _ad_tracers(tree):
    """The autodiff tracers among the leaves, at any depth of tracer nesting (jacfwd
    puts its JVPTracer outermost, jvp(vmap(f)) under a BatchTracer, hessian = jacfwd(
    jacrev) under a LinearizeTracer)."""
    stack, found = list(jax.tree_util.tree_leaves(tree)), []
    while stack:
        x = stack.pop()
        if not isinstance(x, jax.core.Tracer):
            continue
        # JVP and Linearize tracers have a tangent; jaxpr and batch tracers do not
        # (a tracer forwards unknown attributes to its aval, which raises).
        if getattr(x, "tangent", None) is not None:
            found.append(x)
        # A tracer's value below it: .primal (JVP/Linearize tracers), .val (BatchTracer).
        stack.extend(getattr(x, a, None) for a in ("primal", "val"))
    return found


def _under_forward_mode(tree):
    """Whether a leaf is being forward-mode differentiated (a ``JVPTracer``).
    ``jax.grad`` linearizes with ``LinearizeTracer``s, so reverse mode is not caught."""
    return any(isinstance(t, jax.interpreters.ad.JVPTracer) for t in _ad_tracers(tree))


def _fast_unroll(kind, variant, unroll, params, carry, xs, lengths, resets, reverse,
                 return_carries, reset_carry):
    """What every ``*_unroll`` below does: flatten the batch axes into one, put the
    sequence in processing order (``reverse``, ``lengths``), then run ``_sequence_fn``."""
    # JAX's own message ("can't apply forward-mode autodiff (jvp) to a custom_vjp
    # function") names neither the cell nor the way out. Checked on the inputs, so it is
    # raised when the function is traced; a jvp applied to an already jitted function
    # (jax.jvp(jax.jit(f))) differentiates the traced program and still gets JAX's, and
    # so does applying jax.linearize's linear function (linearize traces like grad).
    if _under_forward_mode((params, carry, xs, reset_carry)):
        raise ForwardModeError(FORWARD_MODE_MESSAGE.format(kind=kind.upper()))
    T = xs.shape[0]
    batch = tuple(xs.shape[1:-1])
    B = math.prod(batch)

    def flat_carry(tree):
        return jax.tree_util.tree_map(lambda l: l.reshape((B, l.shape[-1])), tree)

    def per_step(a):
        # lengths/resets may cover only the leading batch axes (see ops.unroll): align
        # them on the left before broadcasting, as the plain path does.
        a = a.reshape(a.shape + (1,) * (1 + len(batch) - a.ndim))
        return jnp.broadcast_to(a, (T,) + batch).reshape((T, B, 1))

    carry0 = flat_carry(carry)
    xs_flat = xs.reshape((T, B, xs.shape[-1]))
    mask, flat_lengths = None, None
    if lengths is not None:
        flat_lengths = per_step(jnp.broadcast_to(lengths.reshape(lengths.shape + (1,) * (
            len(batch) - lengths.ndim)), batch)[None])[0, :, 0]
        mask = _scan.valid_mask(flat_lengths, T)[..., None]  # [T, B, 1] bool
    flat_resets = None if resets is None else per_step(resets)
    xs_flat, flat_resets = _scan.to_processing_order(xs_flat, flat_resets, flat_lengths,
                                                     reverse, T)
    if mask is not None:
        # Zeroed before the step, so NaN/Inf in the padding reach no value or gradient.
        xs_flat = jnp.where(mask, xs_flat, jnp.zeros_like(xs_flat))
        if flat_resets is not None:
            flat_resets = flat_resets & mask
    reset_to = None if flat_resets is None else flat_carry(
        carry if reset_carry is None else reset_carry)
    with_c = bool(return_carries) and kind == "lstm"
    sequence = _sequence_fn(kind, variant, unroll, with_c)
    carry_T, outs = sequence(params, carry0, reset_to, xs_flat, mask, flat_resets)
    outs = _scan.from_processing_order(outs, flat_lengths, reverse, T)
    unflatten = lambda a: a.reshape((T,) + batch + (a.shape[-1],))
    carry = jax.tree_util.tree_map(lambda a: a.reshape(batch + (a.shape[-1],)), carry_T)
    ys = unflatten(outs[0])
    if not return_carries:
        return carry, ys
    # The RNN's and GRU's carry is h = y; the LSTM's is (h, c) with h = y.
    carries = ys if kind != "lstm" else (ys, unflatten(outs[1]))
    return carry, ys, carries


# Where each argument of the whole-sequence functions keeps its examples: carry-like
# leaves on axis 0 ([B, H]), time-major leaves on axis 1 ([T, B, ...]).
_CARRY_AXIS, _TIME_AXIS = 0, 1


def _merge_examples(tree, batched, axis, n):
    """vmap's axis 0 (size n) merged into the examples axis ``axis`` (a tuple of axes
    for a tuple ``tree``, one per element)."""
    if isinstance(axis, tuple):
        return tuple(_merge_examples(t, b, a, n)
                     for t, b, a in zip(tree, batched, axis, strict=True))

    def merge(a, b):
        if not b:
            a = jnp.broadcast_to(a[None], (n,) + a.shape)
        a = jnp.moveaxis(a, 0, axis)
        return a.reshape(a.shape[:axis] + (n * a.shape[axis + 1],) + a.shape[axis + 2:])
    return jax.tree_util.tree_map(merge, tree, batched)


def _split_examples(tree, axis, n):
    """The inverse of ``_merge_examples``: the examples back on a leading axis."""
    if isinstance(axis, tuple):
        return tuple(_split_examples(t, a, n) for t, a in zip(tree, axis, strict=True))

    def split(a):
        a = a.reshape(a.shape[:axis] + (n, a.shape[axis] // n) + a.shape[axis + 1:])
        return jnp.moveaxis(a, axis, 0)
    return jax.tree_util.tree_map(split, tree)


def _over_examples(fn, in_axes, out_axes):
    """``fn`` whose ``jax.vmap`` over examples runs ``fn`` once on the merged batch.

    ``fn`` treats the rows of its batch axis independently, so vmapping a per-example
    call is the same as one call with the vmapped axis merged into the batch axis: one
    ``[N*B, H] @ [H, G]`` matmul per step instead of N small ones (a batched matmul
    with the weights broadcast). ``in_axes``/``out_axes`` give, per
    argument/output, the examples axis (``None`` for the params). When the params
    themselves are vmapped (an ensemble), each example has its own weights and the
    ordinary batching of ``fn`` is used.
    """
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def rule(n, in_batched, *args):
        if any(jax.tree_util.tree_leaves(in_batched[0])):
            axes = tuple(jax.tree_util.tree_map(lambda b: 0 if b else None, ib)
                         for ib in in_batched)
            out = jax.vmap(fn, in_axes=axes)(*args)
            return out, jax.tree_util.tree_map(lambda _: True, out)
        merged = [a if ax is None else _merge_examples(a, b, ax, n)
                  for a, b, ax in zip(args, in_batched, in_axes)]
        out = fn(*merged)
        split = tuple(_split_examples(o, ax, n) for o, ax in zip(out, out_axes))
        return split, jax.tree_util.tree_map(lambda _: True, split)

    return wrapped


@functools.lru_cache(maxsize=None)
def _sequence_fn(kind, variant, unroll, with_c):
    """The differentiable whole-sequence function ``(params, carry, init, xs, mask,
    resets) -> (final_carry, outs)`` for one cell variant, where ``outs`` is ``(ys,)`` or
    ``(ys, cs)``. ``mask``/``resets`` are bool ``[T, B, 1]`` or None; ``init`` is the
    carry a reset returns to (None without resets).

    Three pieces, so that the weight gradients of a vmapped call are one contraction
    over every example's rows:

    1. the forward scan (``forward_only``): never differentiated (its outputs get no
       cotangent), it saves the derivative factors itself;
    2. the weight taps ``xs @ W_x`` and ``H_prev @ W_h`` (``H_prev`` a constant) are
       ordinary JAX products whose values nobody reads (XLA drops them) but whose
       transposes give ``dW_x = X^T dZ``, ``dW_h = H_prev^T dZ`` and ``dxs = dZ W_x^T``;
    3. ``attach``, a ``jax.custom_vjp`` that returns the forward scan's outputs and whose
       backward runs the backward scan and hands ``dZ`` to the taps.

    Why the taps: under ``grad(vmap(f))`` JAX sums a custom VJP's cotangent for an
    unbatched input (the weights) over the examples with a reduce over the leading
    axis, and XLA:CPU runs that reduce up to 60x slower than a matmul (BUILD_NOTES,
    issue 11). A tap is a plain ``dot_general``: vmapped before it is transposed (the
    ``grad(vmap)`` order), the examples fold into its rows and ``dW`` is one matmul
    over all of them; transposed before it is vmapped (``vmap(grad)``, per-example
    gradients), it is one product per example. JAX picks the right one, so no rule has
    to guess which the caller wants.
    """
    forward_scan, backward_scan = _SCANS[kind]
    weight_taps, tap_cotangents = _TAPS[kind]
    example_axes = (None, _CARRY_AXIS, _CARRY_AXIS, _TIME_AXIS, _TIME_AXIS, _TIME_AXIS)

    def forward(params, carry, init, xs, mask, resets):
        return forward_scan(variant, unroll, params, carry, init, xs, mask, resets, with_c)

    def backward(params, mask, resets, outs, factors, cotangents):
        dcarry, douts = cotangents
        douts = tuple(_zero_padded(mask, d) for d in douts)  # padded outputs are constants
        return backward_scan(variant, unroll, params, mask, resets, outs, factors, dcarry,
                             douts)

    # Under vmap over examples both scans run once on the merged batch.
    forward_v = _over_examples(forward, example_axes, (_CARRY_AXIS, _TIME_AXIS, _TIME_AXIS))
    backward_v = _over_examples(
        backward, (None, _TIME_AXIS, _TIME_AXIS, _TIME_AXIS, _TIME_AXIS,
                   (_CARRY_AXIS, _TIME_AXIS)),
        (_CARRY_AXIS, _CARRY_AXIS, _TIME_AXIS))

    # The forward scan as a function that autodiff may trace but never differentiates:
    # its outputs' cotangent is always zero (attach gives `computed` none, and the taps
    # read H_prev through stop_gradient), so its backward has nothing to do. Not a
    # stop_gradient on its inputs: a second derivative would then treat the saved
    # factors as constants and come out silently wrong. Here it meets either the check
    # in forward_only_fwd (our tracers one level up) or, for a program differentiated
    # twice after tracing, JAX's own error at the custom_vmap, which has no transpose.
    @jax.custom_vjp
    def forward_only(params, carry, init, xs, mask, resets):
        return forward_v(params, carry, init, xs, mask, resets)

    def forward_only_fwd(*args):
        values = jax.tree_util.tree_map(
            lambda a: a.value, args,
            is_leaf=lambda a: isinstance(a, jax.custom_derivatives.CustomVJPPrimal))
        if _ad_tracers(values):
            raise ForwardModeError(SECOND_ORDER_MESSAGE.format(kind=kind.upper()))
        return forward_v(*values), None

    def forward_only_bwd(_, cotangents):
        is_zero = lambda c: isinstance(c, jax.custom_derivatives.SymbolicZero)
        if not all(map(is_zero, jax.tree_util.tree_leaves(cotangents, is_leaf=is_zero))):
            raise AssertionError("rnn_jax.fused: a cotangent reached the forward scan's "
                                 "outputs; the gradient would be wrong")
        return (None,) * 6

    forward_only.defvjp(forward_only_fwd, forward_only_bwd, symbolic_zeros=True)

    @jax.custom_vjp
    def attach(params, carry, init, mask, resets, computed, taps):
        return computed[0], computed[1]

    def attach_fwd(params, carry, init, mask, resets, computed, taps):
        carry_T, outs, factors = computed
        return (carry_T, outs), (params, mask, resets, outs, factors)

    def attach_bwd(saved, cotangents):
        params, mask, resets, outs, factors = saved
        dcarry0, dinit, dz = backward_v(params, mask, resets, outs, factors, cotangents)
        tap_cts, bias_grads = tap_cotangents(variant, dz, factors)
        # None is a zero cotangent: the weights get theirs through the taps, and leaves the
        # cell never reads (a user may keep extra entries in its params dict) get none.
        # The biases are small ([G*H]), so summing them per example costs nothing.
        dparams = {k: bias_grads.get(k) for k in params}
        # `computed` gets none: the gradient reaches the inputs through the taps and
        # dcarry0/dinit, never through the forward scan.
        return dparams, dcarry0, dinit, None, None, None, tap_cts

    attach.defvjp(attach_fwd, attach_bwd)

    def sequence(params, carry, init, xs, mask, resets):
        frozen = jax.lax.stop_gradient
        computed = forward_only(params, carry, init, xs, mask, resets)
        h0, h_init = (carry[0], None if init is None else init[0]) if kind == "lstm" \
            else (carry, init)
        h_prev = frozen(_h_prev(h0, computed[1][0], h_init, resets))
        # The taps read the forward's values as constants: they are linear in the weights.
        taps = weight_taps(variant, params, xs, h_prev, frozen(computed[2]))
        return attach(params, carry, init, mask, resets, computed, taps)

    return sequence


# --------------------------------------------------------------------------- LSTM

def _lstm_forward(gates, unroll, params, carry, init, xs, mask, resets, with_c):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    H = w_h.shape[0]

    def body(state, x, m):
        h, c = state
        z = x @ w_x + h @ w_h + b
        act = lstm_pointwise({g: z[:, k * H:(k + 1) * H] for k, g in enumerate(gates)}, c)
        out = (_zero_padded(m, act.h),) + ((_zero_padded(m, act.c),) if with_c else ())
        state_new = (_where_valid(m, act.h, h), _where_valid(m, act.c, c))
        # Derivative factors of the pre-activations, so that the backward scan only
        # multiplies: dZ = [dc, ..., dc, dh] * a, with dc += dh * a_c.
        i, f, g, o, tanh_c = act.i, act.f, act.g, act.o, act.tanh_c
        by_gate = {"i": g * i * (1 - i), "g": i * (1 - g * g), "o": tanh_c * o * (1 - o)}
        if f is not None:
            by_gate["f"] = (c if "i" in gates else c - g) * f * (1 - f)
        a = jnp.concatenate([by_gate[k] for k in gates], axis=-1)
        factors = (a, o * (1 - tanh_c * tanh_c)) + ((f,) if f is not None else ())
        return state_new, (out, factors)

    carry_T, out = _forward_scan(body, tuple(carry), init, xs, mask, resets, unroll)
    return carry_T, out[0], out[1]


def _lstm_backward(gates, unroll, params, mask, resets, outs, factors, dcarry, douts):
    w_hT = params["w_h"].T
    n = len(gates)
    has_f = "f" in gates
    with_c = len(douts) == 2

    def body(state, inp, m):
        dh, dc = state
        dy, dcs = inp[0]
        a, a_c = inp[1][:2]
        f = inp[1][2] if has_f else None
        dh = dh + dy
        if dcs is not None:
            dc = dc + dcs
        dc_tot = dc + dh * a_c
        dz = _zero_padded(m, jnp.concatenate([dc_tot] * (n - 1) + [dh], axis=-1) * a)
        dh_prev = dz @ w_hT
        dc_prev = dc_tot if f is None else dc_tot * f
        return (_where_valid(m, dh_prev, dh), _where_valid(m, dc_prev, dc)), dz

    seq = ((douts[0], douts[1] if with_c else None), factors)
    return _backward_scan(body, tuple(dcarry), seq, mask, resets, unroll)


def _dense_taps(variant, params, xs, h_prev, factors):
    """LSTM and RNN: ``z = x W_x + h_prev W_h + b``, so one tap per weight."""
    return xs @ params["w_x"], h_prev @ params["w_h"]


def _dense_tap_cotangents(variant, dz, factors):
    return (dz, dz), {"b": _row_sum(dz)}


def lstm_unroll(params, carry, xs, *, lengths=None, resets=None, reverse=False, unroll=1,
                return_carries=False, reset_carry=None,
                gates=("i", "f", "g", "o")):
    """Fast path of ``rnn_jax.cells.lstm`` without peepholes.

    ``gates`` is the cell's ``gates`` field: ``("i", "f", "g", "o")`` (default),
    ``("i", "g", "o")`` (no forget gate, Hochreiter & Schmidhuber 1997) or
    ``("f", "g", "o")`` (CIFG, ``i = 1 - f``). Params ``{"w_x": [I, G*H],
    "w_h": [H, G*H], "b": [G*H]}``, carry ``(h, c)``.
    """
    gates = tuple(gates)
    if gates not in LSTM_GATES:
        raise ValueError(f"gates must be one of {LSTM_GATES}, got {gates!r}")
    H, width = params["w_h"].shape
    if width != len(gates) * H or any(k.startswith("p_") for k in params):
        raise ValueError(f"params do not match gates={gates} without peepholes: w_h has shape "
                         f"{(H, width)}, expected {(H, len(gates) * H)}; keys {sorted(params)}")
    return _fast_unroll("lstm", gates, unroll, params, tuple(carry), xs, lengths, resets, reverse,
                return_carries, None if reset_carry is None else tuple(reset_carry))


# ---------------------------------------------------------------------------- RNN

_RNN_ACTS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _rnn_forward(activation, unroll, params, carry, init, xs, mask, resets, with_c):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    act = _RNN_ACTS[activation]

    def body(h, x, m):
        h_new = act(x @ w_x + h @ w_h + b)
        return _where_valid(m, h_new, h), (_zero_padded(m, h_new),)

    h, out = _forward_scan(body, carry, init, xs, mask, resets, unroll)
    # The RNN's backward needs no factors: f'(z) comes from the outputs.
    return h, out, ()


def _rnn_backward(activation, unroll, params, mask, resets, outs, factors, dcarry, douts):
    w_hT = params["w_h"].T
    ys = outs[0]
    # f'(z) from the outputs, in one pass over the whole sequence: tanh' = 1 - h^2;
    # relu' = [h > 0] (0 at z = 0, as jax.nn.relu's derivative).
    d = 1 - ys * ys if activation == "tanh" else (ys > 0).astype(ys.dtype)

    def body(dh, inp, m):
        dy, d_t = inp
        dh = dh + dy
        dz = _zero_padded(m, dh * d_t)
        return _where_valid(m, dz @ w_hT, dh), dz

    return _backward_scan(body, dcarry, (douts[0], d), mask, resets, unroll)


def rnn_unroll(params, carry, xs, *, lengths=None, resets=None, reverse=False, unroll=1,
                return_carries=False, reset_carry=None,
               activation="tanh"):
    """Fast path of ``rnn_jax.cells.rnn``: params ``{"w_x", "w_h", "b"}``, carry ``h``."""
    if activation not in _RNN_ACTS:
        raise ValueError(f"activation must be one of {sorted(_RNN_ACTS)}, got {activation!r}")
    return _fast_unroll("rnn", activation, unroll, params, carry, xs, lengths, resets, reverse,
                return_carries, reset_carry)


# ---------------------------------------------------------------------------- GRU

def _gru_forward(reset_after, unroll, params, carry, init, xs, mask, resets, with_c):
    w_x, w_h = params["w_x"], params["w_h"]
    b = params["b"].reshape((1, -1))
    b_hn = params["b_hn"] if reset_after else None

    def body(h, x, m):
        act = gru_gates(x @ w_x + b, h, w_h, b_hn)
        r, z, n = act.r, act.z, act.n
        # Derivative factors: dZ_x = dh * a, block by block (r, z, n). The r block reads
        # h_prev through the candidate: r * h_n with reset_after, r * h_prev otherwise.
        a_z = (h - n) * z * (1 - z)
        a_n = (1 - z) * (1 - n * n)
        dr = r * (1 - r)
        a = jnp.concatenate([a_n * act.h_n * dr if reset_after else dr * h, a_z, a_n], axis=-1)
        return _where_valid(m, act.h, h), ((_zero_padded(m, act.h),), (a, z, r))

    h, out = _forward_scan(body, carry, init, xs, mask, resets, unroll)
    return h, out[0], out[1]


def _gru_backward(reset_after, unroll, params, mask, resets, outs, factors, dcarry, douts):
    w_h = params["w_h"]
    H = w_h.shape[0]
    w_hT = w_h.T
    w_rzT, w_nT = w_hT[:2 * H], w_hT[2 * H:]

    def body(dh, inp, m):
        dy, (a, z, r) = inp
        dh = dh + dy
        if reset_after:
            dzx = _zero_padded(m, jnp.concatenate([dh, dh, dh], axis=-1) * a)
            dzh = jnp.concatenate([dzx[:, :2 * H], dzx[:, 2 * H:] * r], axis=-1)
            dh_prev = dh * z + dzh @ w_hT
        else:
            dz_n = _zero_padded(m, dh * a[:, 2 * H:])
            d_rh = dz_n @ w_nT  # gradient of r * h_prev
            dzx = _zero_padded(m, jnp.concatenate([d_rh * a[:, :H], dh * a[:, H:2 * H], dz_n],
                                                  axis=-1))
            dh_prev = dh * z + d_rh * r + dzx[:, :2 * H] @ w_rzT
        return _where_valid(m, dh_prev, dh), dzx

    return _backward_scan(body, dcarry, (douts[0], factors), mask, resets, unroll)


def _gru_taps(reset_after, params, xs, h_prev, factors):
    w_h = params["w_h"]
    H = w_h.shape[0]
    if reset_after:
        # z_h = h_prev W_h for all three blocks; the n block's is scaled by r afterwards.
        return xs @ params["w_x"], h_prev @ w_h
    # The candidate reads (r * h_prev) W_hn, the r and z gates h_prev W_hrz.
    r = factors[2]
    return xs @ params["w_x"], h_prev @ w_h[:, :2 * H], (r * h_prev) @ w_h[:, 2 * H:]


def _gru_tap_cotangents(reset_after, dzx, factors):
    r = factors[2]
    H = r.shape[-1]
    if reset_after:
        dz_hn = dzx[..., 2 * H:] * r
        dzh = jnp.concatenate([dzx[..., :2 * H], dz_hn], axis=-1)
        return (dzx, dzh), {"b": _row_sum(dzx), "b_hn": _row_sum(dz_hn)}
    return (dzx, dzx[..., :2 * H], dzx[..., 2 * H:]), {"b": _row_sum(dzx)}


def gru_unroll(params, carry, xs, *, lengths=None, resets=None, reverse=False, unroll=1,
                return_carries=False, reset_carry=None,
               reset_after=False):
    """Fast path of ``rnn_jax.cells.gru``: params ``{"w_x", "w_h", "b"}`` (+ ``"b_hn"``
    when ``reset_after``), carry ``h``."""
    if ("b_hn" in params) != bool(reset_after):
        raise ValueError(f"params {'lack' if reset_after else 'have'} 'b_hn': they do not come "
                         f"from cells.gru(reset_after={bool(reset_after)})")
    return _fast_unroll("gru", bool(reset_after), unroll, params, carry, xs, lengths, resets, reverse,
                return_carries, reset_carry)


# Per cell kind: the forward and backward scans, and the weight taps with their
# cotangents (see _sequence_fn).
_SCANS = {
    "lstm": (_lstm_forward, _lstm_backward),
    "rnn": (_rnn_forward, _rnn_backward),
    "gru": (_gru_forward, _gru_backward),
}
_TAPS = {
    "lstm": (_dense_taps, _dense_tap_cotangents),
    "rnn": (_dense_taps, _dense_tap_cotangents),
    "gru": (_gru_taps, _gru_tap_cotangents),
}


def for_cell(kind: str, **options):
    """The fast ``unroll`` for a built-in cell, or ``None`` when the variant has none.

    ``kind`` is ``"lstm"`` (options ``gates``, ``peephole``), ``"gru"``
    (``reset_after``) or ``"rnn"`` (``activation``). Used by ``rnn_jax.cells`` to
    fill the ``fast_unroll`` field of their ``Cell``.
    """
    if kind == "lstm":
        if options.get("peephole", False):
            return None  # peepholes put c into the gates; not covered, plain path
        return functools.partial(lstm_unroll, gates=tuple(options["gates"]))
    if kind == "gru":
        return functools.partial(gru_unroll, reset_after=bool(options.get("reset_after", False)))
    if kind == "rnn":
        act = options.get("activation", "tanh")
        return functools.partial(rnn_unroll, activation=act) if act in _RNN_ACTS else None
    raise ValueError(f"kind must be 'lstm', 'gru' or 'rnn', got {kind!r}")
