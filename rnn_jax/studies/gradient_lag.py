r"""Gradient norm against time lag: vanilla RNN, LSTM and GRU on the adding problem.

    python -m experiments.gradient_lag --workdir=/tmp/gradient_lag
    python -m experiments.gradient_lag --workdir=/tmp/gl --config.seq_len=500
    python -m experiments.gradient_lag --workdir=/tmp/radius \
        --config=experiments/configs/gradient_lag.py:radius

Default variant ("models"). For each model, each seed (vmapped) and each training step in
``config.measure_at`` (0 = init), the per-example task loss of the 1997 adding problem
(Hochreiter & Schmidhuber 1997, Experiment 4: the MSE of a linear readout of the hidden
state at the sequence's last valid step) is differentiated with respect to every hidden
state with :func:`rnn_jax.diagnostics.grad_norms` (``log10=True``: exact at any
magnitude), re-indexed by lag k = (last valid step) - t, and averaged over
``config.diag_batch`` sequences and the seeds in log10 space. The LSTM's cell-state path
and the mean forget-gate activation are recorded too. Training uses
:mod:`rnn_jax.train.training` (Adam, global-norm clipping).

Variant "radius". The vanilla RNN's recurrent matrix is ``radius * Q`` (Q orthogonal, so
every singular value equals the radius), with a linear or tanh activation, at init.
Pascanu, Mikolov & Bengio 2013 (arXiv 1211.5063): gradients must vanish when the largest
singular value is below 1/gamma (gamma = 1 for tanh, so 1), and can explode only above
it. Recorded: the Jacobian norms ``||dh_{T-1}/dh_t||_2`` with the bound ``radius^k``,
the gradient norms, and the Jacobians' singular values at ``config.spectra_lags``.

Outputs in ``--workdir``: ``config.json``, ``results.json`` (keys ``lags``, ``curves``
with ``label``/``cell``/``step``/``log10_grad_norm``/``log10_grad_norm_std`` per curve,
plus variant-specific keys), ``gradient_lag.png``/``.pdf`` and, for "radius",
``jacobian_spectra.png``/``.pdf``.

Resume: each group of models that trains as one program (for "models"; e.g. the three
LSTM initialisations) and each activation (for "radius") is one point, written
atomically to ``points/<key>.json`` when finished (:mod:`rnn_jax.studies.resume`).
Rerunning the same command in the same workdir reloads finished points and computes only
the rest, with the same numbers as an uninterrupted run. A workdir holding another
experiment, or this study with another config, is refused naming the differing fields.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnn_jax import cells, diagnostics, layers, models, plotting, tasks
from rnn_jax.train import training
from rnn_jax.studies import resume
from rnn_jax.train import config as config_lib

# name -> (legend label, cell, default cell kwargs). A string value is resolved against
# the task's seq_len T: "T" -> T, "2^(1/T)" -> 2 ** (1 / T) (IndRNN's cap, Li et al. 2018).
# config.model_kwargs[name] overrides the defaults key by key.
MODELS = {
    "rnn": ("tanh RNN (orthogonal)", "rnn", {"recurrent_init": "orthogonal"}),
    "lstm_fb0": ("LSTM, forget bias 0", "lstm", {"forget_bias": 0.0}),
    "lstm_fb1": ("LSTM, forget bias 1", "lstm", {"forget_bias": 1.0}),
    "lstm_chrono": ("LSTM, chrono init", "lstm", {"chrono_t_max": "T"}),
    "gru": ("GRU", "gru", {}),
    # Orvieto et al. 2023: ring init |lambda| in [r_min, r_max], small phases (their LRA pi/10).
    "lru_r090": ("LRU, r_min 0.9", "lru", {"r_min": 0.9, "r_max": 0.999, "max_phase": math.pi / 10}),
    "lru_r099": ("LRU, r_min 0.99", "lru", {"r_min": 0.99, "r_max": 0.999, "max_phase": math.pi / 10}),
    "min_gru": ("minGRU", "min_gru", {}),
    "min_lstm": ("minLSTM", "min_lstm", {}),
    "slstm": ("sLSTM", "slstm", {"num_heads": 4}),
    "indrnn": ("IndRNN (relu)", "indrnn", {"recurrent_max": "2^(1/T)"}),
}
_COLORS = {"rnn": plotting.PALETTE[1], "lstm_fb0": plotting.PALETTE[6],
           "lstm_fb1": plotting.PALETTE[3], "lstm_chrono": plotting.PALETTE[0],
           "gru": plotting.PALETTE[4], "lru_r090": plotting.PALETTE[5],
           "lru_r099": plotting.PALETTE[5], "min_gru": plotting.PALETTE[4],
           "min_lstm": plotting.PALETTE[0], "slstm": plotting.PALETTE[3],
           "indrnn": plotting.PALETTE[2]}
# Modern cells dashed, so that each shares its classic relative's colour (minGRU/GRU,
# minLSTM/LSTM) and stays distinguishable in print.
_STYLES = {"lru_r099": ":", "min_gru": "--", "min_lstm": "--", "slstm": "-.", "lru_r090": "--",
           "indrnn": "--"}
_MODERN = ("lru", "min_gru", "min_lstm", "slstm", "indrnn")


def _resolve(name: str, key: str, value, T: int):
    """A model kwarg with the seq_len placeholders replaced (see MODELS)."""
    if value == "T":
        return float(T)
    if value == "2^(1/T)":
        return 2.0 ** (1.0 / T)
    if isinstance(value, str) and key not in ("activation", "forget_gate", "recurrent_init"):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"config.model_kwargs.{name}.{key} must be a number, 'T' or "
                             f"'2^(1/T)', got {value!r}") from None
    return value


def model_kwargs(config, name: str) -> dict:
    """The cell kwargs of model ``name``: MODELS' defaults, then config.model_kwargs[name]."""
    _, _, kwargs = MODELS[name]
    over = config.get("model_kwargs", None)
    over = over.get(name, None) if over is not None else None
    kwargs = dict(kwargs, **(over.to_dict() if hasattr(over, "to_dict") else dict(over or {})))
    return {k: _resolve(name, k, v, config.seq_len) for k, v in kwargs.items()}


