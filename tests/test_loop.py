"""The one training loop and the one TrainState (issue 12).

* checkpoints written by the code BEFORE the change (tests/data/*_v0, written by
  tests/data/make_fixtures.py against the old modules) restore to the very arrays they
  hold, and a run resumes from them;
* one ``train_and_evaluate`` run builds its model, task and clipper once each;
* the loop returns the eval history (earlier invocations' included on resume) and,
  as an option, the best parameters on validation;
* a checkpoint of another kind of state is refused with the field names.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rnn_jax import models
from rnn_jax.train import checkpointing, loop, training
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.checkpointing import Checkpointer, IncompatibleCheckpointError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _fixture(name, tmp_path):
    dest = tmp_path / name
    shutil.copytree(os.path.join(DATA, name), dest)
    with open(dest / "config.json") as f:
        saved = json.load(f)
    # The run is resumed as a user would: with today's config file, i.e. the saved fields
    # plus the fields added since, at the values that do what the old run did.
    config = ml_collections.ConfigDict({**workdir_lib.ADDED_FIELDS, **saved})
    return str(dest), config, dict(np.load(dest / "arrays.npz"))


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _assert_same_arrays(state, saved):
    got = _flat(state)
    # Old NamedTuples and the new dataclass both key their fields by attribute name.
    assert set(saved) <= set(got), sorted(set(saved) - set(got))
    for k, v in saved.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)  # restored, not recomputed


def test_engine_checkpoint_from_before_the_change_restores(tmp_path):
    workdir, config, saved = _fixture("engine_v0", tmp_path)
    state = loop.restore_state(config, workdir)
    assert isinstance(state, training.TrainState) and state.carry is None
    _assert_same_arrays(state, saved)
    assert set(_flat(state)) == set(saved)  # nothing filled in: the engine's fields match
    # The run's own resume path takes it too: rerunning the finished 2-step run restores
    # it (through Checkpointer.restore_good) and evaluates it, training nothing.
    result = loop.train_and_evaluate(config, workdir)
    assert result["step"] == 2 and np.isfinite(result["loss"])


def test_char_lm_checkpoint_from_before_the_change_restores_and_resumes(tmp_path, monkeypatch):
    from rnn_jax.apps import lm
    workdir, config, saved = _fixture("char_lm_v0", tmp_path)
    monkeypatch.chdir(workdir)  # its data.path is relative: corpus.txt beside it
    vocab = lm.vocab_from_config(config)
    like = jax.jit(lambda k: lm.init_state(config, len(vocab), k))(jax.random.PRNGKey(7))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, metric_name=lm.METRIC,
                        higher_is_better=False, read_only=True)
    try:
        state = ckpt.restore(2, like)
    finally:
        ckpt.close()
    # The old LMState(params, opt_state, carry, step) is in; its TBPTT carry too.
    _assert_same_arrays(state, saved)
    assert any(k.startswith(".carry") for k in saved)
    # The key the old state lacked comes from the state restored onto (the config's seed
    # derives it in a real run; here the PRNGKey(7) init shows where it comes from).
    np.testing.assert_array_equal(state.key, like.key)
    config.num_steps = 3
    result = lm.train_and_evaluate(config, workdir)  # resumes at step 2
    assert result["step"] == 3 and np.isfinite(result[lm.METRIC])
    assert result["best_val_bpc"] <= result[lm.METRIC]


def test_a_checkpoint_of_another_kind_of_state_is_refused_with_the_fields(tmp_path):
    workdir, config, _ = _fixture("char_lm_v0", tmp_path)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1, metric_name="val_bpc",
                        higher_is_better=False, read_only=True)
    params = {"w": jnp.zeros((2,))}
    like = training.TrainState.create(params=params, tx=training.make_optimizer(config))
    try:
        with pytest.raises(IncompatibleCheckpointError, match=r"carry.*would drop"):
            ckpt.restore(2, like)
    finally:
        ckpt.close()


def _engine_config(num_steps=2):
    c = training.default_config()
    c.cell, c.hidden_size = "rnn", 4
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", 5, 8
    c.batch_size, c.num_steps, c.num_seeds = 4, num_steps, 1
    c.eval_every = c.checkpoint_every = c.log_every = 1
    c.progress_every_s = 0.0
    return c


def test_one_run_builds_model_task_and_clipper_once(tmp_path, monkeypatch):
    counts = {"make_model": 0, "make_task": 0, "make_clipper": 0}

    def counting(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counting(models, "make_model")
    counting(models, "make_task")  # make_model calls it through the module: counted too
    counting(training, "make_clipper")
    monkeypatch.setattr(loop, "_PROGRAM_CACHE", {})  # a fresh process builds its programs
    from rnn_jax.train import train_and_evaluate  # what experiments/train.py runs
    train_and_evaluate(_engine_config(), str(tmp_path / "w"))
    assert counts == {"make_model": 1, "make_task": 1, "make_clipper": 1}


def test_the_loop_returns_history_and_best_params(tmp_path):
    """A 1-parameter model whose eval metric is known in closed form: params p, step
    p <- p + 1, eval "m" = (p - 2)^2, lowest at p = 2 (step 2 of 4)."""
    c = ml_collections.ConfigDict(dict(num_steps=4, log_every=1, eval_every=1,
                                       checkpoint_every=2, keep_checkpoints=2,
                                       progress_every_s=0.0))
    tx = training.make_optimizer(training.default_config())

    def init():
        return training.TrainState.create(params={"p": jnp.zeros(())}, tx=tx)

    def advance(state, step, n):
        new = state.replace(step=state.step + n, params={"p": state.params["p"] + n})
        return new, {"loss": jnp.float32(step)}

    def evaluate(state):
        return {"m": float((state.params["p"] - 2.0) ** 2)}

    out = loop.run(c, str(tmp_path), init=init, advance=advance, evaluate=evaluate, metric="m",
                   higher_is_better=False, keep_best=True)
    assert [r["step"] for r in out.evals] == [1, 2, 3, 4]
    assert [r["m"] for r in out.evals] == [1.0, 0.0, 1.0, 4.0]
    assert out.best_step == 2 and float(out.best_params["p"]) == 2.0
    assert out.best_checkpoint == 2 and out.step == 4 and int(out.state.step) == 4
    # Resumed (longer), the history still starts at step 1: earlier evals come back.
    c.num_steps = 6
    again = loop.run(c, str(tmp_path), init=init, advance=advance, evaluate=evaluate,
                     metric="m", higher_is_better=False)
    assert [r["step"] for r in again.evals] == [1, 2, 3, 4, 5, 6]
    assert float(again.state.params["p"]) == 6.0  # resumed from p = 4, not retrained


def test_state_is_saved_as_its_non_none_fields():
    state = training.TrainState.create(params={"w": jnp.ones((2,))}, tx=training.make_optimizer(
        training.default_config()), key=jax.random.PRNGKey(0))
    assert sorted(checkpointing._fields(state)) == ["key", "opt_state", "params", "step"]


@pytest.mark.parametrize("cell,recurrent", [
    ("rnn", {"w_h"}), ("lstm", {"w_h"}), ("gru", {"w_h"}), ("slstm", {"r"}),
    ("indrnn", {"u"}), ("lru", {"nu_log", "theta_log"}), ("min_gru", set()),
    ("min_lstm", set())])
def test_the_recurrent_param_group_holds_each_cells_recurrent_parameters(cell, recurrent):
    """Which parameters feed the state back (from each cell's step equations): the
    classic cells' h_{t-1} W_h, the sLSTM's R h_{t-1}, the IndRNN's u * h_{t-1}, the
    LRU's diagonal lambda(nu, theta); min_gru/min_lstm gate on the input alone."""
    c = _engine_config()
    c.cell = cell
    params = jax.eval_shape(models.make_model(c).init, jax.random.PRNGKey(0))
    labels = training.recurrent_labels(params)
    got = {jax.tree_util.keystr(p).split("'")[-2]
           for p, lab in jax.tree_util.tree_flatten_with_path(labels)[0] if lab == "recurrent"}
    assert got == recurrent
    assert all(lab == "default" for lab in jax.tree_util.tree_leaves(labels["readout"]))


def test_the_recurrent_learning_rate_reaches_an_lru_eigenvalue_only():
    """SGD with lr 0 on the default group and lr 0.1 on the recurrent one: after one
    step only nu_log and theta_log move."""
    c = _engine_config()
    c.cell = "lru"
    c.optimizer.name, c.optimizer.learning_rate = "sgd", 1e-30
    c.optimizer.recurrent.enabled, c.optimizer.recurrent.learning_rate = True, 0.1
    setup = training.make_setup(c)
    state = training.init_state(c, jax.random.PRNGKey(0), setup=setup)
    batch = setup.task.sample(jax.random.PRNGKey(1), c.batch_size, c.task.seq_len)
    new, _ = jax.jit(training.make_train_step(c, setup=setup))(state, batch, None)
    for name, a in new.params["cell"].items():
        moved = bool(np.any(np.asarray(a) != np.asarray(state.params["cell"][name])))
        assert moved == (name in ("nu_log", "theta_log")), name
