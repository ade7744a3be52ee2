r"""Success rate against sequence length: tanh RNN, LSTM and GRU, with and without clipping.

    python -m experiments.success_rate --workdir=/tmp/success_rate
    python -m experiments.success_rate --workdir=/tmp/sr --config.seq_lens='(20,40)' --config.num_seeds=4
    python -m experiments.success_rate --workdir=/tmp/sr_full \
        --config=experiments/configs/success_rate.py:full

The experiment of Bengio, Simard & Frasconi 1994 ("Learning long-term dependencies
with gradient descent is difficult", IEEE TNN 5(2), Fig. 3: fraction of successful
trials against T) and Pascanu, Mikolov & Bengio 2013 (arXiv 1211.5063, Fig. 7: rate of
success against T on the temporal order task), redone for the built-in cells.

For every point ``(cell, clip, T)`` of ``config.cells x config.clip x config.seq_lens``:

1. a training config (``rnn_jax.train.config``) is built: the cell with
   ``config.cell_kwargs[cell]``, ``config.hidden_size``, the task at length T, the
   optimizer (``config.optimizer``), global-norm clipping at ``config.optimizer.clip_norm`` when clip is on and none when
   it is off, ``config.num_steps`` updates of ``config.batch_size`` sequences;
2. ``config.num_seeds`` seeds train as ONE program,
   ``jax.jit(jax.vmap(rnn_jax.train.training.make_train(tc)))(keys)``;
3. every seed is evaluated on the same ``eval_size`` fresh sequences (in chunks of at
   most ``config.eval_batch``; chunk means of mean metrics are averaged, ``num_*`` counts
   summed) and counted as a success when ``task.success(metrics)`` holds -- the task's
   own criterion (e.g. for Pascanu's temporal order, fewer than 1% of 10000 sequences
   misclassified). A seed whose loss or gradient became non-finite fails.

Every training config is validated before anything compiles or is written.

Outputs in ``--workdir``: ``config.json``; ``results.json`` with ``"points"``, one object
per point: ``cell``, ``clip`` (bool), ``seq_len``, ``num_seeds``, ``num_success``,
``final_metric`` (the task's ``metric_name`` per seed, null if non-finite), plus
``success`` and ``diverged`` per seed, ``final_train_loss`` per seed, ``clipped_fraction``
and ``seconds``; and ``success_rate.png``/``.pdf`` (one panel per clip setting, success
rate against T with 95% Wilson intervals). results.json is rewritten after every
point, so a long run can be watched (``"complete": false`` until the end).

Resume: every finished point is also written atomically to ``points/<cell>_clip-<on|off>_T<T>.json``
(:mod:`rnn_jax.studies.resume`). Rerunning the same command in the same workdir reloads
the finished points and computes only the rest; the points equal an uninterrupted run's
(each point's keys derive from ``config.seed`` alone). A workdir holding another
experiment, or this study with another config, is refused naming the differing fields.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from rnn_jax import models, plotting, tasks
from rnn_jax.train import training
from rnn_jax.studies import resume
from rnn_jax.train import config as train_config_lib

CLASSIC = ("rnn", "lstm", "gru")
MODERN = ("lru", "min_gru", "min_lstm", "slstm", "indrnn")
CELLS = CLASSIC + MODERN
_LABELS = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU", "lru": "LRU", "min_gru": "minGRU",
           "min_lstm": "minLSTM", "slstm": "sLSTM", "indrnn": "IndRNN"}
_COLORS = {"rnn": plotting.PALETTE[1], "lstm": plotting.PALETTE[3], "gru": plotting.PALETTE[4],
           "lru": plotting.PALETTE[5], "min_gru": plotting.PALETTE[4],
           "min_lstm": plotting.PALETTE[3], "slstm": plotting.PALETTE[0],
           "indrnn": plotting.PALETTE[2]}
_MARKERS = {"rnn": "o", "lstm": "s", "gru": "^", "lru": "D", "min_gru": "v", "min_lstm": "P",
            "slstm": "X", "indrnn": "o"}
# String cell kwargs resolved per point against its T (e.g. IndRNN's cap 2^(1/T), Li et al. 2018).
_PLACEHOLDERS = {"T": lambda t: float(t), "2^(1/T)": lambda t: 2.0 ** (1.0 / t)}


def _log(msg: str) -> None:
    # print, not absl logging: visible whether run from the command line or from Python.
    print(f"[success_rate] {msg}", flush=True)


# ----------------------------------------------------------------------------- config

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def cell_names(config) -> list[str]:
    """``config.cells`` as a list, in the given order."""
    return train_config_lib.check_names(config, "cells", CELLS)


def train_config(config, cell: str, clip: bool, seq_len: int) -> ml_collections.ConfigDict:
    """The training config (``rnn_jax.train.config``) of one point of the study."""
    c = train_config_lib.default_config()
    c.cell = cell
    c.hidden_size = config.hidden_size
    kwargs = config.cell_kwargs.get(cell, None) if "cell_kwargs" in config else None
    kwargs = kwargs.to_dict() if kwargs is not None else {}
    kwargs = {k: (_PLACEHOLDERS[v](seq_len) if isinstance(v, str) and v in _PLACEHOLDERS else v)
              for k, v in kwargs.items()}
    c.cell_kwargs = ml_collections.ConfigDict(kwargs)
    c.task.name = config.task.name
    c.task.seq_len = seq_len
    c.task.kwargs = ml_collections.ConfigDict(config.task.kwargs.to_dict())
    c.task.eval_size = config.eval_size
    c.optimizer.name = config.optimizer.name
    c.optimizer.learning_rate = config.optimizer.learning_rate
    c.optimizer.schedule = config.optimizer.schedule
    c.optimizer.warmup_steps = config.optimizer.warmup_steps
    c.optimizer.clip_mode = "global_norm"
    c.optimizer.clip_norm = float(config.optimizer.clip_norm) if clip else 0.0
    c.batch_size = config.batch_size
    c.num_steps = config.num_steps
    c.num_seeds = config.num_seeds
    c.seed = config.seed
    c.num_devices = 1
    return c


def validate(config) -> None:
    """Raise ValueError/TypeError naming the bad field, before anything compiles or is written.

    Checks the study's own fields, then every point's training config with
    ``rnn_jax.train.config.validate`` (which traces shapes only, via ``jax.eval_shape``).
    """
    resume.refuse_renamed(config, "success_rate")
    required = ("task", "seq_lens", "cells", "clip", "cell_kwargs",
                "hidden_size", "optimizer",
                "batch_size", "num_steps", "num_seeds", "seed", "eval_size", "eval_batch")
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"config is missing fields {missing}; start from "
                         "experiments/configs/success_rate.py")
    missing = [f"task.{k}" for k in ("name", "kwargs") if k not in config.task]
    if missing:
        raise ValueError(f"config is missing fields {missing}; start from "
                         "experiments/configs/success_rate.py")
    if config.task.name not in tasks.names():
        raise ValueError(f"config.task.name must be one of {tasks.names()}, got "
                         f"{config.task.name!r}")
    names = cell_names(config)
    seq_lens = list(config.seq_lens) if isinstance(config.seq_lens, (list, tuple)) else None
    if (not seq_lens or any(not _is_int(t) or t < 1 for t in seq_lens)
            or seq_lens != sorted(set(seq_lens))):
        raise ValueError(f"config.seq_lens must be a non-empty tuple of increasing ints >= 1, "
                         f"got {config.seq_lens!r}")
    clips = list(config.clip) if isinstance(config.clip, (list, tuple)) else None
    if not clips or any(not isinstance(v, bool) for v in clips) or len(set(clips)) != len(clips):
        raise ValueError(f"config.clip must be a non-empty tuple of distinct bools (False = no "
                         f"clipping, True = clip at optimizer.clip_norm), got {config.clip!r}")
    missing = [f"optimizer.{k}" for k in ("name", "learning_rate", "schedule", "warmup_steps",
                                          "clip_norm") if k not in config.optimizer]
    if missing:
        raise ValueError(f"config is missing fields {missing}; start from "
                         "experiments/configs/success_rate.py")
    cn = config.optimizer.clip_norm
    if True in clips and not (isinstance(cn, (int, float)) and not isinstance(cn, bool)
                              and math.isfinite(cn) and cn > 0):
        raise ValueError(f"config.optimizer.clip_norm must be a finite number > 0 when config.clip holds "
                         f"True, got {cn!r}")
    unknown = [k for k in config.cell_kwargs if k not in CELLS]
    if unknown:
        raise ValueError(f"config.cell_kwargs keys must be cell names from {list(CELLS)}, "
                         f"got {sorted(config.cell_kwargs)}")
    if not _is_int(config.eval_batch) or config.eval_batch < 1:
        raise ValueError(f"config.eval_batch must be an int >= 1, got {config.eval_batch!r}")
    for cell in names:
        for clip in clips:
            for seq_len in seq_lens:
                tc = train_config(config, cell, clip, seq_len)
                try:
                    train_config_lib.validate(tc)
                except (ValueError, TypeError) as e:
                    # The engine names its own field; say which study field feeds it.
                    raise type(e)(f"invalid point (cell={cell!r}, clip={clip}, seq_len={seq_len}) "
                                  f"of the success-rate config: {e} (study fields map to "
                                  "training fields: seq_lens -> task.seq_len, others by the "
                                  "same name)") from e


# ----------------------------------------------------------------------------- one point

def _eval_chunk(size: int, cap: int) -> int:
    """The largest divisor of ``size`` that is at most ``cap`` (equal chunks, exact means)."""
    return max(d for d in range(1, min(size, cap) + 1) if size % d == 0)


def make_point_eval(tc, eval_size: int, eval_batch: int):
    """``evaluate(params, key) -> metrics`` on ``eval_size`` fresh sequences, chunked.

    Chunk ``i`` is drawn from ``fold_in(key, i)``; mean metrics are averaged over the
    equal-size chunks (exact), count metrics (``num_*``) are summed.
    """
    chunk = _eval_chunk(eval_size, eval_batch)
    n = eval_size // chunk
    tc = copy.deepcopy(tc)
    tc.task.eval_size = chunk
    one = training.make_eval(tc)

    def evaluate(params, key):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
        per_chunk = jax.lax.map(lambda k: one(params, k), keys)
        return {k: (jnp.sum(v) if k.startswith("num_") else jnp.mean(v))
                for k, v in per_chunk.items()}

    return evaluate


def _float_or_none(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def run_point(config, cell: str, clip: bool, seq_len: int) -> dict:
    """Train and evaluate the ``num_seeds`` seeds of one point; return its results entry."""
    t0 = time.time()
    tc = train_config(config, cell, clip, seq_len)
    task = models.make_task(tc)
    eval_size = config.eval_size or task.eval_size
    train = training.make_train(tc)
    keys, eval_key = training.seed_keys(tc)
    states, metrics = jax.jit(jax.vmap(train))(keys)
    evaluate = jax.jit(jax.vmap(make_point_eval(tc, eval_size, config.eval_batch), in_axes=(0, None)))
    ev = jax.device_get(evaluate(states.params, eval_key))
    metrics = jax.device_get(metrics)

    diverged = (np.asarray(metrics["nonfinite_loss"]).max(axis=1) > 0) | \
               (np.asarray(metrics["nonfinite_grad"]).max(axis=1) > 0)
    success = []
    for i in range(config.num_seeds):
        m = {k: np.asarray(v)[i] for k, v in ev.items()}
        finite = all(np.isfinite(v) for v in m.values())
        success.append(bool(finite and not diverged[i] and task.success(m)))
    final = np.asarray(ev[task.metric_name], np.float64)
    # Mean over the last 10% of steps: less noisy than the last batch alone.
    tail = max(1, config.num_steps // 10)
    train_loss = np.asarray(metrics["loss"], np.float64)[:, -tail:].mean(axis=1)
    return {"cell": cell, "clip": bool(clip), "seq_len": int(seq_len),
            "num_seeds": int(config.num_seeds), "num_success": int(sum(success)),
            "final_metric": [_float_or_none(v) for v in final],
            "metric_name": task.metric_name, "success": success,
            "diverged": [bool(d) for d in diverged],
            "final_train_loss": [_float_or_none(v) for v in train_loss],
            "clipped_fraction": float(np.mean(metrics["clipped"])),
            "eval_size": int(eval_size), "seconds": time.time() - t0}


# ----------------------------------------------------------------------------- figure

def _metric_panels(results) -> bool:
    # A second row (final loss / memoryless baseline) for loss metrics with a baseline:
    # it shows who learned anything when a budget is too small for the success criterion.
    try:
        task = tasks.get(results["task"])
    except (KeyError, ValueError, TypeError):
        return False
    return task.baseline is not None and results.get("metric_name") in ("mse", "cross_entropy")


def plot(results: dict, stem: str) -> list[str]:
    """success_rate.{png,pdf}: success rate vs T per cell, with 95% Wilson intervals.

    One panel per clip setting; with a single clip setting and both classic and modern
    cells, one panel for each family instead (eight curves in one panel do not read).
    For a loss metric whose task has a memoryless baseline (adding_le, copy_memory) a
    second row shows each seed's final loss divided by that baseline (median, seed range).
    """
    points = results["points"]
    clips = [c for c in (False, True) if any(p["clip"] is c for p in points)]
    cells = [c for c in CELLS if any(p["cell"] == c for p in points)]
    families = [f for f in (CLASSIC, MODERN) if any(c in f for c in cells)]
    if len(clips) == 1 and len(families) == 2:
        groups = [(clips[0], [c for c in cells if c in f],
                   "classic cells" if f is CLASSIC else "modern cells") for f in families]
    else:
        groups = [(clip, cells, f"clipping at norm {results['clip_norm']:g}" if clip
                   else "no clipping") for clip in clips]
    metric_row = _metric_panels(results)
    width = plotting.COLUMN_WIDTH if len(groups) == 1 else plotting.PAGE_WIDTH * 0.62
    plt = plotting.pyplot()
    rows = 2 if metric_row else 1
    fig, axes_grid = plt.subplots(rows, len(groups), figsize=(width, 1.9 * rows + 0.55),
                                  sharex=True, sharey="row", squeeze=False,
                                  constrained_layout=True)
    axes = list(axes_grid[0])
    for col, (clip, group, title) in enumerate(groups):
        ax = axes_grid[0, col]
        curves = []
        for cell in group:
            pts = sorted((p for p in points if p["cell"] == cell and p["clip"] is clip),
                         key=lambda p: p["seq_len"])
            style = {"label": _LABELS[cell], "color": _COLORS[cell], "marker": _MARKERS[cell],
                     "linestyle": "--" if cell in MODERN else "-"}
            curves.append(dict(style, x=[p["seq_len"] for p in pts],
                               successes=[p["num_success"] for p in pts],
                               trials=[p["num_seeds"] for p in pts]))
        plotting.success_rate_curves(ax, curves, xlabel="" if metric_row else "sequence length T",
                                     ylabel="success rate" if col == 0 else None)
        plotting.panel_label(ax, title)
        if not metric_row:
            continue
        baseline = tasks.get(results["task"]).baseline
        ax = axes_grid[1, col]
        for cell in group:
            pts = sorted((p for p in points if p["cell"] == cell and p["clip"] is clip),
                         key=lambda p: p["seq_len"])
            xs, med, lo, hi = [], [], [], []
            for p in pts:
                v = np.array([np.nan if m is None else m for m in p["final_metric"]], np.float64)
                v = v / baseline(p["seq_len"])
                if np.all(np.isnan(v)):
                    continue
                xs.append(p["seq_len"])
                med.append(np.nanmedian(v))
                lo.append(np.nanmin(v))
                hi.append(np.nanmax(v))
            if not xs:
                continue
            med, lo, hi = map(np.asarray, (med, lo, hi))
            ax.errorbar(xs, med, yerr=np.stack([med - lo, hi - med]), color=_COLORS[cell],
                        marker=_MARKERS[cell], markersize=3.5, elinewidth=0.7, capsize=1.5,
                        linestyle="--" if cell in MODERN else "-", linewidth=1.0)
        ax.axhline(1.0, color="0.5", linewidth=0.7, linestyle=":")
        ax.set_yscale("log")
        from matplotlib import ticker
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("sequence length T")
        if col == 0:
            ax.set_ylabel(f"final {results['metric_name']} / baseline")
        ax.grid(True, axis="y")
    plotting.legend_above(fig, axes, ncol=min(len(cells), 4))
    return plotting.save(fig, stem)


# ----------------------------------------------------------------------------- driver

def _write_results(workdir: str, results: dict) -> None:
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(path + ".tmp", path)


def point_key(cell: str, clip: bool, seq_len: int) -> str:
    """The file name (without .json) of one finished point under ``<workdir>/points/``."""
    return f"{cell}_clip-{'on' if clip else 'off'}_T{int(seq_len)}"


@resume.claims("success_rate", validate=validate)
def run(config, workdir: str) -> dict:
    """Run the study described by ``config``; write its outputs into ``workdir``.

    Returns the dict also written to ``results.json``.
    """
    if not isinstance(workdir, str) or not workdir:
        raise ValueError(f"workdir must be a non-empty directory path, got {workdir!r}")
    validate(config)
    names, clips, seq_lens = cell_names(config), list(config.clip), list(config.seq_lens)
    task = tasks.get(config.task.name, **config.task.kwargs.to_dict())
    fprint = resume.workdir_fingerprint(workdir)  # the claim is resume.claims above
    # T-major: an interrupted run has every cell at the short lengths first.
    grid = [(cell, clip, t) for clip in clips for t in seq_lens for cell in names]
    eval_size = config.eval_size or task.eval_size
    results = {"task": config.task.name, "metric_name": task.metric_name, "clip_norm": float(config.optimizer.clip_norm),
               "num_steps": config.num_steps, "eval_size": eval_size, "seq_lens": seq_lens,
               "jax_backend": jax.default_backend(), "points": [], "complete": False}
    _log(f"{config.task.name}: {len(grid)} points ({'/'.join(names)} x clip {clips} x T {seq_lens}), "
         f"{config.num_seeds} seeds x {config.num_steps} steps each, success on {eval_size} "
         f"fresh sequences -> {workdir}")
    t0 = time.time()
    resumed = 0
    for i, (cell, clip, seq_len) in enumerate(grid):
        key = point_key(cell, clip, seq_len)
        point = resume.load_point(workdir, key, fprint)
        if point is not None:
            resumed += 1
            results["points"].append(point)
            _log(f"[{i + 1}/{len(grid)}] {cell} clip {'on' if clip else 'off'} T={seq_len}: "
                 f"finished before, {point['num_success']}/{point['num_seeds']} succeed "
                 f"(points/{key}.json)")
            continue
        point = run_point(config, cell, clip, seq_len)
        resume.save_point(workdir, key, fprint, point)
        results["points"].append(point)
        results["seconds"] = time.time() - t0
        _write_results(workdir, results)
        finite = [v for v in point["final_metric"] if v is not None]
        median = f"{np.median(finite):.4g}" if finite else "n/a"
        _log(f"[{i + 1}/{len(grid)}] {cell:4s} clip {'on ' if clip else 'off'} T={seq_len:4d}: "
             f"{point['num_success']}/{point['num_seeds']} succeed, median {task.metric_name} "
             f"{median}, {sum(point['diverged'])} diverged ({point['seconds']:.1f} s; "
             f"total {time.time() - t0:.0f} s)")
    results["resumed_points"] = resumed
    results["complete"] = True
    results["seconds"] = time.time() - t0
    _write_results(workdir, results)
    paths = plot(results, os.path.join(workdir, "success_rate"))
    _log(f"done in {results['seconds']:.0f} s; wrote config.json, results.json, "
         + ", ".join(os.path.basename(p) for p in paths))
    return results

