"""Character LM (rnn_jax.apps.lm): model vs a NumPy loop, TBPTT carry, sampling, the experiment and generate.py."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax.apps import lm


def tiny_config(cell="rnn", **over):
    c = lm.default_config()
    c.cell = cell
    c.hidden_size = 8
    c.embed_size = 4
    c.num_layers = 2
    c.dropout = 0.0
    c.update_from_flattened_dict(over)
    return c


def numpy_rnn_lm(params, ids):
    """Two-layer tanh RNN LM, one step at a time in NumPy (float64)."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    B, T = ids.shape
    hs = [np.zeros((B, layer["w_h"].shape[0])) for layer in p["layers"]]
    out = []
    for t in range(T):
        x = p["embed"][ids[:, t]]
        for l, layer in enumerate(p["layers"]):
            hs[l] = np.tanh(x @ layer["w_x"] + hs[l] @ layer["w_h"] + layer["b"])
            x = hs[l]
        out.append(x @ p["readout"]["w"] + p["readout"]["b"])
    return np.stack(out, axis=1)


def test_apply_matches_numpy_loop():
    model = lm.make_lm(tiny_config("rnn"), 7)
    params = model.init(jax.random.PRNGKey(0))
    ids = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (3, 6), 0, 7))
    _, logits = model.apply(params, model.initial_carry(3), jnp.asarray(ids))
    np.testing.assert_allclose(logits, numpy_rnn_lm(params, ids), rtol=1e-5, atol=1e-5)
    assert lm.num_params(tiny_config("rnn"), 7) == sum(
        a.size for a in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_carry_between_windows_equals_one_long_window(cell):
    model = lm.make_lm(tiny_config(cell), 9)
    params = model.init(jax.random.PRNGKey(2))
    ids = jax.random.randint(jax.random.PRNGKey(3), (2, 10), 0, 9)
    carry_full, full = model.apply(params, model.initial_carry(2), ids)
    c, first = model.apply(params, model.initial_carry(2), ids[:, :4])
    c, second = model.apply(params, c, ids[:, 4:])
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), full, rtol=1e-5, atol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), c, carry_full)
    # A fresh carry for the second window changes the result (the carry matters).
    _, fresh = model.apply(params, model.initial_carry(2), ids[:, 4:])
    assert not np.allclose(fresh, second, atol=1e-4)


def test_dropout_only_in_training_and_needs_a_key():
    model = lm.make_lm(tiny_config("lstm", dropout=0.5), 5)
    params = model.init(jax.random.PRNGKey(0))
    ids = jnp.zeros((2, 3), jnp.int32)
    carry = model.initial_carry(2)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, carry, ids, train=True)
    _, a = model.apply(params, carry, ids)
    _, b = model.apply(params, carry, ids, key=jax.random.PRNGKey(1))  # train=False: no dropout
    _, c = model.apply(params, carry, ids, key=jax.random.PRNGKey(1), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bits_per_char_matches_numpy():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5))
    targets = jnp.array([[0, 4, 2], [1, 1, 3]])
    z = np.asarray(logits, np.float64)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want = -np.mean([logp[b, t, targets[b, t]] for b in range(2) for t in range(3)]) / math.log(2)
    np.testing.assert_allclose(lm.bits_per_char(lm.cross_entropy(logits, targets)), want, rtol=1e-5)


def test_sample_logits_top_k_temperature_and_ban():
    logits = jnp.tile(jnp.array([[0.0, 3.0, 1.0, 2.9, 2.8, -1.0]]), (4000, 1))
    key = jax.random.PRNGKey(0)
    drawn = np.asarray(lm.sample_logits(key, logits, temperature=1.0, top_k=3))
    assert set(drawn.tolist()) == {1, 3, 4}
    greedy = lm.sample_logits(key, logits[:2], temperature=0.0)
    assert greedy.tolist() == [1, 1]
    assert set(np.asarray(lm.sample_logits(key, logits, top_k=1)).tolist()) == {1}
    no_one = np.asarray(lm.sample_logits(key, logits, top_k=2, banned=(1,)))
    assert set(no_one.tolist()) == {3, 4}
    # Temperature -> 0 concentrates on the argmax; a high temperature spreads out.
    cold = np.asarray(lm.sample_logits(key, logits, temperature=0.05))
    hot = np.asarray(lm.sample_logits(key, logits, temperature=5.0))
    assert (cold == 1).mean() > 0.85 and len(set(hot.tolist())) == 6


