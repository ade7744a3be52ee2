"""Issue 17: text<TAB>label files. Encoding errors name the file and line, a header line
never becomes a class, an unknown test label names the test file."""

import numpy as np
import pytest

from rnn_jax.apps import classify
from rnn_jax.data import tsv


def test_non_utf8_line_is_named(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("good\tpos\nbad\tneg\ncaf\u00e9 noir\tpos\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.tsv:3: not valid UTF-8 .*save the file as UTF-8"):
        tsv.read_tsv(str(p))


@pytest.mark.parametrize("first", ["text\tlabel", "Sentence\tLabel", "review\tclass"])
def test_header_line_is_detected(tmp_path, first):
    p = tmp_path / "h.tsv"
    p.write_text(f"\ufeff{first}\ngood film\tpos\nbad film\tneg\n", encoding="utf-8")
    ex = tsv.read_tsv(str(p))
    assert ex.labels == ["pos", "neg"] and ex.texts == ["good film", "bad film"]
    kept = tsv.read_tsv(str(p), header=False)  # configurable: read it as an example
    assert kept.labels[0] == first.split("\t")[1]


def test_header_can_be_forced_and_examples_are_not_mistaken_for_one(tmp_path):
    p = tmp_path / "h.tsv"
    p.write_text("col_a\tcol_b\ngood film\tpos\nlabel me\tlabel\n", encoding="utf-8")
    assert tsv.read_tsv(str(p), header=True).labels == ["pos", "label"]
    assert tsv.read_tsv(str(p)).labels == ["col_b", "pos", "label"]  # not a known header


def test_unknown_label_in_the_test_file_names_that_file(tmp_path):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("text\tlabel\ngood\tpos\nbad\tneg\nfine\tpos\n", encoding="utf-8")
    test.write_text("meh\tneutral\ngreat\tpos\n", encoding="utf-8")
    config = classify.default_config()
    config.data.update(source="tsv", path=str(train), test_path=str(test))
    with pytest.raises(ValueError) as e:
        classify.load_dataset(config)
    msg = str(e.value)
    assert msg.startswith(f"{test}: labels ['neutral']") and "['neg', 'pos']" in msg
    test.write_text("ok\tneg\ngreat\tpos\n", encoding="utf-8")
    assert classify.load_dataset(config).classes == ["neg", "pos"]  # the header is no class


# ------------------------------------------------- issue 18: batches padded to their own length

def test_bucket_width_is_the_next_power_of_two_capped_at_the_data_width():
    from rnn_jax.data.tsv import bucket_width
    assert [bucket_width(n, 400) for n in (1, 8, 9, 11, 16, 17, 255, 256, 257, 400)] == \
        [8, 8, 16, 16, 16, 32, 256, 256, 400, 400]
    assert bucket_width(11, 11) == 11 and bucket_width(3, 5) == 5
    # At most log2(400 / 8) + 2 = 7 distinct widths (compiled programs) for max_len = 400.
    assert len({bucket_width(n, 400) for n in range(1, 401)}) == 7
    for bad in (0, 401):
        with pytest.raises(ValueError, match="longest"):
            bucket_width(bad, 400)


def _tsv_config(path, max_len):
    c = classify.default_config()
    c.hidden_size, c.attention_size, c.embed_size = 4, 3, 4
    c.data.source, c.data.path, c.data.max_len = "tsv", str(path), max_len
    c.batch_size, c.num_steps = 3, 4
    return c


def test_a_short_text_file_runs_short_batches(tmp_path):
    """The issue's case: the longest text has 11 tokens and max_len = 400. Every training
    batch is padded to its own longest text's power-of-two bucket, capped at 11."""
    path = tmp_path / "short.tsv"
    texts = ["ab", "abcdefghijk", "ba", "xy", "yx", "xyz", "abc", "ab", "yy", "xx"]
    path.write_text("".join(f"{t}\t{'p' if t[0] in 'ab' else 'n'}\n" for t in texts))
    config = _tsv_config(path, max_len=400)
    data = classify.load_dataset(config)
    assert data.info["T"] == 11 and data.train["inputs"].shape[1] <= 11   # not 400
    n = data.train["labels"].shape[0]
    seen = []
    for step in range(6):
        b = classify.train_batch(data.train, config, step)
        width = b["inputs"].shape[1]
        seen.append((width, int(b["lengths"].max())))
        # The same rows as before; the cut removes padding only.
        rows = data.train["inputs"][classify.batch_indices(n, 3, config.seed, step)]
        np.testing.assert_array_equal(b["inputs"], rows[:, :width])
        assert (rows[:, width:] == tsv.PAD_ID).all()
    assert all(width == min(max(8, 1 << (n - 1).bit_length()), 11) for width, n in seen), seen
    assert any(width == 8 for width, _ in seen), seen   # batches without the long text


def test_bucketed_batch_trains_like_the_full_width_batch():
    """Padding beyond the lengths is masked, so the cut batch gives the same loss, accuracy
    and gradient norm as the same batch padded to the full max_len width. float32
    tolerance: the attention's sums over T <= 20 positions differ only in the number of
    exact zeros added, and XLA may reorder them: relative error <= T * 2^-24 ~ 1.2e-6 per
    sum, a few sums deep, hence rtol 1e-5."""
    import jax
    from rnn_jax.data.tsv import bucket_width
    config = _tsv_config("unused.tsv", max_len=20)
    config.cell = "rnn"   # the masking is the cell-independent part under test; rnn compiles fastest
    model = classify.make_classifier(config, ("tokens", 9), 2)
    step = jax.jit(classify.make_train_step(config, model))
    from rnn_jax.train import training
    params = jax.jit(model.init)(jax.random.PRNGKey(0))   # one program, not many eager ops
    state = training.TrainState.create(params=params, tx=training.make_optimizer(config))
    lengths = np.array([5, 2, 3], np.int32)
    rng = np.random.default_rng(0)
    full = np.zeros((3, 20), np.int32)                  # padded to max_len, as before
    for i, n in enumerate(lengths):
        full[i, :n] = rng.integers(2, 9, size=n)
    labels = np.array([0, 1, 1], np.int32)
    width = bucket_width(int(lengths.max()), 20)
    assert width == 8
    _, m_full = step(state, {"inputs": full, "lengths": lengths, "labels": labels})
    _, m_cut = step(state, {"inputs": full[:, :width], "lengths": lengths, "labels": labels})
    for k in ("loss", "accuracy", "grad_norm"):
        np.testing.assert_allclose(float(m_cut[k]), float(m_full[k]), rtol=1e-5, err_msg=k)


def test_texts_cut_at_max_len_are_encoded_as_before(tmp_path):
    """Where every text reaches max_len, the width is max_len and the ids are the first
    max_len tokens: exactly the arrays the pad-to-max_len encoding gave."""
    path = tmp_path / "long.tsv"
    texts = ["abcabcabcab", "bcabcabcabca", "xyzxyzxyzx", "zyxzyxzyxzyx", "abababab", "xyxyxyxy"]
    path.write_text("".join(f"{t}\t{'p' if t[0] in 'ab' else 'n'}\n" for t in texts))
    config = _tsv_config(path, max_len=6)
    config.data.test_fraction = 0.34
    data = classify.load_dataset(config)
    for part in (data.train, data.test):
        assert part["inputs"].shape[1] == 6 and (part["lengths"] == 6).all()
        assert (part["inputs"] != tsv.PAD_ID).all()   # no padding at all
    assert data.info["T"] == 6
