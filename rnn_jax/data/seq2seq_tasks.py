"""Generated sequence-to-sequence tasks on characters: integer addition and date normalisation.

Pure data, no model: each task draws ``(source, target)`` string pairs from a NumPy
generator and encodes them as padded id arrays::

    task = addition(max_digits=3)                 # "123+45" -> "168"
    task = dates(min_year=1900, max_year=2099)    # "22 November 2026" -> "2026-11-22"
    pairs = task.sample_train(seed, step, 128)    # a pure function of (seed, step)
    test = task.test_set(1000)                    # fixed, disjoint from every training draw
    arrays = encode(task, pairs)                  # src, src_len, tgt_in, tgt_out, tgt_len

Vocabularies (:class:`CharVocab`) hold the characters a task can produce after three
reserved ids: ``0 = <pad>``, ``1 = <s>`` (BOS, the decoder's first input), ``2 = </s>``
(EOS, the decoder's last output). Sources carry no BOS/EOS (the encoder reads
``src_len`` characters); targets are ``BOS y`` as decoder inputs and ``y EOS`` as
decoder outputs.

Held-out split. Every example has a *split key*: the operand pair ``(a, b)`` for
addition, the calendar date for dates. A key belongs to the test part when a fixed
64-bit integer hash of it (the SplitMix64 finaliser, Steele, Lea & Flood 2014) falls
in the lowest ``test_fraction`` of its range. Training draws reject test-part keys,
and the test set is drawn only from the test part, so no training example ever shares
a key with a test example: for addition no test sum ``a+b`` is ever trained on (``b+a``
may be); for dates no test DATE is trained on in any of its formats, so the model
must generalise to unseen dates, not just to unseen renderings. The split depends on
the task's parameters only, never on the training seed, and the test set is drawn
with a fixed seed (:data:`TEST_SEED`), so every run of a task is scored on the same
examples.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Callable, Sequence

import numpy as np

RESERVED = ("<pad>", "<s>", "</s>")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
TEST_SEED = 20260522  # draws the test set of every task

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """``chars[i]`` has id ``i + 3``; ids 0, 1, 2 are ``<pad>``, ``<s>``, ``</s>``."""

    chars: str

    def __post_init__(self):
        if len(set(self.chars)) != len(self.chars):
            raise ValueError(f"vocabulary characters must be distinct, got {self.chars!r}")
        object.__setattr__(self, "_index", {c: i + len(RESERVED) for i, c in enumerate(self.chars)})

    @property
    def size(self) -> int:
        return len(RESERVED) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise ValueError(f"{text!r} holds {e.args[0]!r}, which is not in the vocabulary "
                             f"{self.chars!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of ``ids`` up to the first EOS; ``<pad>``/``<s>`` are skipped."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS_ID:
                break
            if i >= len(RESERVED):
                out.append(self.chars[i - len(RESERVED)])
        return "".join(out)

    def token(self, i: int) -> str:
        """A printable name of id ``i`` (reserved ids by their names)."""
        return RESERVED[i] if i < len(RESERVED) else self.chars[i - len(RESERVED)]


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective, well-mixed hash of uint64 values."""
    x = np.asarray(x).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


_BUCKETS = 1_000_000
_TEST_CHUNK = 4000  # candidates per draw of the test set


