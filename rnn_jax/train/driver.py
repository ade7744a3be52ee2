"""The resume / train / log / evaluate / checkpoint loop of the single-model applications.

The classifier (:mod:`rnn_jax.apps.classify`) and seq2seq (:mod:`rnn_jax.apps.seq2seq`) differ in
their model, data and metrics, not in how they train; this module is the part they
share. (The engine's own loop, :mod:`rnn_jax.train.loop`, trains vmapped seeds; the char
LM carries its TBPTT state between windows and forecasting keeps the best parameters,
so those keep loops of their own.)

    state, wall_s = driver.run(config, workdir, init_state=..., train_step=...,
                               batch=lambda step: ..., evaluate=..., metric="accuracy")
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from rnn_jax.train import interrupt as interrupt_lib
from rnn_jax.train.checkpointing import Checkpointer
from rnn_jax.train.metrics_log import MetricsLogger, Progress, write_json


def run(config, workdir: str, *, init_state: Callable[[jax.Array], Any],
        train_step: Callable, batch: Callable[[int], Any],
        evaluate: Callable[[Any], dict], metric: str, higher_is_better: bool = True):
    """Train ``config.num_steps`` steps in ``workdir``, resuming from its latest checkpoint.

    Args:
      config: a validated config with ``seed``, ``num_steps``, ``log_every``,
        ``eval_every``, ``checkpoint_every``, ``keep_checkpoints`` and
        ``progress_every_s``. It is written to ``config.json`` and saved with each
        checkpoint; a workdir whose checkpoints hold an incompatible config is refused
        before anything is written.
      init_state: ``key -> state``, a pytree with a ``params`` field. Jitted once; on
        resume only its output structure is used (nothing is compiled for it).
      train_step: ``(state, batch) -> (state, metrics)``; jitted with the state donated.
        ``metrics`` must hold ``"loss"``.
      batch: ``step -> batch`` for the training step ``step`` (a pure function of it,
        so a resumed run sees the same data).
      evaluate: ``params -> dict`` of floats holding ``metric``; run every
        ``eval_every`` and ``checkpoint_every`` steps and at the end, and logged as the
        ``"eval"`` split of ``metrics.jsonl``.
      metric: the evaluation entry that ranks checkpoints.

    Returns:
      ``(state, wall_s)``: the final state and the seconds this call spent.
    """
    t0 = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
                        metric_name=metric, higher_is_better=higher_is_better)
    try:
        start = ckpt.resume_step(config)  # damaged checkpoints set aside; config checked
        write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
        key = jax.random.PRNGKey(config.seed)
        if start is not None:
            state, start = ckpt.restore_good(start, jax.eval_shape(init_state, key), config)
        else:
            # One jitted init: eager init would compile every small op separately.
            state, start = jax.jit(init_state)(key), 0
        step_fn = jax.jit(train_step, donate_argnums=0)
        logger = MetricsLogger(workdir, start_step=start)
        progress = Progress(start, config.num_steps, config.progress_every_s)
        pending = []
        stop = interrupt_lib.install()  # Ctrl-C: save at the current step, then stop
        try:
            for step in range(start, config.num_steps):
                if stop.requested:
                    interrupt_lib.checkpoint_and_stop(ckpt, step, state, config)
                state, m = step_fn(state, batch(step))
                pending.append(m)
                done = step + 1
                last = done == config.num_steps
                if done % config.log_every == 0 or last:
                    # One device_get per log interval, not one sync per step.
                    got = jax.device_get(pending)
                    pending = []
                    rec = logger.write(done, "train", {n: np.mean([g[n] for g in got]) for n in got[0]})
                    progress.update(done, rec["loss"], force=last)
                save = done % config.checkpoint_every == 0 or last
                if done % config.eval_every == 0 or save:
                    ev = evaluate(state.params)
                    logger.write(done, "eval", ev)
                    if save:
                        ckpt.save(done, state, config, metrics={metric: ev[metric]})
        finally:
            stop.uninstall()
            ckpt.wait()
            logger.close()
    finally:
        ckpt.close()
    return state, time.perf_counter() - t0
