"""The one training loop (:func:`run`) and the engine's ``train_and_evaluate(config, workdir)``.

:func:`run` is the loop of the engine and of every application (classify, seq2seq,
the char LM with its TBPTT carry in the state, forecasting with its best-on-validation
params): resume, ``config.json``, the log/eval/checkpoint cadence, Ctrl-C checkpoint,
progress; it returns the eval history. What differs between them is the ``advance``
function it calls (a chunk of vmapped, scanned steps, or one jitted step on a host batch).

What the engine's ``train_and_evaluate`` does, in order:

1. validates the config (before anything compiles), resolves its defaults
   (for the warmup_cosine schedule ``optimizer.decay_steps = 0`` -> ``num_steps``,
   ``task.eval_size = 0`` -> the task's own) and builds the model, task and optimizer
   once (:func:`rnn_jax.train.training.make_setup`);
2. opens ``<workdir>/checkpoints``; if it holds a checkpoint, checks that it was
   written with a compatible config and resumes from the latest one;
3. writes the resolved config to ``<workdir>/config.json``;
4. trains all ``config.num_seeds`` seeds as one vmapped, jitted program, in chunks
   of ``gcd(log_every, eval_every, checkpoint_every)`` steps, sharding each batch over
   the local devices;
5. after each chunk: stops on non-finite loss/gradients (unless
   ``config.skip_nonfinite``), logs, evaluates and checkpoints at their intervals;
6. evaluates the final params on a TEST set, fresh sequences drawn from a key disjoint
   from the training data and from the periodic eval set (which picks the best
   checkpoint), and writes its metrics and ``success`` to ``<workdir>/eval.json``, with
   the eval set's final metrics under ``"selection_eval"``.

Several processes (hosts): every experiment main takes ``--coordinator_address``,
``--num_processes`` and ``--process_id`` and connects the processes before this runs
(:mod:`rnn_jax.train.distributed`); every process then runs this same function over a
``("seed", "data")`` mesh of all processes' devices, process 0 alone writes the logs and
result files, and all write the checkpoints together (see the README).
"""


import copy
import functools
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from absl import logging

from rnn_jax.train import training
from rnn_jax.train import config as config_lib
from rnn_jax.train import distributed
from rnn_jax.train import interrupt as interrupt_lib
from rnn_jax.train import probes
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.checkpointing import Checkpointer
from rnn_jax.train.metrics_log import MetricsLogger, Progress, quiet_orbax, summarize, write_json


resolve_config = training.resolve_config


make_mesh = distributed.make_mesh  # the ("seed", "data") mesh of all processes' devices


def _check_finite(metrics, first_step: int, checkpointer: Checkpointer) -> None:
    """Raise FloatingPointError at the first step with a non-finite loss or gradient."""
    for quantity, key in (("loss", "nonfinite_loss"), ("gradient", "nonfinite_grad")):
        bad = np.asarray(metrics[key]) > 0  # [num_seeds, n]
        if bad.any():
            seeds, idx = np.nonzero(bad)
            order = np.argsort(idx, kind="stable")
            seed, i = int(seeds[order[0]]), int(idx[order[0]])
            # The failing step is number first_step + i + 1 (steps count from 1).
            last = checkpointer.latest_step()
            kept = (f"the last good checkpoint (step {last}) is kept" if last is not None
                    else "no checkpoint exists yet, so a rerun starts from step 0")
            raise FloatingPointError(
                f"non-finite {quantity} at step {first_step + i + 1} (seed index {seed}); "
                f"{kept}. "
                "Lower optimizer.learning_rate, enable clipping (optimizer.clip_norm), or "
                "set skip_nonfinite=True to skip such updates.")


def train_and_evaluate(config, workdir: str) -> dict:
    """Train ``config.num_seeds`` seeds in ``workdir`` (resuming if possible); return the final eval.

    Returns the dict written to ``eval.json``: ``step``, ``metric_name``, the mean
    (and with several seeds std and per-seed values) of every eval metric, and
    ``success`` per seed by the task's criterion.
    """
    # The model, task and optimizer are built here, once, and handed down (purejaxrl's
    # make_train): validation happens before the workdir is claimed, so a bad config
    # writes nothing.
    setup = training.make_setup(config)
    with workdir_lib.claim(workdir, "train", setup.config,
                           resumable=config_lib.RESUMABLE_FIELDS):
        return _train(setup, workdir)


