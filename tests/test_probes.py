"""diagnostics_every: probes while training, logged and resumable, checked against a direct gradient."""

import json
import os

import jax
import numpy as np

from rnn_jax import diagnostics, models
from rnn_jax.train import training
from rnn_jax.train import config as config_lib
from rnn_jax.train import loop, probes


def _config(num_steps):
    c = config_lib.default_config()
    c.hidden_size, c.task.seq_len, c.batch_size, c.num_steps = 4, 22, 4, num_steps
    c.log_every, c.eval_every, c.checkpoint_every, c.diagnostics_every = 5, 10, 10, 5
    c.task.eval_size = 4
    return c


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == "diagnostics"]


def test_probes_logged_resumed_and_correct(tmp_path):
    wd = str(tmp_path)
    loop.train_and_evaluate(_config(10), wd)
    assert [r["step"] for r in _records(wd)] == [0, 5, 10]
    loop.train_and_evaluate(_config(15), wd)   # resume: extends, never duplicates
    recs = _records(wd)
    steps, curves = probes.read_curves(wd)
    assert [r["step"] for r in recs] == [0, 5, 10, 15] and steps.tolist() == [0, 5, 10, 15]
    assert curves.shape == (4, 22)
    last = recs[-1]
    assert set(probes.probe_lags(22)) == {1, 10, 21}
    assert {"log10_grad_lag1", "log10_grad_lag21", "top_lyapunov", "timescale_median"} <= set(last)

    # Independent check of the lag-1 value at step 15: the direct (not log-space) gradient
    # of the same loss on each sequence cut to its own length, by jax.grad.
    c = _config(15)
    state = loop.restore_state(c, wd)
    params = jax.tree_util.tree_map(lambda a: a[0], state.params)
    model = models.make_model(loop.resolve_config(c))
    _, eval_key = training.seed_keys(c)
    batch = model.task.sample(jax.random.fold_in(eval_key, 0x5eed), probes.PROBE_BATCH, 22)
    vals = []
    for i in range(probes.PROBE_BATCH):
        L = int(batch["lengths"][i])
        ex = {k: v[i:i + 1] for k, v in batch.items()}

        def loss_fn(states):
            h = states[0][-1]
            return model.task.loss((h @ params["readout"]["w"] + params["readout"]["b"])[None], ex)

        g = diagnostics.grad_norms(model.cell.step, params["cell"], model.cell.initial_carry(),
                                   batch["inputs"][i, :L], loss_fn)
        vals.append(np.log10(float(g[0][L - 2])))           # lag 1
    # float32 gradients of ~1e-1: log10 agrees to ~1e-6; the mean over 4 sequences too.
    np.testing.assert_allclose(last["log10_grad_lag1"], np.mean(vals), atol=1e-5)
    np.testing.assert_allclose(curves[-1, 1], np.mean(vals), atol=1e-5)
    assert last["timescale_median"] > 1.0                    # forget bias 1: f ~ 0.73


def test_off_by_default(tmp_path):
    assert config_lib.default_config().diagnostics_every == 0
    c = _config(5)
    c.diagnostics_every = 0
    loop.train_and_evaluate(c, str(tmp_path))
    assert not os.path.exists(os.path.join(str(tmp_path), probes.CURVE_FILE))
    assert _records(str(tmp_path)) == []
