"""Weight initializers as small pure functions.

Every initializer has the signature ``init(key, shape, dtype=jnp.float32) -> Array``
once its keyword arguments are bound, so cells can take any of them (or a user's own)
as ``kernel_init`` / ``recurrent_init``. Matrices are laid out ``[fan_in, fan_out]`` so
that a layer computes ``x @ W``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def orthogonal(key, shape, dtype=jnp.float32, *, scale: float = 1.0) -> jax.Array:
    """``scale`` times a Haar-random orthogonal matrix (Saxe et al. 2014).

    For a square matrix every eigenvalue has modulus ``scale``, so the spectral radius
    and every singular value equal ``scale`` exactly. Non-square shapes get
    orthonormal rows or columns.
    """
    n_rows, n_cols = shape[-2], shape[-1]
    big, small = max(n_rows, n_cols), min(n_rows, n_cols)
    # QR in float64 when that is what was asked for (with x64 enabled), else float32,
    # so orthogonality holds to the precision of the requested dtype.
    work = jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32
    a = jax.random.normal(key, (big, small), work)
    q, r = jnp.linalg.qr(a)
    # Fixing the signs of diag(r) makes q Haar-distributed rather than biased by QR.
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    if n_rows < n_cols:
        q = q.T
    return (scale * q).astype(dtype)


def identity(key, shape, dtype=jnp.float32, *, scale: float = 1.0) -> jax.Array:
    """``scale * I``: the IRNN initialisation of Le, Jaitly & Hinton 2015 (arXiv 1504.00941).

    ``key`` is unused; it is accepted so that all initializers share one signature.
    """
    del key
    if shape[-1] != shape[-2]:
        raise ValueError(f"identity init needs a square shape, got {tuple(shape)}")
    return scale * jnp.eye(shape[-1], dtype=dtype)


def gaussian(key, shape, dtype=jnp.float32, *, scale: float = 1.0) -> jax.Array:
    """Entries ~ N(0, scale^2 / fan_in).

    For a square n x n matrix the spectral radius tends to ``scale`` as n grows
    (circular law), which is how the "scaled Gaussian" recurrent init is usually
    parameterised; for finite n it fluctuates around ``scale`` by O(n^-1/2).
    """
    fan_in = shape[-2]
    return (scale / math.sqrt(fan_in)) * jax.random.normal(key, shape, dtype)


def uniform(key, shape, dtype=jnp.float32, *, scale: float | None = None) -> jax.Array:
    """Entries ~ U[-scale, scale]; ``scale=None`` means 1/sqrt(fan_out).

    With ``shape[-1]`` equal to (a multiple of) the hidden size H this is
    PyTorch's default RNN init, U[-1/sqrt(H), 1/sqrt(H)]; pass ``scale`` explicitly for
    the U[-0.1, 0.1] / U[-0.2, 0.2] of Hochreiter & Schmidhuber 1997.
    """
    if scale is None:
        scale = 1.0 / math.sqrt(shape[-1])
    return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)


def glorot_uniform(key, shape, dtype=jnp.float32) -> jax.Array:
    """Glorot & Bengio 2010: U[-a, a] with a = sqrt(6 / (fan_in + fan_out))."""
    a = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return jax.random.uniform(key, shape, dtype, minval=-a, maxval=a)


def zeros(key, shape, dtype=jnp.float32) -> jax.Array:
    """All zeros of ``shape``; ``key`` is unused (accepted for the shared signature)."""
    del key
    return jnp.zeros(shape, dtype)


def chrono(key, hidden_size: int, dtype=jnp.float32, *, t_max: float) -> tuple[jax.Array, jax.Array]:
    """Chrono initialisation of Tallec & Ollivier 2018 (arXiv 1804.11188), eq. (16).

    Returns ``(b_forget, b_input)`` with ``b_forget = log(u)``, ``u ~ U[1, t_max - 1]``
    and ``b_input = -b_forget``, so that the forget gate's characteristic memory
    time 1 / (1 - sigmoid(b_f)) ~ u is spread over the range of dependencies
    expected in the data.
    """
    if not t_max > 2:
        raise ValueError(f"chrono init needs t_max > 2, got t_max={t_max}")
    u = jax.random.uniform(key, (hidden_size,), jnp.float32, minval=1.0, maxval=t_max - 1.0)
    b_f = jnp.log(u).astype(dtype)
    return b_f, -b_f


_RECURRENT = {"orthogonal": orthogonal, "identity": identity, "gaussian": gaussian}


# Every initializer a cell's kernel_init / recurrent_init may name.
_NAMED = {**_RECURRENT, "uniform": uniform, "glorot_uniform": glorot_uniform, "zeros": zeros}


def recurrent(name, scale: float = 1.0) -> Initializer:
    """A recurrent-matrix initializer by name (or a callable) with its scale.

    For ``"orthogonal"``, ``"identity"`` and ``"gaussian"`` the scale is the spectral
    radius (exactly, or in the large-H limit for gaussian). Any other name or callable
    accepted by :func:`resolve` has its output multiplied by ``scale``.
    """
    if isinstance(name, str) and name in _RECURRENT:
        return functools.partial(_RECURRENT[name], scale=scale)
    init = resolve(name, "recurrent_init")
    if scale == 1.0:
        return init

    def scaled(key, shape, dtype=jnp.float32):
        return (scale * init(key, shape, dtype)).astype(dtype)
    return scaled


def resolve(init, arg: str = "recurrent_init") -> Initializer:
    """An initializer given as a callable or by name, as a callable.

    Args:
      init: a callable ``init(key, shape, dtype) -> Array`` (returned unchanged) or one of
        the names ``"orthogonal"``, ``"identity"``, ``"gaussian"``, ``"uniform"``,
        ``"glorot_uniform"``, ``"zeros"`` (the functions of this module with their
        default keyword arguments).
      arg: the argument's name, for the error message.

    Raises:
      ValueError: an unknown name. TypeError: neither a name nor a callable.
    """
    if isinstance(init, str):
        if init not in _NAMED:
            raise ValueError(f"{arg} must be one of {sorted(_NAMED)} or a callable "
                             f"init(key, shape, dtype), got {init!r}")
        return _NAMED[init]
    if not callable(init):
        raise TypeError(f"{arg} must be one of {sorted(_NAMED)} or a callable "
                        f"init(key, shape, dtype), got {type(init).__name__}")
    return init