@dataclasses.dataclass(frozen=True)
class PairTask:
    """A generated string-to-string task; see the module docstring.

    Not a :class:`rnn_jax.tasks.base.Task`: those sample float feature batches inside a
    jitted program from a PRNG key; a pair task renders strings on the host from a NumPy
    generator, with a hashed train/test split and two vocabularies.

    Attributes:
      name: ``"addition"`` or ``"dates"``.
      source_vocab, target_vocab: the characters of sources and targets.
      max_source_len, max_target_len: the longest source and target (characters,
        without BOS/EOS) the task can produce.
      test_fraction: the fraction of split keys held out for testing.
      draw: ``(rng, n) -> codes [n, k]`` int64, the random part of ``n`` examples.
      split_key: ``codes -> [n]`` int64 keys the train/test split is made on.
      example_id: ``codes -> [n]`` int64, equal exactly for equal examples.
      render: ``code [k] -> (source, target)``.
      salt: mixed into the hash, so different tasks split independently.
    """

    name: str
    source_vocab: CharVocab
    target_vocab: CharVocab
    max_source_len: int
    max_target_len: int
    test_fraction: float
    draw: Callable[[np.random.Generator, int], np.ndarray]
    split_key: Callable[[np.ndarray], np.ndarray]
    example_id: Callable[[np.ndarray], np.ndarray]
    render: Callable[[np.ndarray], tuple[str, str]]
    salt: int

    def is_test(self, codes: np.ndarray) -> np.ndarray:
        """``[n]`` bool: whether each example's split key is in the held-out part."""
        h = _mix64(self.split_key(codes) + np.int64(self.salt)) % np.uint64(_BUCKETS)
        return h < np.uint64(int(round(self.test_fraction * _BUCKETS)))

    def sample_train(self, seed: int, step: int, n: int) -> list[tuple[str, str]]:
        """``n`` training pairs for training step ``step``: drawn from
        ``np.random.default_rng([seed, step])`` with held-out keys rejected, so a
        resumed run sees exactly the batches an uninterrupted one would."""
        rng = np.random.default_rng([seed, step])
        kept = []
        while sum(len(k) for k in kept) < n:
            codes = self.draw(rng, 2 * n)
            kept.append(codes[~self.is_test(codes)])
        codes = np.concatenate(kept)[:n]
        return [self.render(c) for c in codes]

    def test_set(self, n: int) -> list[tuple[str, str]]:
        """``n`` distinct held-out pairs, the first ``n`` distinct test-part draws of
        ``np.random.default_rng(TEST_SEED)`` (drawn :data:`_TEST_CHUNK` at a time, so a
        smaller set is a prefix of a larger one). Raises ValueError when the test part
        is too small to hold ``n`` distinct examples."""
        rng = np.random.default_rng(TEST_SEED)
        seen, codes = set(), []
        for _ in range(max(200, 50 * n // _TEST_CHUNK)):
            batch = self.draw(rng, _TEST_CHUNK)
            batch = batch[self.is_test(batch)]
            for c, uid in zip(batch, self.example_id(batch).tolist()):
                if uid not in seen:
                    seen.add(uid)
                    codes.append(c)
                    if len(codes) == n:
                        return [self.render(c) for c in codes]
        raise ValueError(f"the held-out part of task {self.name!r} gave only {len(codes)} distinct "
                         f"examples, fewer than the {n} asked for: lower config.task.num_test or "
                         "raise config.task.test_fraction")


# ------------------------------------------------------------------------- addition

def addition(max_digits: int = 3, test_fraction: float = 0.01) -> PairTask:
    """``"a+b" -> str(a + b)``; each operand has a digit count uniform in
    ``1..max_digits`` and is then uniform among the numbers with that many digits
    (one digit: 0..9), so short operands are as common as long ones."""
    if not isinstance(max_digits, int) or isinstance(max_digits, bool) or not 1 <= max_digits <= 9:
        raise ValueError(f"max_digits must be an int in [1, 9], got {max_digits!r}")
    _check_fraction(test_fraction)
    base = 10 ** max_digits

    def draw(rng, n):
        digits = rng.integers(1, max_digits + 1, size=(n, 2))
        low = np.where(digits == 1, 0, 10 ** (digits - 1))
        return rng.integers(low, 10 ** digits).astype(np.int64)

    def key(codes):
        return codes[:, 0] * base + codes[:, 1]

    def render(code):
        a, b = int(code[0]), int(code[1])
        return f"{a}+{b}", str(a + b)

    return PairTask("addition", CharVocab("+0123456789"), CharVocab("0123456789"),
                2 * max_digits + 1, max_digits + 1, test_fraction, draw, key, key, render,
                salt=0x5EED_ADD)


# ---------------------------------------------------------------------------- dates

def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d):
    return MONTHS[d.month - 1]


# Source formats, by name: English renderings that do not depend on the locale (no
# strftime). The comments show 2026-11-22.
DATE_FORMATS: dict[str, Callable[[datetime.date], str]] = {
    # 22 November 2026
    "day_month_year": lambda d: f"{d.day} {_month(d)} {d.year}",
    # November 22, 2026
    "month_day_year": lambda d: f"{_month(d)} {d.day}, {d.year}",
    # Nov 22 2026
    "mon_day_year": lambda d: f"{_month(d)[:3]} {d.day} {d.year}",
    # 22/11/2026
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    # 2026.11.22
    "yyyy.mm.dd": lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
    # 22nd of November 2026
    "ordinal_of_month": lambda d: f"{_ordinal(d.day)} of {_month(d)} {d.year}",
    # Sunday, 22 November 2026
    "weekday_day_month_year": lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {_month(d)} {d.year}",
    # 22-Nov-2026
    "dd-mon-yyyy": lambda d: f"{d.day:02d}-{_month(d)[:3]}-{d.year}",
}


@functools.lru_cache(maxsize=None)
def _longest(name: str) -> int:
    # With 4-digit years a rendering's length depends only on (day, month, weekday), and
    # every such combination occurs in any 28 consecutive years of 1901-2099.
    start = datetime.date(2001, 1, 1).toordinal()
    end = datetime.date(2028, 12, 31).toordinal()
    fmt = DATE_FORMATS[name]
    return max(len(fmt(datetime.date.fromordinal(o))) for o in range(start, end + 1))


def dates(min_year: int = 1900, max_year: int = 2099, formats: Sequence[str] | None = None,
          test_fraction: float = 0.02) -> PairTask:
    """``"22 November 2026" -> "2026-11-22"``: a date uniform over
    ``min_year-01-01 .. max_year-12-31`` (Python's proleptic Gregorian calendar, so
    month lengths and leap years are right) in a format uniform over ``formats``
    (default: all of :data:`DATE_FORMATS`). Years must have 4 digits."""
    for name, y in (("min_year", min_year), ("max_year", max_year)):
        if not isinstance(y, int) or isinstance(y, bool) or not 1000 <= y <= 9999:
            raise ValueError(f"{name} must be a 4-digit year (int in [1000, 9999]), got {y!r}")
    if min_year > max_year:
        raise ValueError(f"min_year ({min_year}) must not exceed max_year ({max_year})")
    names = list(DATE_FORMATS) if formats is None else list(formats)
    unknown = [f for f in names if f not in DATE_FORMATS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"formats must be distinct names from {list(DATE_FORMATS)}, got {names}")
    _check_fraction(test_fraction)
    fmts = [DATE_FORMATS[f] for f in names]
    first = datetime.date(min_year, 1, 1).toordinal()
    last = datetime.date(max_year, 12, 31).toordinal()
    # Every character any format can write, whichever formats are chosen: one vocabulary.
    letters = "".join(MONTHS) + "".join(WEEKDAYS) + "stndrdthof"
    source_chars = "".join(sorted(set(letters + "0123456789 ,./-")))

    def draw(rng, n):
        return np.stack([rng.integers(first, last + 1, size=n),
                         rng.integers(0, len(fmts), size=n)], axis=1).astype(np.int64)

    def key(codes):
        return codes[:, 0]

    def example_id(codes):
        return codes[:, 0] * len(fmts) + codes[:, 1]

    def render(code):
        d = datetime.date.fromordinal(int(code[0]))
        return fmts[int(code[1])](d), d.isoformat()

    return PairTask("dates", CharVocab(source_chars), CharVocab("-0123456789"),
                max(_longest(f) for f in names), 10, test_fraction, draw, key, example_id, render,
                salt=0xDA7E5)


def _check_fraction(test_fraction) -> None:
    ok = isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool)
    if not ok or not 0.0 < test_fraction <= 0.5:
        raise ValueError(f"test_fraction must be a number in (0, 0.5], got {test_fraction!r}")


