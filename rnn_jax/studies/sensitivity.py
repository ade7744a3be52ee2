r"""Parameter sensitivity against memory (Zucchet & Orvieto 2024, arXiv 2405.21064).

    python -m experiments.sensitivity --workdir=runs/sensitivity

Part 1, a scalar linear recurrence ``h_t = lambda h_{t-1} + gamma x_t``, ``h_{-1} = 0``,
``x_t ~ N(0, 1)`` i.i.d., for each ``lambda = 1 - config.one_minus_lambda[i]`` and three
parametrisations (all defined here, no LRU cell needed):

* ``raw``: gamma = 1, sensitivity to lambda;
* ``gamma``: the LRU's normalisation gamma = sqrt(1 - lambda^2) (Orvieto et al. 2023),
  gamma a function of lambda, sensitivity to lambda (through gamma too);
* ``gamma_exp``: the same with ``lambda = exp(-exp(nu))``, sensitivity to nu.

Measured with :func:`rnn_jax.diagnostics.param_sensitivity` (forward mode, per example)
at the last step T-1: the root mean square over ``config.batch`` sequences of
``|d h_{T-1} / d theta|``. The closed forms, with ``d h/d lambda = sum_{k>=0} (k
lambda^(k-1) gamma + lambda^k gamma') x_{t-k}`` and white input, are
``E[(dh/dlambda)^2] = sum_k (k lambda^(k-1) gamma + lambda^k gamma')^2`` (``gamma' = 0``
for raw, ``-lambda/gamma`` for gamma; raw: ``(1 + lambda^2)/(1 - lambda^2)^3``), times
``(d lambda/d nu)^2 = (lambda log lambda)^2`` for gamma_exp. Also recorded:
``E[h^2]`` (``gamma^2 / (1 - lambda^2)``: the normalisation keeps it at 1).

Part 2, an LSTM (``config.lstm_hidden`` units) whose forget gate is held constant at
``sigmoid(b_f)`` (its input and recurrent weights zeroed, the rest at init): the memory
timescale per unit from :func:`rnn_jax.diagnostics.timescales` and the sensitivity
``||d (h, c)_{T-1} / d W_h||_F`` (median and RMS over sequences; the values are
heavy-tailed), for each ``b_f`` in
``config.lstm_forget_biases``.

Outputs in ``--workdir``: ``config.json`` (the resolved config), ``results.json`` and
``sensitivity.png``/``.pdf``. A workdir holding another config's run is refused, naming
the differing fields; the same config with finished results returns them.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import cells, diagnostics, plotting

PARAMS = ("raw", "gamma", "gamma_exp")
_LABELS = {"raw": r"$\gamma=1$, w.r.t. $\lambda$",
           "gamma": r"$\gamma=\sqrt{1-\lambda^2}$, w.r.t. $\lambda$",
           "gamma_exp": r"$\gamma=\sqrt{1-\lambda^2}$, $\lambda=e^{-e^{\nu}}$, w.r.t. $\nu$"}
_COLORS = {"raw": plotting.PALETTE[1], "gamma": plotting.PALETTE[3],
           "gamma_exp": plotting.PALETTE[4]}


def _log(msg: str) -> None:
    print(f"[sensitivity] {msg}", flush=True)


def validate(config) -> None:
    """Raise ValueError naming the bad field; runs before anything compiles or is written."""
    for name in ("seq_len", "batch", "lstm_hidden", "lstm_seq_len", "lstm_batch"):
        v = config[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"config.{name} must be an int >= 1, got {v!r}")
    if not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"config.seed must be an int >= 0, got {config.seed!r}")
    oml = list(config.one_minus_lambda)
    if not oml or any(not isinstance(v, (int, float)) or not 0 < v < 1 for v in oml):
        raise ValueError(f"config.one_minus_lambda must be numbers in (0, 1), got {oml!r}")
    fb = list(config.lstm_forget_biases)
    if not fb or any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in fb):
        raise ValueError(f"config.lstm_forget_biases must be finite numbers, got {fb!r}")


# ----------------------------------------------------------------------------- part 1

def _linear_step(kind):
    """The scalar recurrence for one parametrisation; params {"theta": [1]}."""
    def step(p, h, x):
        th = p["theta"].reshape((1,) * (h.ndim - 1) + (-1,))  # [1] against h [*batch, 1]
        if kind == "raw":
            lam, gamma = th, jnp.ones_like(th)
        else:
            lam = jnp.exp(-jnp.exp(th)) if kind == "gamma_exp" else th
            gamma = jnp.sqrt(1.0 - lam * lam)
        h = lam * h + gamma * x
        return h, h
    return step


def _theta(kind, lam):
    return math.log(-math.log(lam)) if kind == "gamma_exp" else lam


def closed_form(kind: str, lam: float, T: int) -> tuple[float, float]:
    """float64 ``(E[(dh_{T-1}/dtheta)^2], E[h_{T-1}^2])`` for white unit-variance input."""
    k = np.arange(T, dtype=np.float64)
    gamma = 1.0 if kind == "raw" else math.sqrt(1.0 - lam * lam)
    dgamma = 0.0 if kind == "raw" else -lam / gamma
    with np.errstate(divide="ignore"):
        coef = k * lam ** np.maximum(k - 1, 0) * gamma + lam ** k * dgamma
    coef[0] = dgamma  # k = 0: d/dlambda (gamma x_t)
    ms = float(np.sum(coef ** 2))
    if kind == "gamma_exp":
        ms *= (lam * math.log(lam)) ** 2
    return ms, float(np.sum((gamma * lam ** k) ** 2))


def _run_linear(config):
    T, B = config.seq_len, config.batch
    xs = jax.random.normal(jax.random.PRNGKey(config.seed), (T, B, 1))
    h0 = jnp.zeros((B, 1))
    out = []
    for kind in PARAMS:
        step = _linear_step(kind)

        def measure(theta):
            p = {"theta": theta.reshape(1)}
            s = diagnostics.param_sensitivity(step, p, h0, xs, batch_ndim=1)[:, -1]
            h_last = jax.lax.scan(lambda h, x: step(p, h, x), h0, xs)[0][:, 0]
            return jnp.sqrt(jnp.mean(s ** 2)), jnp.mean(h_last ** 2)

        lams = [1.0 - float(v) for v in config.one_minus_lambda]
        thetas = jnp.asarray([_theta(kind, l) for l in lams], jnp.float32)
        rms, h2 = jax.device_get(jax.jit(jax.vmap(measure))(thetas))
        for i, lam in enumerate(lams):
            ms, h2_ref = closed_form(kind, lam, T)
            out.append({"param": kind, "lambda": lam, "one_minus_lambda": 1.0 - lam,
                        "rms_sensitivity": float(rms[i]), "closed_form": math.sqrt(ms),
                        "mean_h2": float(h2[i]), "closed_form_h2": h2_ref})
        _log(f"{kind:9s}: RMS |dh/dtheta| from {float(rms[0]):.3g} (1-lambda={1 - lams[0]:g}) "
             f"to {float(rms[-1]):.3g} (1-lambda={1 - lams[-1]:g})")
    return out


# ----------------------------------------------------------------------------- part 2

def _run_lstm(config):
    H, T, B = config.lstm_hidden, config.lstm_seq_len, config.lstm_batch
    cell = cells.lstm(H)
    f = slice(cell.gates.index("f") * H, (cell.gates.index("f") + 1) * H)
    base = cell.init(jax.random.PRNGKey(config.seed + 1), 1)
    base = dict(base, w_x=base["w_x"].at[:, f].set(0.0), w_h=base["w_h"].at[:, f].set(0.0))
    xs = jax.random.normal(jax.random.PRNGKey(config.seed + 2), (T, B, 1))
    carry = cell.initial_carry((B,))

    def measure(b_f):
        p = dict(base, b=base["b"].at[f].set(b_f))
        s = diagnostics.param_sensitivity(cell.step, p, carry, xs, wrt=("w_h",), batch_ndim=1)
        tau = diagnostics.timescales(cell, p, carry, xs)["timescale"]
        return jnp.sqrt(jnp.mean(s[:, -1] ** 2)), jnp.median(s[:, -1]), jnp.mean(tau)

    biases = jnp.asarray([float(v) for v in config.lstm_forget_biases], jnp.float32)
    rms, med, tau = jax.device_get(jax.jit(jax.vmap(measure))(biases))
    out = [{"forget_bias": float(b), "timescale": float(t), "rms_sensitivity": float(r),
            "median_sensitivity": float(m)}
           for b, t, r, m in zip(config.lstm_forget_biases, tau, rms, med)]
    for o in out:
        _log(f"LSTM b_f={o['forget_bias']:4.1f}: timescale {o['timescale']:7.2f} steps, "
             f"||dh/dW_h|| median {o['median_sensitivity']:.3g}, RMS {o['rms_sensitivity']:.3g}")
    return out


# ----------------------------------------------------------------------------- figure

def _slope(x, y):
    return float(np.polyfit(np.log10(x), np.log10(y), 1)[0])


def plot(results, stem):
    """The study's figure, ``stem.png``/``.pdf``: RMS sensitivity against ``1 - lambda`` for
    the linear recurrence (with the closed form), and against the forget-gate timescale
    for the LSTM. ``results`` is what the study writes to its results file; returns the
    paths written."""
    fig, (ax1, ax2) = plotting.panels(2, panel_height=1.7, sharey=False, vertical=False,
                                      width=plotting.PAGE_WIDTH)
    for kind in PARAMS:
        rows = [r for r in results["linear"] if r["param"] == kind]
        x = np.array([r["one_minus_lambda"] for r in rows])
        ax1.plot(x, [r["closed_form"] for r in rows], color=_COLORS[kind], linewidth=1.0)
        ax1.plot(x, [r["rms_sensitivity"] for r in rows], "o", color=_COLORS[kind],
                 markersize=3.5, label=f"{_LABELS[kind]} (slope {results['slopes'][kind]:+.2f})")
    ax1.plot([], [], color="0.4", linewidth=1.0, label="closed form")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.invert_xaxis()
    ax1.set_xlabel(r"$1-\lambda$ (memory grows to the right)")
    ax1.set_ylabel(r"RMS $|\partial h_T/\partial\theta|$")
    ax1.grid(True, which="major")
    ax1.legend(loc="upper left", fontsize=6)
    plotting.panel_label(ax1, "linear recurrence")
    rows = results["lstm"]
    # The h-path makes the per-sequence values heavy-tailed (rare bursts 100x the median),
    # so the median is the curve and the RMS is shown for reference.
    ax2.plot([r["timescale"] for r in rows], [r["median_sensitivity"] for r in rows], "s-",
             color=plotting.PALETTE[0], markersize=3.5, label="median over sequences")
    ax2.plot([r["timescale"] for r in rows], [r["rms_sensitivity"] for r in rows], "^:",
             color="0.55", markersize=3, linewidth=0.9, label="RMS")
    for r in rows:
        ax2.annotate(f"$b_f$={r['forget_bias']:g}", (r["timescale"], r["median_sensitivity"]),
                     fontsize=5.5, xytext=(3, -7), textcoords="offset points")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.legend(loc="upper left", fontsize=6)
    ax2.set_xlabel(r"forget-gate timescale $-1/\log f$ (steps)")
    ax2.set_ylabel(r"$\|\partial (h,c)_T/\partial W_h\|_F$")
    ax2.grid(True, which="major")
    plotting.panel_label(ax2, "LSTM, constant forget gate")
    return plotting.save(fig, stem)


# ----------------------------------------------------------------------------- driver

def _check_workdir(config, workdir):
    """None for a fresh workdir, the finished results for the same config; else refuse."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        old = json.load(f)
    new = json.loads(config.to_json_best_effort())
    if old.get("experiment") != "sensitivity":
        raise ValueError(f"workdir {workdir} holds another experiment's run "
                         f"(experiment={old.get('experiment')!r}); choose a new --workdir")
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ValueError(f"workdir {workdir} holds a sensitivity run with another config "
                         f"(fields {differ} differ); choose a new --workdir")
    res = os.path.join(workdir, "results.json")
    if os.path.exists(res):
        with open(res) as f:
            return json.load(f)
    return None


