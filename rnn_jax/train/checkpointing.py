"""Checkpoints with orbax-checkpoint's ``CheckpointManager``: save, resume, keep latest + best.

Each checkpoint ``<workdir>/checkpoints/<step>/`` holds two items: ``state`` (the
:class:`~rnn_jax.train.training.TrainState` pytree, with a leading seed axis) and ``config``
(the resolved config as JSON). orbax writes a step into a
``<step>.orbax-checkpoint-tmp-*`` directory and renames it only once every file is
written, so a process killed mid-save leaves the previous checkpoints intact and the
half-written directory is never listed as a step (and is removed when the manager
next opens, ``cleanup_tmp_directories=True``).

Retention: the latest ``keep`` steps, plus the best one by the eval metric
(``preservation_policy`` = ``LatestN`` or ``BestN``).

A :class:`~rnn_jax.train.training.TrainState` is saved as the dict of its fields that
are not None (``step``, ``params``, ``opt_state``, and ``key``/``carry`` where a run has
them). orbax keys a saved pytree by field name, so the checkpoints of the earlier
states (the engine's ``TrainState(params, opt_state, step, key)``, the char LM's
``LMState(params, opt_state, carry, step)``, the classifier's and seq2seq's
``(params, opt_state, step)``) hold the same names and restore into it; a field the
current state has and an old checkpoint lacks (the LM's ``key``) is taken from the
freshly initialised state it is restored onto, which derives it from the config
alone, as the old code did; anything else that differs is refused with the names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Mapping

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.config import RESUMABLE_FIELDS
from rnn_jax.train.workdir import IncompatibleWorkdirError


class IncompatibleCheckpointError(IncompatibleWorkdirError):
    """The workdir holds checkpoints of a run with a different config."""


DAMAGED_DIR = "checkpoints_damaged"  # next to checkpoints/: where damaged steps are moved
# Words of tensorstore's status messages when a file is missing, short or corrupt.
_STORAGE_ERRORS = ("OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "Error reading", "Error opening",
                   "tensorstore", "FAILED_PRECONDITION")


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


def _silence_closed_loop_noise() -> None:
    """After a failed read, orbax leaves coroutines that asyncio reports at exit as
    "Exception ignored in coroutine ... Event loop is closed" (a traceback per array).
    The damage is already reported in one line; drop exactly those reports."""
    previous = sys.unraisablehook
    if getattr(previous, "_rnn_jax_filter", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
            return
        previous(unraisable)

    hook._rnn_jax_filter = True
    sys.unraisablehook = hook


class DamagedCheckpointError(RuntimeError):
    """A checkpoint's files are damaged (``step``, ``path``, ``problem``)."""

    def __init__(self, step: int, path: str, problem: str):
        super().__init__(f"damaged checkpoint {path}: {problem}")
        self.step, self.path, self.problem = step, path, problem


def _fields(state) -> dict | None:
    """A dataclass state's fields that are not None, by name (None: not a dataclass)."""
    if not dataclasses.is_dataclass(state):
        return None
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
            if f.metadata.get("pytree_node", True) and getattr(state, f.name) is not None}


def _is_abstract(tree) -> bool:
    return any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(tree))


def config_to_json_dict(config) -> dict:
    """The config as plain JSON types (what is stored next to the state)."""
    return json.loads(config.to_json())


