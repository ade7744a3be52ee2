"""The sensitivity study: closed forms, a tiny run, resume and refusal."""

import json
import math
import os

import numpy as np
import pytest

from experiments.configs import sensitivity as sensitivity_config
from rnn_jax.studies import sensitivity


def test_closed_forms():
    lam = 0.9
    ms, h2 = sensitivity.closed_form("raw", lam, 5000)
    # Zucchet & Orvieto 2024: E[(dh/dlambda)^2] = (1 + lambda^2) / (1 - lambda^2)^3 for gamma = 1.
    assert math.isclose(ms, (1 + lam ** 2) / (1 - lam ** 2) ** 3, rel_tol=1e-12)
    assert math.isclose(h2, 1 / (1 - lam ** 2), rel_tol=1e-12)
    _, h2 = sensitivity.closed_form("gamma", lam, 5000)
    assert math.isclose(h2, 1.0, rel_tol=1e-12)              # the point of the normalisation
    # Exponential parametrisation: d lambda / d nu = lambda log lambda.
    g, _ = sensitivity.closed_form("gamma", lam, 5000)
    e, _ = sensitivity.closed_form("gamma_exp", lam, 5000)
    assert math.isclose(e, g * (lam * math.log(lam)) ** 2, rel_tol=1e-12)


def _tiny():
    c = sensitivity_config.get_config()
    c.one_minus_lambda = (0.5, 0.1)
    c.seq_len, c.batch = 60, 4
    c.lstm_hidden, c.lstm_seq_len, c.lstm_batch = 2, 8, 2
    c.lstm_forget_biases = (0.0, 2.0)
    return c


def test_tiny_run_resume_and_refusal(tmp_path):
    wd = str(tmp_path / "run")
    res = sensitivity.run(_tiny(), wd)
    assert {"config.json", "results.json", "sensitivity.png", "sensitivity.pdf"} <= set(os.listdir(wd))
    assert json.load(open(os.path.join(wd, "config.json")))["experiment"] == "sensitivity"
    for row in res["linear"]:
        # The measured values are exact derivatives of the sampled sequences; for 4 samples
        # the RMS is within a factor ~3 of the population value (chi^2 with 4 dof).
        assert row["closed_form"] / 4 < row["rms_sensitivity"] < 4 * row["closed_form"]
    assert len(res["lstm"]) == 2 and res["lstm"][1]["timescale"] > res["lstm"][0]["timescale"]
    np.testing.assert_allclose(res["lstm"][0]["timescale"], -1 / math.log(0.5), rtol=1e-5)
    assert sensitivity.run(_tiny(), wd) == json.load(open(os.path.join(wd, "results.json")))
    other = _tiny()
    other.batch = 5
    with pytest.raises(ValueError, match=r"\['batch'\]"):
        sensitivity.run(other, wd)
    bad = _tiny()
    bad.one_minus_lambda = (1.5,)
    with pytest.raises(ValueError, match="one_minus_lambda"):
        sensitivity.run(bad, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")