def run(config, workdir: str) -> dict:
    """Run the study and write ``config.json``, ``results.json`` and the figure into ``workdir``."""
    if not workdir:
        raise ValueError("workdir must be a directory path, got an empty value")
    validate(config)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.experiment = "sensitivity"
    done = _check_workdir(config, workdir)
    if done is not None:
        _log(f"{workdir} already holds this config's finished results; nothing to do")
        return done
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    t0 = time.time()
    linear = _run_linear(config)
    lstm = _run_lstm(config)
    slopes = {}
    for kind in PARAMS:
        rows = [r for r in linear if r["param"] == kind]
        # Fit the small-(1-lambda) end, where the asymptotic power law holds.
        rows = [r for r in rows if r["one_minus_lambda"] <= 0.05] or rows
        slopes[kind] = _slope([r["one_minus_lambda"] for r in rows],
                              [r["rms_sensitivity"] for r in rows])
    results = {"linear": linear, "lstm": lstm, "slopes": slopes, "seq_len": config.seq_len,
               "seconds": time.time() - t0}
    _log("log-log slopes against 1 - lambda: " + ", ".join(f"{k} {v:+.2f}" for k, v in slopes.items()))
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, allow_nan=False)
    paths = plot(results, os.path.join(workdir, "sensitivity"))
    _log(f"done in {time.time() - t0:.1f} s; wrote config.json, results.json, "
         + ", ".join(os.path.basename(p) for p in paths))
    return results