def _log(msg: str) -> None:
    # print, not absl logging: visible whether run from the command line or from Python.
    print(f"[gradient_lag] {msg}", flush=True)


# ----------------------------------------------------------------------------- checks

def _int_field(config, name, minimum=1):
    v = config[name]
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"config.{name} must be an int >= {minimum}, got {v!r}")
    return v


def _model_names(config):
    return config_lib.check_names(config, "models", MODELS)


def validate(config) -> None:
    """Raise ValueError naming the bad field; runs before anything compiles or is written."""
    resume.refuse_renamed(config, "gradient_lag")
    if config.get("variant") not in ("models", "radius"):
        raise ValueError(f"config.variant must be 'models' or 'radius', got {config.get('variant')!r}")
    if config.task.name not in tasks.names():
        raise ValueError(f"config.task.name must be one of {tasks.names()}, got "
                         f"{config.task.name!r}")
    for name in ("seq_len", "hidden_size", "num_seeds", "diag_batch"):
        _int_field(config, name)
    _int_field(config, "seed", minimum=0)
    task = tasks.get(config.task.name)
    try:
        jax.eval_shape(functools.partial(task.sample, batch_size=1, seq_len=config.seq_len),
                       jax.random.PRNGKey(0))
    except ValueError as e:
        raise ValueError(f"config.seq_len={config.seq_len} is invalid for task {config.task.name!r}: {e}") from e
    if task.output_mode != "last":
        raise ValueError(f"config.task.name must predict once per sequence (output_mode "
                         f"'last'), got {config.task.name!r} with {task.output_mode!r}")
    if config.variant == "models":
        names = _model_names(config)
        over = config.get("model_kwargs", None) or {}
        unknown = [k for k in over if k not in MODELS]
        if unknown:
            raise ValueError(f"config.model_kwargs keys must be model names from "
                             f"{list(MODELS)}, got {unknown}")
        for name in names:
            _, cell_name, _ = MODELS[name]
            try:
                models.CELLS[cell_name](config.hidden_size, **model_kwargs(config, name))
            except (TypeError, ValueError) as e:
                raise ValueError(f"config.model_kwargs.{name} (cell {cell_name!r}) is invalid: "
                                 f"{e}") from e
        steps = list(config.measure_at)
        if (not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in steps)
                or steps != sorted(set(steps))):
            raise ValueError(f"config.measure_at must be increasing ints >= 0, got {config.measure_at!r}")
        _int_field(config, "train_batch")
        if not config.optimizer.learning_rate > 0:
            raise ValueError(f"config.optimizer.learning_rate must be > 0, got "
                             f"{config.optimizer.learning_rate!r}")
        if not config.optimizer.clip_norm >= 0:
            raise ValueError(f"config.optimizer.clip_norm must be >= 0, got "
                             f"{config.optimizer.clip_norm!r}")
    else:
        if not config.radii or any(not r > 0 for r in config.radii):
            raise ValueError(f"config.radii must be positive numbers, got {config.radii!r}")
        bad = [a for a in config.activations if a not in ("linear", "tanh")]
        if not config.activations or bad:
            raise ValueError(f"config.activations must hold 'linear' and/or 'tanh', got {config.activations!r}")
        lags = list(config.spectra_lags)
        if any(not isinstance(k, int) or not 0 <= k < config.seq_len for k in lags):
            raise ValueError(f"config.spectra_lags must be ints in [0, seq_len-1={config.seq_len - 1}], "
                             f"got {config.spectra_lags!r}")
        _int_field(config, "jacobian_batch")