# ------------------------------------------------------------------------- encoding

def encode(task: PairTask, pairs: Sequence[tuple[str, str]]) -> dict:
    """Padded id arrays of ``pairs`` (NumPy int32), at the task's fixed widths so every
    batch has one shape: ``S = max_source_len``, ``T = max_target_len + 1``.

    Returns ``{"src": [N, S], "src_len": [N], "tgt_in": [N, T] (BOS y, PAD after),
    "tgt_out": [N, T] (y EOS, PAD after), "tgt_len": [N] = len(y) + 1}``.
    """
    S, T = task.max_source_len, task.max_target_len + 1
    n = len(pairs)
    src = np.full((n, S), PAD_ID, np.int32)
    tgt_in = np.full((n, T), PAD_ID, np.int32)
    tgt_out = np.full((n, T), PAD_ID, np.int32)
    src_len = np.zeros((n,), np.int32)
    tgt_len = np.zeros((n,), np.int32)
    for i, (s, t) in enumerate(pairs):
        s_ids, t_ids = task.source_vocab.encode(s), task.target_vocab.encode(t)
        if len(s_ids) > S or len(t_ids) >= T:
            raise ValueError(f"example {s!r} -> {t!r} exceeds the task's widths ({S}, {T - 1})")
        src[i, :len(s_ids)] = s_ids
        tgt_in[i, :len(t_ids) + 1] = [BOS_ID] + t_ids
        tgt_out[i, :len(t_ids) + 1] = t_ids + [EOS_ID]
        src_len[i], tgt_len[i] = len(s_ids), len(t_ids) + 1
    return {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_len": tgt_len}