def restore_state(config, workdir: str, step: int | None = None):
    """The :class:`~rnn_jax.train.training.TrainState` (leading seed axis) saved in ``workdir``.

    ``step`` defaults to the latest checkpoint. Raises FileNotFoundError if there is
    none and IncompatibleCheckpointError if it was written with a different config.
    """
    setup = training.make_setup(config)
    config, task = setup.config, setup.task
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
                        metric_name=task.metric_name, higher_is_better=task.higher_is_better,
                        read_only=True)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None or step not in ckpt.all_steps():
            raise FileNotFoundError(f"no checkpoint {'' if step is None else step} in "
                                    f"{ckpt.directory}; saved steps: {ckpt.all_steps()}")
        ckpt.check_compatible(step, config)
        keys, _ = training.seed_keys(config)
        like = jax.eval_shape(jax.vmap(functools.partial(training.init_state, config,
                                                         setup=setup)), keys)
        # Restore onto this process group's layout (orbax reshards a checkpoint written
        # by another number of processes or devices, given the target sharding).
        placed = distributed.state_sharding(make_mesh(config))
        like = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placed), like)
        return ckpt.restore(step, like)
    finally:
        ckpt.close()


class _NoLogger:
    """What processes other than 0 log to: nothing (their metrics are process 0's)."""

    def write(self, step, split, per_seed) -> dict:
        return {"step": int(step), "split": split, **summarize(per_seed)}

    def close(self) -> None:
        pass


class _Programs(NamedTuple):
    init: Callable
    runner: Callable  # n -> jitted (states) -> (states, metrics [num_seeds, n])
    evaluate: Callable


def _program_key(config, mesh) -> str:
    # Fields that only set run length and cadence do not change the compiled program
    # (the schedule's length is already resolved into optimizer.decay_steps).
    d = json.loads(config.to_json())
    for field in config_lib.RESUMABLE_FIELDS:
        if field != "skip_nonfinite":  # that one is compiled into the step
            d.pop(field, None)
    devices = None if mesh is None else [str(x) for x in mesh.devices.flat]
    return json.dumps([d, devices], sort_keys=True)


_PROGRAM_CACHE: dict[str, _Programs] = {}


def _programs(setup: training.Setup, mesh) -> _Programs:
    """The jitted programs of a run, shared by runs whose configs differ only in
    run length or cadence (a resumed run in the same process compiles nothing)."""
    key = _program_key(setup.config, mesh)
    if key not in _PROGRAM_CACHE:
        if len(_PROGRAM_CACHE) >= 8:
            _PROGRAM_CACHE.pop(next(iter(_PROGRAM_CACHE)))
        _PROGRAM_CACHE[key] = _build_programs(setup._replace(config=copy.deepcopy(setup.config)),
                                              mesh)
    return _PROGRAM_CACHE[key]


def _build_programs(setup: training.Setup, mesh) -> _Programs:
    config = setup.config
    # States split over the mesh's "seed" axis; metrics and evals come back replicated,
    # so every process can read them (a process cannot read another's shards).
    states, whole = distributed.state_sharding(mesh), distributed.replicated(mesh)
    seed_axis = None if mesh is None else "seed"
    init = jax.jit(jax.vmap(functools.partial(training.init_state, config, setup=setup)),
                   out_shardings=states)

    @functools.lru_cache(maxsize=None)
    def runner(n):
        run = functools.partial(training.run_steps, config, num_steps=n, mesh=mesh, setup=setup)
        # spmd_axis_name: the batch's ("data",) constraint inside gains the seed axis.
        return jax.jit(jax.vmap(run, spmd_axis_name=seed_axis), donate_argnums=0,
                       out_shardings=(states, whole))

    evaluate = jax.jit(jax.vmap(training.make_eval(config, setup=setup), in_axes=(0, None),
                                spmd_axis_name=seed_axis), out_shardings=whole)
    return _Programs(init, runner, evaluate)


