"""One-step and multi-step forecasting of a univariate series with RNN/LSTM/GRU and baselines.

Model: a recurrent cell (``rnn_jax.cells``) reads the last ``window`` normalised values
one per step, and a linear readout of its final hidden state predicts the next value
(the "many-to-one" forecaster; LSTM: Hochreiter & Schmidhuber 1997, GRU: Cho et al. 2014,
arXiv 1406.1078). It is trained with mean squared error on training windows; the
parameters with the lowest validation MSE are kept (the validation part is used for
nothing else).

Forecasts, all computed from windows of past *true* values in original units:

* one-step: each test value from the ``window`` values before it;
* multi-step (autoregressive): from every test origin ``t0`` with ``t0 + horizon <= n``,
  ``horizon`` steps are predicted by feeding each prediction back in as the newest
  input; MSE/MAE average over all origins and all ``horizon`` steps.

Baselines through the same window interface: persistence (``y[t-1]``), seasonal naive
(``y[t-season]``; in the multi-step rollout that is the last observed season), and an
AR(p) model with intercept fitted by statsmodels' ``AutoReg`` (conditional least
squares) on the training part only.

Metrics are test MSE and MAE in the series' original units (the normaliser, fitted on
the training part, is inverted before scoring).
"""

from __future__ import annotations

import copy
import functools
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnn_jax import layers, plotting
from rnn_jax.train import training
from rnn_jax.data import series as series_lib
from rnn_jax.models import CELLS
from rnn_jax.ops import unroll
from rnn_jax.train import config as config_lib
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.metrics_log import MetricsLogger, write_json

EXPERIMENT = "forecast"
BASELINES = ("persistence", "seasonal_naive", "ar")

PredictFn = Callable[[np.ndarray], np.ndarray]  # windows [N, W] -> next values [N]


def default_config(series: str = "sunspots") -> ml_collections.ConfigDict:
    """Every field of a forecasting run with its default (sunspots, window 12)."""
    if series not in series_lib.SERIES:
        raise ValueError(f"series must be one of {list(series_lib.SERIES)}, got {series!r}")
    c = ml_collections.ConfigDict()
    c.experiment = EXPERIMENT
    c.series = series
    c.cells = "rnn,lstm,gru"             # comma-separated subset of rnn_jax.models.CELLS
    c.hidden_size = 32
    c.window = 12                        # past values per forecast (>= season, ar_lags)
    c.horizon = 11                       # multi-step forecast length
    c.season = series_lib.SEASON[series]
    c.ar_lags = 9
    c.val_fraction = 0.15
    c.test_fraction = 0.15
    c.optimizer = copy.deepcopy(training.default_config().optimizer)
    # Chosen on sunspots' validation MSE among {adam 3e-3 / 1e-3 window 22, adam 1e-3
    # H 16 window 12, adamw 1e-3 wd 1e-2 window 12}: ~200 training windows overfit fast.
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 1e-2
    c.optimizer.clip_norm = 1.0
    c.batch_size = 64
    c.num_steps = 1500
    c.eval_every = 25                    # also the validation (model-selection) interval
    c.seed = 0
    return c


def _cell_names(config) -> list[str]:
    return config_lib.check_names(config, "cells", CELLS)


def validate(config) -> None:
    """Raise ValueError naming the first bad field (before reading data or compiling)."""
    config_lib.check_experiment(config, default_config(), EXPERIMENT,
                                "rnn_jax.apps.forecast.default_config()")
    _cell_names(config)
    for field in ("hidden_size", "window", "horizon", "season", "ar_lags", "batch_size",
                  "num_steps", "eval_every"):
        config_lib.check_int(config, field)
    for field in ("season", "ar_lags"):
        if config[field] > config.window:
            raise ValueError(f"config.{field} ({config[field]}) must be <= config.window "
                             f"({config.window}): the baseline reads it from the window")
    config_lib.check_optimizer(config)


