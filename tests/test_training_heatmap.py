"""The training-heatmap study: config validation and the figure from probe records."""

import numpy as np
import pytest

from experiments.configs import training_heatmap as heatmap_config
from rnn_jax.studies import training_heatmap


def test_validate_names_and_fields():
    c = heatmap_config.get_config()
    assert training_heatmap.validate(c) == ["rnn", "lstm_chrono"]
    tc = training_heatmap.train_config(c, "lstm_chrono")
    assert tc.diagnostics_every == c.diagnostics_every and tc.cell_kwargs.chrono_t_max == 100.0
    c.models = "rnn,nosuch"
    with pytest.raises(ValueError, match="config.models"):
        training_heatmap.validate(c)
    c = heatmap_config.get_config()
    c.diagnostics_every = 0
    with pytest.raises(ValueError, match="diagnostics_every"):
        training_heatmap.validate(c)


def test_plot_from_records(tmp_path):
    steps = np.array([0, 25, 50])
    curves = -np.outer(np.array([1.0, 2.0, 3.0]), np.arange(10) / 10.0)
    runs = [{"label": "a", "steps": steps, "curves": curves, "eval_loss": 0.03,
             "top_lyapunov": [-0.1, -0.2, -0.3], "timescale": None},
            {"label": "b", "steps": steps, "curves": curves, "eval_loss": 0.001,
             "top_lyapunov": [-0.1, -0.05, -0.02], "timescale": [10.0, 20.0, 30.0]}]
    paths = training_heatmap.plot(runs, str(tmp_path / "hm"), 10)
    assert sorted(p.rsplit(".", 1)[1] for p in paths) == ["pdf", "png"]
