"""Mixed precision as a cell transform: matmuls in a low compute dtype, everything else in
the parameter dtype.

``with_compute_dtype(cell, jnp.bfloat16)`` returns a :class:`~rnn_jax.cells.base.Cell`
with the same ``init`` (parameters stay in the cell's own ``dtype``, e.g. float32), the
same carry (float32) and a step in which every matrix product runs on bfloat16 operands
and accumulates and returns in float32 (``preferred_element_type``), as bfloat16 tensor
cores and the XLA CPU dot do. The gate nonlinearities, the LSTM cell state update
``c_t = f_t c_{t-1} + i_t g_t`` and the carry stay in float32. That is where precision
matters: the carry is a running sum over time, and in bfloat16 (8 significant bits) an
increment below half an ulp of ``c`` (``|c| / 2^9``) would be lost outright, every step.

How: the step is traced to a jaxpr and re-evaluated primitive by primitive, with each
``dot_general`` on floating operands wider than the compute dtype replaced by the same
contraction on operands cast down, ``preferred_element_type`` the original output dtype.
Every other primitive is bound unchanged, so the transform needs nothing from the cell
(any cell, built-in or a user's, works the same way) and composes with ``jit``, ``grad``
and ``vmap``: the rewritten program is made of ordinary primitives. Gradients reach the
parameters in their own dtype (the transpose of a cast is a cast back). Calls to jitted
functions inside the step are inlined and rewritten too; matmuls inside primitives with
their own derivative rules (``custom_jvp``/``custom_vjp``) or inside nested control flow
(``scan``, ``cond``, ``while``) run unchanged, in the parameter dtype.

The cell's whole-sequence fast paths (``fast_unroll``, the fused custom VJP of
``rnn_jax.fused``; ``parallel_unroll``) are dropped: ``rnn_jax.unroll(..., fused=True)``
then runs the plain scan over the rewritten step (``parallel=True`` raises, as for any
cell without a parallel path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jex_core

from rnn_jax.cells.base import Cell

# Primitives that call a sub-jaxpr with plain call semantics: inlined and rewritten.
_CALLS = ("jit", "pjit", "closed_call", "core_call")


def _check_dtype(compute_dtype):
    try:  # jnp.dtype(None) would be float64: refuse None explicitly
        dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"compute_dtype must be a floating dtype such as jnp.bfloat16 or "
                         f"'bfloat16', got {compute_dtype!r}")
    return dtype


def _narrower(dtype, than) -> bool:
    return (jnp.issubdtype(dtype, jnp.floating)
            and jnp.finfo(than).bits < jnp.finfo(dtype).bits)


def _eval(jaxpr, consts, args, compute_dtype):
    """Evaluate ``jaxpr`` with its wide floating ``dot_general``s on ``compute_dtype``
    operands (float accumulation and output in the original dtype)."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    def write(v, val):
        if not isinstance(v, jex_core.DropVar):
            env[v] = val

    for v, val in zip(jaxpr.constvars, consts):
        write(v, val)
    for v, val in zip(jaxpr.invars, args):
        write(v, val)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        prim = eqn.primitive
        if prim is lax.dot_general_p and any(_narrower(jnp.result_type(a), compute_dtype)
                                            for a in invals):
            out_dtype = eqn.outvars[0].aval.dtype
            lhs, rhs = (a.astype(compute_dtype) if _narrower(jnp.result_type(a), compute_dtype)
                        else a for a in invals)
            outs = [lax.dot_general(lhs, rhs, eqn.params["dimension_numbers"],
                                    precision=eqn.params.get("precision"),
                                    preferred_element_type=out_dtype)]
        elif prim.name in _CALLS and "jaxpr" in eqn.params:
            inner = eqn.params["jaxpr"]
            outs = _eval(inner.jaxpr, inner.consts, invals, compute_dtype)
        else:
            bound = prim.get_bind_params(eqn.params)
            # JAX < 0.5 returned (subfuns, params); later releases return the params only.
            subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
            with eqn.ctx.manager:
                outs = prim.bind(*subfuns, *invals, **params)
            if not prim.multiple_results:
                outs = [outs]
        for v, val in zip(eqn.outvars, outs):
            write(v, val)
    return [read(v) for v in jaxpr.outvars]


def matmuls_in(fn, compute_dtype):
    """``fn`` with its matrix products on ``compute_dtype`` operands (see the module doc).

    ``fn`` takes and returns pytrees of arrays; the returned function has the same
    signature, output dtypes and structure.
    """
    compute_dtype = _check_dtype(compute_dtype)

    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outs = _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), compute_dtype)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

    return wrapped


def _carry_dtype(cell: Cell):
    leaves = [a for a in jax.tree_util.tree_leaves(jax.eval_shape(cell.initial_carry, ()))
              if jnp.issubdtype(a.dtype, jnp.floating)]
    return leaves[0].dtype if leaves else None


def with_compute_dtype(cell: Cell, compute_dtype) -> Cell:
    """``cell`` with its matmuls in ``compute_dtype`` (e.g. ``jnp.bfloat16``) and float32
    (the cell's ``dtype``) parameters, accumulation, nonlinearities and carry.

    Args:
      cell: any :class:`~rnn_jax.cells.base.Cell`; its ``dtype`` is the parameter dtype.
      compute_dtype: a floating dtype (or its name) for the operands of the matmuls.
        Products on operands that are already this narrow are left alone, so a float32
        compute dtype gives back exactly the original step.

    Returns a :class:`Cell` with the same ``init``, ``initial_carry``, ``hidden_size``,
    ``gates`` and params/carry layout (a carry leaf stays ``[*batch, H]`` in the cell's
    ``dtype``); ``step`` (and ``retention``) rewritten. Inputs
    ``x`` of any floating dtype (bfloat16 inputs halve their memory) are cast to the
    carry's dtype first, then down again for the matmul (exact for bfloat16 inputs). No
    ``fast_unroll`` or ``parallel_unroll``: ``unroll`` runs the plain scan.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be an rnn_jax Cell, got {type(cell).__name__}")
    compute_dtype = _check_dtype(compute_dtype)
    x_dtype = _carry_dtype(cell)
    if x_dtype is not None and not _narrower(x_dtype, compute_dtype):
        return cell  # nothing to lower: keep the cell, fast paths included

    def cast_x(x):
        if x_dtype is None:
            return x
        return jax.tree_util.tree_map(
            lambda a: a.astype(x_dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating)
            else a, x)

    def lower(fn):
        low = matmuls_in(fn, compute_dtype)
        return lambda params, carry, x: low(params, carry, cast_x(x))

    return Cell(cell.init, cell.initial_carry, lower(cell.step), cell.hidden_size, cell.gates,
                fast_unroll=None, parallel_unroll=None,
                retention=None if cell.retention is None else lower(cell.retention))


__all__ = ["matmuls_in", "with_compute_dtype"]
