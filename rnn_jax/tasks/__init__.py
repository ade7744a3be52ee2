"""Benchmark tasks. ``get(name, **kwargs)`` builds a :class:`~rnn_jax.tasks.base.Task`.

=========================  ==========================================================
name                       task
=========================  ==========================================================
``adding``                 adding problem, Hochreiter & Schmidhuber 1997 Exp. 4
``adding_le``              adding problem, Le et al. 2015 / Arjovsky et al. 2016
``temporal_order_6a``      temporal order, 2 relevant symbols (H&S 1997 Exp. 6a)
``temporal_order_6b``      temporal order, 3 relevant symbols (H&S 1997 Exp. 6b)
``temporal_order_pascanu`` temporal order of Pascanu et al. 2013
``copy_memory``            copy memory, Arjovsky et al. 2016
``latch``                  latch / two-sequence problem, Bengio et al. 1994
``reber``                  embedded Reber grammar (H&S 1997 Exp. 1)
``long_lag``               noise-free long time lag (H&S 1997 Exp. 2a)
``digits_pixel``           sklearn 8x8 digits, one pixel per step (64 steps)
``digits_row``             sklearn 8x8 digits, one row per step (8 steps)
=========================  ==========================================================
"""

from __future__ import annotations

import functools

from rnn_jax.tasks import adding, copy_memory, digits, latch, long_lag, reber, temporal_order
from rnn_jax.tasks.base import Batch, Task

_REGISTRY = {
    "adding": adding.hochreiter_schmidhuber,
    "adding_le": adding.le_et_al,
    "temporal_order_6a": functools.partial(temporal_order.hochreiter_schmidhuber, 2),
    "temporal_order_6b": functools.partial(temporal_order.hochreiter_schmidhuber, 3),
    "temporal_order_pascanu": temporal_order.pascanu,
    "copy_memory": copy_memory.copy_memory,
    "latch": latch.latch,
    "reber": reber.embedded_reber,
    "long_lag": long_lag.long_lag,
    "digits_pixel": digits.pixel,
    "digits_row": digits.row,
}


def names() -> list[str]:
    """The registered task names, sorted (the values ``task.name`` may take)."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Task:
    """Build the task registered as ``name``; kwargs go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(f"task.name must be one of {names()}, got {name!r}")
    return _REGISTRY[name](**kwargs)


__all__ = ["Batch", "Task", "get", "names"]