def _train(setup: training.Setup, workdir: str) -> dict:
    """The engine on :func:`run`: vmapped seeds, chunked multi-step programs, sharding,
    probes, non-finite checks, then the final test-set evaluation."""
    config, task = setup.config, setup.task
    primary = distributed.is_primary()  # only process 0 writes logs and result files
    mesh = make_mesh(config)
    if jax.process_count() > 1:
        logging.info("process %d of %d: batch rows %s of every step ({seed: (first, end)})",
                     jax.process_index(), jax.process_count(),
                     distributed.process_batch_rows(mesh, config.num_seeds, config.batch_size))
    programs = _programs(setup, mesh)
    # Host copies: the same values on every process, which jit then places.
    keys, eval_key = (np.asarray(k) for k in training.seed_keys(config))
    chunk = math.gcd(config.log_every, math.gcd(config.eval_every, config.checkpoint_every))
    probe = None
    if config.diagnostics_every:  # gradient-flow probes while training (issue 15)
        chunk = math.gcd(chunk, config.diagnostics_every)

        def probe(start):
            p = probes.Probe(config, workdir, eval_key, start_step=start, model=setup.model)
            return lambda step, state, logger: p(step, state.params, logger)

    def advance(state, step, n):
        return programs.runner(n)(state)

    def evaluate(state):
        return jax.device_get(programs.evaluate(state.params, eval_key))

    out = run(config, workdir, init=lambda: programs.init(keys), advance=advance,
              evaluate=evaluate, metric=task.metric_name,
              higher_is_better=task.higher_is_better, chunk=chunk,
              check_metrics=_check_finite if not config.skip_nonfinite else None,
              probe=probe, probe_every=config.diagnostics_every, primary=primary,
              # Commit fresh and restored states alike (split over seeds, replicated over
              # data), so both hit the same compiled programs.
              place=lambda s: jax.device_put(s, distributed.state_sharding(mesh)))
    # The reported result comes from sequences no decision was made on (issue 13):
    # the eval set above selects the best checkpoint, so it is not a test set.
    test = jax.device_get(programs.evaluate(out.state.params, training.holdout_key(config)))
    step, ev = out.step, out.last_eval
    per_seed = {k: np.asarray(v) for k, v in test.items()}
    success = [bool(task.success({k: v[i] for k, v in per_seed.items()}))
               for i in range(config.num_seeds)]
    result = {"step": step, "metric_name": task.metric_name, "success": success,
              **summarize(per_seed),
              "selection_eval": summarize({k: np.asarray(v) for k, v in ev.items()})}
    if primary:
        write_json(os.path.join(workdir, "eval.json"), result)
    logging.info("final test at step %d: %s = %.4g (success %s)", step, task.metric_name,
                 result[task.metric_name], success)
    return result


# ------------------------------------------------------------------------ the one loop

class LoopResult(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      state: the final state.
      step: the step it is at.
      evals: every ``"eval"`` record of the run, earlier (resumed-from) invocations'
        included, as logged (means over seeds, ``step`` and ``split``).
      last_eval: the final evaluation as ``evaluate`` returned it (per-seed arrays or
        floats); a finished run that was resumed is evaluated once, unlogged.
      best_params: with ``keep_best``, host copies of the params at the best eval by
        ``metric`` among this call's evals (the params of earlier invocations are not
        kept; forecasting, its user, keeps no checkpoints); else None.
      best_step: the step of ``best_params`` (None without ``keep_best``).
      best_checkpoint: the kept checkpoint's step with the best ``metric`` (None
        without checkpoints).
      wall_s: the seconds this call spent.
    """

    state: Any
    step: int
    evals: list
    last_eval: Any
    best_params: Any
    best_step: Any
    best_checkpoint: Any
    wall_s: float


def _earlier_evals(workdir: str, start: int, split: str) -> list:
    """The eval records a resumed run inherits (metrics.jsonl, already cut at ``start``)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if start == 0 or not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("split") == split and r.get("step", 0) <= start:
                out.append(r)
    return out


