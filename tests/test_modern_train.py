"""The modern cells in the training engine (--config.cell=lru etc. with cell_kwargs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import models
from rnn_jax.train import training
from rnn_jax.train import config as train_config

@pytest.mark.parametrize("name, kwargs", [
    ("lru", {"r_min": 0.9, "r_max": 0.99}), ("min_gru", {}), ("min_lstm", {}),
    ("slstm", {"num_heads": 2, "forget_gate": "exp"}), ("indrnn", {"recurrent_max": 1.1})])
def test_training_engine_smoke(name, kwargs):
    c = training.default_config()
    c.cell, c.hidden_size = name, 4
    c.cell_kwargs.update(kwargs)
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", 6, 16
    c.batch_size, c.num_steps = 8, 3
    c.optimizer.name, c.optimizer.learning_rate = "adam", 1e-2
    train_config.validate(c)
    model = models.make_model(c)
    p0 = model.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(training.make_train(c))(jax.random.PRNGKey(0))
    loss = np.asarray(metrics["loss"])
    assert loss.shape == (3,) and np.all(np.isfinite(loss))
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params, p0)
    assert max(jax.tree_util.tree_leaves(moved)) > 0
    # A kwarg reached the cell.
    if name == "lru":
        mod = np.exp(-np.exp(np.asarray(p0["cell"]["nu_log"])))
        assert mod.min() >= 0.9 - 1e-5


def test_model_last_mode_reads_the_output_at_the_last_valid_step():
    """For the LRU the output is Re(C x) + D u, not a carry leaf: "last" reads ys[L-1]."""
    c = training.default_config()
    c.cell, c.hidden_size = "lru", 4
    c.task.name, c.task.seq_len = "adding_le", 6
    model = models.make_model(c)
    params = model.init(jax.random.PRNGKey(0))
    batch = model.task.sample(jax.random.PRNGKey(1), 3, 6)
    batch = dict(batch, lengths=jnp.array([6, 4, 2], batch["lengths"].dtype))
    out = model.apply(params, batch)
    for b, L in enumerate([6, 4, 2]):
        _, ys = rnn_jax.unroll(model.cell, params["cell"], model.cell.initial_carry(),
                               batch["inputs"][b, :L])
        want = ys[L - 1] @ params["readout"]["w"] + params["readout"]["b"]
        np.testing.assert_allclose(np.asarray(out[b]), np.asarray(want), rtol=1e-5, atol=1e-6)
