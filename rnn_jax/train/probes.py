"""Diagnostics while training: gradient flow, top Lyapunov exponent and memory timescales.

With ``config.diagnostics_every = N > 0`` the training loop (:mod:`rnn_jax.train.loop`)
calls a :class:`Probe` at step 0 of a fresh run and after every N steps. Each call
measures, per seed, on :data:`PROBE_BATCH` fixed sequences of the task (drawn once from
the run's eval key, so every call sees the same data):

* ``log10_grad_lag<k>``: ``log10 ||dL/dh_t||`` at lag k counted back from each
  sequence's last valid step (:func:`rnn_jax.diagnostics.grad_norms`, ``log10=True``,
  exact at any magnitude), mean over the sequences, for k in 1, 10, 100 and T-1 (those
  below T);
* ``top_lyapunov``: the largest finite-time Lyapunov exponent of the cell along the
  sequences (:func:`rnn_jax.diagnostics.top_exponent`: forward mode, 8 random starting
  directions, natural log per step, mean over the sequences);
* ``timescale_median`` and ``timescale_pooled`` (cells with a ``retention``: LSTM
  forget gate, GRU update gate, ...): the median over units of
  ``-1/mean(log retention)``, and ``-1/mean(log retention)`` pooled over all units
  (:func:`rnn_jax.diagnostics.timescales`);
* ``seconds``: the wall time of the call (the first one includes compilation).

These go to ``metrics.jsonl`` and TensorBoard as split ``"diagnostics"``. The whole
curve ``log10 ||dL/dh_t||`` by lag (mean over seeds and sequences) goes to
``<workdir>/gradient_lag.jsonl``, one record ``{"step", "log10_grad_norm_by_lag"}`` per
call: the data of the lag x training-step heatmap. On resume, records past the resumed
step are dropped from both files, as for the training metrics.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import diagnostics, models
from rnn_jax.train.metrics_log import _truncate_jsonl

PROBE_BATCH = 4            # sequences per seed each probe measures
LYAPUNOV_DIRECTIONS = 8    # directions tracked for the top Lyapunov exponent
CURVE_FILE = "gradient_lag.jsonl"


def probe_lags(seq_len: int) -> list[int]:
    """The lags logged as scalars: 1, 10, 100 and T-1, those below T, without repeats."""
    return sorted({k for k in (1, 10, 100, seq_len - 1) if 0 <= k < seq_len})


def _hidden(tree):
    return tree[0] if isinstance(tree, tuple) else tree


def make_probe(config, model=None):
    """``probe(params, batch) -> (scalars, curve)`` for one seed's model parameters.

    ``batch`` is the task's (batch-major, right-padded); ``scalars`` maps the names of
    the module docstring to float scalars, ``curve`` is float ``[T]`` (log10 gradient norm
    by lag, mean over the sequences; NaN at lags no sequence reaches).
    """
    model = models.make_model(config) if model is None else model  # built once per run
    cell, task = model.cell, model.task
    T = config.task.seq_len
    lags = probe_lags(T)

    def one(params, xs, length, example):
        w, b = params["readout"]["w"], params["readout"]["b"]

        def loss_fn(states):
            h = _hidden(states)
            if task.output_mode == "last":
                # With lengths the padded steps keep the carry: states[-1] is the last valid.
                out = (h[-1] @ w + b)[None]
            else:
                out = (h @ w + b.reshape(1, -1))[None]
            return task.loss(out, example)

        carry0 = cell.initial_carry()
        g = _hidden(diagnostics.grad_norms(cell.step, params["cell"], carry0, xs, loss_fn,
                                           log10=True, lengths=length))
        idx = length - 1 - jnp.arange(T)
        curve = jnp.where(idx >= 0, g[jnp.clip(idx, 0, xs.shape[0] - 1)], jnp.nan)
        # A few random directions (fixed key), forward mode: cheap, and with a random start
        # the slow directions (the LSTM's cell state) show up within a short sequence.
        d = sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(carry0))
        top = diagnostics.top_exponent(cell.step, params["cell"], carry0, xs, lengths=length,
                                       mode="fwd", num_exponents=min(d, LYAPUNOV_DIRECTIONS),
                                       key=jax.random.PRNGKey(0))
        return curve, top

    def probe(params, batch):
        xs_all = batch["inputs"]
        examples = {k: v[:, None] for k, v in batch.items()}  # each example as a batch of one
        curve, top = jax.vmap(one, in_axes=(None, 0, 0, 0))(params, xs_all, batch["lengths"],
                                                              examples)
        finite = jnp.isfinite(curve)
        mean_curve = (jnp.sum(jnp.where(finite, curve, 0.0), axis=0)
                      / jnp.maximum(jnp.sum(finite, axis=0, dtype=curve.dtype), 1.0))
        mean_curve = jnp.where(jnp.any(finite, axis=0), mean_curve, jnp.nan)
        scalars = {f"log10_grad_lag{k}": mean_curve[k] for k in lags}
        scalars["top_lyapunov"] = jnp.mean(top)
        if cell.retention is not None:
            xs_tm = jnp.swapaxes(xs_all, 0, 1)
            ts = diagnostics.timescales(cell, params["cell"], cell.initial_carry(xs_tm.shape[1:2]),
                                        xs_tm, lengths=batch["lengths"])
            # A unit that keeps everything has tau = inf; cap it so the logs stay finite JSON.
            scalars["timescale_median"] = jnp.minimum(jnp.median(ts["timescale"]), 1e9)
            pooled = jnp.mean(ts["mean_log_retention"])
            scalars["timescale_pooled"] = jnp.where(pooled < 0, -1.0 / jnp.minimum(pooled, -1e-9),
                                                    1e9)
        return scalars, mean_curve

    return probe


class Probe:
    """The probe of one run: jitted over seeds, logging to the run's metrics and curve file."""

    def __init__(self, config, workdir: str, eval_key, *, start_step: int = 0, model=None):
        model = models.make_model(config) if model is None else model
        task = model.task
        self._batch = task.sample(jax.random.fold_in(eval_key, 0x5eed), PROBE_BATCH,
                                  config.task.seq_len)
        self._fn = jax.jit(jax.vmap(make_probe(config, model), in_axes=(0, None)))
        self.path = os.path.join(workdir, CURVE_FILE)
        _truncate_jsonl(self.path, start_step)

    def __call__(self, step: int, params, logger) -> dict:
        t0 = time.perf_counter()
        scalars, curve = jax.device_get(self._fn(params, self._batch))
        seconds = time.perf_counter() - t0
        num_seeds = np.asarray(curve).shape[0]
        scalars = {k: np.asarray(v, np.float64) for k, v in scalars.items()}
        scalars["seconds"] = np.full((num_seeds,), seconds)
        record = logger.write(step, "diagnostics", scalars)
        with warnings.catch_warnings():  # a lag no sequence reaches stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.asarray(curve, np.float64), axis=0)
        curve_list = [float(v) if math.isfinite(v) else None for v in np.asarray(mean).tolist()]
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "log10_grad_norm_by_lag": curve_list}) + "\n")
        return record


def read_curves(workdir: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps [N], log10 curves [N, T])`` from a run's ``gradient_lag.jsonl`` (NaN for null)."""
    steps, rows = [], []
    with open(os.path.join(workdir, CURVE_FILE)) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                steps.append(r["step"])
                rows.append([np.nan if v is None else v for v in r["log10_grad_norm_by_lag"]])
    return np.asarray(steps), np.asarray(rows, np.float64)


__all__ = ["CURVE_FILE", "PROBE_BATCH", "Probe", "make_probe", "probe_lags", "read_curves"]