def test_generate_greedy_matches_recomputation_and_seed_is_reproducible():
    model = lm.make_lm(tiny_config("gru"), 6)
    params = model.init(jax.random.PRNGKey(4))
    prompt = jnp.array([2, 3, 4], jnp.int32)
    out = lm.generate(model, params, prompt, 3, key=jax.random.PRNGKey(0), temperature=0.0)
    # Reference: re-read the whole prefix from a zero carry for every new character.
    seq = [2, 3, 4]
    for _ in range(3):
        _, logits = model.apply(params, model.initial_carry(1), jnp.array([seq]))
        masked = np.asarray(logits[0, -1]).copy()
        masked[0] = -np.inf  # <unk> is never produced
        seq.append(int(np.argmax(masked)))
    assert np.asarray(out).tolist() == seq[3:]
    a = lm.generate(model, params, prompt, 20, key=jax.random.PRNGKey(7), temperature=1.0, top_k=4)
    b = lm.generate(model, params, prompt, 20, key=jax.random.PRNGKey(7), temperature=1.0, top_k=4)
    c = lm.generate(model, params, prompt, 20, key=jax.random.PRNGKey(8), temperature=1.0, top_k=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 not in np.asarray(a).tolist()
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(model, params, prompt, 5, key=jax.random.PRNGKey(0), temperature=-1.0)
    with pytest.raises(ValueError, match="at least one character"):
        lm.generate(model, params, jnp.zeros((0,), jnp.int32), 5, key=jax.random.PRNGKey(0))


def _train_tiny(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 120)
    config = tiny_config("lstm", batch_size=4, window=16, eval_batch_size=2, num_steps=50,
                         eval_every=20, checkpoint_every=25, log_every=10, sample_length=30)
    config.data.path = str(corpus)
    config.optimizer.learning_rate = 0.03
    workdir = str(tmp_path / "run")
    return lm.train_and_evaluate(config, workdir), workdir, config


def test_experiment_end_to_end_and_generate(tmp_path):
    result, workdir, config = _train_tiny(tmp_path)
    for name in ("config.json", "metrics.jsonl", "eval.json", "val_bpc.png", "sample.txt"):
        assert os.path.exists(os.path.join(workdir, name)), name
    V = result["vocab_size"]
    assert V == len(set("the cat sat on the mat. ")) + 1
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [20, 25, 40, 50]
    # A periodic text is learnable: well below the uniform log2(V) bits and improving.
    assert result["val_bpc"] < 0.5 * math.log2(V)
    assert evals[-1]["val_bpc"] < evals[0]["val_bpc"]
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f)["val_bpc"] == pytest.approx(result["val_bpc"])

    # Same sampler settings as sample.txt, so the compiled sampler is reused.
    one = lm.generate_text(workdir, "the ", 30, temperature=0.8, top_k=0, seed=1)
    two = lm.generate_text(workdir, "the ", 30, temperature=0.8, top_k=0, seed=1)
    assert one == two and one.startswith("the ") and len(one) == 34
    assert set(one) <= set("the cat sat on the mat. ")
    with pytest.raises(ValueError, match=r"prompt contains 2 token.*'X', '!'"):
        lm.generate_text(workdir, "the X!", 10)

    # Re-running the finished run resumes from its checkpoint and trains nothing.
    again = lm.train_and_evaluate(config, workdir)
    assert again["val_bpc"] == pytest.approx(result["val_bpc"], rel=1e-6)


def test_generate_refuses_a_checkpoint_of_another_experiment(tmp_path):
    from rnn_jax.train import config as engine_config
    from rnn_jax.train.checkpointing import Checkpointer
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=1, metric_name="mse",
                        higher_is_better=False)
    ckpt.save(1, {"w": jnp.zeros((2,))}, engine_config.default_config(), metrics={"mse": 1.0})
    ckpt.wait()
    ckpt.close()
    with pytest.raises(ValueError, match=r"another experiment.*task='adding'.*not by the character"):
        lm.generate_text(str(tmp_path), "a", 5)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        lm.generate_text(str(tmp_path / "empty"), "a", 5)


def test_bad_corpus_paths_fail_before_writing(tmp_path):
    config = tiny_config()
    config.data.path = str(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        lm.train_and_evaluate(config, str(tmp_path / "w1"))
    (tmp_path / "empty.txt").write_text("")
    config.data.path = str(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="empty"):
        lm.train_and_evaluate(config, str(tmp_path / "w2"))
    assert not (tmp_path / "w1").exists() and not (tmp_path / "w2").exists()
    config.data.path = ""
    config.cell = "transformer"
    with pytest.raises(ValueError, match="config.cell"):
        lm.train_and_evaluate(config, str(tmp_path / "w3"))


def test_config_variants_have_equal_parameter_counts():
    from experiments.configs import char_lm as configs
    counts = {}
    for cell in ("lstm", "gru", "rnn"):
        config = configs.get_config(cell)
        lm.validate(config)
        assert config.cell == cell and config.num_layers == 2
        counts[cell] = lm.num_params(config, 104)  # V of the default corpus
    assert max(counts.values()) / min(counts.values()) < 1.005, counts
    with pytest.raises(ValueError, match="variant must be one of"):
        configs.get_config("transformer")
