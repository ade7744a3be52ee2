r"""Gradient flow while training: log10 ||dL/dh_t|| over lag x training step.

    python -m experiments.training_heatmap --workdir=runs/training_heatmap

For each model of ``config.models`` a training run of the 1997 adding problem
(:func:`rnn_jax.train.train_and_evaluate`, Adam, global-norm clipping) goes into
``<workdir>/<model>`` with ``diagnostics_every`` on, so the probes of
:mod:`rnn_jax.train.probes` log the gradient-norm-by-lag curve, the top Lyapunov exponent
and the memory timescale at that cadence. The runs resume like any training run (a
finished one is not redone). The figure ``training_heatmap.png``/``.pdf`` shows one
heatmap per model (x: training step, y: lag k, colour: log10 ||dL/dh_{t}|| at lag k
from the last valid step, mean over 4 probe sequences), and below them the top Lyapunov
exponent and the timescale over training. ``results.json`` holds the final eval, the
probe cost (seconds per probe against seconds per training step) and the curves.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from rnn_jax import plotting
from rnn_jax.studies import resume
from rnn_jax.train import config as config_lib
from rnn_jax.train import loop, probes

# name -> (label, cell, cell kwargs; "T" = seq_len)
MODELS = {
    "rnn": ("tanh RNN (orthogonal)", "rnn", {"recurrent_init": "orthogonal"}),
    "lstm_chrono": ("LSTM, chrono init", "lstm", {"chrono_t_max": "T"}),
    "lstm_fb1": ("LSTM, forget bias 1", "lstm", {"forget_bias": 1.0}),
    "gru": ("GRU", "gru", {}),
}


def _log(msg):
    print(f"[training_heatmap] {msg}", flush=True)


def train_config(config, name):
    """The training config of one model (validated)."""
    _, cell, kwargs = MODELS[name]
    c = config_lib.default_config()
    c.cell = cell
    c.cell_kwargs.update({k: (float(config.seq_len) if v == "T" else v) for k, v in kwargs.items()})
    c.hidden_size = config.hidden_size
    c.task.name = "adding"
    c.task.seq_len = config.seq_len
    c.optimizer.learning_rate = config.optimizer.learning_rate
    c.optimizer.clip_norm = config.optimizer.clip_norm
    c.batch_size = config.batch_size
    c.num_steps = config.num_steps
    c.seed = config.seed
    c.num_devices = 1
    c.diagnostics_every = config.diagnostics_every
    c.log_every = config.diagnostics_every
    c.eval_every = c.checkpoint_every = max(config.num_steps // 4, 1)
    c.task.eval_size = 512
    config_lib.validate(c)
    return c


def validate(config):
    """Check ``config`` (raising ValueError naming the field) and return the model names."""
    resume.refuse_renamed(config, "training_heatmap")
    names = config_lib.check_names(config, "models", MODELS)
    for field in ("seq_len", "hidden_size", "batch_size", "num_steps", "diagnostics_every"):
        config_lib.check_int(config, field)
    for name in names:
        train_config(config, name)
    return names


def _read_diag(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        recs = [r for r in map(json.loads, f) if r["split"] == "diagnostics"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        train = [r for r in map(json.loads, f) if r["split"] == "train"]
    return recs, train


def plot(runs, stem, seq_len):
    """The figure, ``stem.png``/``.pdf``: one heatmap per model of log10 ||dL/dh|| by lag
    (``curves: [num_probes, seq_len]``) over training ``steps``; returns the paths written."""
    plt = plotting.pyplot()
    n = len(runs)
    fig = plt.figure(figsize=(plotting.PAGE_WIDTH, 3.6), constrained_layout=True)
    grid = fig.add_gridspec(2, n, height_ratios=[2.2, 1.0])
    vmin = min(np.nanmin(r["curves"]) for r in runs)
    vmax = max(np.nanmax(r["curves"]) for r in runs)
    im = None
    for j, r in enumerate(runs):
        ax = fig.add_subplot(grid[0, j])
        steps = r["steps"]
        half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.5
        im = ax.imshow(r["curves"].T, origin="lower", aspect="auto", cmap="viridis",
                       vmin=vmin, vmax=vmax, interpolation="nearest",
                       extent=(steps[0] - half, steps[-1] + half, -0.5, seq_len - 0.5))
        ax.set_xlabel("training step")
        if j == 0:
            ax.set_ylabel("time lag k")
        plotting.panel_label(ax, r["label"])
        ax2 = fig.add_subplot(grid[1, j])
        ax2.plot(steps, r["top_lyapunov"], color=plotting.PALETTE[1], label="top Lyapunov exponent")
        ax2.set_xlabel("training step")
        ax2.set_ylabel(r"$\lambda_1$ (per step)")
        ax2.set_title(f"final eval MSE {r['eval_loss']:.2g}", loc="left", fontsize=7, pad=3)
        ax2.grid(True)
        if r["timescale"] is not None:
            ax3 = ax2.twinx()
            ax3.plot(steps, r["timescale"], color=plotting.PALETTE[3], linestyle="--",
                     label="median forget timescale")
            ax3.set_ylabel("timescale (steps)", color=plotting.PALETTE[3])
            ax3.spines["right"].set_visible(True)
            h1, l1 = ax2.get_legend_handles_labels()
            h2, l2 = ax3.get_legend_handles_labels()
            ax2.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=6)
        else:
            ax2.legend(loc="lower right", fontsize=6)
    cb = fig.colorbar(im, ax=fig.axes[:2 * n:2] if n > 1 else fig.axes[0], shrink=0.9)
    ticks = np.arange(math.ceil(vmin), math.floor(vmax) + 1)
    if ticks.size > 8:
        ticks = ticks[:: math.ceil(ticks.size / 8)]
    cb.set_ticks(ticks)
    cb.set_ticklabels([f"$10^{{{int(t)}}}$" for t in ticks])
    cb.set_label(r"$\|\partial L/\partial h_t\|$")
    return plotting.save(fig, stem)


def run(config, workdir: str) -> dict:
    """Train each model with probes in ``<workdir>/<model>``; write the figure and results.json."""
    if not workdir:
        raise ValueError("workdir must be a directory path, got an empty value")
    names = validate(config)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    runs = []
    for name in names:
        tc = train_config(config, name)
        sub = os.path.join(workdir, name)
        t0 = time.time()
        ev = loop.train_and_evaluate(tc, sub)
        wall = time.time() - t0
        recs, train = _read_diag(sub)
        steps, curves = probes.read_curves(sub)
        probe_s = [r["seconds"] for r in recs[1:]]  # the first includes compilation
        runs.append({"model": name, "label": MODELS[name][0], "steps": steps, "curves": curves,
                     "eval_loss": ev["loss"], "eval": ev,
                     "top_lyapunov": [r["top_lyapunov"] for r in recs],
                     "timescale": ([r["timescale_median"] for r in recs]
                                   if "timescale_median" in recs[0] else None),
                     "probe_seconds_mean": float(np.mean(probe_s)) if probe_s else None,
                     "num_probes": len(recs), "run_wall_seconds": wall})
        _log(f"{name}: eval loss {ev['loss']:.4g}; {len(recs)} probes, "
             f"{runs[-1]['probe_seconds_mean']} s each (after the first); run {wall:.1f} s")
    paths = plot(runs, os.path.join(workdir, "training_heatmap"), config.seq_len)
    out = {"runs": [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
                    for r in runs]}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(out, f, indent=1, default=lambda x: None)
    _log("wrote " + ", ".join(os.path.basename(p) for p in paths))
    return out