def _mean_over_steps(pending: list) -> dict:
    """Per-metric mean over the steps of ``pending`` (dicts of ``[..., n]`` arrays or scalars,
    one per program call); keeps the leading (seed) axes."""
    return {k: np.concatenate([np.atleast_1d(np.asarray(p[k])) for p in pending],
                              axis=-1).mean(axis=-1)
            for k in pending[0]}


def run(config, workdir: str | None, *, init: Callable[[], Any],
        advance: Callable[[Any, int, int], tuple], evaluate: Callable[[Any], dict],
        metric: str, higher_is_better: bool = True, chunk: int = 1,
        check_metrics: Callable | None = None, probe: Callable | None = None,
        probe_every: int = 0, primary: bool = True, place: Callable | None = None,
        checkpoints: bool = True, logger=None, keep_best: bool = False,
        eval_split: str = "eval", log_every: int | None = None,
        eval_every: int | None = None) -> LoopResult:
    """Train ``config.num_steps`` steps in ``workdir``: the one loop of the engine and the apps.

    In order: set damaged checkpoints aside and check the newest good one against
    ``config`` (before anything is written); write ``config.json``; initialise, or
    restore the newest good checkpoint onto the initialised state; then call
    ``advance`` in programs of ``chunk`` steps, logging the mean training metrics every
    ``log_every`` steps, evaluating every ``eval_every`` and ``checkpoint_every`` steps
    and at the end, and saving every ``checkpoint_every`` steps and at the end. Ctrl-C
    saves at the current step and stops (:mod:`rnn_jax.train.interrupt`).

    Args:
      config: a validated, resolved config with ``num_steps``, ``log_every``,
        ``eval_every``, ``checkpoint_every``, ``keep_checkpoints``, ``progress_every_s``;
        saved with each checkpoint and written to ``config.json``.
      workdir: the run directory (None: only with ``checkpoints=False``; then nothing is
        written except to ``logger``).
      init: ``() -> state``, the fresh state (jitted by the caller); on resume the
        checkpoint is restored onto it (a field an old checkpoint lacks comes from it).
      advance: ``(state, step, n) -> (state, metrics)``: ``n`` steps from ``step``;
        metrics are scalars or arrays whose LAST axis runs over the ``n`` steps (the
        engine's ``[num_seeds, n]``). A pure function of ``(state, step)``, so a
        resumed run replays the data an uninterrupted one would have seen.
      evaluate: ``state -> dict`` of host values holding ``metric``.
      metric: the eval entry that ranks checkpoints (and ``keep_best``).
      higher_is_better: its direction.
      chunk: steps per program; program boundaries are multiples of ``chunk`` from step
        0, so a resumed run compiles and runs exactly the programs an uninterrupted one
        would.
      check_metrics: ``(host metrics, first step, checkpointer) -> None`` after every
        program (it raises to stop, e.g. on a non-finite loss); None skips the
        per-program device-to-host copy.
      probe: ``start -> ((step, state, logger) -> None)``, called once the start step is
        known; what it returns runs at step 0 and every ``probe_every`` steps (the
        engine's gradient-flow probes).
      primary: whether this process writes the config, logs and results (process 0).
      place: ``state -> state`` applied to the fresh or restored state (sharding).
      checkpoints: False keeps none (no resume; forecasting's quick fits).
      logger: an open :class:`MetricsLogger` to write to (left open); None opens one
        on ``workdir`` (closed at the end).
      keep_best: keep host copies of the params with the best ``metric``.
      eval_split: the split name of the eval records.
      log_every, eval_every: override the config's cadences.

    Returns:
      a :class:`LoopResult`.
    """
    with quiet_orbax():  # orbax logs every save and restore at INFO
        return _run(config, workdir, init=init, advance=advance, evaluate=evaluate,
                    metric=metric, higher_is_better=higher_is_better, chunk=chunk,
                    check_metrics=check_metrics, probe=probe, probe_every=probe_every,
                    primary=primary, place=place, checkpoints=checkpoints, logger=logger,
                    keep_best=keep_best, eval_split=eval_split, log_every=log_every,
                    eval_every=eval_every)


