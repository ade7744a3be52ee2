"""Issue 17: the command line. Errors are one line with exit code 2 (1 for a run that
stopped, 130 for Ctrl-C after saving a checkpoint), never a traceback."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
       "JAX_PLATFORMS": "cpu"}
ENV.pop("RNN_JAX_TRACEBACK", None)


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", *args], env=ENV, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, lines
    return errors[0]


def test_config_errors_are_one_line_naming_the_field(tmp_path):
    workdir = str(tmp_path / "w")
    # A variant on a config file that has none.
    line = one_line_error(run_cli("experiments.train", "--config=experiments/configs/adding.py:nosuch",
                                  f"--workdir={workdir}"))
    assert "adding.py has no variants" in line and ":nosuch" in line
    # An override of a field the config does not have: the fields are listed.
    line = one_line_error(run_cli("experiments.forecast", "--config.optimizer.nosuch=1",
                                  f"--workdir={workdir}"))
    assert "no field 'optimizer.nosuch'" in line and "'learning_rate'" in line
    # A field renamed by issue 18 (the studies' flat optimizer fields) names its new name.
    line = one_line_error(run_cli("experiments.success_rate", "--config.learning_rate=0.01",
                                  f"--workdir={workdir}"))
    assert "config.learning_rate was renamed config.optimizer.learning_rate" in line
    assert not os.path.exists(workdir)


def test_a_bad_config_value_is_one_line_with_the_field_and_choices(tmp_path, capsys):
    """What experiments/_entry.py's main does with a config its validate refuses."""
    from experiments import _cli
    from rnn_jax.apps import classify

    config = classify.default_config()
    config.cell = "foo"
    with pytest.raises(SystemExit) as e:
        _cli.call(classify.train_and_evaluate, config, str(tmp_path / "w"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: config.cell must be one of")
    assert "'lstm'" in err and "'foo'" in err
    assert not (tmp_path / "w").exists()


def test_call_maps_errors_to_exit_codes(capsys):
    import ml_collections
    import numpy as np
    from experiments import _cli
    from rnn_jax.tasks._common import check_size
    from rnn_jax.train.config import check_int
    from rnn_jax.train.interrupt import Interrupted
    from rnn_jax.train.workdir import WorkdirInUseError

    def raises(e):
        def f():
            raise e
        return f

    bad = ml_collections.ConfigDict({"x": 0})
    # Our own checks (a `raise` in rnn_jax) are one line, exit 2.
    for fn, text in ((lambda: check_int(bad, "x"), "config.x must be an int >= 1, got 0"),
                     (lambda: check_size("batch", 2.5), "batch must be a Python int")):
        with pytest.raises(SystemExit) as e:
            _cli.call(fn)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and text in err
    for exc, code in ((FileNotFoundError("no file"), 2), (WorkdirInUseError("in use by pid 3"), 1),
                      (FloatingPointError("non-finite loss"), 1),
                      (Interrupted("interrupted (Ctrl-C) at step 3: ..."), 130)):
        with pytest.raises(SystemExit) as e:
            _cli.call(raises(exc))
        assert e.value.code == code
        assert capsys.readouterr().err.strip().endswith(str(exc))
    # Bugs keep their traceback: a ValueError/TypeError not raised by our checks (here, by
    # this test file, by numpy, or by Python on a line of ours), and any other type.
    for fn, exc in ((raises(ValueError("from elsewhere")), ValueError),
                    (lambda: np.zeros(3).reshape(2, 2), ValueError),
                    (lambda: check_int(None, "x"), TypeError),   # None["x"] inside rnn_jax
                    (raises(RuntimeError("bug")), RuntimeError)):
        with pytest.raises(exc):
            _cli.call(fn)
    assert capsys.readouterr().err == ""


def test_ctrl_c_saves_a_checkpoint_at_the_current_step_and_exits_130(tmp_path):
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
            "--config.cell=rnn", "--config.hidden_size=4", "--config.task.name=adding_le",
            "--config.task.seq_len=5", "--config.task.eval_size=8", "--config.batch_size=2",
            "--config.num_steps=1000000", "--config.optimizer.schedule=constant",
            "--config.log_every=1", "--config.eval_every=100000",
            "--config.checkpoint_every=100000", "--config.progress_every_s=1000"]
    proc = subprocess.Popen(args, env=ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted (Ctrl-C) at step "), last
    step = int(last.split("at step ")[1].split(":")[0])
    assert step >= 3 and f"saved a checkpoint at step {step}" in last
    assert (workdir / "checkpoints" / str(step)).is_dir()
    logged = [json.loads(l)["step"] for l in metrics.read_text().splitlines()]
    assert max(logged) == step  # the checkpoint is the last step trained
    assert not (workdir / "run.lock").exists() and not (workdir / "eval.json").exists()


# ------------------------------------------------------------------ issue 18: the command line

# Every main whose config has a *kwargs field: (default config, override, where it lands).
_KWARGS_MAINS = [
    ("adding.py", "cell_kwargs.forget_bias", ("cell_kwargs", "forget_bias")),           # train
    ("char_lm.py", "cell_kwargs.forget_bias", ("cell_kwargs", "forget_bias")),
    ("classify_digits.py", "cell_kwargs.forget_bias", ("cell_kwargs", "forget_bias")),
    ("seq2seq_addition.py", "cell_kwargs.forget_bias", ("cell_kwargs", "forget_bias")),
    ("success_rate.py", "cell_kwargs.lstm.forget_bias", ("cell_kwargs", "lstm", "forget_bias")),
    ("gradient_lag.py", "model_kwargs.lstm_fb1.forget_bias",
     ("model_kwargs", "lstm_fb1", "forget_bias")),
    ("copy_memory.py:fb1", "cell_kwargs.forget_bias", ("cell_kwargs", "forget_bias")),  # replaces 1.0
]


@pytest.mark.parametrize("config_file,override,where", _KWARGS_MAINS)
def test_kwargs_fields_take_overrides_field_by_field(monkeypatch, config_file, override, where):
    """--config.cell_kwargs.forget_bias=2.0 through absl's parser, as each main defines --config."""
    from absl import flags
    from experiments import _entry

    argv = ["prog", f"--config={REPO}/experiments/configs/{config_file}", f"--config.{override}=2.0",
            "--config.task.kwargs.nosuch=3" if config_file == "adding.py" else "--config.seed=5"]
    monkeypatch.setattr(sys, "argv", argv)
    fv = flags.FlagValues()
    holder = _entry.define_config(f"{REPO}/experiments/configs/adding.py", flag_values=fv)
    fv(argv)
    node = holder.value
    for key in where:
        node = node[key]
    assert node == 2.0 and isinstance(node, float)
    with pytest.raises(AttributeError):  # still locked: a misspelt field is refused
        holder.value.hiden_size = 3
    if config_file == "adding.py":  # task.kwargs is open too
        assert holder.value.task.kwargs.nosuch == 3


def test_a_misspelt_field_is_still_refused_inside_and_outside_kwargs(monkeypatch):
    from absl import flags
    from experiments import _entry

    argv = ["prog", "--config.cel_kwargs.forget_bias=2.0"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises((AttributeError, KeyError), match="cel_kwargs"):
        _entry.define_config(f"{REPO}/experiments/configs/adding.py", flag_values=flags.FlagValues())


def test_help_lists_config_workdir_and_fields_with_defaults():
    proc = run_cli("experiments.train", "--config=experiments/configs/copy_memory.py:fb1", "--help")
    assert proc.returncode == 1 and not proc.stderr, proc.stderr[-2000:]  # absl's --help exit code
    out = proc.stdout
    assert "--config:" in out and "--workdir:" in out and "--num_processes:" in out
    assert "The fields of experiments/configs/copy_memory.py:fb1 and their defaults:" in out
    for line in ("config.hidden_size = 128", "config.optimizer.name = 'adam'",
                 "config.cell_kwargs.forget_bias = 1.0", "config.task.kwargs = {}  (open:"):
        assert line in out, line
    # The usage line keeps its backslash continuation (no run of spaces where it was).
    assert "--workdir=/tmp/adding \\\n        [--config.hidden_size=64" in out


def test_usage_docstrings_keep_their_backslash_continuations():
    import ast
    import glob

    for path in glob.glob(os.path.join(REPO, "experiments", "**", "*.py"), recursive=True):
        with open(path) as f:
            src = f.read()
        doc = ast.get_docstring(ast.parse(src), clean=False) or ""
        if "\\\n" in src.split('"""')[1] if '"""' in src else False:
            assert "\\\n" in doc, f"{path}: make the docstring raw (r\"\"\"), or the shell's \\ is lost"
