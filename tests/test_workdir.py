"""Issue 17, items 1 and 2: a workdir holds one run of one experiment and config, and one
process at a time. Every refusal happens before anything is compiled or written."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from experiments.configs import gradient_lag as gl_configs
from experiments.configs import success_rate as sr_configs
from rnn_jax.apps import forecast
from rnn_jax.train import training
from rnn_jax.studies import gradient_lag, success_rate
from rnn_jax.train import loop
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.workdir import IncompatibleWorkdirError, WorkdirInUseError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(workdir):
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, workdir)] = f.read()
    return out


def tiny_train_config(cell="rnn"):
    c = training.default_config()
    c.cell, c.hidden_size = cell, 8
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", 6, 16
    c.batch_size, c.num_steps = 4, 4
    c.eval_every = c.checkpoint_every = c.log_every = 2
    return c


def finished_train_workdir(tmp_path, legacy=False):
    """A workdir as a finished experiments.train run leaves it (files faked: what counts
    is that nothing in it changes). ``legacy``: written before run.json existed."""
    workdir = tmp_path / "train_run"
    workdir.mkdir()
    config = json.loads(loop.resolve_config(tiny_train_config()).to_json())
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "split": "train", "loss": 1.0}) + "\n" for s in range(1, 73)))
    (workdir / "eval.json").write_text('{"step": 72}\n')
    if not legacy:
        (workdir / "run.json").write_text(json.dumps({"experiment": "train", "config": config}))
    return str(workdir)


def small_forecast_config():
    c = forecast.default_config()
    c.hidden_size, c.num_steps, c.eval_every = 4, 20, 10
    return c


@pytest.mark.parametrize("legacy", [False, True])
def test_forecast_refuses_a_train_workdir_and_changes_nothing(tmp_path, legacy):
    workdir = finished_train_workdir(tmp_path, legacy)
    before = snapshot(workdir)
    with pytest.raises(IncompatibleWorkdirError) as e:
        forecast.train_and_evaluate(small_forecast_config(), workdir)
    msg = str(e.value)
    assert "holds a run of experiment 'train'" in msg and "not 'forecast'" in msg
    assert ("judged by its config.json" in msg) == legacy
    assert snapshot(workdir) == before


@pytest.mark.parametrize("study,make", [
    (success_rate, lambda: sr_configs.get_config()),
    (gradient_lag, lambda: gl_configs.get_config()),
])
def test_studies_refuse_another_experiments_workdir(tmp_path, study, make):
    workdir = finished_train_workdir(tmp_path)
    before = snapshot(workdir)
    with pytest.raises(IncompatibleWorkdirError, match="holds a run of experiment 'train'"):
        study.run(make(), workdir)
    assert snapshot(workdir) == before


def test_study_refuses_its_own_workdir_with_another_config(tmp_path):
    config = gl_configs.get_config()
    workdir = str(tmp_path / "gl")
    # What a started gradient_lag run leaves before its results (the claim, then config.json).
    with workdir_lib.claim(workdir, "gradient_lag", config):
        pass
    before = snapshot(workdir)
    other = gl_configs.get_config()
    other.seq_len, other.hidden_size = 50, 32
    with pytest.raises(IncompatibleWorkdirError) as e:
        gradient_lag.run(other, workdir)
    assert "hidden_size: workdir=64, now=32" in str(e.value)
    assert "seq_len: workdir=100, now=50" in str(e.value)
    assert snapshot(workdir) == before


def test_legacy_workdir_of_the_same_non_resuming_experiment_compares_fields(tmp_path):
    workdir = tmp_path / "fc"
    workdir.mkdir()
    old = small_forecast_config()
    (workdir / "config.json").write_text(json.dumps(old.to_dict()))
    new = small_forecast_config()
    new.window = 20
    with pytest.raises(IncompatibleWorkdirError, match="window: workdir=12, now=20"):
        forecast.train_and_evaluate(new, str(workdir))
    assert sorted(os.listdir(workdir)) == ["config.json"]


def test_train_refuses_a_forecast_workdir(tmp_path):
    workdir = str(tmp_path / "fc")
    with workdir_lib.claim(workdir, "forecast", small_forecast_config()):
        pass
    with pytest.raises(IncompatibleWorkdirError, match="experiment 'forecast'.*not 'train'"):
        loop.train_and_evaluate(tiny_train_config(), workdir)
    assert sorted(os.listdir(workdir)) == ["run.json"]


def test_unknown_checkpoints_are_refused(tmp_path):
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    with pytest.raises(IncompatibleWorkdirError, match="no run.json or config.json"):
        forecast.train_and_evaluate(small_forecast_config(), str(tmp_path))


def test_failed_start_leaves_no_trace(tmp_path):
    import numpy as np
    workdir = str(tmp_path / "new")
    with pytest.raises(ValueError, match="too short"):
        forecast.train_and_evaluate(small_forecast_config(), workdir, series=np.arange(15.0))
    assert not os.path.exists(workdir)


# ---------------------------------------------------------------------------- the lock

def test_second_run_is_refused_while_the_first_holds_the_workdir(tmp_path):
    """The issue's case: experiments.train started twice at once in one new workdir
    (an LSTM and a GRU). The second gets "in use by pid N on HOST" and writes nothing."""
    import socket
    workdir = str(tmp_path / "run")
    with workdir_lib.claim(workdir, "train", loop.resolve_config(tiny_train_config("lstm")),
                           resumable=("num_steps",)):
        before = snapshot(workdir)
        with pytest.raises(WorkdirInUseError) as e:
            loop.train_and_evaluate(tiny_train_config("gru"), workdir)
        assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in str(e.value)
        assert snapshot(workdir) == before
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))  # released


_HOLD = textwrap.dedent("""
    import os, sys, time
    from rnn_jax.train import workdir
    lock = workdir._Lock(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
""")


def test_lock_of_a_live_process_blocks_and_a_crashed_one_does_not(tmp_path):
    workdir = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, workdir], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirInUseError, match=f"in use by pid {proc.pid} on "):
            with workdir_lib.claim(workdir, "forecast", small_forecast_config()):
                pass
        assert not os.path.exists(os.path.join(workdir, "run.json"))
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no cleanup runs, the lock file stays
        proc.wait(timeout=30)
    assert os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))
    with workdir_lib.claim(workdir, "forecast", small_forecast_config()):  # not stale-locked
        with open(os.path.join(workdir, workdir_lib.LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_FILE))


def test_a_field_added_later_reads_as_what_older_runs_did():
    # `compute_dtype` is newer than many workdirs: absent in a saved config means float32.
    saved = {"cell": "lstm", "optimizer": {"name": "adam"}}
    same = dict(saved, compute_dtype="float32")
    assert workdir_lib.config_differences(saved, same) == []
    other = dict(saved, compute_dtype="bfloat16")
    assert workdir_lib.config_differences(saved, other) == [
        "compute_dtype: checkpoint='float32', now='bfloat16'"]
    # Any other missing field is still a difference.
    assert workdir_lib.config_differences(saved, dict(same, hidden_size=8)) == [
        "hidden_size: checkpoint='<absent>', now=8"]