# ----------------------------------------------------------------------------- measuring

def _readout_loss(task, readout, h_last, target):
    """The task loss of one sequence: the model's linear readout of its last output."""
    out = (h_last @ readout["w"] + readout["b"]).reshape(1, -1)
    return task.loss(out, {"targets": target.reshape(1, -1)})


def _hidden(tree):
    return tree[0] if isinstance(tree, tuple) else tree


def cell_output(cell_name: str, params, carry, x):
    """The cell's output ``y_t`` from its carry after step t and the input ``x_t``.

    ``y_t = h_t`` (the carry's first leaf) for every built-in cell except the LRU, whose
    output ``Re(C x_t) + D u_t`` is a readout of its complex state (Orvieto et al. 2023);
    this is what :func:`rnn_jax.models.last_output` hands the readout.
    """
    if cell_name == "lru":
        x_re, x_im = carry
        return x_re @ params["C_re"] - x_im @ params["C_im"] + x @ params["D"]
    return _hidden(carry)


_LN10 = math.log(10.0)


def state_log10_norm(cell_name: str, g):
    """log10 of ``||dL/d(recurrent state)_t||`` from the per-leaf log10 norms of
    :func:`rnn_jax.diagnostics.grad_norms`.

    The hidden state h (first leaf) for the RNN/LSTM/GRU/minGRU/minLSTM/IndRNN/sLSTM; for
    the LRU the complex state's norm, ``sqrt(|d re|^2 + |d im|^2)``, summed in log space.
    """
    if cell_name == "lru":
        re, im = g
        return jnp.logaddexp(2 * _LN10 * re, 2 * _LN10 * im) / (2 * _LN10)
    return _hidden(g)


