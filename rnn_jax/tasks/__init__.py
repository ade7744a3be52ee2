"""Benchmark tasks. ``get(name, **kwargs)`` builds a :class:`~rnn_jax.tasks.base.Task`."""

from __future__ import annotations

from rnn_jax.tasks import adding
from rnn_jax.tasks.base import Batch, Task

_REGISTRY = {
    "adding": adding.hochreiter_schmidhuber,
    "adding_le": adding.le_et_al,
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Task:
    """Build the task registered as ``name``; kwargs go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(f"task.name must be one of {names()}, got {name!r}")
    return _REGISTRY[name](**kwargs)


__all__ = ["Batch", "Task", "get", "names"]
