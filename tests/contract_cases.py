"""Cells, sizes and comparison helpers shared by the core-contract tests
(test_core_contract.py, test_resets.py, test_vmap_shard.py); the tolerance is explained in
test_core_contract.py's docstring."""

import jax
import numpy as np

from rnn_jax import cells

I, H = 3, 4
ATOL = 1e-5

CELLS = {
    "lstm": lambda: cells.lstm(H),
    "lstm_peephole": lambda: cells.lstm(H, peephole=True),
    "gru": lambda: cells.gru(H),
    "gru_after": lambda: cells.gru(H, reset_after=True),
    "rnn": lambda: cells.rnn(H),
}


def _close(a, b, atol=ATOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def _first_leaf(c):
    return jax.tree_util.tree_leaves(c)[0]


def _setup(name, T=7, batch=(2,), seed=0):
    cell = CELLS[name]()
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = cell.init(k1, I)
    xs = jax.random.normal(k2, (T,) + batch + (I,))
    return cell, params, xs