def make_measure(cell, task, seq_len: int, cell_name: str = ""):
    """``measure(params, batch) -> dict`` of per-example log10 gradient curves, by lag.

    ``params = {"cell": ..., "readout": {"w", "b"}}``; ``batch`` is the task's (batch-major,
    right-padded). Each example's curve is read at lags 0..seq_len-1 counted back from its
    own last valid step (lengths vary in [T, 1.1T]). ``cell_name`` selects the output
    (:func:`cell_output`) and the state whose gradient is measured (:func:`state_log10_norm`).
    """
    lag_index = jnp.arange(seq_len)

    def one(params, xs, length, target):
        x_last = jax.lax.dynamic_index_in_dim(xs, length - 1, keepdims=False)

        def loss_fn(states):
            last = jax.tree_util.tree_map(
                lambda s: jax.lax.dynamic_index_in_dim(s, length - 1, keepdims=False), states)
            y_last = cell_output(cell_name, params["cell"], last, x_last)
            return _readout_loss(task, params["readout"], y_last, target)

        g = diagnostics.grad_norms(cell.step, params["cell"], cell.initial_carry(), xs, loss_fn,
                                   log10=True)
        idx = length - 1 - lag_index
        out = {"h": state_log10_norm(cell_name, g)[idx]}
        if isinstance(g, tuple) and cell_name != "lru":
            out["c"] = g[1][idx]   # LSTM / sLSTM: the cell-state path
        return out

    def measure(params, batch):
        out = jax.vmap(one, in_axes=(None, 0, 0, 0))(params, batch["inputs"], batch["lengths"],
                                                     batch["targets"])
        # All sequences are valid for their first seq_len steps.
        xs = jnp.swapaxes(batch["inputs"][:, :seq_len], 0, 1)
        if cell_name in ("lstm", "gru") or (not cell_name and cell.gates
                                            and cell.gates != ("h",)):
            stats = diagnostics.forget_gate_stats(cell, params["cell"],
                                                  cell.initial_carry(xs.shape[1:2]), xs)
            out["gate_mean"] = stats["mean"]
            out["gate_mean_log10"] = stats["mean_log10"]
        if cell.retention is not None:
            # The fraction of each memory unit kept per step (Cell.retention): the forget
            # gate, GRU update gate, |lambda|, ... along the forward pass.
            def body(carry, x):
                r = cell.retention(params["cell"], carry, x)
                return cell.step(params["cell"], carry, x)[0], r

            _, r = jax.lax.scan(body, cell.initial_carry(xs.shape[1:2]), xs)
            out["retention_mean"] = jnp.mean(r)
            out["retention_frac_above_0.9"] = jnp.mean(r > 0.9)
        return out

    return measure


def _finite_list(a):
    return [float(v) if math.isfinite(v) else None for v in np.asarray(a, np.float64).tolist()]


def _summarise(per_seed_example):
    """[S, B, K] log10 values -> mean over seeds and examples, std and range of the seed means."""
    a = np.asarray(per_seed_example, np.float64)
    with np.errstate(invalid="ignore"):  # -inf (an exactly zero gradient) stays -inf / None
        seed_means = a.mean(axis=1)
        return {"mean": a.mean(axis=(0, 1)), "std": seed_means.std(axis=0),
                "lo": seed_means.min(axis=0), "hi": seed_means.max(axis=0)}


# ----------------------------------------------------------------------------- models variant

def _train_config(config, cell_name, cell_kwargs, total_steps):
    c = training.default_config()
    c.cell = cell_name
    c.hidden_size = config.hidden_size
    c.cell_kwargs = ml_collections.ConfigDict(cell_kwargs)
    c.task.name = config.task.name
    c.task.seq_len = config.seq_len
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = config.optimizer.learning_rate
    c.optimizer.clip_norm = config.optimizer.clip_norm
    c.batch_size = config.train_batch
    c.num_steps = max(total_steps, 1)
    c.num_seeds = config.num_seeds
    c.seed = config.seed
    c.num_devices = 1
    training.validate_config(c)
    return c


