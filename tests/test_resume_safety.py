"""Issue 17: damaged checkpoints, run-length changes on resume, TensorBoard overlap, the
non-finite stop without a checkpoint, and forecast with num_steps < eval_every."""

import glob
import logging
import os
import shutil
import struct

import numpy as np
import pytest

from rnn_jax.apps import forecast
from rnn_jax.train import config as config_lib
from rnn_jax.train import loop
from rnn_jax.train.checkpointing import DAMAGED_DIR, IncompatibleCheckpointError
from test_checkpoint import _records, tiny_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run (checkpoints at 4 and 8)."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    return workdir, loop.train_and_evaluate(tiny_config(), workdir)


def _truncate_blobs(step_dir):
    for p in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 2)


def _bad_config_json(step_dir):
    with open(os.path.join(step_dir, "config", "metadata"), "w") as f:
        f.write("{not json")


def _no_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _empty(step_dir):
    shutil.rmtree(step_dir)
    os.mkdir(step_dir)


@pytest.mark.parametrize("damage,problem", [
    (_truncate_blobs, "its data cannot be read"),
    (_bad_config_json, "its saved config cannot be read: JSONDecodeError"),
    (_no_metadata, "state/_METADATA is missing"),
    (_empty, "the step directory is empty"),
])
def test_damaged_newest_checkpoint_falls_back_and_is_kept(reference, tmp_path, caplog, damage,
                                                          problem):
    ref_dir, ref_result = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(ref_dir, workdir)
    step_dir = os.path.join(workdir, "checkpoints", "8")
    damage(step_dir)
    damaged_files = sorted(os.listdir(step_dir))
    with caplog.at_level(logging.WARNING):
        result = loop.train_and_evaluate(tiny_config(), workdir)
    # Resumed from step 4 and redid steps 5-8 exactly as the uninterrupted run did.
    assert result == ref_result
    assert _records(workdir) == _records(ref_dir)
    # Never deleted: moved aside, as it was.
    kept = os.path.join(workdir, DAMAGED_DIR, "8")
    assert sorted(os.listdir(kept)) == damaged_files
    reports = [r.getMessage() for r in caplog.records if "damaged checkpoint" in r.getMessage()]
    assert len(reports) == 1 and "\n" not in reports[0]
    assert step_dir in reports[0] and problem in reports[0] and kept in reports[0]
    assert any("resuming from step 4, the newest good checkpoint" in r.getMessage()
               for r in caplog.records)


def test_all_checkpoints_damaged_is_refused_and_nothing_deleted(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference[0], workdir)
    for step in ("4", "8"):
        _no_metadata(os.path.join(workdir, "checkpoints", step))
    with pytest.raises(FileNotFoundError, match=r"every checkpoint .* is damaged \(steps \[8, 4\]"):
        loop.train_and_evaluate(tiny_config(), workdir)
    assert sorted(os.listdir(os.path.join(workdir, DAMAGED_DIR))) == ["4", "8"]
    assert not os.path.exists(os.path.join(workdir, "run.lock"))


def test_num_steps_below_the_checkpoint_is_refused(reference, tmp_path):
    """Before: the run silently 'finished' at the checkpoint's step 8."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference[0], workdir)
    before = open(os.path.join(workdir, "eval.json")).read()
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"config.num_steps=6 is below the step of the newest checkpoint .*\(8\)"):
        loop.train_and_evaluate(tiny_config(num_steps=6), workdir)
    assert open(os.path.join(workdir, "eval.json")).read() == before


def test_cosine_schedule_past_decay_steps_at_rate_zero_is_refused(tmp_path):
    """Before: steps past decay_steps trained with update_norm 0."""
    config = tiny_config(num_steps=10)  # decay_steps stays 8, end_learning_rate 0
    with pytest.raises(ValueError, match=r"decay_steps \(8\) is below num_steps \(10\).*new --workdir"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    config.optimizer.end_learning_rate = 1e-4  # a real rate past decay_steps is fine
    config_lib.validate(config)


def _events(path):
    """(step, is SessionLog.START) of each event in a TFRecord event file."""
    from tensorboardX.proto import event_pb2
    out = []
    with open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            event = event_pb2.Event.FromString(f.read(length))
            f.read(4)  # data crc
            out.append((event.step, event.HasField("session_log") and event.session_log.status == 1))
    return out


def test_tensorboard_overlap_is_purged_on_resume(tmp_path):
    workdir = str(tmp_path)
    loop.train_and_evaluate(tiny_config(num_steps=4), workdir)
    loop.train_and_evaluate(tiny_config(num_steps=8), workdir)
    files = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    assert len(files) == 2  # two runs in one second write two files
    first, second = sorted(files, key=lambda p: any(start for _, start in _events(p)))
    assert not any(start for _, start in _events(first))
    assert max(s for s, _ in _events(first)) == 4
    # The resumed file starts with a START marker at step 5: TensorBoard drops the
    # earlier file's events at steps >= 5 (here none; after a crash past the checkpoint,
    # the redone steps).
    assert (5, True) in _events(second)
    assert min(s for s, start in _events(second) if not start and s > 0) > 4


def test_nonfinite_stop_without_a_checkpoint_says_so(tmp_path):
    config = tiny_config(num_steps=40)
    config.optimizer.update(schedule="exponential", transition_steps=1, decay_rate=1e3,
                            learning_rate=1e-3, clip_mode="none")
    config.checkpoint_every = config.eval_every = 40
    with pytest.raises(FloatingPointError) as e:
        loop.train_and_evaluate(config, str(tmp_path))
    assert "no checkpoint exists yet" in str(e.value) and "step None" not in str(e.value)


def test_forecast_with_num_steps_below_eval_every_evaluates_the_trained_model():
    """Before: no validation ran, so eval.json scored the untrained parameters
    ("best val MSE inf at step 0")."""
    import jax
    rng = np.random.default_rng(3)
    data = {"train_x": rng.normal(size=(40, 6)), "train_y": rng.normal(size=40),
            "val_x": rng.normal(size=(10, 6)), "val_y": rng.normal(size=10)}
    config = forecast.default_config()
    config.hidden_size, config.batch_size, config.num_steps, config.eval_every = 4, 8, 7, 25
    params, info = forecast.train_forecaster(config, "gru", data, jax.random.PRNGKey(0))
    assert info["best_step"] == 7 and np.isfinite(info["best_val_mse_normalised"])
    init = forecast.make_forecaster("gru", 4)[0](jax.random.split(jax.random.PRNGKey(0))[0])
    moved = [float(np.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                        jax.tree_util.tree_leaves(init))]
    assert max(moved) > 0  # the selected parameters are the trained ones
