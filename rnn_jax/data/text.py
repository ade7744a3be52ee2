"""Character corpora for language modelling, with truncated-BPTT batching.

Default corpus: the English text of Python's bundled documentation topics
(``pydoc_data.topics.topics``, about 465k characters in CPython 3.12; it ships with
every CPython, so no download). The topics are joined in sorted key order, so the
text is the same on every machine with the same Python version.

Split (documented, deterministic): the first ``1 - val_fraction`` of the characters
are training data, the last ``val_fraction`` validation data. A contiguous tail rather
than a random sample of windows, so no validation window overlaps a training one.

Vocabulary: the distinct characters of the training split, sorted by code point,
after the reserved token ``<unk>`` (id 0). Characters that occur only in the
validation split (or in a generation prompt) map to ``<unk>``.

Truncated BPTT (Williams & Peng 1990; the batching of Zaremba, Sutskever & Vinyals
2014, arXiv 1409.2329): the id stream is cut into ``B`` contiguous streams, and window
``k`` of stream ``b`` continues exactly where window ``k - 1`` ended, so the final
carry of one window is the right initial carry of the next.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

import numpy as np

UNK = "<unk>"
PAD = "<pad>"


def load_corpus(path: str | None = None) -> str:
    """The text of ``path`` (UTF-8), or the default corpus when ``path`` is None/empty.

    Raises FileNotFoundError for a missing file, ValueError for an empty one (or one
    that is not UTF-8 text), naming the path.
    """
    if not path:
        import pydoc_data.topics as topics
        return "".join(topics.topics[k] for k in sorted(topics.topics))
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corpus file {path!r} does not exist (config.data.path)")
    if not os.path.isfile(path):
        raise ValueError(f"corpus path {path!r} is not a regular file (config.data.path)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus file {path!r} is not UTF-8 text: {e}") from e
    if not text:
        raise ValueError(f"corpus file {path!r} is empty; a language model needs text to train on")
    return text


def split_corpus(text: str, val_fraction: float) -> tuple[str, str]:
    """``(train, val)``: the first ``1 - val_fraction`` of ``text`` and the rest.

    The boundary is at character ``round(len(text) * (1 - val_fraction))``.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    cut = int(round(len(text) * (1.0 - val_fraction)))
    if cut < 2 or len(text) - cut < 2:
        raise ValueError(f"the corpus ({len(text)} characters) is too short for "
                         f"val_fraction={val_fraction}: each split needs at least 2 characters")
    return text[:cut], text[cut:]


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Tokens and their ids.

    Attributes:
      tokens: ``tokens[i]`` is the token with id ``i``; reserved tokens first.
      num_reserved: how many leading tokens are reserved (``<unk>``, ``<pad>``), never
        produced by tokenising data.
      unk_id: the id of ``<unk>``.
    """

    tokens: tuple[str, ...]
    num_reserved: int
    unk_id: int

    def __post_init__(self):
        index = {t: i for i, t in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("Vocab tokens must be distinct")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens of ``tokens`` that are not in the vocabulary, in first-seen order."""
        seen = {}
        for t in tokens:
            if t not in self._index or self._index[t] < self.num_reserved:
                seen.setdefault(t, None)
        return list(seen)

    def encode(self, tokens: Iterable[str], *, strict: bool = False, what: str = "input") -> np.ndarray:
        """Ids ``[N]`` int32 of ``tokens`` (a string is a sequence of characters).

        Unknown tokens become ``unk_id``; with ``strict=True`` they raise ValueError
        listing them (``what`` names the input in the message).
        """
        tokens = list(tokens)
        if strict:
            bad = self.unknown(tokens)
            if bad:
                shown = ", ".join(repr(t) for t in bad[:20])
                raise ValueError(f"{what} contains {len(bad)} token(s) outside the vocabulary "
                                 f"of {len(self.tokens) - self.num_reserved}: {shown}")
        index, unk = self._index, self.unk_id
        ids = [index.get(t, unk) for t in tokens]
        ids = [unk if i < self.num_reserved else i for i in ids]
        return np.asarray(ids, np.int32).reshape(-1)

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ``ids`` (reserved ids decode to their names, e.g. ``"<unk>"``)."""
        return [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1)]


def build_vocab(tokens: Iterable[str], *, reserved: Sequence[str] = (UNK,),
                max_size: int | None = None) -> Vocab:
    """A :class:`Vocab` of the distinct ``tokens`` after the ``reserved`` ones.

    Without ``max_size`` the tokens are sorted (for characters: by code point). With
    ``max_size`` only the ``max_size`` most frequent are kept, ties broken by sorted
    order, and the kept ones are then sorted.
    """
    reserved = tuple(reserved)
    if UNK not in reserved:
        raise ValueError(f"reserved must include {UNK!r}, got {reserved}")
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    for r in reserved:
        counts.pop(r, None)
    kept = sorted(counts)
    if max_size is not None:
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int or None, got {max_size!r}")
        kept = sorted(sorted(kept, key=lambda t: -counts[t])[:max_size])
    if not kept:
        raise ValueError("cannot build a vocabulary from no tokens")
    return Vocab(reserved + tuple(kept), len(reserved), reserved.index(UNK))


def tbptt_windows(ids: np.ndarray, batch_size: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut an id stream into consecutive TBPTT windows.

    The first ``batch_size * L`` ids, ``L = len(ids) // batch_size``, are reshaped to
    ``B`` streams of length ``L`` (stream ``b`` is ``ids[b*L:(b+1)*L]``). Window ``k``
    holds stream positions ``[k*W, (k+1)*W)`` as inputs and ``[k*W+1, (k+1)*W+1)`` as
    targets, for the ``K = (L - 1) // W`` windows that fit.

    Returns:
      ``(inputs, targets)``, each int32 ``[K, B, W]``.
    """
    ids = np.asarray(ids)
    for name, v in (("batch_size", batch_size), ("window", window)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    length = len(ids) // batch_size
    num_windows = (length - 1) // window if length > 0 else 0
    if num_windows < 1:
        raise ValueError(f"a stream of {len(ids)} ids is too short for batch_size={batch_size} "
                         f"and window={window}: it needs at least "
                         f"{batch_size * (window + 1)} ids")
    streams = ids[:batch_size * length].reshape(batch_size, length)
    n = num_windows * window
    x = streams[:, :n].reshape(batch_size, num_windows, window)
    y = streams[:, 1:n + 1].reshape(batch_size, num_windows, window)
    return (np.ascontiguousarray(x.transpose(1, 0, 2)).astype(np.int32),
            np.ascontiguousarray(y.transpose(1, 0, 2)).astype(np.int32))