# Cell kwargs that only change the initial parameters, not the step function: models
# that differ only in these train as one vmapped program.
_INIT_ONLY_KWARGS = {"forget_bias", "chrono_t_max", "recurrent_scale", "recurrent_init",
                     "r_min", "r_max", "max_phase", "recurrent_init_max"}


def _groups(config):
    """Models grouped so that each group shares one step function: [(cell_name, [names])]."""
    groups: dict = {}
    for name in _model_names(config):
        _, cell_name, _ = MODELS[name]
        kwargs = model_kwargs(config, name)
        key = cell_name if set(kwargs) <= _INIT_ONLY_KWARGS else name
        groups.setdefault(key, (cell_name, []))[1].append(name)
    return list(groups.values())


def _stack_states(states):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *states)


def _run_models(config, cached):
    task = tasks.get(config.task.name)
    T, S = config.seq_len, config.num_seeds
    steps = list(config.measure_at)
    chunk = functools.reduce(math.gcd, [b - a for a, b in zip([0] + steps, steps) if b > a], 0)
    diag_batch = task.sample(jax.random.fold_in(jax.random.PRNGKey(config.seed), 10_000),
                             config.diag_batch, T)
    curves = []
    for cell_name, names in _groups(config):
        curves += cached("models_" + "+".join(names),
                         functools.partial(_run_group, config, task, diag_batch, steps, chunk,
                                           cell_name, names))
    order = {n: i for i, n in enumerate(_model_names(config))}
    curves.sort(key=lambda c: (c["step"], order[c["model"]]))
    return {"lags": list(range(T)), "curves": curves}


def _run_group(config, task, diag_batch, steps, chunk, cell_name, names):
    """The curves of one group of models that share a step function (one resume point)."""
    T, S = config.seq_len, config.num_seeds
    curves = []
    t0 = time.time()
    tcs, labels = [], []
    for name in names:
        label, _, _ = MODELS[name]
        kwargs = model_kwargs(config, name)
        tcs.append(_train_config(config, cell_name, kwargs, steps[-1]))
        labels.append(label)
    # Every model of the group x every seed is one row of the vmapped state. The step
    # function is the same for the whole group, so the first config drives training.
    keys, _ = training.seed_keys(tcs[0])
    state = _stack_states([jax.vmap(functools.partial(training.init_state, tc))(keys)
                           for tc in tcs])
    cell = models.make_cell(tcs[0])
    measure = jax.jit(jax.vmap(make_measure(cell, task, T, cell_name), in_axes=(0, None)))
    train_chunk = None
    if chunk:
        train_chunk = jax.jit(jax.vmap(lambda s, tc=tcs[0]: training.run_steps(tc, s, chunk)))
    done = 0
    for target in steps:
        losses = None
        while done < target:
            state, metrics = train_chunk(state)
            done += chunk
            losses = np.asarray(metrics["loss"])[:, -1].reshape(len(names), S)
        out = jax.device_get(measure(state.params, diag_batch))
        for v, (name, label) in enumerate(zip(names, labels)):
            rows = slice(v * S, (v + 1) * S)
            h = _summarise(out["h"][rows])
            loss = None if losses is None else float(losses[v].mean())
            curve = {"label": label, "model": name, "cell": cell_name, "step": target,
                     "log10_grad_norm": _finite_list(h["mean"]),
                     "log10_grad_norm_std": _finite_list(h["std"]),
                     "log10_grad_norm_seed_min": _finite_list(h["lo"]),
                     "log10_grad_norm_seed_max": _finite_list(h["hi"]),
                     "slope_per_lag": diagnostics.lag_slope(h["mean"]),
                     "train_loss": loss}
            if "c" in out:
                curve["log10_cell_grad_norm"] = _finite_list(_summarise(out["c"][rows])["mean"])
            if "retention_mean" in out:
                curve["mean_retention"] = float(np.mean(out["retention_mean"][rows]))
                curve["retention_frac_above_0.9"] = float(
                    np.mean(out["retention_frac_above_0.9"][rows]))
            if "gate_mean" in out:
                curve["gate"] = "forget (f)" if cell_name == "lstm" else "update (z)"
                curve["mean_gate"] = float(np.mean(out["gate_mean"][rows]))
                curve["mean_log10_gate"] = float(np.mean(out["gate_mean_log10"][rows]))
            curves.append(curve)
            drop = h["mean"][0] - h["mean"][-1]
            _log(f"{label:24s} step {target:5d}: log10 |dL/dh| drops {drop:6.2f} orders over "
                 f"{T - 1} lags" + (f", train loss {loss:.4f}" if loss is not None else "")
                 + (f", mean {curve['gate']} gate {curve['mean_gate']:.3f}"
                    if "gate" in curve else "")
                 + (f", mean retention {curve['mean_retention']:.3f}"
                    if "mean_retention" in curve else "") + f" ({time.time() - t0:.1f} s)")
    return _jsonable(curves)