# ------------------------------------------------------------------------ baselines

def persistence() -> PredictFn:
    """``y_hat[t] = y[t-1]``."""
    return lambda w: np.asarray(w)[:, -1]


def seasonal_naive(season: int) -> PredictFn:
    """``y_hat[t] = y[t - season]`` (the window must hold at least ``season`` values)."""
    def predict(w):
        w = np.asarray(w)
        if w.shape[1] < season:
            raise ValueError(f"window of {w.shape[1]} values is shorter than season={season}")
        return w[:, -season]
    return predict


def fit_ar(train: np.ndarray, lags: int) -> np.ndarray:
    """AR(``lags``) with intercept fitted on ``train`` by statsmodels ``AutoReg``.

    Returns ``[intercept, a_1, ..., a_p]`` for ``y[t] = c + sum_i a_i y[t-i]``.
    """
    from statsmodels.tsa.ar_model import AutoReg
    if train.shape[0] <= 2 * lags:
        raise ValueError(f"training part of {train.shape[0]} values is too short for "
                         f"ar_lags={lags}")
    return np.asarray(AutoReg(np.asarray(train, np.float64), lags=lags, trend="c")
                      .fit().params, np.float64)


def ar_predictor(params: np.ndarray) -> PredictFn:
    """One-step AR prediction from a window, ``params`` as returned by :func:`fit_ar`."""
    c, coefs = params[0], params[1:]
    p = coefs.shape[0]

    def predict(w):
        w = np.asarray(w, np.float64)
        lagged = w[:, ::-1][:, :p]  # column i-1 holds y[t-i]
        return c + lagged @ coefs
    return predict


def rollout(predict: PredictFn, windows: np.ndarray, horizon: int) -> np.ndarray:
    """Autoregressive forecasts ``[N, horizon]``: each prediction becomes the newest input."""
    w = np.asarray(windows, np.float64)
    out = []
    for _ in range(horizon):
        nxt = np.asarray(predict(w), np.float64).reshape(-1)
        out.append(nxt)
        w = np.concatenate([w[:, 1:], nxt[:, None]], axis=1)
    return np.stack(out, axis=1)


