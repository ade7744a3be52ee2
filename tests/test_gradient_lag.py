"""End-to-end runs of the gradient-versus-lag study on tiny configs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax.studies import gradient_lag
from experiments.configs import gradient_lag as gl_configs
from rnn_jax import models, tasks
from rnn_jax.train import training


def _tiny_models_config():
    c = gl_configs.get_config()
    c.seq_len = 22          # the 1997 adding problem's minimum
    c.hidden_size = 6
    c.num_seeds = 2
    c.diag_batch = 3
    c.train_batch = 4
    c.models = "lstm_fb0,lstm_chrono"
    c.measure_at = (0, 2)
    return c


def _independent_curve(config, name):
    """Mean log10 ||dL/dh_t|| by lag at init: jax.grad w.r.t. perturbations of each h_t."""
    _, cell_name, kwargs = gradient_lag.MODELS[name]
    kwargs = {k: (float(config.seq_len) if v == "T" else v) for k, v in kwargs.items()}
    tc = gradient_lag._train_config(config, cell_name, kwargs, 2)
    keys, _ = training.seed_keys(tc)
    model = models.make_model(tc)
    batch = tasks.get("adding").sample(jax.random.fold_in(jax.random.PRNGKey(config.seed), 10_000),
                                       config.diag_batch, config.seq_len)

    @jax.jit
    def norms(params, xs, length, target):
        def loss(eps):
            def body(carry, t_x_e):
                t, x, e = t_x_e
                h, c = model.cell.step(params["cell"], carry, x)[0]
                new = (h + e, c)  # perturb the hidden state only
                return jax.tree_util.tree_map(lambda a, b: jnp.where(t < length, a, b), new, carry), None
            h = jax.lax.scan(body, model.cell.initial_carry(), (jnp.arange(xs.shape[0]), xs, eps))[0][0]
            out = h @ params["readout"]["w"] + params["readout"]["b"]
            return jnp.mean((out - target) ** 2)
        return jnp.linalg.norm(jax.grad(loss)(jnp.zeros((xs.shape[0], config.hidden_size))), axis=1)

    curves = []
    for key in keys:
        params = training.init_state(tc, key).params
        for b in range(config.diag_batch):
            length = int(batch["lengths"][b])
            g = np.asarray(norms(params, batch["inputs"][b], length, batch["targets"][b]), np.float64)
            curves.append(np.log10(g[:length][::-1][:config.seq_len]))  # by lag from the last valid step
    return np.mean(curves, axis=0)


def test_models_variant_end_to_end(tmp_path):
    config = _tiny_models_config()
    workdir = str(tmp_path / "models")
    gradient_lag.run(config, workdir)
    for name in ("config.json", "results.json", "gradient_lag.png", "gradient_lag.pdf"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["models"] == config.models
    with open(os.path.join(workdir, "results.json")) as f:
        res = json.load(f)
    T = config.seq_len
    assert res["lags"] == list(range(T))
    assert len(res["curves"]) == 2 * len(config.measure_at)
    seen = set()
    for c in res["curves"]:
        assert {"label", "cell", "step", "log10_grad_norm", "log10_grad_norm_std"} <= set(c)
        assert c["cell"] in ("rnn", "lstm", "gru")
        assert len(c["log10_grad_norm"]) == len(c["log10_grad_norm_std"]) == T
        assert all(v is not None and np.isfinite(v) for v in c["log10_grad_norm"])
        seen.add((c["model"], c["step"]))
        if c["cell"] == "lstm":
            assert 0.0 < c["mean_gate"] < 1.0 and len(c["log10_cell_grad_norm"]) == T
    assert seen == {(m, s) for m in ("lstm_fb0", "lstm_chrono") for s in (0, 2)}
    # Forget bias 0 starts with f ~ 0.5; chrono (log U[1, T-1] biases) keeps f much closer to 1.
    init = {c["model"]: c for c in res["curves"] if c["step"] == 0}
    assert init["lstm_chrono"]["mean_gate"] > init["lstm_fb0"]["mean_gate"] + 0.2
    np.testing.assert_allclose(init["lstm_chrono"]["log10_grad_norm"],
                               _independent_curve(config, "lstm_chrono"), atol=1e-4)


def test_radius_variant_respects_pascanu_bound(tmp_path):
    c = gl_configs.get_config("radius")
    c.seq_len, c.hidden_size, c.num_seeds, c.diag_batch, c.jacobian_batch = 22, 5, 2, 2, 2
    # tanh only: the linear case is the exact analytic test in test_diagnostics.py.
    c.radii, c.activations, c.spectra_lags = (0.5, 1.5), ("tanh",), (0, 7)
    workdir = str(tmp_path / "radius")
    res = gradient_lag.run(c, workdir)
    for name in ("gradient_lag.png", "jacobian_spectra.pdf", "results.json"):
        assert os.path.exists(os.path.join(workdir, name))
    assert len(res["curves"]) == 2 and len(res["spectra"]) == 2 * 2
    for curve in res["curves"]:
        jn = np.array(curve["log10_jacobian_norm"])
        bound = np.arange(22) * np.log10(curve["radius"])  # ||W^k||_2 = r^k, |tanh'| <= 1
        assert np.all(jn <= bound + 1e-4)
        assert jn[0] == pytest.approx(0.0, abs=1e-5)
    for s in res["spectra"]:
        sv = np.array(s["log10_singular_values"])
        assert sv.shape == (5,) and np.all(np.diff(sv) <= 1e-6)
        if s["lag"] == 0:
            np.testing.assert_allclose(sv, 0.0, atol=1e-5)  # d h_{T-1}/d h_{T-1} = I


def test_bad_configs_raise_before_writing(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        gl_configs.get_config("nope")
    bad = [("models", "rnn,transformer"), ("measure_at", (100, 0)), ("seq_len", 5)]
    for field, value in bad:
        c = _tiny_models_config()
        c[field] = value
        with pytest.raises(ValueError, match=field):
            gradient_lag.run(c, str(tmp_path / field))
        assert not os.path.exists(tmp_path / field)
