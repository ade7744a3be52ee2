"""pad_sequences / unpad_sequences: round trip, and a padded batch equals separate runs."""

import jax
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells
from rnn_jax.padding import pad_sequences, unpad_sequences


def _seqs(lengths, features=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, features)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("time_major", [True, False])
def test_round_trip(time_major):
    seqs = _seqs([4, 1, 0, 6])
    xs, lengths = pad_sequences(seqs, time_major=time_major, pad_value=np.nan)
    assert xs.shape == ((6, 4, 3) if time_major else (4, 6, 3))
    np.testing.assert_array_equal(lengths, [4, 1, 0, 6])
    back = unpad_sequences(xs, lengths, time_major=time_major)
    for a, b in zip(back, seqs):
        np.testing.assert_array_equal(a, b)


def test_padded_batch_equals_separate_runs():
    cell = cells.gru(5)
    params = cell.init(jax.random.key(0), 3)
    seqs = _seqs([4, 2, 6], seed=1)
    xs, lengths = pad_sequences(seqs)
    _, ys = rnn_jax.unroll(cell, params, cell.initial_carry((3,)), xs, lengths=lengths)
    for got, x in zip(unpad_sequences(ys, lengths), seqs):
        _, want = rnn_jax.unroll(cell, params, cell.initial_carry(), x)
        # The same float32 operations per sequence; only the matmul blocking can differ
        # with the batch size: a few ulps of values of size ~1.
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"seqs\[1\] has \(4,\)"):
        pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="max_len=2 is shorter"):
        pad_sequences(_seqs([3, 1]), max_len=2)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        unpad_sequences(np.zeros((3, 2, 1)), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, T=3\]"):
        unpad_sequences(np.zeros((3, 2, 1)), np.array([1, 4]))
