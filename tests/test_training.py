"""Tests of the model factory and the pure training functions (rnn_jax.models, rnn_jax.train.training)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnn_jax import models, tasks
from rnn_jax.train import training
from rnn_jax.tasks.base import Task
from rnn_jax.train import loop


def tiny_config(**overrides):
    c = training.default_config()
    c.cell = "rnn"
    c.hidden_size = 8
    c.task.name = "adding_le"
    c.task.seq_len = 6
    c.task.eval_size = 64
    c.batch_size = 8
    c.num_steps = 4
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.update_from_flattened_dict(overrides)  # dotted names reach nested fields
    return c


def _batch(config, seed=0):
    task = models.make_task(config)
    return task.sample(jax.random.PRNGKey(seed), config.batch_size, config.task.seq_len)


# ----------------------------------------------------------------------------- model

def _delay_task(vocab=3, delay=1):
    """Per-step classification ("all"): predict the token seen ``delay`` steps ago."""

    def sample(key, batch_size, seq_len):
        k_tok, k_len = jax.random.split(key)
        tokens = jax.random.randint(k_tok, (batch_size, seq_len), 0, vocab)
        lengths = jax.random.randint(k_len, (batch_size,), seq_len // 2, seq_len + 1)
        targets = jnp.concatenate([jnp.zeros((batch_size, delay), tokens.dtype),
                                   tokens[:, :-delay]], axis=1)
        return {"inputs": jax.nn.one_hot(tokens, vocab), "targets": targets,
                "lengths": lengths.astype(jnp.int32)}

    def _mask(batch):
        t = jnp.arange(batch["targets"].shape[1]).reshape(1, -1)
        return (t < batch["lengths"].reshape(-1, 1)).astype(jnp.float32)

    def loss(outputs, batch):
        nll = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])
        m = _mask(batch)
        return jnp.sum(nll * m) / jnp.sum(m)

    def metrics(outputs, batch):
        m = _mask(batch)
        hit = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
        return {"accuracy": jnp.sum(hit * m) / jnp.sum(m)}

    return Task("delay", vocab, vocab, "all", sample, loss, metrics, "accuracy", True,
                success=lambda m: m["accuracy"] > 0.99, eval_size=64)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_model_last_output_matches_per_sequence_python_loop(cell):
    config = tiny_config(cell=cell, hidden_size=5, batch_size=3, **{"task.name": "adding"})
    config.task.seq_len = 22
    model = models.make_model(config)
    params = model.init(jax.random.PRNGKey(1))
    batch = _batch(config)
    out = model.apply(params, batch)
    assert out.shape == (config.batch_size, 1)
    w = np.asarray(params["readout"]["w"])
    b = np.asarray(params["readout"]["b"])
    step = jax.jit(model.cell.step)
    assert len(set(np.asarray(batch["lengths"]).tolist())) > 1  # padding is exercised
    for i in range(config.batch_size):
        carry = model.cell.initial_carry()
        for t in range(int(batch["lengths"][i])):
            carry, _ = step(params["cell"], carry, batch["inputs"][i, t])
        h = carry[0] if cell == "lstm" else carry
        np.testing.assert_allclose(out[i], np.asarray(h) @ w + b, rtol=1e-5, atol=1e-6)


def test_model_all_mode_reads_every_step(monkeypatch):
    monkeypatch.setitem(tasks._REGISTRY, "delay", _delay_task)
    config = tiny_config(cell="gru", **{"task.name": "delay"})
    model = models.make_model(config)
    params = model.init(jax.random.PRNGKey(0))
    batch = _batch(config)
    out = model.apply(params, batch)
    assert out.shape == (config.batch_size, config.task.seq_len, 3)
    _, ys = jax.lax.scan(lambda c, x: model.cell.step(params["cell"], c, x),
                         model.cell.initial_carry((config.batch_size,)),
                         jnp.swapaxes(batch["inputs"], 0, 1))
    expect = np.einsum("tbh,ho->bto", np.asarray(ys), np.asarray(params["readout"]["w"]))
    expect = expect + np.asarray(params["readout"]["b"])
    valid = np.arange(config.task.seq_len)[None, :] < np.asarray(batch["lengths"])[:, None]
    np.testing.assert_allclose(np.asarray(out)[valid], expect[valid], rtol=1e-5, atol=1e-6)


def test_cell_kwargs_reach_the_cell():
    config = tiny_config(cell="lstm", hidden_size=4)
    config.cell_kwargs.forget_bias = 2.5
    params = models.make_model(config).init(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(params["cell"]["b"][4:8], 2.5)  # gate order i, f, g, o


# ------------------------------------------------------------------------- training

def test_loss_decreases_on_adding():
    config = tiny_config(cell="lstm", hidden_size=16, num_steps=200, batch_size=32,
                         **{"optimizer.name": "adam", "optimizer.learning_rate": 2e-2})
    config.task.seq_len = 10
    train = training.make_train(config)
    state, metrics = jax.jit(train)(jax.random.PRNGKey(0))
    loss = np.asarray(metrics["loss"])
    assert loss.shape == (200,)
    assert loss[-50:].mean() < 0.2 * loss[:50].mean()
    ev = jax.jit(training.make_eval(config))(state.params, jax.random.PRNGKey(9))
    # The task's criterion: eval MSE below 10% of the predict-the-mean baseline 1/6.
    assert models.make_task(config).success(ev)


def test_per_step_classification_task_trains(monkeypatch):
    monkeypatch.setitem(tasks._REGISTRY, "delay", _delay_task)
    config = tiny_config(cell="gru", hidden_size=16, num_steps=100, batch_size=16,
                         **{"task.name": "delay", "optimizer.name": "adam",
                            "optimizer.learning_rate": 3e-2})
    _, metrics = jax.jit(training.make_train(config))(jax.random.PRNGKey(0))
    acc = np.asarray(metrics["accuracy"])
    assert acc[-20:].mean() > 0.9 > acc[:5].mean()


def test_sgd_update_is_minus_lr_times_gradient():
    config = tiny_config(**{"optimizer.learning_rate": 0.3, "optimizer.clip_mode": "none"})
    model = models.make_model(config)
    state = training.init_state(config, jax.random.PRNGKey(0))
    batch = _batch(config)
    new, m = jax.jit(training.make_train_step(config))(state, batch, jax.random.PRNGKey(1))
    grads = jax.grad(lambda p: model.task.loss(model.apply(p, batch), batch))(state.params)
    expect = jax.tree_util.tree_map(lambda p, g: p - 0.3 * g, state.params, grads)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                           new.params, expect)
    np.testing.assert_allclose(m["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    np.testing.assert_allclose(m["update_norm"], 0.3 * optax.tree.norm(grads), rtol=1e-5)
    np.testing.assert_allclose(m["param_norm"], optax.tree.norm(expect), rtol=1e-5)
    assert int(new.step) == 1 and float(m["clipped"]) == 0.0


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_every_optimizer_runs_and_moves_params(name):
    config = tiny_config(**{"optimizer.name": name, "optimizer.learning_rate": 1e-2})
    if name == "adamw":
        config.optimizer.weight_decay = 1e-2
    state = training.init_state(config, jax.random.PRNGKey(0))
    step = jax.jit(training.make_train_step(config))
    new = state
    for i in range(3):
        new, metrics = step(new, _batch(config, seed=i), None)
        assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
    assert int(new.step) == 3
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), new.params, state.params)
    assert all(jax.tree_util.tree_leaves(moved))


def test_schedules_match_their_formulas():
    o = tiny_config().optimizer
    o.learning_rate = 0.2
    o.schedule = "warmup_cosine"
    o.warmup_steps, o.decay_steps, o.end_learning_rate = 10, 110, 0.02
    s = training.make_schedule(o, 1000, o.learning_rate)
    np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)],
                               [0.0, 0.1, 0.2, 0.02 + 0.09 * (1 + np.cos(np.pi / 2)), 0.02],
                               rtol=1e-5, atol=1e-7)
    o.schedule, o.transition_steps, o.decay_rate = "exponential", 100, 0.5
    s = training.make_schedule(o, 1000, o.learning_rate)
    np.testing.assert_allclose([s(0), s(100), s(250)], [0.2, 0.1, 0.2 * 0.5 ** 2.5], rtol=1e-5)
    o.schedule = "constant"
    assert float(training.make_schedule(o, 1000, 0.2)(777)) == pytest.approx(0.2)


@pytest.mark.parametrize("mode", ["global_norm", "value", "adaptive", "none"])
def test_clipping_modes(mode):
    config = tiny_config(**{"optimizer.learning_rate": 1.0, "optimizer.clip_mode": mode,
                            "optimizer.clip_norm": 1e-3, "optimizer.clip_value": 1e-4,
                            "optimizer.adaptive_clip": 1e-4})
    state = training.init_state(config, jax.random.PRNGKey(0))
    batch = _batch(config)
    _, m = jax.jit(training.make_train_step(config))(state, batch, jax.random.PRNGKey(1))
    model = models.make_model(config)
    grads = jax.grad(lambda p: model.task.loss(model.apply(p, batch), batch))(state.params)
    g_norm = float(optax.tree.norm(grads))
    np.testing.assert_allclose(m["grad_norm"], g_norm, rtol=1e-5)  # before clipping
    assert g_norm > 1e-2  # so each threshold above really bites
    if mode == "global_norm":  # sgd lr 1: the update is the clipped gradient
        np.testing.assert_allclose(m["update_norm"], 1e-3, rtol=1e-4)
    elif mode == "value":
        n_entries = sum(x.size for x in jax.tree_util.tree_leaves(grads))
        assert float(m["update_norm"]) <= 1e-4 * np.sqrt(n_entries) * (1 + 1e-5)
    elif mode == "adaptive":
        assert float(m["update_norm"]) < g_norm
    else:
        np.testing.assert_allclose(m["update_norm"], g_norm, rtol=1e-5)
    assert float(m["clipped"]) == (0.0 if mode == "none" else 1.0)


def test_clipping_bounds_update_norm_over_training():
    config = tiny_config(num_steps=30, **{"optimizer.learning_rate": 0.5,
                                          "optimizer.clip_norm": 0.05})
    _, m = jax.jit(training.make_train(config))(jax.random.PRNGKey(3))
    assert np.all(np.asarray(m["update_norm"]) <= 0.5 * 0.05 * (1 + 1e-5))
    fired = np.asarray(m["clipped"]) > 0
    np.testing.assert_array_equal(fired, np.asarray(m["grad_norm"]) > 0.05)
    assert fired.any()


def test_recurrent_weights_get_their_own_learning_rate_and_clip():
    config = tiny_config(**{"optimizer.learning_rate": 0.1, "optimizer.clip_mode": "none"})
    config.optimizer.recurrent.enabled = True
    config.optimizer.recurrent.learning_rate = 0.01
    model = models.make_model(config)
    state = training.init_state(config, jax.random.PRNGKey(0))
    batch = _batch(config)
    new, _ = jax.jit(training.make_train_step(config))(state, batch, None)
    grads = jax.grad(lambda p: model.task.loss(model.apply(p, batch), batch))(state.params)
    for name in ("w_x", "w_h", "b"):
        lr = 0.01 if name == "w_h" else 0.1
        np.testing.assert_allclose(new.params["cell"][name],
                                   state.params["cell"][name] - lr * grads["cell"][name],
                                   rtol=1e-5, atol=1e-7)
    # An extra clip on w_h alone bounds only the recurrent update.
    assert float(optax.tree.norm(grads["cell"]["w_h"])) > 1e-2  # so the clip below bites
    config.optimizer.recurrent.clip_norm = 1e-2
    state = training.init_state(config, jax.random.PRNGKey(0))  # the chain has one more stage
    new, _ = jax.jit(training.make_train_step(config))(state, batch, None)
    step_h = np.linalg.norm(np.asarray(new.params["cell"]["w_h"] - state.params["cell"]["w_h"]))
    np.testing.assert_allclose(step_h, 0.01 * 1e-2, rtol=1e-3)
    np.testing.assert_allclose(new.params["readout"]["w"],
                               state.params["readout"]["w"] - 0.1 * grads["readout"]["w"],
                               rtol=1e-5, atol=1e-7)


def test_vmapped_seeds_equal_separately_trained_seeds():
    config = tiny_config(num_steps=10, num_seeds=3,
                         **{"optimizer.name": "adam", "optimizer.learning_rate": 1e-2})
    keys, _ = training.seed_keys(config)
    train = training.make_train(config)
    states, metrics = jax.jit(jax.vmap(train))(keys)
    single = jax.jit(train)
    for i in range(3):
        state_i, metrics_i = single(keys[i])
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
            states.params, state_i.params)
        np.testing.assert_allclose(metrics["loss"][i], metrics_i["loss"], rtol=1e-5)
    # Different seeds really differ, and seed i does not depend on num_seeds.
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])
    config.num_seeds = 1
    np.testing.assert_array_equal(training.seed_keys(config)[0][0], keys[0])


# --------------------------------------------------------------------- non-finite

def _nan_batch(config):
    batch = _batch(config)
    return {**batch, "inputs": batch["inputs"].at[0, 0, 0].set(jnp.nan)}


def test_nonfinite_is_flagged_and_optionally_skipped():
    config = tiny_config(**{"optimizer.name": "adam"})
    state = training.init_state(config, jax.random.PRNGKey(0))
    step = jax.jit(training.make_train_step(config))
    new, m = step(state, _nan_batch(config), None)
    assert float(m["nonfinite_loss"]) == 1.0 and float(m["nonfinite_grad"]) == 1.0
    assert float(m["skipped"]) == 0.0
    assert not np.isfinite(np.asarray(new.params["cell"]["w_h"])).all()

    config.skip_nonfinite = True
    step = jax.jit(training.make_train_step(config))
    new, m = step(state, _nan_batch(config), None)
    assert float(m["skipped"]) == 1.0
    jax.tree_util.tree_map(np.testing.assert_array_equal, new.params, state.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new.opt_state, state.opt_state)
    assert int(new.step) == 1  # the data stream still moves on


def _diverging_config(**overrides):
    # The learning rate grows 1e3-fold per step, so the run blows up within a few steps.
    return tiny_config(num_steps=40, checkpoint_every=2, eval_every=2, log_every=2,
                       **{"optimizer.learning_rate": 1e-3, "optimizer.schedule": "exponential",
                          "optimizer.transition_steps": 1, "optimizer.decay_rate": 1e3,
                          "optimizer.clip_mode": "none", **overrides})


def test_nan_guard_stops_with_step_and_quantity_and_keeps_last_checkpoint(tmp_path):
    config = _diverging_config()
    with pytest.raises(FloatingPointError, match=r"non-finite (loss|gradient) at step (\d+)") as e:
        loop.train_and_evaluate(config, str(tmp_path))
    bad_step = int(e.value.args[0].split("at step ")[1].split()[0])
    state = loop.restore_state(config, str(tmp_path))
    assert 0 < int(state.step[0]) < bad_step
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))
    assert not os.path.exists(tmp_path / "eval.json")

    # The way on: rerun with skip_nonfinite; it resumes from that checkpoint and finishes.
    config.skip_nonfinite = True
    result = loop.train_and_evaluate(config, str(tmp_path))
    assert result["step"] == config.num_steps
    state = loop.restore_state(config, str(tmp_path))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))
    with open(tmp_path / "metrics.jsonl") as f:
        skipped = [json.loads(line)["skipped"] for line in f if '"train"' in line]
    assert max(skipped) > 0


# ---------------------------------------------------------------------- validation

@pytest.mark.parametrize("field,value,words", [
    ("optimizer.name", "adagrad", ["optimizer.name", "adam", "rmsprop", "adagrad"]),
    ("optimizer.learning_rate", -0.1, ["optimizer.learning_rate", "> 0", "-0.1"]),
    ("task.seq_len", 0, ["task.seq_len", ">= 1", "0"]),
    ("cell", "transformer", ["cell", "lstm", "gru", "transformer"]),
    ("task.name", "nope", ["task.name", "adding", "nope"]),
    ("optimizer.clip_mode", "soft", ["optimizer.clip_mode", "global_norm", "soft"]),
    ("optimizer.schedule", "cyclic", ["optimizer.schedule", "warmup_cosine", "cyclic"]),
    ("batch_size", 0, ["batch_size", ">= 1"]),
])
def test_invalid_config_fails_before_anything_runs(tmp_path, field, value, words):
    config = tiny_config(**{field: value})
    workdir = tmp_path / "run"
    with pytest.raises(ValueError) as e:
        loop.train_and_evaluate(config, str(workdir))
    for w in words:
        assert w in str(e.value)
    assert not workdir.exists()  # failed before writing (or compiling) anything


def test_task_specific_seq_len_check_names_the_field():
    config = tiny_config(**{"task.name": "adding"})  # the 1997 task needs T >= 22
    with pytest.raises(ValueError, match=r"task\.seq_len=6.*22"):
        training.make_train(config)


def test_unknown_cell_kwarg_is_a_clear_type_error():
    config = tiny_config()
    config.cell_kwargs.forget_bias = 1.0  # an LSTM argument given to an RNN
    with pytest.raises(TypeError, match="cell_kwargs.*forget_bias.*'rnn'"):
        training.validate_config(config)
