"""Attention pooling, the BiLSTM + attention classifier, and the classify experiment (digits, TSV)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_jax import layers
from rnn_jax.apps import classify


def test_masked_softmax_matches_numpy_and_zeroes_padding():
    scores = jax.random.normal(jax.random.PRNGKey(0), (3, 5)) * 10.0
    lengths = jnp.array([5, 2, 1])
    w = np.asarray(layers.masked_softmax(scores, lengths))
    for b, L in enumerate([5, 2, 1]):
        e = np.exp(np.asarray(scores[b, :L], np.float64) - np.max(scores[b, :L]))
        np.testing.assert_allclose(w[b, :L], e / e.sum(), rtol=1e-5)
        assert (w[b, L:] == 0).all()
    assert (np.asarray(layers.masked_softmax(scores[:1], jnp.array([0]))) == 0).all()


def test_pool_ignores_padded_states():
    params = layers.init_attention_pool(jax.random.PRNGKey(0), 4, 3)
    hs = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4))
    lengths = jnp.array([6, 3])
    garbage = hs.at[1, 3:].set(1e3)
    a, wa = layers.attention_pool(params, hs, lengths)
    b, wb = layers.attention_pool(params, garbage, lengths)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(wa, wb, rtol=1e-6)
    # Reference for the second sequence: additive scores over its 3 valid states only.
    h = np.asarray(hs[1, :3], np.float64)
    e = np.tanh(h @ np.asarray(params["w"]) + np.asarray(params["b"])) @ np.asarray(params["v"])
    alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(a[1], alpha @ h, rtol=1e-5, atol=1e-6)


def small_config(**over):
    c = classify.default_config()
    c.hidden_size = 6
    c.attention_size = 5
    c.embed_size = 4
    c.update_from_flattened_dict(over)
    return c


@pytest.mark.parametrize("kind", ["tokens", "features"])
def test_padding_does_not_change_predictions(kind):
    model = classify.make_classifier(small_config(), (kind, 7 if kind == "tokens" else 3), 4)
    params = model.init(jax.random.PRNGKey(0))
    lengths = jnp.array([5, 2, 4])
    key = jax.random.PRNGKey(1)
    if kind == "tokens":
        x = jax.random.randint(key, (3, 5), 2, 7)
        padded = jnp.concatenate([x, jax.random.randint(key, (3, 4), 0, 7)], axis=1)
    else:
        x = jax.random.normal(key, (3, 5, 3))
        padded = jnp.concatenate([x, 100.0 * jnp.ones((3, 4, 3))], axis=1)
    # Garbage (not just pad ids) beyond each length, inside the original width too.
    mask = (jnp.arange(5)[None, :] < lengths[:, None])
    mask = mask if kind == "tokens" else mask[..., None]
    x_dirty = jnp.where(mask, x, 5 if kind == "tokens" else -50.0)
    apply = jax.jit(model.apply)
    logits, w = apply(params, x, lengths)
    logits_p, w_p = apply(params, padded, lengths)
    logits_d, _ = apply(params, x_dirty, lengths)
    np.testing.assert_allclose(logits, logits_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, logits_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w, w_p[:, :5], atol=1e-7)
    assert (np.asarray(w_p)[:, 5:] == 0).all()
    # The short sequence alone, cut to its own length, with no padding at all.
    alone, _ = apply(params, x[1:2, :2], lengths[1:2])
    np.testing.assert_allclose(alone[0], logits[1], rtol=1e-5, atol=1e-6)


def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    p = np.array([0, 2, 2, 1, 1, 0, 0])
    np.testing.assert_array_equal(classify.confusion_matrix(y, p, 3),
                                  confusion_matrix(y, p, labels=[0, 1, 2]))


def test_batch_indices_cover_each_epoch_once():
    seen = np.concatenate([classify.batch_indices(10, 3, 0, s) for s in range(3)])
    assert sorted(seen.tolist()) == sorted(set(seen.tolist())) and len(seen) == 9
    # A new epoch reshuffles, and another seed shuffles differently.
    assert not np.array_equal(classify.batch_indices(10, 9, 0, 0), classify.batch_indices(10, 9, 0, 1))
    assert not np.array_equal(classify.batch_indices(10, 9, 0, 0), classify.batch_indices(10, 9, 1, 0))
    with pytest.raises(ValueError, match="batch_size=11 exceeds"):
        classify.batch_indices(10, 11, 0, 0)


def _write_tsv(path, n=48, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        letters = "ab" if label == "pos" else "xy"
        text = "".join(rng.choice(list(letters), size=rng.integers(3, 12)))
        lines.append(f"{text}\t{label}")
    path.write_text("\n".join(lines) + "\n")


def test_tsv_end_to_end(tmp_path):
    data = tmp_path / "train.tsv"
    _write_tsv(data)
    config = small_config(num_steps=40, batch_size=8, eval_every=20, checkpoint_every=40,
                          log_every=20)
    config.data.source = "tsv"
    config.data.path = str(data)
    config.optimizer.learning_rate = 0.02
    workdir = tmp_path / "run"
    result = classify.train_and_evaluate(config, str(workdir))
    for name in ("config.json", "metrics.jsonl", "eval.json", "confusion_matrix.png", "attention.png"):
        assert (workdir / name).exists(), name
    assert result["classes"] == ["neg", "pos"]
    cm = np.asarray(result["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == result["num_test"] == 10
    assert result["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert result["accuracy"] >= 0.9  # the classes use disjoint characters
    with open(workdir / "eval.json") as f:
        assert json.load(f)["accuracy"] == result["accuracy"]


def test_tsv_line_without_label_fails_before_writing(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ab\tpos\nxy\tneg\njust text\n")
    config = small_config()
    config.data.source = "tsv"
    config.data.path = str(bad)
    with pytest.raises(ValueError, match=r"bad.tsv:3: line has no label"):
        classify.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    config.data.path = ""
    with pytest.raises(ValueError, match="needs config.data.path"):
        classify.train_and_evaluate(config, str(tmp_path / "w"))


def test_digits_dataset_is_the_tasks_split_read_by_rows():
    from rnn_jax.tasks import digits
    data = classify.load_dataset(small_config())
    images, labels = digits.load_split("test")
    assert data.train["inputs"].shape == (1438, 8, 8) and data.test["inputs"].shape == (359, 8, 8)
    np.testing.assert_array_equal(data.test["inputs"][5].reshape(64), images[5])
    np.testing.assert_array_equal(data.test["labels"], labels)
    assert (data.train["lengths"] == 8).all() and data.input_spec == ("features", 8)
    config = small_config()
    config.data.digits_mode = "pixel"
    assert classify.load_dataset(config).test["inputs"].shape == (359, 64, 1)


def test_shipped_configs_validate():
    from experiments.configs import classify_digits, classify_tsv
    classify.validate(classify_digits.get_config())
    tsv_config = classify_tsv.get_config()
    with pytest.raises(ValueError, match="needs config.data.path"):
        classify.validate(tsv_config)
    tsv_config.data.path = "x.tsv"
    classify.validate(tsv_config)


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    data = tmp_path / "train.tsv"
    _write_tsv(data)

    def config(steps):
        c = small_config(num_steps=steps, batch_size=8, eval_every=20, checkpoint_every=20,
                         log_every=20)
        c.data.source = "tsv"
        c.data.path = str(data)
        return c

    straight = classify.train_and_evaluate(config(40), str(tmp_path / "straight"))
    classify.train_and_evaluate(config(20), str(tmp_path / "resumed"))
    seen = []
    real = classify.batch_indices

    def counting(n, batch_size, seed, step):
        seen.append(step)
        return real(n, batch_size, seed, step)

    monkeypatch.setattr(classify, "batch_indices", counting)
    resumed = classify.train_and_evaluate(config(40), str(tmp_path / "resumed"))
    assert [s for s in seen if s > 0] == list(range(20, 40))  # only the missing steps ran
    assert resumed["cross_entropy"] == straight["cross_entropy"]
    assert resumed["confusion_matrix"] == straight["confusion_matrix"]
    with open(tmp_path / "resumed" / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [20, 20, 40, 40]  # train + eval records of both parts, none repeated