def config_differences(saved: Mapping, current: Mapping) -> list[str]:
    """``"field: checkpoint=a, now=b"`` for each field that differs, except those in
    ``RESUMABLE_FIELDS`` (run length and logging cadence)."""
    return workdir_lib.config_differences(saved, current, RESUMABLE_FIELDS)


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` for one training run.

    Args:
      directory: where the step directories go (created if missing).
      keep: how many of the latest checkpoints to keep.
      metric_name: eval metric that ranks checkpoints for "best".
      higher_is_better: direction of ``metric_name``.
      read_only: inspect only: no saving, and leftover temporary directories are not
        touched (their removal runs in the background, so only the run that trains
        should do it).
    """

    def __init__(self, directory: str, *, keep: int, metric_name: str, higher_is_better: bool,
                 read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.metric_name = metric_name
        self.higher_is_better = higher_is_better
        policy = checkpoint_managers.AnyPreservationPolicy([
            checkpoint_managers.LatestN(n=keep),
            # BestN sorts ascending and keeps the tail; reverse=True keeps the lowest.
            checkpoint_managers.BestN(get_metric_fn=lambda m: m[metric_name],
                                      reverse=not higher_is_better, n=1,
                                      keep_checkpoints_without_metrics=False),
        ])
        # best_fn/best_mode make orbax store each step's metrics and rank by them;
        # the explicit preservation_policy decides what is deleted.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda m: m[metric_name],
            best_mode="max" if higher_is_better else "min",
            create=not read_only, cleanup_tmp_directories=not read_only, read_only=read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def saved_config(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return dict(restored["config"])

    def check_compatible(self, step: int, config) -> None:
        """Raise :class:`IncompatibleCheckpointError` naming every field that differs."""
        diffs = config_differences(self.saved_config(step), config_to_json_dict(config))
        if diffs:
            raise IncompatibleCheckpointError(
                f"the checkpoint at step {step} in {self.directory} was written with a "
                "different config; refusing to load or overwrite it. Differences:\n  "
                + "\n  ".join(diffs)
                + "\nUse a new --workdir, or the original config (only "
                f"{', '.join(RESUMABLE_FIELDS)} may change on resume; with the warmup_cosine "
                "schedule the learning rate reaches end_learning_rate at the original run's "
                "optimizer.decay_steps, so a longer schedule needs a new --workdir).")

    def restore(self, step: int, like: Any):
        """The state saved at ``step``, shaped and typed like the pytree ``like``.

        Raises :class:`DamagedCheckpointError` when its files are damaged (missing
        metadata, unreadable data) and :class:`IncompatibleCheckpointError` when they
        are whole but hold another parameter structure.
        """
        if not os.path.exists(os.path.join(self.directory, str(step), "state", "_METADATA")):
            # Without it orbax reports a pytree structure mismatch: say what is wrong.
            raise DamagedCheckpointError(step, self._step_dir(step), "state/_METADATA is missing")
        fields = _fields(like)
        if fields is not None:
            return self._restore_fields(step, like, fields)
        return self._restore_tree(step, like)

    def _restore_fields(self, step: int, like, fields: dict):
        """A dataclass state, restored field by field (module docstring)."""
        try:
            saved = self._saved_fields(step)
        except Exception as e:  # noqa: BLE001 - unreadable metadata is damage
            raise DamagedCheckpointError(step, self._step_dir(step), "its state metadata cannot "
                                         f"be read: {type(e).__name__}: {_first_line(str(e))}") from e
        extra = sorted(saved - set(fields))
        lacking = sorted(set(fields) - saved)
        fill = {k: fields[k] for k in lacking}
        if extra or (lacking and ({"step", "params", "opt_state"} & set(lacking)
                                  or _is_abstract(fill))):
            raise IncompatibleCheckpointError(
                f"the state saved at step {step} in {self.directory} holds the fields "
                f"{sorted(saved)}, this run's state {sorted(fields)}"
                + (f"; it has {extra}, which this run would drop" if extra else "")
                + (f"; it lacks {lacking}, which cannot be derived here" if lacking else "")
                + ": it was written by another kind of run (or another version); use a new "
                "--workdir")
        restored = self._restore_tree(step, {k: v for k, v in fields.items() if k in saved})
        return like.replace(**restored, **fill)

    def _saved_fields(self, step: int) -> set:
        """The top-level names of the state saved at ``step``, from orbax's tree metadata
        (``state/_METADATA``: each leaf's key path), without reading any array."""
        with open(os.path.join(self._step_dir(step), "state", "_METADATA")) as f:
            tree = json.load(f)["tree_metadata"]
        return {leaf["key_metadata"][0]["key"] for leaf in tree.values()}

    def _restore_tree(self, step: int, like):
        abstract = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
            like)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except (ValueError, KeyError, OSError) as e:
            text = str(e)
            if any(w in text for w in _STORAGE_ERRORS) or isinstance(e, OSError):
                _silence_closed_loop_noise()
                raise DamagedCheckpointError(step, self._step_dir(step),
                                             "its data cannot be read: " + _first_line(text)) from e
            raise IncompatibleCheckpointError(
                f"the state saved at step {step} in {self.directory} does not match this "
                f"model's parameter structure: {e}") from e
        return restored["state"]

    # ------------------------------------------------------------ resume, skipping damage

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _problem(self, step: int) -> str | None:
        """What is wrong with the files of ``step`` that can be seen without reading its
        arrays (None: nothing)."""
        path = self._step_dir(step)
        if not os.listdir(path):
            return "the step directory is empty"
        for item in ("state", "config"):
            if not os.path.isdir(os.path.join(path, item)):
                return f"its {item!r} item is missing"
        if not os.path.exists(os.path.join(path, "state", "_METADATA")):
            return "state/_METADATA is missing"
        try:
            self.saved_config(step)
        except Exception as e:  # noqa: BLE001 - any failure to read it is damage
            return f"its saved config cannot be read: {type(e).__name__}: {_first_line(str(e))}"
        return None

    def _set_aside(self, step: int, problem: str) -> None:
        """Move the damaged ``step`` to ``<workdir>/checkpoints_damaged/`` (never delete
        it: it may be recoverable by hand) and say so in one line."""
        src = self._step_dir(step)
        dest_dir = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
        os.makedirs(dest_dir, exist_ok=True)
        dest, n = os.path.join(dest_dir, str(step)), 1
        while os.path.exists(dest):
            dest, n = os.path.join(dest_dir, f"{step}.{n}"), n + 1
        os.rename(src, dest)
        self.manager.reload()
        logging.warning("damaged checkpoint %s: %s; moved it to %s, falling back to the newest "
                        "good checkpoint", src, problem, dest)

    def resume_step(self, config) -> int | None:
        """The step to resume ``config`` from: the newest checkpoint whose files look whole
        (damaged ones are set aside, see :meth:`_set_aside`), after checking that it was
        written with a compatible config and that ``config.num_steps`` does not lie
        before it. None when there is no checkpoint. Reads no arrays."""
        damaged = []
        while True:
            step = self.latest_step()
            if step is None:
                if damaged:
                    self._all_damaged(damaged)
                return None
            problem = self._problem(step)
            if problem is None:
                break
            self._set_aside(step, problem)
            damaged.append(step)
        self.check_compatible(step, config)
        if config.num_steps < step:
            raise IncompatibleCheckpointError(
                f"config.num_steps={config.num_steps} is below the step of the newest "
                f"checkpoint in {self.directory} ({step}): that run is already past it. Use "
                f"num_steps >= {step} to resume (num_steps={step} re-evaluates the saved "
                "state), or a new --workdir for a shorter run")
        if damaged:
            logging.warning("resuming from step %d, the newest good checkpoint in %s", step,
                            self.directory)
        return step

    def _all_damaged(self, steps):
        raise FileNotFoundError(
            f"every checkpoint in {self.directory} is damaged (steps {steps}, moved to "
            f"{os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)}); nothing to resume "
            "from: run the same command again to train from step 0")

    def restore_good(self, step: int, like: Any, config):
        """``(state, step)``: :meth:`restore` of ``step`` (from :meth:`resume_step`), or,
        when its data turn out damaged, of the newest good checkpoint before it."""
        damaged = []
        while True:
            try:
                return self.restore(step, like), step
            except DamagedCheckpointError as e:
                self._set_aside(step, e.problem)
                damaged.append(step)
            step = self.resume_step(config)
            if step is None:
                self._all_damaged(damaged)
            logging.warning("resuming from step %d, the newest good checkpoint in %s", step,
                            self.directory)

    def save(self, step: int, state: Any, config, metrics: Mapping[str, float] | None = None):
        """Save ``state`` and the config at ``step`` (asynchronously; see :meth:`wait`)."""
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items()}
        fields = _fields(state)
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state if fields is None else fields),
            config=ocp.args.JsonSave(config_to_json_dict(config))),
            metrics=metrics, force=True)

    def best_step(self) -> int | None:
        """The kept step with the best eval metric (the latest if none has metrics)."""
        return self.manager.best_step()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
