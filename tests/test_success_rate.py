"""The success-rate study end to end on a tiny config, its config checks, and its plot helpers."""

import json
import math
import os

import numpy as np
import pytest

from rnn_jax.studies import resume, success_rate
from experiments.configs import success_rate as sr_configs
from rnn_jax import plotting, tasks


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The uninterrupted tiny study (2 points), shared with the resume test."""
    config = sr_configs.get_config("tiny")
    workdir = str(tmp_path_factory.mktemp("study"))
    return config, workdir, success_rate.run(config, workdir)


def test_tiny_study_end_to_end(tiny_run):
    config, workdir, returned = tiny_run
    for name in ("config.json", "results.json", "success_rate.png", "success_rate.pdf"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["seq_lens"] == list(config.seq_lens)
    with open(os.path.join(workdir, "results.json")) as f:
        res = json.load(f)
    assert res["complete"] is True
    assert res["points"] == json.loads(json.dumps(returned["points"]))
    grid = {(c, k, t) for c in success_rate.cell_names(config) for k in config.clip
            for t in config.seq_lens}
    assert {(p["cell"], p["clip"], p["seq_len"]) for p in res["points"]} == grid
    assert len(res["points"]) == len(grid)
    task = tasks.get(config.task.name)
    for p in res["points"]:
        assert isinstance(p["cell"], str) and isinstance(p["clip"], bool)
        assert isinstance(p["seq_len"], int) and isinstance(p["num_seeds"], int)
        assert isinstance(p["num_success"], int)
        assert p["num_seeds"] == config.num_seeds
        assert 0 <= p["num_success"] <= p["num_seeds"]
        assert p["num_success"] == sum(p["success"])
        assert isinstance(p["final_metric"], list) and len(p["final_metric"]) == config.num_seeds
        assert p["metric_name"] == task.metric_name == "error_rate"
        for v, ok, div in zip(p["final_metric"], p["success"], p["diverged"]):
            # error_rate is a count out of eval_size; Pascanu's criterion is < 1% wrong.
            assert v is not None and 0.0 <= v <= 1.0
            assert math.isclose(v * config.eval_size, round(v * config.eval_size), abs_tol=1e-3)
            assert ok == (v < 0.01 and not div)
        assert 0.0 <= p["clipped_fraction"] <= 1.0
        # Three updates of a 4-unit RNN cannot classify the order of symbols 1..2 steps apart.
        assert p["num_success"] == 0


class _Interrupt(Exception):
    """Stands in for Ctrl-C / a killed job between two points."""


def test_interrupt_then_resume_equals_uninterrupted(tmp_path, monkeypatch, tiny_run):
    """Issue 17: per-point resume (rnn_jax.studies.resume); more cases in test_study_resume.py."""
    config = sr_configs.get_config("tiny")
    workdir = str(tmp_path / "sr")
    real = success_rate.run_point
    calls = []

    def interrupted(config, cell, clip, seq_len):
        calls.append((cell, clip, seq_len))
        if len(calls) == 2:
            raise _Interrupt
        return real(config, cell, clip, seq_len)

    monkeypatch.setattr(success_rate, "run_point", interrupted)
    with pytest.raises(_Interrupt):
        success_rate.run(config, workdir)
    first = success_rate.point_key(*calls[0])
    assert os.listdir(os.path.join(workdir, "points")) == [first + ".json"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["complete"] is False

    calls.clear()
    monkeypatch.setattr(success_rate, "run_point", lambda *a: calls.append(a[1:]) or real(*a))
    resumed = success_rate.run(config, workdir)
    # Only the unfinished point ran again.
    assert calls == [("rnn", True, 10)] and resumed["resumed_points"] == 1
    assert resumed["complete"] is True
    assert _without_seconds(resumed["points"]) == _without_seconds(
        json.loads(json.dumps(tiny_run[2]["points"])))

    # A third run recomputes nothing and returns the same points.
    calls.clear()
    again = success_rate.run(config, workdir)
    assert calls == [] and again["points"] == resumed["points"]
    assert os.path.exists(os.path.join(workdir, "success_rate.png"))


def test_refuses_other_config_naming_fields(tmp_path):
    workdir = tmp_path / "sr"
    config = sr_configs.get_config("tiny")
    resume.claim(str(workdir), "success_rate", config)
    before = sorted(os.listdir(workdir))
    other = sr_configs.get_config("tiny")
    other.num_steps = 4
    other.cell_kwargs.rnn = {"activation": "relu"}
    with pytest.raises(ValueError, match=r"different config") as e:
        success_rate.run(other, str(workdir))
    assert "num_steps: workdir=3, now=4" in str(e.value)
    assert "cell_kwargs.rnn.activation" in str(e.value)
    assert sorted(os.listdir(workdir)) == before and os.listdir(workdir / "points") == []


def _without_seconds(points):
    # Wall times are the only fields allowed to differ between runs.
    return [{k: v for k, v in p.items() if k != "seconds"} for p in points]


def test_eval_chunk_divides_eval_size():
    assert success_rate._eval_chunk(10000, 1000) == 1000
    assert success_rate._eval_chunk(2560, 1000) == 640
    assert success_rate._eval_chunk(40, 16) == 10
    assert success_rate._eval_chunk(7, 100) == 7


def _bad(field, value):
    c = sr_configs.get_config("tiny")
    c.update_from_flattened_dict({field: value})
    return c


@pytest.mark.parametrize("field,value,match", [
    ("cells", "rnn,transformer", "config.cells"),
    ("cells", "rnn,rnn", "config.cells"),
    ("seq_lens", (20, 10), "config.seq_lens"),
    ("seq_lens", (), "config.seq_lens"),
    ("clip", (1, 0), "config.clip"),
    ("clip_norm", 0.0, "config.clip_norm"),
    ("task.name", "addition", "config.task.name"),
    ("eval_batch", 0, "config.eval_batch"),
    ("num_seeds", 0, "num_seeds"),
    ("optimizer.name", "adagrad", "optimizer.name"),
    ("seq_lens", (5,), "seq_len=5"),          # below Pascanu's minimum T = 10
])
def test_bad_config_raises_before_writing(tmp_path, field, value, match):
    config = _bad(field, value)
    workdir = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        success_rate.run(config, str(workdir))
    assert not workdir.exists()


def test_unknown_cell_kwargs_and_variant_raise():
    c = sr_configs.get_config("tiny")
    c.cell_kwargs.rnn = {"activation": "sigmoid"}
    with pytest.raises(ValueError, match="activation"):
        success_rate.validate(c)
    with pytest.raises(ValueError, match="variant"):
        sr_configs.get_config("huge")


def test_wilson_interval_matches_closed_forms():
    z = 1.96
    # 0 of n: lower bound 0, upper bound z^2 / (n + z^2).
    lo, hi = plotting.wilson_interval([0, 8], [8, 8])
    assert lo[0] == 0.0 and math.isclose(hi[0], z * z / (8 + z * z), rel_tol=1e-12)
    # n of n mirrors 0 of n.
    assert hi[1] == 1.0 and math.isclose(lo[1], 1 - z * z / (8 + z * z), rel_tol=1e-12)
    # Against the textbook formula at an interior point.
    k, n = 3, 10
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = plotting.wilson_interval(k, n)
    np.testing.assert_allclose([lo, hi], [centre - half, centre + half], rtol=1e-12)
    with pytest.raises(ValueError, match="successes"):
        plotting.wilson_interval(5, 4)
