"""Per-point resume of the studies: an interrupted run resumed equals an uninterrupted one,
finished points are not recomputed, and a workdir of another config or experiment is refused."""

import json
import os

import pytest

from experiments.configs import gradient_lag as gl_configs
from experiments.configs import success_rate as sr_configs
from rnn_jax.studies import gradient_lag, resume, success_rate


class _Interrupt(Exception):
    """Stands in for Ctrl-C / a killed job between two points."""


def test_refuses_another_experiments_workdir_without_writing(tmp_path):
    workdir = tmp_path / "train_run"
    workdir.mkdir()
    train_config = {"cell": "lstm", "num_steps": 400}
    (workdir / "config.json").write_text(json.dumps(train_config))
    (workdir / "metrics.jsonl").write_text("{}\n" * 72)
    with pytest.raises(ValueError, match="holds a run of experiment"):
        success_rate.run(sr_configs.get_config("tiny"), str(workdir))
    with pytest.raises(ValueError, match="holds a run of experiment"):
        gradient_lag.run(gl_configs.get_config("radius"), str(workdir))
    assert json.loads((workdir / "config.json").read_text()) == train_config
    assert (workdir / "metrics.jsonl").read_text() == "{}\n" * 72
    assert sorted(os.listdir(workdir)) == ["config.json", "metrics.jsonl"]
    # One study's workdir is not the other's.
    sr_dir = tmp_path / "sr"
    resume.claim(str(sr_dir), "success_rate", sr_configs.get_config("tiny"))
    with pytest.raises(ValueError, match="success_rate"):
        gradient_lag.run(gl_configs.get_config("radius"), str(sr_dir))


def test_point_files_are_checked(tmp_path):
    config = sr_configs.get_config("tiny")
    fp = resume.claim(str(tmp_path), "success_rate", config)
    assert resume.load_point(str(tmp_path), "a", fp) is None
    resume.save_point(str(tmp_path), "a", fp, {"x": [1.5, None]})
    assert resume.load_point(str(tmp_path), "a", fp) == {"x": [1.5, None]}
    assert [n for n in os.listdir(tmp_path / "points")] == ["a.json"]  # no temporary left
    with pytest.raises(ValueError, match="another config"):
        resume.load_point(str(tmp_path), "a", "0" * 64)
    (tmp_path / "points" / "a.json").write_text('{"key": "a", "fing')  # torn by hand
    with pytest.raises(ValueError, match="a.json is unreadable"):
        resume.load_point(str(tmp_path), "a", fp)
    with pytest.raises(ValueError, match="point key"):
        resume.point_path(str(tmp_path), "../escape")


def _tiny_models():
    c = gl_configs.get_config()
    c.seq_len, c.hidden_size, c.num_seeds, c.diag_batch, c.train_batch = 22, 4, 2, 2, 2
    c.models, c.measure_at = "rnn,gru", (0,)
    return c   # two points: one per cell (each its own step function)


def test_gradient_lag_interrupt_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    config = _tiny_models()
    full = gradient_lag.run(config, str(tmp_path / "full"))
    assert full["resumed_points"] == []

    workdir = str(tmp_path / "gl")
    real_save = resume.save_point
    saved = []

    def save_then_die(workdir, key, fprint, point):
        real_save(workdir, key, fprint, point)
        saved.append(key)
        raise _Interrupt   # killed right after the first point is on disk

    monkeypatch.setattr(resume, "save_point", save_then_die)
    with pytest.raises(_Interrupt):
        gradient_lag.run(config, workdir)
    assert saved == ["models_rnn"]
    assert not os.path.exists(os.path.join(workdir, "results.json"))

    monkeypatch.setattr(resume, "save_point", lambda *a: saved.append(a[1]) or real_save(*a))
    resumed = gradient_lag.run(config, workdir)
    assert saved == ["models_rnn", "models_gru"]       # only the GRU was computed again
    assert resumed["resumed_points"] == ["models_rnn"]
    for key in ("curves", "lags"):
        assert resumed[key] == json.loads(json.dumps(full[key])), key


