"""float32 tolerances derived from rounding-error analysis, and one pytree comparison.

Every tolerance here is a bound of the form "number of rounding steps x unit roundoff x
scale", so that a test passes on any CPU vector ISA, thread split, XLA version or
accelerator whose float32 arithmetic is IEEE-rounded (with ``jax_default_matmul_precision
= "highest"``, set in ``conftest.py``), and still fails on a wrong formula, whose error is
O(1) relative to the values compared. The tests compare float32 results against float64
NumPy references, so the reference's own rounding (at float64's u ~ 1e-16) is negligible.

Notation (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002):

- ``U32 = 2**-24``: unit roundoff of float32; one correctly rounded operation has relative
  error at most ``U32`` (Higham Sec. 2.2).
- ``gamma(n) = n u / (1 - n u)``: bound on the relative error accumulated over n
  rounded operations (Higham Lemma 3.1).
- A sum of n terms in ANY order (serial, pairwise, vectorised tree: the order is what
  differs between ISAs and thread splits) has error at most ``gamma(n - 1) * sum |x_i|``
  (Higham Eq. 4.4). A dot product of length n: ``gamma(n) * sum |x_i y_i|`` (Eq. 3.5).
- XLA's float32 transcendental functions (exp, log, tanh, logistic) are not correctly
  rounded; we allow ``TRANSCENDENTAL_ULPS`` units of roundoff each (their implementations
  are polynomial approximations accurate to a few ulp; 8 is a safe margin that still sits
  far below any formula error).

These are worst-case bounds: they are typically 10-100x larger than the errors seen on one
machine, and that margin is what makes them portable. They are still tiny against the
errors a wrong formula makes (O(1e-2) or more for the smallest perturbations tested here).
"""

from __future__ import annotations

import jax
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: spacing of float32 numbers at 1.0
U32 = EPS32 / 2  # 2**-24: unit roundoff (relative error of one rounded operation)

# Units of roundoff allowed per float32 transcendental (exp, log, tanh, sigmoid, log1p).
TRANSCENDENTAL_ULPS = 8
# Rounded operations per element of one recurrent-cell step OUTSIDE its matmuls: bias
# adds, the gate nonlinearities (counted as transcendentals), products and sums of the
# cell update (LSTM: c = f*c + i*g, h = o*tanh(c), about 6 plain operations and 5
# transcendentals; the GRU and LayerNorm-LSTM are of the same order).
POINTWISE_OPS_PER_STEP = 6 + 5 * TRANSCENDENTAL_ULPS