def _plot_models(results, config, stem):
    steps = sorted({c["step"] for c in results["curves"]})
    n = len({c["model"] for c in results["curves"]})
    fig, axes = plotting.panels(len(steps), panel_height=1.5 if n <= 6 else 1.9,
                                width=plotting.COLUMN_WIDTH if n <= 6 else plotting.PAGE_WIDTH * 0.62)
    for ax, step in zip(axes, steps):
        entries = [{"mean": np.array(c["log10_grad_norm"], dtype=np.float64),
                    "lo": np.array(c["log10_grad_norm_seed_min"], dtype=np.float64),
                    "hi": np.array(c["log10_grad_norm_seed_max"], dtype=np.float64),
                    "label": c["label"], "color": _COLORS.get(c["model"]),
                    "linestyle": _STYLES.get(c["model"], "-")}
                   for c in results["curves"] if c["step"] == step]
        plotting.lag_curves(ax, results["lags"], entries,
                            xlabel="time lag k" if ax is axes[-1] else "")
        plotting.panel_label(ax, "at init" if step == 0 else f"after {step} steps")
    n = len({c["model"] for c in results["curves"]})
    plotting.legend_above(fig, axes, ncol=2 if n <= 6 else 3)
    return plotting.save(fig, stem)


# ----------------------------------------------------------------------------- radius variant

def _rnn_cell(hidden, activation, radius):
    """tanh: the built-in RNN. linear: a user-written step on the same parameters."""
    if activation == "tanh":
        return cells.rnn(hidden, activation="tanh", recurrent_init="orthogonal",
                         recurrent_scale=float(radius))
    base = cells.rnn(hidden, recurrent_init="orthogonal", recurrent_scale=float(radius))

    def step(p, h, x):
        h = x @ p["w_x"] + h @ p["w_h"] + p["b"].reshape((1,) * (h.ndim - 1) + (hidden,))
        return h, h

    return cells.Cell(base.init, base.initial_carry, step, hidden, ("h",))