def errors(pred, truth) -> dict:
    """``{"mse": ..., "mae": ...}`` over all entries."""
    d = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return {"mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d)))}


# ------------------------------------------------------------------------ RNN forecaster

def make_forecaster(cell_name: str, hidden_size: int):
    """``(init(key) -> params, apply(params, z [N, W]) -> z_next [N])`` on normalised values."""
    cell = CELLS[cell_name](hidden_size)

    def init(key):
        k_cell, k_out = jax.random.split(key)
        return {"cell": cell.init(k_cell, 1),
                "readout": layers.init_dense(k_out, hidden_size, 1)}

    def apply(params, z):
        n, w = z.shape
        carry0 = cell.initial_carry((n,))
        _, ys = unroll(cell, params["cell"], carry0, z.reshape(n, w, 1), time_major=False)
        # The last output, not a carry leaf: for RNN/LSTM/GRU y_t = h_t, while the modern
        # cells in CELLS (e.g. the LRU, y = Re(C x) + D u) carry other state.
        h = ys[:, -1]
        return (h @ params["readout"]["w"]).reshape(n) + params["readout"]["b"]

    return init, apply


def train_forecaster(config, cell_name: str, data: dict, key, logger=None):
    """Adam (config.optimizer) on minibatch MSE; returns the params with the best val MSE.

    ``data`` holds normalised ``train_x [N, W]``, ``train_y [N]``, ``val_x``, ``val_y``.
    Trained by the one loop (:func:`rnn_jax.train.loop.run`) without checkpoints, in
    programs of ``eval_every`` steps, keeping the best parameters on validation.
    """
    from rnn_jax.train import loop  # lazily, as the other apps: it pulls in orbax

    init, apply = make_forecaster(cell_name, config.hidden_size)
    optimizer = training.make_optimizer(config)
    k_init, key = jax.random.split(key)
    tx, ty = jnp.asarray(data["train_x"], jnp.float32), jnp.asarray(data["train_y"], jnp.float32)
    vx, vy = jnp.asarray(data["val_x"], jnp.float32), jnp.asarray(data["val_y"], jnp.float32)
    batch = min(config.batch_size, tx.shape[0])
    name = f"{cell_name}/mse_normalised"

    def loss_fn(p, x, y):
        d = apply(p, x) - y
        return jnp.mean(d * d)

    @functools.partial(jax.jit, static_argnums=1)
    def run_chunk(state, n):
        # n (= eval_every) optimizer steps in one compiled scan, so Python overhead stays
        # small. The key is split once per program (state.key moves on), as before the
        # one loop, so the minibatches are those of the earlier code.
        key, k = jax.random.split(state.key)

        def body(state, k):
            idx = jax.random.choice(k, tx.shape[0], (batch,), replace=False)
            loss, g = jax.value_and_grad(loss_fn)(state.params, tx[idx], ty[idx])
            return state.apply_gradients(grads=g, tx=optimizer), loss
        state, losses = jax.lax.scan(body, state, jax.random.split(k, n))
        return state.replace(key=key), {name: jnp.mean(losses)}

    val_loss = jax.jit(loss_fn)
    # Validate every eval_every steps and always after the last step (so num_steps below
    # eval_every, or not a multiple of it, still selects among trained parameters).
    out = loop.run(config, None, checkpoints=False, logger=logger, keep_best=True,
                   init=lambda: training.TrainState.create(params=init(k_init), tx=optimizer,
                                                           key=key),
                   advance=lambda state, step, n: run_chunk(state, n),
                   evaluate=lambda state: {name: float(val_loss(state.params, vx, vy))},
                   metric=name, higher_is_better=False, chunk=config.eval_every,
                   eval_split="val", log_every=config.eval_every)
    best = next((r[name] for r in out.evals if r["step"] == out.best_step), np.inf)
    return out.best_params, {"best_val_mse_normalised": best, "best_step": out.best_step}


def rnn_predictor(apply, params, norm: series_lib.Normalizer) -> PredictFn:
    """A :data:`PredictFn` in original units around a trained forecaster."""
    f = jax.jit(apply)

    def predict(w):
        z = jnp.asarray(norm.transform(np.asarray(w, np.float64)), jnp.float32)
        return norm.inverse(np.asarray(f(params, z), np.float64))
    return predict


# ------------------------------------------------------------------------ experiment

def _plot(path_stem, test_index, truth, one_step: dict, multi: dict, origin, horizon, units, title):
    plt = plotting.pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(plotting.COLUMN_WIDTH * 2, 4.2), sharex=True)
    for ax in axes:
        ax.plot(test_index, truth, color="black", lw=1.4, label="truth")
    for name, pred in one_step.items():
        axes[0].plot(test_index, pred, lw=0.9, label=name)
    span = np.arange(origin, origin + horizon)
    for name, pred in multi.items():
        axes[1].plot(span, pred, lw=0.9, label=name)
    axes[0].set_title(f"{title}: one-step forecasts on the test period", loc="left")
    axes[1].set_title(f"{horizon}-step autoregressive forecast from the first test step",
                      loc="left")
    axes[1].set_xlabel("time index")
    for ax in axes:
        ax.set_ylabel(units)
    axes[0].legend(ncol=3, fontsize="small")
    fig.tight_layout()
    return plotting.save(fig, path_stem)