def _old_spelling(config):
    """``config`` as a success-rate config.json was written before issue 18 renamed the
    optimizer fields (flat ``optimizer``, ``learning_rate``, ... beside the others)."""
    d = config.to_dict()
    o, t = d.pop("optimizer"), d.pop("task")
    d.update(optimizer=o["name"], learning_rate=o["learning_rate"], schedule=o["schedule"],
             warmup_steps=o["warmup_steps"], clip_norm=o["clip_norm"], task=t["name"],
             task_kwargs=t["kwargs"])
    return json.loads(json.dumps(d))


@pytest.mark.parametrize("with_run_json", [True, False])
def test_a_workdir_written_under_the_old_field_names_still_resumes(tmp_path, with_run_json):
    config = sr_configs.get_config("tiny")
    config.task.kwargs = {"any_kwarg": 4}   # a renamed dict's contents move with it (no validation here)
    old = _old_spelling(config)
    assert old["task_kwargs"] == {"any_kwarg": 4} and old["task"] == "temporal_order_pascanu"
    workdir = tmp_path / "old"
    (workdir / "points").mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps({"_study": "success_rate", **old}))
    if with_run_json:
        (workdir / "run.json").write_text(json.dumps({"experiment": "success_rate", "config": old}))
    old_fp = resume.fingerprint(old)   # what the old claim returned, and the points carry
    resume.save_point(str(workdir), "rnn_clip-off_T10", old_fp, {"num_success": 2})
    fp = resume.claim(str(workdir), "success_rate", config)
    assert fp == old_fp
    assert resume.load_point(str(workdir), "rnn_clip-off_T10", fp) == {"num_success": 2}
    # config.json keeps the spelling its points were written under; run.json is the current.
    assert json.loads((workdir / "config.json").read_text())["learning_rate"] == 1e-3
    assert json.loads((workdir / "run.json").read_text())["config"]["optimizer"]["name"] == "adam"
    # A real difference is still a difference, named under the new name.
    other = sr_configs.get_config("tiny")
    other.optimizer.learning_rate = 0.5
    with pytest.raises(ValueError, match=r"optimizer\.learning_rate: workdir=0\.001, now=0\.5"):
        resume.claim(str(workdir), "success_rate", other)


def test_a_config_under_the_old_field_names_is_refused_naming_the_rename():
    config = sr_configs.get_config("tiny")
    del config["optimizer"]
    del config["task"]
    config.update({"optimizer": "sgd", "learning_rate": 0.01, "task": "adding",
                   "task_kwargs": {}})
    with pytest.raises(ValueError, match=r"config\.task -> config\.task\.name, config\.task_kwargs "
                                         r"-> config\.task\.kwargs, config\.optimizer -> "
                                         r"config\.optimizer\.name, config\.learning_rate -> "
                                         r"config\.optimizer\.learning_rate"):
        success_rate.validate(config)
    from experiments import _cli
    assert "config.task_kwargs.n was renamed config.task.kwargs.n" in _cli._renamed_override(
        ["prog", "--config.task_kwargs.n=3"])
    assert _cli._renamed_override(["prog", "--config.optimizer.name=sgd",
                                   "--config.task.name=adding"]) is None
    gl = gl_configs.get_config()
    del gl["optimizer"]
    gl.clip_norm = 1.0
    with pytest.raises(ValueError, match=r"config\.clip_norm -> config\.optimizer\.clip_norm"):
        gradient_lag.validate(gl)


def test_one_claim_writes_run_json_and_config_json_and_a_failed_start_leaves_nothing(tmp_path):
    config = gl_configs.get_config("radius")
    workdir = tmp_path / "gl"
    fp = resume.claim(str(workdir), "gradient_lag", config)
    run = json.loads((workdir / "run.json").read_text())
    saved = json.loads((workdir / "config.json").read_text())
    assert run["experiment"] == saved.pop("_study") == "gradient_lag"
    assert run["config"] == saved and fp == resume.fingerprint(saved)
    assert not (workdir / "run.lock").exists()   # released
    # A study that fails inside its claim before writing a point leaves no workdir behind.
    from rnn_jax.train import workdir as workdir_lib

    @resume.claims("gradient_lag", validate=lambda c: None)
    def fails(config, workdir):
        assert os.path.exists(os.path.join(workdir, "config.json"))
        raise _Interrupt
    with pytest.raises(_Interrupt):
        fails(config, str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="reserved"):
        with workdir_lib.claim(str(tmp_path / "x"), "s", {"_study": 1}, config_file=True):
            pass
