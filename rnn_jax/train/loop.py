"""``train_and_evaluate(config, workdir)``: the driver around the pure training functions.

What it does, in order:

1. validates the config (before anything compiles) and resolves its defaults
   (for the warmup_cosine schedule ``optimizer.decay_steps = 0`` -> ``num_steps``,
   ``task.eval_size = 0`` -> the task's own);
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

from __future__ import annotations

import copy
import functools
import json
import math
import os
from typing import Callable, NamedTuple

import jax
import numpy as np
from absl import logging

from rnn_jax import models
from rnn_jax.train import training
from rnn_jax.train import config as config_lib
from rnn_jax.train import distributed
from rnn_jax.train import interrupt as interrupt_lib
from rnn_jax.train import probes
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.checkpointing import Checkpointer
from rnn_jax.train.metrics_log import MetricsLogger, Progress, quiet_orbax, summarize, write_json


def resolve_config(config):
    """A copy of ``config`` with defaults that depend on other fields filled in."""
    config = copy.deepcopy(config)
    # Only the cosine schedule has a length; resolving it for the others would make a
    # resume with a different num_steps look like a changed optimizer.
    if config.optimizer.schedule == "warmup_cosine" and config.optimizer.decay_steps == 0:
        config.optimizer.decay_steps = config.num_steps
    if config.task.eval_size == 0:
        config.task.eval_size = models.make_task(config).eval_size
    return config


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


@workdir_lib.claims("train", validate=config_lib.validate, resolve=resolve_config,
                    resumable=config_lib.RESUMABLE_FIELDS)
def train_and_evaluate(config, workdir: str) -> dict:
    """Train ``config.num_seeds`` seeds in ``workdir`` (resuming if possible); return the final eval.

    Returns the dict written to ``eval.json``: ``step``, ``metric_name``, the mean
    (and with several seeds std and per-seed values) of every eval metric, and
    ``success`` per seed by the task's criterion.
    """
    config_lib.validate(config)
    config = resolve_config(config)
    task = models.make_task(config)
    os.makedirs(workdir, exist_ok=True)
    with quiet_orbax():
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
                            metric_name=task.metric_name, higher_is_better=task.higher_is_better)
        try:
            return _train(config, workdir, task, ckpt)
        finally:
            ckpt.close()


def restore_state(config, workdir: str, step: int | None = None):
    """The :class:`~rnn_jax.train.training.TrainState` (leading seed axis) saved in ``workdir``.

    ``step`` defaults to the latest checkpoint. Raises FileNotFoundError if there is
    none and IncompatibleCheckpointError if it was written with a different config.
    """
    config_lib.validate(config)
    config = resolve_config(config)
    task = models.make_task(config)
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
        like = jax.eval_shape(jax.vmap(functools.partial(training.init_state, config)), keys)
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


def _programs(config, mesh) -> _Programs:
    """The jitted programs of a run, shared by runs whose configs differ only in
    run length or cadence (a resumed run in the same process compiles nothing)."""
    key = _program_key(config, mesh)
    if key not in _PROGRAM_CACHE:
        if len(_PROGRAM_CACHE) >= 8:
            _PROGRAM_CACHE.pop(next(iter(_PROGRAM_CACHE)))
        _PROGRAM_CACHE[key] = _build_programs(copy.deepcopy(config), mesh)
    return _PROGRAM_CACHE[key]


def _build_programs(config, mesh) -> _Programs:
    # States split over the mesh's "seed" axis; metrics and evals come back replicated,
    # so every process can read them (a process cannot read another's shards).
    states, whole = distributed.state_sharding(mesh), distributed.replicated(mesh)
    seed_axis = None if mesh is None else "seed"
    init = jax.jit(jax.vmap(functools.partial(training.init_state, config)),
                   out_shardings=states)

    @functools.lru_cache(maxsize=None)
    def runner(n):
        run = functools.partial(training.run_steps, config, num_steps=n, mesh=mesh)
        # spmd_axis_name: the batch's ("data",) constraint inside gains the seed axis.
        return jax.jit(jax.vmap(run, spmd_axis_name=seed_axis), donate_argnums=0,
                       out_shardings=(states, whole))

    evaluate = jax.jit(jax.vmap(training.make_eval(config), in_axes=(0, None),
                                spmd_axis_name=seed_axis), out_shardings=whole)
    return _Programs(init, runner, evaluate)


def _train(config, workdir, task, ckpt) -> dict:
    # Damaged checkpoints are set aside; config and num_steps checked; before writing anything.
    start = ckpt.resume_step(config)
    primary = distributed.is_primary()  # only process 0 writes logs and result files
    if primary:
        write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))

    mesh = make_mesh(config)
    if jax.process_count() > 1:
        logging.info("process %d of %d: batch rows %s of every step ({seed: (first, end)})",
                     jax.process_index(), jax.process_count(),
                     distributed.process_batch_rows(mesh, config.num_seeds, config.batch_size))
    programs = _programs(config, mesh)
    # Host copies: the same values on every process, which jit then places.
    keys, eval_key = (np.asarray(k) for k in training.seed_keys(config))
    state = programs.init(keys)
    if start is not None:
        state, start = ckpt.restore_good(start, state, config)
        logging.info("resuming from the checkpoint at step %d in %s", start, ckpt.directory)
    else:
        start = 0
    # Commit fresh and restored states alike (split over seeds, replicated over data),
    # so both hit the same compiled programs.
    state = jax.device_put(state, distributed.state_sharding(mesh))
    runner, evaluate = programs.runner, programs.evaluate
    chunk = math.gcd(config.log_every, math.gcd(config.eval_every, config.checkpoint_every))
    logger = MetricsLogger(workdir, start_step=start) if primary else _NoLogger()
    probe = None
    if config.diagnostics_every:  # gradient-flow probes while training (issue 15)
        chunk = math.gcd(chunk, config.diagnostics_every)
        probe = probes.Probe(config, workdir, eval_key, start_step=start)
        if start == 0:
            probe(0, state.params, logger)
    progress = Progress(start, config.num_steps, config.progress_every_s)
    step, pending, final_eval, ev = start, [], None, None
    stop = interrupt_lib.install()  # Ctrl-C: save at the current step, then stop
    try:
        while step < config.num_steps:
            if stop.requested:
                interrupt_lib.checkpoint_and_stop(ckpt, step, state, config)
            # Chunk boundaries are multiples of `chunk` from step 0, so a resumed run
            # compiles and runs exactly the programs an uninterrupted run would.
            n = min(chunk - step % chunk, config.num_steps - step)
            new_state, metrics = runner(n)(state)
            metrics = jax.device_get(metrics)
            if not config.skip_nonfinite:
                _check_finite(metrics, step, ckpt)
            state, step = new_state, step + n
            pending.append(metrics)
            done = step == config.num_steps
            if step % config.log_every == 0 or done:
                chunk_metrics = {k: np.concatenate([p[k] for p in pending], axis=1).mean(axis=1)
                                 for k in pending[0]}
                pending = []
                record = logger.write(step, "train", chunk_metrics)
                if primary:
                    progress.update(step, record["loss"], force=done)
            if probe is not None and step % config.diagnostics_every == 0:
                probe(step, state.params, logger)
            if step % config.eval_every == 0 or step % config.checkpoint_every == 0 or done:
                ev = jax.device_get(evaluate(state.params, eval_key))
                final_eval = logger.write(step, "eval", ev)
                if step % config.checkpoint_every == 0 or done:
                    ckpt.save(step, state, config,
                              metrics={task.metric_name: final_eval[task.metric_name]})
        if final_eval is None:  # resumed a finished run: evaluate what was restored
            ev = jax.device_get(evaluate(state.params, eval_key))
        # The reported result comes from sequences no decision was made on (issue 13):
        # the eval set above selects the best checkpoint, so it is not a test set.
        test = jax.device_get(evaluate(state.params, training.holdout_key(config)))
    finally:
        stop.uninstall()
        ckpt.wait()
        logger.close()

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
