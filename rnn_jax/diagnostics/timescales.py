"""Per-unit memory timescales from a cell's ``retention`` (forget gate, update gate, |lambda|).

A cell declares ``retention(params, carry_{t-1}, x_t) -> [*batch, N]``: the fraction of
each memory unit's content that step t keeps (:class:`rnn_jax.cells.Cell`). For the
LSTM it is the forget gate ``f_t`` (``c_t = f_t c_{t-1} + ...``), for the GRU the update
gate ``z_t`` (``h_t = z_t h_{t-1} + ...``, Cho et al. 2014), for a diagonal linear
recurrence such as the LRU ``|lambda|``. A unit whose retention stays at ``r`` forgets
as ``r^k = exp(-k / tau)`` over k steps, ``tau = -1 / log r`` steps (e.g. r = 0.95
gives 19.5 steps; Tallec & Ollivier 2018 choose the chrono init from this relation).

Averaging over data. Along a run the retained fraction after k steps is the product
``r_{t+1} ... r_{t+k}``, so the average that governs memory is the geometric one: the
timescale reported is ``tau = -1 / mean(log r)``, the mean taken over the valid steps
and all examples. (``-1/log(mean r)`` would overstate the memory of a unit whose gate
flickers between 0 and 1.) This is the same mean that
:func:`~rnn_jax.diagnostics.forget_gate_stats` reports as ``mean_log10`` for all units
together.

Nothing here is specific to a cell: any :class:`~rnn_jax.cells.Cell` with a
``retention`` field works, built in or written by a user.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.diagnostics._common import accumulation_dtype, check_lengths
from rnn_jax.diagnostics.gradient_flow import _check_common


def _check_cell(cell):
    retention = getattr(cell, "retention", None)
    step = getattr(cell, "step", None)
    if not callable(step) or not callable(retention):
        raise ValueError(
            "cell must be a rnn_jax.cells.Cell with a `retention` field (params, carry, x) -> "
            f"[*batch, N]; got {type(cell).__name__} with retention={retention!r}. Cells "
            "without a memory gate (the vanilla RNN) have no retention.")
    return step, retention


def retention_trace(cell, params, carry, xs):
    """``r[t] = cell.retention(params, carry_{t-1}, xs[t])`` along the run: ``[T, *batch, N]``."""
    step, retention = _check_cell(cell)
    _check_common(step, params, carry, xs)

    def body(c, x):
        r = retention(params, c, x)
        c, _ = step(params, c, x)
        return c, r

    return jax.lax.scan(body, carry, xs)[1]


def timescales(cell, params, carry, xs, *, lengths=None) -> dict:
    """Per-unit memory timescales ``-1 / mean(log retention)``, averaged over time and examples.

    Args:
      cell: a :class:`~rnn_jax.cells.Cell` with a ``retention`` field.
      params, carry: the cell's parameters and initial carry (``[*batch, ...]``).
      xs: ``[T, *batch, I]`` inputs.
      lengths: optional int array with the carry's batch shape: only steps
        ``t < lengths`` are averaged (padding, NaN included, has no effect).

    Returns:
      dict of float ``[N]`` arrays (N = the retention's last axis, e.g. H):
      ``"timescale"`` in steps (``inf`` for a unit that keeps everything, 0 for one that
      keeps nothing), ``"mean_log_retention"`` (natural log), ``"mean_retention"``, and
      ``"count"``, the number of (step, example) pairs averaged.
    """
    step, _ = _check_cell(cell)
    _check_common(step, params, carry, xs)
    lengths = check_lengths(lengths, carry, xs)
    r = retention_trace(cell, params, carry, xs)
    # The average is taken in float32 at least (bfloat16 logs of r near 1 lose the digits
    # that matter: log(0.999) needs 3 significant digits of 1 - r).
    r = r.astype(accumulation_dtype(r.dtype))
    T = r.shape[0]
    if lengths is None:
        valid = jnp.ones(r.shape[:-1], bool)
    else:
        t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
        valid = t < lengths[None]
        valid = valid.reshape(valid.shape + (1,) * (r.ndim - 1 - valid.ndim))
        valid = jnp.broadcast_to(valid, r.shape[:-1])
    w = valid[..., None].astype(r.dtype)
    axes = tuple(range(r.ndim - 1))
    count = jnp.sum(w, axis=axes)
    safe_r = jnp.where(valid[..., None], r, 1.0)   # padded entries never reach the log
    log_r = jnp.log(safe_r)
    mean_log = jnp.sum(jnp.where(valid[..., None], log_r, 0.0), axis=axes) / jnp.maximum(count, 1)
    mean_r = jnp.sum(jnp.where(valid[..., None], safe_r, 0.0), axis=axes) / jnp.maximum(count, 1)
    tau = jnp.where(mean_log < 0, -1.0 / jnp.where(mean_log < 0, mean_log, -1.0), jnp.inf)
    return {"timescale": tau, "mean_log_retention": mean_log, "mean_retention": mean_r,
            "count": count}


def plot_timescale_histograms(entries: Mapping[str, Sequence[float]], path_stem: str, *,
                              bins: int = 30, title: str | None = None) -> list[str]:
    """Histograms of per-unit timescales on a log axis, one row per entry; saves png + pdf.

    ``entries`` maps a label (e.g. ``"LSTM, chrono init"``) to the timescales of its units.
    Infinite timescales (a unit that keeps everything) are counted at the right edge.
    Returns the written paths.
    """
    from rnn_jax import plotting  # lazy: matplotlib only when plotting

    labels = list(entries)
    if not labels:
        raise ValueError("entries must hold at least one label -> timescales")
    finite = np.concatenate([np.asarray(entries[k], np.float64)[np.isfinite(entries[k])]
                             for k in labels] + [np.array([1.0])])
    lo = max(float(np.min(finite[finite > 0])) if np.any(finite > 0) else 1.0, 1e-2)
    hi = max(float(np.max(finite)), lo * 10)
    edges = np.logspace(math.log10(lo) - 0.05, math.log10(hi) + 0.05, bins + 1)
    fig, axes = plotting.panels(len(labels), panel_height=1.1, sharey=False)
    for i, (ax, label) in enumerate(zip(axes, labels)):
        tau = np.asarray(entries[label], np.float64)
        tau = np.clip(np.where(np.isfinite(tau), tau, edges[-1]), edges[0], edges[-1])
        ax.hist(tau, bins=edges, color=plotting.PALETTE[(i % 7) + 1], alpha=0.85)
        med = float(np.median(tau))
        ax.axvline(med, color="0.2", linestyle=":", linewidth=0.9)
        ax.set_xscale("log")
        ax.set_ylabel("units")
        plotting.panel_label(ax, f"{label}: median {med:.3g} steps")
    axes[-1].set_xlabel(r"memory timescale $\tau = -1/\overline{\log r}$ (steps)")
    if title:
        axes[0].set_title(title)
    return plotting.save(fig, path_stem)


__all__ = ["plot_timescale_histograms", "retention_trace", "timescales"]
