"""Issue 17: text<TAB>label files. Encoding errors name the file and line, a header line
never becomes a class, an unknown test label names the test file."""

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