def gamma(n: int, u: float = U32) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``: relative error of n rounded operations."""
    if n * u >= 1:
        raise ValueError(f"gamma({n}) undefined: n * u = {n * u} >= 1")
    return n * u / (1 - n * u)


def reduction_rtol(n: int, per_term_ops: int = 1) -> float:
    """Relative tolerance of a float32 sum or mean of ``n`` same-sign terms.

    Each term carries ``per_term_ops`` rounded operations of its own (a log-softmax, say);
    the sum adds ``gamma(n - 1)`` in any summation order (Higham Eq. 4.4), and the mean's
    division one more rounding. For same-sign terms ``sum |x_i| = |sum x_i|``, so the
    bound is relative to the result itself.
    """
    return gamma(max(n - 1, 0) + per_term_ops + 1)


def recurrence_rtol(steps: int, fan_in: int) -> float:
    """Relative tolerance of a float32 recurrent run of ``steps`` steps against float64.

    One step's matmuls are dot products of length ``fan_in`` (input plus hidden size,
    ``gamma(fan_in)`` each, Higham Eq. 3.5) followed by the pointwise cell update
    (``POINTWISE_OPS_PER_STEP``). With contracting recurrent Jacobians (every test uses
    small weights or saturating gates, so ``||dh_t/dh_{t-1}|| <= 1``) the step errors add
    up at most linearly over the steps instead of being amplified.
    """
    return steps * gamma(fan_in + POINTWISE_OPS_PER_STEP)


def product_atol(scale: float, depth: int, dim: int) -> float:
    """Absolute tolerance for the 2-norm or the singular values of a float32 product of
    ``depth`` ``dim x dim`` Jacobians, compared with the same product computed differently.

    ``scale`` is ``prod_i ||J_i||_2`` over the factors (the test computes it from its
    float64 reference; it bounds ``sigma_max`` of the product from above). Each factor
    carries the pointwise error of its entries (``POINTWISE_OPS_PER_STEP``) and each
    matmul ``gamma(dim)`` (Higham Eq. 3.13, with ``|| |J| ||_2`` taken as ``||J||_2``,
    which holds within ``sqrt(dim)`` and in practice within a small factor). To first
    order the product then carries at most ``depth * gamma(dim + POINTWISE_OPS_PER_STEP)
    * scale`` (the forward bound for products of matrices, Higham Sec. 3.5). By Weyl's
    inequality each singular value, and the 2-norm, moves by at most the perturbation's
    2-norm. The SVD itself is backward stable and adds ``gamma(dim) * sigma_max`` (Golub
    & Van Loan, 4th ed., Sec. 8.6). Both sides of a comparison are float32: factor 2. For
    the Frobenius norm multiply by ``sqrt(dim)`` (``||E||_F <= sqrt(dim) ||E||_2``).

    This replaces an rtol on small singular values: in float32 a singular value at 1e-4
    of the largest carries ~1e-4 relative error, which an rtol of 1e-4 cannot cover; an
    absolute bound relative to the product's scale can (the issue-13 failure).
    """
    per_factor = gamma(dim + POINTWISE_OPS_PER_STEP)
    return 2 * scale * (depth * per_factor + gamma(dim))


def _path_str(path) -> str:
    return jax.tree_util.keystr(path) or "<root>"


def assert_close(got, want, *, rtol=0.0, atol=0.0, err_msg: str = "") -> None:
    """``|got - want| <= atol + rtol * |want|`` elementwise, in float64.

    Like ``np.testing.assert_allclose``, but ``atol`` and ``rtol`` may be arrays that
    broadcast against the values (a bound per lag, say), and the message names the worst
    element with its bound. NaNs must sit at the same places; infinities must match exactly.
    """
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if g.shape != w.shape:
        raise AssertionError(f"shape {g.shape} != {w.shape}. {err_msg}")
    if not np.array_equal(np.isnan(g), np.isnan(w)):
        raise AssertionError(f"NaNs at different places:\n got {g}\nwant {w}. {err_msg}")
    inf = np.isinf(g) | np.isinf(w)
    if not np.array_equal(g[inf], w[inf]):
        raise AssertionError(f"infinities differ:\n got {g}\nwant {w}. {err_msg}")
    ok = np.isnan(g) | inf
    diff = np.where(ok, 0.0, np.abs(g - w))
    bound = np.broadcast_to(np.asarray(atol, np.float64) + np.asarray(rtol, np.float64)
                            * np.abs(np.where(ok, 0.0, w)), g.shape)
    bad = diff > bound
    if np.any(bad):
        i = np.unravel_index(np.argmax(np.where(bad, diff - bound, -np.inf)), g.shape)
        raise AssertionError(
            f"{int(bad.sum())}/{g.size} elements outside tolerance; worst at {i}: got {g[i]!r}, "
            f"want {w[i]!r}, |diff| {diff[i]:.3g} > bound {bound[i]:.3g}. {err_msg}")


def tree_allclose(got, want, *, rtol=0.0, atol=0.0, scaled_atol: float = 0.0,
                  err_msg: str = "") -> None:
    """Assert that two pytrees have the same structure, shapes and values within tolerance.

    Leaves are compared by :func:`assert_close`: ``|got - want| <= atol + scaled_atol *
    max|want_leaf| + rtol * |want|``, in float64; a failure names the leaf's path.
    ``scaled_atol`` is for entries near zero: such an entry is a sum of terms of the leaf's
    magnitude that cancelled, so its rounding error is bounded relative to that magnitude,
    not to itself (an rtol alone cannot hold there). Callers pass tolerances built from the
    functions above, with a comment saying which bound applies.
    """
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    if got_def != want_def:
        raise AssertionError(f"pytree structures differ: {got_def} vs {want_def}. {err_msg}")
    for (path, g), (_, w) in zip(got_leaves, want_leaves):
        w64 = np.asarray(w, np.float64)
        finite = w64[np.isfinite(w64)]
        scale = float(np.max(np.abs(finite))) if finite.size else 0.0
        assert_close(g, w, rtol=rtol, atol=atol + scaled_atol * scale,
                     err_msg=f"at {_path_str(path)}. {err_msg}")