def _run(config, workdir, *, init, advance, evaluate, metric, higher_is_better, chunk,
         check_metrics, probe, probe_every, primary, place, checkpoints, logger, keep_best,
         eval_split, log_every, eval_every) -> LoopResult:
    t0 = time.perf_counter()
    log_every = config.log_every if log_every is None else log_every
    eval_every = config.eval_every if eval_every is None else eval_every
    ckpt_every = config.checkpoint_every if checkpoints else 0
    if workdir is None and checkpoints:
        raise ValueError("workdir=None (nothing written) needs checkpoints=False")
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
    ckpt = None
    if checkpoints:
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
                            metric_name=metric, higher_is_better=higher_is_better)
    try:
        # Damaged checkpoints are set aside; config and num_steps checked; before writing.
        start = ckpt.resume_step(config) if ckpt is not None else None
        if primary and workdir is not None:
            write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
        state = init()
        if start is not None:
            state, start = ckpt.restore_good(start, state, config)
            logging.info("resuming from the checkpoint at step %d in %s", start, ckpt.directory)
        else:
            start = 0
        if place is not None:
            state = place(state)
        own_logger = logger is None
        if own_logger:
            logger = (MetricsLogger(workdir, start_step=start) if primary and workdir is not None
                      else _NoLogger())
        evals = _earlier_evals(workdir, start, eval_split) if primary and checkpoints else []
        best = best_value = best_step = None
        if keep_best:  # until an eval improves on it, the best is where training starts
            best, best_step = jax.device_get(state.params), start
            best_value = -math.inf if higher_is_better else math.inf
        if probe is not None:
            probe = probe(start)
            if start == 0:
                probe(0, state, logger)
        progress = Progress(start, config.num_steps, config.get("progress_every_s", math.inf))
        step, pending, last_eval = start, [], None
        stop = interrupt_lib.install()  # Ctrl-C: save at the current step, then stop
        try:
            while step < config.num_steps:
                if stop.requested:
                    if ckpt is None:
                        raise interrupt_lib.Interrupted(
                            f"interrupted (Ctrl-C) at step {step}: this run keeps no checkpoints")
                    interrupt_lib.checkpoint_and_stop(ckpt, step, state, config)
                n = min(chunk - step % chunk, config.num_steps - step)
                new_state, metrics = advance(state, step, n)
                if check_metrics is not None:
                    metrics = jax.device_get(metrics)
                    check_metrics(metrics, step, ckpt)
                state, step = new_state, step + n
                pending.append(metrics)
                done = step == config.num_steps
                if step % log_every == 0 or done:
                    # One device-to-host copy per log interval, not one sync per step.
                    record = logger.write(step, "train", _mean_over_steps(jax.device_get(pending)))
                    pending = []
                    if primary and "loss" in record:
                        progress.update(step, record["loss"], force=done)
                if probe is not None and step % probe_every == 0:
                    probe(step, state, logger)
                save = ckpt_every and (step % ckpt_every == 0 or done)
                if step % eval_every == 0 or save or done:
                    last_eval = evaluate(state)
                    record = logger.write(step, eval_split, last_eval)
                    evals.append(record)
                    value = record[metric]
                    if keep_best and (value > best_value if higher_is_better
                                      else value < best_value):
                        best, best_value, best_step = jax.device_get(state.params), value, step
                    if save:
                        ckpt.save(step, state, config, metrics={metric: value})
            if last_eval is None:  # resumed a finished run: evaluate what was restored
                last_eval = evaluate(state)
        finally:
            stop.uninstall()
            if ckpt is not None:
                ckpt.wait()
            if own_logger:
                logger.close()
        best_checkpoint = ckpt.best_step() if ckpt is not None else None
    finally:
        if ckpt is not None:
            ckpt.close()
    return LoopResult(state, step, evals, last_eval, best, best_step, best_checkpoint,
                      time.perf_counter() - t0)
