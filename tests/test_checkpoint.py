"""Tests of the training driver: outputs, checkpoints, resume, kill safety, incompatible configs."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from rnn_jax.train import training
from rnn_jax.train import loop
from rnn_jax.train.checkpointing import Checkpointer, IncompatibleCheckpointError
from rnn_jax.train.workdir import IncompatibleWorkdirError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps=8):
    c = training.default_config()
    c.cell = "rnn"
    c.hidden_size = 8
    c.task.name = "adding_le"
    c.task.seq_len = 6
    c.task.eval_size = 64
    c.batch_size = 8
    c.num_steps = num_steps
    c.num_seeds = 2
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-2
    c.optimizer.clip_norm = 1.0
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 2
    c.optimizer.decay_steps = 8  # fixed, so runs of different length share one schedule
    c.eval_every = 4
    c.checkpoint_every = 4
    c.log_every = 2
    c.progress_every_s = 0.0
    return c


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run with 2 seeds."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    result = loop.train_and_evaluate(tiny_config(), workdir)
    return workdir, result, loop.restore_state(tiny_config(), workdir)


def test_run_writes_logs_config_eval_and_checkpoints(reference):
    workdir, result, state = reference
    records = _records(workdir)
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert [r["step"] for r in evals] == [4, 8]
    for key in ("loss", "mse", "grad_norm", "update_norm", "param_norm", "clipped",
                "loss_std", "loss_seeds"):
        assert key in train[0], key
    assert len(train[0]["loss_seeds"]) == 2
    np.testing.assert_allclose(np.mean(train[0]["loss_seeds"]), train[0]["loss"], rtol=1e-6)
    np.testing.assert_allclose(np.std(train[0]["loss_seeds"]), train[0]["loss_std"], rtol=1e-6)
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    with open(os.path.join(workdir, "eval.json")) as f:
        ev = json.load(f)
    assert ev == result and ev["step"] == 8 and ev["metric_name"] == "mse"
    assert len(ev["success"]) == 2
    # The result comes from a test set, not from the eval set that picks checkpoints.
    assert ev["selection_eval"]["mse"] == evals[-1]["mse"] and ev["mse"] != evals[-1]["mse"]
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    assert saved["cell"] == "rnn" and saved["optimizer"]["decay_steps"] == 8
    assert state.params["cell"]["w_h"].shape == (2, 8, 8) and list(state.step) == [8, 8]
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3, metric_name="mse",
                        higher_is_better=False, read_only=True)
    assert ckpt.all_steps() == [4, 8]
    assert ckpt.saved_config(8) == saved  # the resolved config travels with the checkpoint
    ckpt.close()


def test_resume_is_bitwise_identical(reference, tmp_path):
    ref_dir, ref_result, ref_state = reference
    workdir = str(tmp_path)
    loop.train_and_evaluate(tiny_config(num_steps=4), workdir)  # "stop" after 4 steps
    result = loop.train_and_evaluate(tiny_config(num_steps=8), workdir)  # same command, longer
    _assert_trees_equal(loop.restore_state(tiny_config(), workdir), ref_state)
    assert result == ref_result
    assert _records(workdir) == _records(ref_dir)  # no duplicated or missing records


def test_rerun_of_a_finished_run_changes_nothing(reference, tmp_path):
    ref_dir, ref_result, ref_state = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(ref_dir, workdir)
    assert loop.train_and_evaluate(tiny_config(), workdir) == ref_result
    _assert_trees_equal(loop.restore_state(tiny_config(), workdir), ref_state)


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import ml_collections
    from orbax.checkpoint._src.path import atomicity
    from rnn_jax.train import loop

    calls = []
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        # The second checkpoint dies after its files are written, before the rename.
        if "checkpoints" in str(self._final_path) and "/8" in str(self._final_path):
            os._exit(17)
        return await original(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize
    config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    loop.train_and_evaluate(config, sys.argv[2])
""")


