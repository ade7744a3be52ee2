"""Checkpoints with orbax-checkpoint's ``CheckpointManager``: save, resume, keep latest + best.

Each checkpoint ``<workdir>/checkpoints/<step>/`` holds two items: ``state`` (the
:class:`~rnn_jax.training.TrainState` pytree, with a leading seed axis) and ``config``
(the resolved config as JSON). orbax writes a step into a
``<step>.orbax-checkpoint-tmp-*`` directory and renames it only once every file is
written, so a process killed mid-save leaves the previous checkpoints intact and the
half-written directory is never listed as a step (and is removed when the manager
next opens, ``cleanup_tmp_directories=True``).

Retention: the latest ``keep`` steps, plus the best one by the eval metric
(``preservation_policy`` = ``LatestN`` or ``BestN``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.config import RESUMABLE_FIELDS
from rnn_jax.train.workdir import IncompatibleWorkdirError


class IncompatibleCheckpointError(IncompatibleWorkdirError):
    """The workdir holds checkpoints of a run with a different config."""


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
                "schedule, set optimizer.decay_steps to change num_steps).")

    def restore(self, step: int, like: Any):
        """The state saved at ``step``, shaped and typed like the pytree ``like``."""
        abstract = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
            like)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except (ValueError, KeyError) as e:
            raise IncompatibleCheckpointError(
                f"the state saved at step {step} in {self.directory} does not match this "
                f"model's parameter structure: {e}") from e
        return restored["state"]

    def save(self, step: int, state: Any, config, metrics: Mapping[str, float] | None = None):
        """Save ``state`` and the config at ``step`` (asynchronously; see :meth:`wait`)."""
        if metrics is not None:
            metrics = {k: float(v) for k, v in metrics.items()}
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config_to_json_dict(config))),
            metrics=metrics, force=True)

    def best_step(self) -> int | None:
        """The kept step with the best eval metric (the latest if none has metrics)."""
        return self.manager.best_step()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
