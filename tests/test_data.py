"""Corpus loading, vocabularies, TBPTT windows and the TSV loader (rnn_jax.data)."""

import numpy as np
import pytest

from rnn_jax.data import text, tsv


def test_default_corpus_is_pydoc_topics_in_sorted_order():
    import pydoc_data.topics as topics
    corpus = text.load_corpus()
    assert len(corpus) > 100_000
    # Each topic appears whole, and in sorted key order.
    keys = sorted(topics.topics)
    positions = [corpus.index(topics.topics[k]) for k in keys[:5]]
    assert positions == sorted(positions) and positions[0] == 0
    assert corpus == text.load_corpus(None) == text.load_corpus("")


def test_corpus_file_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt.*does not exist"):
        text.load_corpus(str(missing))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt.*is empty"):
        text.load_corpus(str(empty))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError, match="not UTF-8"):
        text.load_corpus(str(binary))
    ok = tmp_path / "ok.txt"
    ok.write_text("héllo\n", encoding="utf-8")
    assert text.load_corpus(str(ok)) == "héllo\n"


def test_split_is_contiguous_head_and_tail():
    s = "".join(chr(97 + i % 26) for i in range(1000))
    train, val = text.split_corpus(s, 0.1)
    assert train + val == s and len(val) == 100
    with pytest.raises(ValueError, match="val_fraction"):
        text.split_corpus(s, 1.0)
    with pytest.raises(ValueError, match="too short"):
        text.split_corpus("abc", 0.5)


def test_vocab_unknown_and_roundtrip():
    vocab = text.build_vocab("hello world")
    assert vocab.tokens[0] == text.UNK and vocab.unk_id == 0
    assert list(vocab.tokens[1:]) == sorted(set("hello world"))
    ids = vocab.encode("hold")
    assert "".join(vocab.decode(ids)) == "hold"
    assert vocab.encode("hz!").tolist() == [vocab.tokens.index("h"), 0, 0]
    # The reserved name is not a data token: the text "<unk>" is 5 characters.
    assert vocab.encode(["<unk>"]).tolist() == [0]
    with pytest.raises(ValueError, match=r"prompt contains 2 token.*'z', '!'"):
        vocab.encode("hz!", strict=True, what="prompt")


def test_vocab_max_size_keeps_most_frequent():
    vocab = text.build_vocab(list("aaabbc"), reserved=(text.PAD, text.UNK), max_size=2)
    assert vocab.tokens == (text.PAD, text.UNK, "a", "b") and vocab.unk_id == 1
    assert vocab.encode("abc").tolist() == [2, 3, 1]


def test_tbptt_windows_match_a_loop_and_continue_each_other():
    ids = np.arange(3 * 23)  # 3 streams of 23
    x, y = text.tbptt_windows(ids, batch_size=3, window=5)
    L, W = 23, 5
    assert x.shape == y.shape == ((L - 1) // W, 3, W)
    for k in range(x.shape[0]):
        for b in range(3):
            start = b * L + k * W
            np.testing.assert_array_equal(x[k, b], ids[start:start + W])
            np.testing.assert_array_equal(y[k, b], ids[start + 1:start + W + 1])
    # Window k+1 of a stream starts right where window k stopped.
    np.testing.assert_array_equal(x[1:, :, 0], y[:-1, :, -1])
    with pytest.raises(ValueError, match="too short"):
        text.tbptt_windows(np.arange(10), batch_size=4, window=5)


def test_read_tsv_and_bad_lines(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("good film\tpos\n\nhas\ta tab\tneg\n", encoding="utf-8")
    ex = tsv.read_tsv(str(p))
    assert ex.texts == ["good film", "has\ta tab"] and ex.labels == ["pos", "neg"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\tpos\nno label here\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: line has no label"):
        tsv.read_tsv(str(bad))
    blank = tmp_path / "blank.tsv"
    blank.write_text("text\t \n")
    with pytest.raises(ValueError, match=r"blank.tsv:1: the label after the TAB is empty"):
        tsv.read_tsv(str(blank))
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        tsv.read_tsv(str(tmp_path / "missing.tsv"))


def test_tokenize_encode_padded_and_labels():
    texts = ["ab ba", "b", "a  b  c"]
    assert tsv.tokenize("a  b  c", "whitespace") == ["a", "b", "c"]
    assert tsv.tokenize("ab", "char") == ["a", "b"]
    with pytest.raises(ValueError, match="tokenizer"):
        tsv.tokenize("ab", "bpe")
    vocab = tsv.build_token_vocab(texts[:2], "char")
    ids, lengths = tsv.encode_padded(texts, vocab, "char")
    assert lengths.tolist() == [5, 1, 7]
    assert ids.shape == (3, 7)
    assert (ids[1, 1:] == tsv.PAD_ID).all() and (ids[0, 5:] == tsv.PAD_ID).all()
    assert ids[2, 6] == vocab.unk_id  # "c" is not in the first two texts
    ids, lengths = tsv.encode_padded(texts, vocab, "char", max_len=3)
    assert ids.shape == (3, 3) and lengths.tolist() == [3, 1, 3]
    assert tsv.label_ids(["n", "p", "n"], ["n", "p"]).tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"labels \['x'\]"):
        tsv.label_ids(["x"], ["n", "p"])


def test_split_examples_is_seeded_and_disjoint():
    ex = tsv.Examples([f"t{i}" for i in range(20)], ["a", "b"] * 10)
    tr, te = tsv.split_examples(ex, 0.25, seed=3)
    tr2, te2 = tsv.split_examples(ex, 0.25, seed=3)
    assert tr == tr2 and te == te2 and len(te.texts) == 5
    assert sorted(tr.texts + te.texts) == sorted(ex.texts)