def test_kill_during_save_keeps_previous_checkpoint_and_resume_matches(reference, tmp_path):
    _, ref_result, ref_state = reference
    workdir = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, tiny_config().to_json(), workdir],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 17, proc.stderr[-3000:]
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert glob.glob(os.path.join(ckpt_dir, "8.orbax-checkpoint-tmp*"))  # the half-done save
    ckpt = Checkpointer(ckpt_dir, keep=3, metric_name="mse", higher_is_better=False, read_only=True)
    assert ckpt.all_steps() == [4]
    ckpt.close()
    assert not os.path.exists(os.path.join(workdir, "eval.json"))

    result = loop.train_and_evaluate(tiny_config(), workdir)  # the same command again
    assert result == ref_result
    _assert_trees_equal(loop.restore_state(tiny_config(), workdir), ref_state)
    assert not glob.glob(os.path.join(ckpt_dir, "*orbax-checkpoint-tmp*"))


@pytest.mark.parametrize("field,value", [("hidden_size", 16), ("cell", "gru"),
                                         ("optimizer.name", "sgd")])
def test_incompatible_checkpoint_is_refused_and_left_alone(reference, tmp_path, field, value):
    ref_dir = reference[0]
    workdir = str(tmp_path / "run")
    shutil.copytree(ref_dir, workdir)

    def snapshot():
        out = {}
        for root, _, files in os.walk(workdir):
            for name in files:
                p = os.path.join(root, name)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, workdir)] = f.read()
        return out

    before = snapshot()
    config = tiny_config()
    old = config[field]
    config.update_from_flattened_dict({field: value})
    # Refused by the workdir claim (run.json) or, for a workdir without one, by the
    # checkpoint's saved config; IncompatibleCheckpointError subclasses the former.
    with pytest.raises(IncompatibleWorkdirError) as e:
        loop.train_and_evaluate(config, workdir)
    msg = str(e.value)
    assert f"{field}: workdir={old!r}, now={value!r}" in msg
    assert snapshot() == before


def test_retention_keeps_latest_and_best(reference, tmp_path):
    config = tiny_config()
    config.checkpoint_every = 2
    config.eval_every = 2
    config.keep_checkpoints = 1
    workdir = str(tmp_path)
    loop.train_and_evaluate(config, workdir)
    evals = {r["step"]: r["mse"] for r in _records(workdir) if r["split"] == "eval"}
    assert sorted(evals) == [2, 4, 6, 8]
    best = min(evals, key=evals.get)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, metric_name="mse",
                        higher_is_better=False, read_only=True)
    assert ckpt.all_steps() == sorted({8, best})
    assert ckpt.best_step() == best
    ckpt.close()


def test_experiment_entry_point(reference, tmp_path, monkeypatch):
    """experiments/train.py parses --config and overrides and calls train_and_evaluate."""
    from absl import flags

    from experiments import train as train_main

    c = tiny_config()
    args = ["train", f"--workdir={tmp_path}",
            f"--config={os.path.join(REPO, 'experiments', 'configs', 'adding.py')}"]
    for field in ("cell", "hidden_size", "task.name", "task.seq_len", "task.eval_size",
                  "batch_size", "num_steps", "num_seeds", "optimizer.name",
                  "optimizer.learning_rate", "optimizer.clip_norm", "optimizer.schedule",
                  "optimizer.warmup_steps", "optimizer.decay_steps", "eval_every",
                  "checkpoint_every", "log_every"):
        args.append(f"--config.{field}={c[field]}")
    monkeypatch.setattr(sys, "argv", args)  # config_flags reads overrides from sys.argv
    flags.FLAGS.unparse_flags()
    flags.FLAGS(args)
    try:
        train_main.main(["train"])
    finally:
        flags.FLAGS.unparse_flags()
    with open(tmp_path / "eval.json") as f:
        assert json.load(f) == reference[1]


def test_only_the_cosine_schedule_ties_the_optimizer_to_num_steps():
    """Extending a run changes num_steps; that must not look like a changed optimizer
    unless the schedule's length really derives from num_steps."""
    from rnn_jax.train.checkpointing import config_differences, config_to_json_dict

    def resolved(schedule, num_steps):
        c = tiny_config(num_steps)
        c.optimizer.schedule, c.optimizer.decay_steps = schedule, 0
        return config_to_json_dict(loop.resolve_config(c))

    assert config_differences(resolved("constant", 8), resolved("constant", 16)) == []
    diffs = config_differences(resolved("warmup_cosine", 8), resolved("warmup_cosine", 16))
    assert any(d.startswith("optimizer.decay_steps") for d in diffs), diffs