def _run_radius(config, cached):
    task = tasks.get(config.task.name)
    T, H = config.seq_len, config.hidden_size
    batch = task.sample(jax.random.fold_in(jax.random.PRNGKey(config.seed), 10_000),
                        config.diag_batch, T)
    keys = jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)
    n_j = min(config.jacobian_batch, config.diag_batch)
    # Jacobians are taken over the first T steps, valid in every sequence.
    xs_j = jnp.swapaxes(batch["inputs"][:n_j, :T], 0, 1)
    lags = [int(k) for k in config.spectra_lags]
    t0 = time.time()
    radii = [float(r) for r in config.radii]
    S = config.num_seeds

    def one_activation(activation):
        """Curves and spectra of one activation, all radii (one resume point)."""
        curves, spectra = [], []
        # The radius only changes the initial w_h, so all radii x seeds run as one program.
        cells_by_radius = [_rnn_cell(H, activation, r) for r in radii]
        cell = cells_by_radius[0]

        def init(c, key):
            k_c, k_r = jax.random.split(key)
            return {"cell": c.init(k_c, task.input_size),
                    "readout": layers.init_dense(k_r, H, task.output_size)}

        params = _stack_states([jax.vmap(functools.partial(init, c))(keys) for c in cells_by_radius])
        grads = jax.jit(jax.vmap(make_measure(cell, task, T, "rnn"), in_axes=(0, None)))(params, batch)

        def jac(p, xs):
            return diagnostics.jacobian_norms(cell.step, p, cell.initial_carry(), xs,
                                              ord=2, log10=True)

        def spec(p, xs):
            return diagnostics.jacobian_spectra(cell.step, p, cell.initial_carry(), xs, lags)

        per_ex = jax.vmap(jac, in_axes=(None, 1))
        jn = jax.jit(jax.vmap(per_ex, in_axes=(0, None)))(params["cell"], xs_j)
        jn = np.asarray(jn)[..., ::-1]  # [R*S, n_j, T] by lag
        sp = np.asarray(jax.jit(jax.vmap(spec, in_axes=(0, None)))(params["cell"], xs_j[:, 0]))
        for i, radius in enumerate(radii):
            rows = slice(i * S, (i + 1) * S)
            g = _summarise(grads["h"][rows])
            j = _summarise(jn[rows])
            label = f"{activation}, radius {radius:g}"
            curves.append({"label": label, "cell": "rnn", "step": 0, "activation": activation,
                           "radius": radius,
                           "log10_grad_norm": _finite_list(g["mean"]),
                           "log10_grad_norm_std": _finite_list(g["std"]),
                           "log10_jacobian_norm": _finite_list(j["mean"]),
                           "log10_jacobian_norm_seed_min": _finite_list(j["lo"]),
                           "log10_jacobian_norm_seed_max": _finite_list(j["hi"]),
                           "log10_bound": _finite_list(np.arange(T) * math.log10(radius)),
                           "jacobian_slope_per_lag": diagnostics.lag_slope(j["mean"])})
            for n, k in enumerate(lags):
                # Seed 0, first sequence.
                spectra.append({"label": label, "activation": activation, "radius": radius,
                                "lag": k, "log10_singular_values": _finite_list(sp[i * S, n])})
            _log(f"{label:22s}: log10 ||dh_T/dh_t|| slope {curves[-1]['jacobian_slope_per_lag']:+.3f}"
                 f"/lag (bound log10 r = {math.log10(radius):+.3f}), grad drops "
                 f"{g['mean'][0] - g['mean'][-1]:.2f} orders ({time.time() - t0:.1f} s)")
        return _jsonable({"curves": curves, "spectra": spectra})

    curves, spectra = [], []
    for activation in config.activations:
        out = cached(f"radius_{activation}", functools.partial(one_activation, activation))
        curves += out["curves"]
        spectra += out["spectra"]
    return {"lags": list(range(T)), "curves": curves, "spectra": spectra,
            "spectra_lags": lags}


