"""Labelled text in ``text<TAB>label`` files, as padded token-id arrays.

How users bring their own sentiment (or any text-classification) data: one example
per line, the text, a TAB, and the label. The label is everything after the LAST tab
(texts may contain tabs); blank lines are skipped; a non-blank line without a tab or
with an empty label or text is an error naming the file and line, and so is a line that
is not UTF-8. A first line naming the columns (``text<TAB>label``; see :func:`is_header`)
is skipped, never read as an example of class "label".

Tokens are characters (``"char"``) or whitespace-separated words (``"whitespace"``).
Vocabulary ids: 0 = ``<pad>``, 1 = ``<unk>``, then the tokens of the training texts.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np

from rnn_jax.data.text import PAD, UNK, Vocab, build_vocab

TOKENIZERS = ("char", "whitespace")
PAD_ID = 0


class Examples(NamedTuple):
    """Raw examples of one file: ``texts[i]`` has label ``labels[i]`` (strings)."""

    texts: list[str]
    labels: list[str]


HEADER_LABELS = ("label", "labels", "class", "category", "target")


def is_header(line: str) -> bool:
    """Whether a first line ``text<TAB>label`` names the columns: its label part is one
    of :data:`HEADER_LABELS` (any case) and its text part is a single word."""
    if "\t" not in line:
        return False
    text, label = line.rsplit("\t", 1)
    return label.strip().lower() in HEADER_LABELS and len(text.split()) == 1


def read_tsv(path: str, header: bool | None = None) -> Examples:
    """Read ``text<TAB>label`` lines (UTF-8). See the module docstring for the format.

    ``header``: True skips the first non-blank line, False reads it as an example, None
    (default) skips it when :func:`is_header` says it names the columns (e.g.
    ``text<TAB>label``), so a header never becomes a class. A line that is not UTF-8
    raises ValueError naming the file and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TSV file {path!r} does not exist (config.data.path)")
    texts, labels = [], []
    first = True
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte "
                                 f"{e.start} of the line, {raw[max(0, e.start - 10):e.end + 10]!r}); "
                                 "save the file as UTF-8") from None
            line = line.rstrip("\r\n")
            if lineno == 1:
                line = line.lstrip("\ufeff")  # a UTF-8 byte-order mark
            if not line.strip():
                continue
            if first:
                first = False
                if header or (header is None and is_header(line)):
                    continue
            if "\t" not in line:
                raise ValueError(f"{path}:{lineno}: line has no label: expected "
                                 f"'text<TAB>label', got {line[:60]!r}")
            text, label = line.rsplit("\t", 1)
            label = label.strip()
            if not label:
                raise ValueError(f"{path}:{lineno}: the label after the TAB is empty")
            if not text.strip():
                raise ValueError(f"{path}:{lineno}: the text before the TAB is empty")
            texts.append(text)
            labels.append(label)
    if not texts:
        raise ValueError(f"TSV file {path!r} holds no examples (expected 'text<TAB>label' lines)")
    return Examples(texts, labels)


def tokenize(text: str, mode: str) -> list[str]:
    """Characters of ``text`` (``"char"``) or its whitespace-separated words (``"whitespace"``)."""
    if mode == "char":
        return list(text)
    if mode == "whitespace":
        return text.split()
    raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {mode!r}")


def build_token_vocab(texts: Sequence[str], mode: str, max_size: int | None = None) -> Vocab:
    """Vocabulary of the tokens in ``texts``: ``<pad>`` = 0, ``<unk>`` = 1, then the tokens."""
    return build_vocab((t for text in texts for t in tokenize(text, mode)),
                       reserved=(PAD, UNK), max_size=max_size)


def label_ids(labels: Sequence[str], classes: Sequence[str], source: str = "") -> np.ndarray:
    """``[N]`` int32 index of each label in ``classes``; unknown labels raise ValueError
    naming ``source`` (the file they come from)."""
    index = {c: i for i, c in enumerate(classes)}
    bad = sorted({l for l in labels if l not in index})
    if bad:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}labels {bad} do not occur in the training examples' classes "
                         f"{list(classes)}")
    return np.asarray([index[l] for l in labels], np.int32)


def encode_padded(texts: Sequence[str], vocab: Vocab, mode: str,
                  max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [N, T] int32, lengths [N] int32)``, right-padded with ``PAD_ID``.

    ``T`` is the longest sequence after cutting texts to their first ``max_len`` tokens:
    ``max_len`` caps the width, it is not the width (a file whose longest text has 11
    tokens gives T = 11, not 400). A text with no tokens (e.g. only spaces, whitespace
    mode) is one ``<unk>`` so that every sequence has length >= 1.
    """
    seqs = []
    for text in texts:
        ids = vocab.encode(tokenize(text, mode))
        seqs.append(ids if ids.size else np.asarray([vocab.unk_id], np.int32))
    if max_len is not None:
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int or None, got {max_len!r}")
        seqs = [s[:max_len] for s in seqs]
    lengths = np.asarray([len(s) for s in seqs], np.int32)
    width = int(lengths.max()) if lengths.size else 1
    out = np.full((len(seqs), width), PAD_ID, np.int32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def bucket_width(longest: int, width: int, minimum: int = 8) -> int:
    """The padded length of a batch whose longest sequence has ``longest`` steps.

    The next power of two >= ``longest`` (at least ``minimum``), capped at ``width`` (the
    dataset's padded width). Why buckets: ``jax.jit`` compiles one program per input
    shape, so padding each batch to exactly its own longest sequence would compile up to
    ``width`` programs (each a few seconds on a CPU); powers of two bound that to
    ``log2(width / minimum) + 2`` programs, at the price of at most 2x padded steps
    (rounding up to a multiple of 8 would waste at most 7 steps but could compile
    ``width / 8`` programs, 50 for ``max_len = 400``).
    """
    if not (isinstance(longest, (int, np.integer)) and 1 <= longest <= width):
        raise ValueError(f"longest must be an int in [1, width={width}], got {longest!r}")
    bucket = max(int(minimum), 1 << (int(longest) - 1).bit_length())
    return int(min(bucket, width))


def split_examples(examples: Examples, test_fraction: float, seed: int = 0) -> tuple[Examples, Examples]:
    """``(train, test)``: a random ``test_fraction`` of the lines (``np.random.default_rng(seed)``)."""
    n = len(examples.texts)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"{n} examples are too few to hold out test_fraction={test_fraction}")
    order = np.random.default_rng(seed).permutation(n)

    def pick(idx):
        return Examples([examples.texts[i] for i in idx], [examples.labels[i] for i in idx])

    return pick(np.sort(order[n_test:])), pick(np.sort(order[:n_test]))
