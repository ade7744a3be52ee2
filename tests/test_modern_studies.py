"""The studies on the modern cells (issue 14): tiny configs, checked against independent
computations (jax.grad through a hand-written scan) and the configs' kwargs plumbing."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import gradient_lag as gl_configs
from experiments.configs import success_rate as sr_configs
from rnn_jax import models, tasks
from rnn_jax.train import training
from rnn_jax.studies import gradient_lag, success_rate


def _tiny_modern():
    c = gl_configs.get_config("modern")
    c.seq_len, c.hidden_size, c.num_seeds, c.diag_batch, c.train_batch = 22, 4, 1, 2, 2
    c.models = "lru_r090"   # the cell whose output is not a carry leaf (the generic h path
    c.measure_at = (0,)     # of LSTM-like carries is checked in test_gradient_lag.py)
    return c


def _independent_curve(config, name):
    """Mean over seeds and sequences of log10 ||dL/d state_t|| at init, by lag.

    Built from the cell's own step (its y output feeds the readout, so no
    cell_output), with a zero perturbation added to EVERY carry leaf and jax.grad; the
    state norm is then taken over the leaves the study measures (LRU: both parts of the
    complex state; sLSTM: h only).
    """
    _, cell_name, _ = gradient_lag.MODELS[name]
    tc = gradient_lag._train_config(config, cell_name, gradient_lag.model_kwargs(config, name), 1)
    keys, _ = training.seed_keys(tc)
    cell = models.make_cell(tc)
    T = config.seq_len
    batch = tasks.get("adding").sample(jax.random.fold_in(jax.random.PRNGKey(config.seed), 10_000),
                                       config.diag_batch, T)

    @jax.jit
    def grads(params, xs, length, target):
        def loss(eps):
            def body(carry, t_x_e):
                t, x, e = t_x_e
                new, y = cell.step(params["cell"], carry, x)
                new = jax.tree_util.tree_map(jnp.add, new, e)
                # The output seen by the readout moves with the perturbed state: y = h for
                # the sLSTM, y = Re(C x) + D u (Orvieto et al. 2023, eq. 1) for the LRU.
                if cell_name == "lru":
                    y = y + e[0] @ params["cell"]["C_re"] - e[1] @ params["cell"]["C_im"]
                else:
                    y = y + e[0]
                return new, jnp.where(t == length - 1, y, jnp.zeros_like(y))
            _, ys = jax.lax.scan(body, cell.initial_carry(), (jnp.arange(xs.shape[0]), xs, eps))
            out = jnp.sum(ys, axis=0) @ params["readout"]["w"] + params["readout"]["b"]
            return jnp.mean((out - target) ** 2)
        zeros = jax.tree_util.tree_map(lambda c: jnp.zeros((xs.shape[0],) + c.shape),
                                       cell.initial_carry())
        g = jax.grad(loss)(zeros)
        return g if cell_name == "lru" else (g[0],)

    def norms(*args):
        leaves = [np.asarray(leaf, np.float64) for leaf in grads(*args)]
        return np.sqrt(sum(np.sum(leaf ** 2, axis=1) for leaf in leaves))

    curves = []
    for key in keys:
        params = training.init_state(tc, key).params
        for b in range(config.diag_batch):
            length = int(batch["lengths"][b])
            g = norms(params, batch["inputs"][b], length, batch["targets"][b])
            curves.append(np.log10(g[:length][::-1][:T]))
    return np.mean(curves, axis=0)


def test_gradient_lag_modern_matches_independent_grad(tmp_path):
    config = _tiny_modern()
    res = gradient_lag.run(config, str(tmp_path / "gl"))
    by_model = {c["model"]: c for c in res["curves"]}
    assert set(by_model) == {"lru_r090"}
    for name, curve in by_model.items():
        # float32 forward/backward over 22 steps: relative error ~1e-6 per step, far below
        # 1e-4 in log10 (a relative error of 2.3e-4).
        np.testing.assert_allclose(curve["log10_grad_norm"], _independent_curve(config, name),
                                   atol=1e-4, err_msg=name)
        assert 0.0 < curve["mean_retention"] <= 1.0
    # Ring init: |lambda| in [0.9, 0.999], so the mean retention (= |lambda|) lies inside.
    assert 0.9 <= by_model["lru_r090"]["mean_retention"] <= 0.999
    assert "log10_cell_grad_norm" not in by_model["lru_r090"]   # no separate cell state
    with open(tmp_path / "gl" / "config.json") as f:
        assert json.load(f)["model_kwargs"]["lru_r090"]["r_min"] == 0.9


def test_gradient_lag_model_kwargs_flow_and_are_checked(tmp_path):
    c = _tiny_modern()
    c.models = "indrnn,lru_r099"
    assert gradient_lag.model_kwargs(c, "indrnn")["recurrent_max"] == 2.0 ** (1 / 22)
    c.model_kwargs.lru_r099.r_max = 0.995
    assert gradient_lag.model_kwargs(c, "lru_r099")["r_max"] == 0.995
    c.model_kwargs.lru_r099.r_min = 1.5
    with pytest.raises(ValueError, match="model_kwargs.lru_r099.*r_min"):
        gradient_lag.run(c, str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
    c = _tiny_modern()
    c.models = "slstm"
    c.model_kwargs.slstm.num_heads = 3   # does not divide H = 4
    with pytest.raises(ValueError, match="model_kwargs.slstm.*num_heads"):
        gradient_lag.validate(c)


def test_success_rate_modern_kwargs_resolve_per_point():
    c = sr_configs.get_config("modern")
    tc = success_rate.train_config(c, "indrnn", True, 1000)
    assert tc.cell_kwargs.recurrent_max == 2.0 ** (1 / 1000)
    assert success_rate.train_config(c, "lstm", True, 300).cell_kwargs.chrono_t_max == 300.0
    assert success_rate.train_config(c, "lru", True, 100).cell_kwargs.r_min == 0.9
    assert success_rate.cell_names(c) == list(success_rate.CELLS)
    c.cell_kwargs.lru.r_min = 2.0
    c.seq_lens = (100,)
    with pytest.raises(ValueError, match="r_min"):
        success_rate.validate(c)


def test_success_rate_modern_tiny_end_to_end(tmp_path):
    config = sr_configs.get_config("modern_tiny")
    res = success_rate.run(config, str(tmp_path / "sr"))
    assert [(p["cell"], p["seq_len"]) for p in res["points"]] == [("indrnn", 4)]
    for p in res["points"]:
        assert p["metric_name"] == "mse" and len(p["final_metric"]) == config.num_seeds
        # adding_le's criterion: MSE below 10% of the 1/6 baseline; two updates of a
        # 4-unit cell cannot reach it.
        assert p["num_success"] == sum(v < 1 / 60 for v in p["final_metric"]) == 0
    assert os.path.getsize(tmp_path / "sr" / "success_rate.png") > 0


def test_success_rate_plot_splits_families(tmp_path):
    points = [{"cell": cell, "clip": True, "seq_len": t, "num_seeds": 4, "num_success": k}
              for cell, k in (("lstm", 4), ("lru", 3), ("indrnn", 0)) for t in (100, 1000)]
    paths = success_rate.plot({"points": points, "clip_norm": 1.0}, str(tmp_path / "fig"))
    assert sorted(os.path.basename(p) for p in paths) == ["fig.pdf", "fig.png"]
    assert all(os.path.getsize(p) > 0 for p in paths)