@workdir_lib.claims(EXPERIMENT, validate=validate)
def train_and_evaluate(config, workdir: str, *, series: np.ndarray | None = None) -> dict:
    """Fit RNN/LSTM/GRU forecasters and the baselines; score and plot them on the test part.

    Args:
      config: see :func:`default_config`.
      workdir: output directory; receives config.json, metrics.jsonl, eval.json,
        forecast.png and forecast.pdf.
      series: optional 1-D array used instead of ``load_series(config.series)``
        (tests, user data).

    Returns:
      the eval.json dict: ``one_step`` and ``multi_step``, each
      ``{model: {"mse", "mae"}}`` in original units, plus the split and run facts.
    """
    # The config was validated by the @workdir_lib.claims decorator, before the claim.
    cell_names = _cell_names(config)
    y = (series_lib.load_series(config.series) if series is None
         else np.asarray(series, np.float64))
    if y.ndim != 1:
        raise ValueError(f"series must be 1-D [n], got shape {y.shape}")
    split = series_lib.chronological_split(y.shape[0], config.val_fraction, config.test_fraction)
    windows = series_lib.split_windows(y, split, config.window)  # raises if too short
    test_x, test_y, test_index = windows["test"]
    origins = test_index[test_index + config.horizon <= split.n]
    if origins.size == 0:
        raise ValueError(f"series too short for the horizon: the test part has "
                         f"{split.n - split.val_end} values, fewer than horizon={config.horizon}")
    norm = series_lib.fit_normalizer(y, split)

    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    logger = MetricsLogger(workdir)

    predictors = {"persistence": persistence(), "seasonal_naive": seasonal_naive(config.season),
                  "ar": ar_predictor(fit_ar(y[: split.train_end], config.ar_lags))}
    data = {"train_x": norm.transform(windows["train"][0]),
            "train_y": norm.transform(windows["train"][1]),
            "val_x": norm.transform(windows["val"][0]), "val_y": norm.transform(windows["val"][1])}
    training_info = {}
    key = jax.random.PRNGKey(config.seed)
    for name in cell_names:
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        params, info = train_forecaster(config, name, data, k, logger)
        info["train_seconds"] = round(time.perf_counter() - t0, 2)
        logging.info("%s: best val MSE (normalised) %.4f at step %d, %.1f s", name,
                     info["best_val_mse_normalised"], info["best_step"], info["train_seconds"])
        training_info[name] = info
        predictors[name] = rnn_predictor(make_forecaster(name, config.hidden_size)[1],
                                         params, norm)
    logger.close()

    multi_windows = y[origins[:, None] + np.arange(-config.window, 0)[None, :]]
    multi_truth = y[origins[:, None] + np.arange(config.horizon)[None, :]]
    one_step_pred, multi_pred, result = {}, {}, {"one_step": {}, "multi_step": {}}
    for name, predict in predictors.items():
        one_step_pred[name] = np.asarray(predict(test_x), np.float64)
        multi_pred[name] = rollout(predict, multi_windows, config.horizon)
        result["one_step"][name] = errors(one_step_pred[name], test_y)
        result["multi_step"][name] = errors(multi_pred[name], multi_truth)
    for kind in ("one_step", "multi_step"):
        scores = result[kind]
        result[f"{kind}_best"] = min(scores, key=lambda m: scores[m]["mse"])
        best_rnn = min(cell_names, key=lambda m: scores[m]["mse"])
        best_base = min(BASELINES, key=lambda m: scores[m]["mse"])
        result[f"{kind}_baseline_wins"] = bool(scores[best_base]["mse"] <= scores[best_rnn]["mse"])
    units = series_lib.UNITS.get(config.series, "value") if series is None else "value"
    result.update({"series": config.series if series is None else "user", "units": units,
                   "split": {"train": split.train_end, "val": split.val_end - split.train_end,
                             "test": split.n - split.val_end},
                   "normalizer": {"mean": norm.mean, "std": norm.std},
                   "horizon": config.horizon, "multi_step_origins": int(origins.size),
                   "training": training_info})
    write_json(os.path.join(workdir, "eval.json"), result)
    _plot(os.path.join(workdir, "forecast"), test_index, test_y, one_step_pred,
          {k: v[0] for k, v in multi_pred.items()}, int(origins[0]), config.horizon, units,
          result["series"])
    return result