def _plot_radius(results, config, stem):
    acts = list(config.activations)
    radii = list(config.radii)
    plt = plotting.pyplot()
    cmap = plt.get_cmap("viridis")
    colors = {r: cmap(i / max(len(radii) - 1, 1) * 0.9) for i, r in enumerate(radii)}
    fig, axes = plotting.panels(len(acts), panel_height=1.6)
    for ax, act in zip(axes, acts):
        entries = []
        for c in results["curves"]:
            if c["activation"] != act:
                continue
            entries.append({"mean": np.array(c["log10_jacobian_norm"], dtype=np.float64),
                            "lo": np.array(c["log10_jacobian_norm_seed_min"], dtype=np.float64),
                            "hi": np.array(c["log10_jacobian_norm_seed_max"], dtype=np.float64),
                            "label": f"radius {c['radius']:g}", "color": colors[c["radius"]]})
        plotting.lag_curves(ax, results["lags"], entries,
                            ylabel=r"$\|\partial h_{T-1}/\partial h_t\|_2$",
                            xlabel="time lag k" if ax is axes[-1] else "")
        for c in results["curves"]:
            if c["activation"] == act:
                ax.plot(results["lags"], c["log10_bound"], color=colors[c["radius"]],
                        linestyle=":", linewidth=0.9, zorder=1)
        plotting.panel_label(ax, act)
    axes[0].plot([], [], color="0.4", linestyle=":", linewidth=0.9, label=r"bound $r^k$")
    plotting.legend_above(fig, axes, ncol=3)
    paths = plotting.save(fig, stem)

    lags = results["spectra_lags"]
    fig, axes = plotting.panels(len(acts), panel_height=1.6, sharey=False)
    for ax, act in zip(axes, acts):
        for s in results["spectra"]:
            if s["activation"] != act:
                continue
            sv = np.array(s["log10_singular_values"], dtype=np.float64)
            # float32 resolves singular values to ~1e-7 of the largest; hide the noise floor.
            sv = np.where(sv >= np.nanmax(sv) - 6.0, sv, np.nan)
            style = ["-", "--", ":", "-."][lags.index(s["lag"]) % 4]
            ax.plot(np.arange(1, sv.size + 1), sv, color=colors[s["radius"]], linestyle=style,
                    label=f"radius {s['radius']:g}" if s["lag"] == lags[0] else None)
        plotting.power_of_ten_axis(ax, "y")
        ax.set_ylabel("singular value")
        ax.grid(True, axis="y")
        plotting.panel_label(ax, act)
    axes[-1].set_xlabel(r"index i of $\sigma_i(\partial h_{T-1}/\partial h_t)$")
    for i, k in enumerate(lags):
        axes[0].plot([], [], color="0.4", linestyle=["-", "--", ":", "-."][i % 4], label=f"lag {k}")
    plotting.legend_above(fig, axes, ncol=4)
    paths += plotting.save(fig, os.path.join(os.path.dirname(stem), "jacobian_spectra"))
    return paths


# ----------------------------------------------------------------------------- driver

def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


@resume.claims("gradient_lag", validate=validate)
def run(config, workdir: str) -> dict:
    """Run the study described by ``config`` and write its outputs into ``workdir``.

    Returns the results dict that is also written to ``results.json``.
    """
    if not workdir:
        raise ValueError("workdir must be a directory path, got an empty value")
    validate(config)
    fprint = resume.workdir_fingerprint(workdir)  # the claim is resume.claims above
    t0 = time.time()
    _log(f"variant {config.variant!r}, T={config.seq_len}, H={config.hidden_size}, "
         f"{config.num_seeds} seeds x {config.diag_batch} sequences -> {workdir}")
    resumed = []

    def cached(key, compute):
        # One resume point: reload it if a previous run finished it, else compute and save.
        point = resume.load_point(workdir, key, fprint)
        if point is not None:
            resumed.append(key)
            _log(f"{key}: finished before, reloaded points/{key}.json")
            return point
        point = compute()
        resume.save_point(workdir, key, fprint, point)
        return point

    if config.variant == "models":
        results = _run_models(config, cached)
    else:
        results = _run_radius(config, cached)
    results = _jsonable(dict(results, variant=config.variant, seq_len=config.seq_len,
                             seconds=time.time() - t0, resumed_points=resumed))
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    os.replace(path + ".tmp", path)
    stem = os.path.join(workdir, "gradient_lag")
    paths = (_plot_models if config.variant == "models" else _plot_radius)(results, config, stem)
    _log(f"done in {time.time() - t0:.1f} s; wrote results.json, " + ", ".join(
        os.path.basename(p) for p in paths))
    return results

