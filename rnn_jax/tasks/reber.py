"""Embedded Reber grammar, next-symbol prediction (Hochreiter & Schmidhuber 1997, Exp. 1).

Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Neural Computation 9(8); the
grammar is Reber's (1967) as used by Cleeremans, Servan-Schreiber & McClelland 1989.
Batches (``output_mode="all"``)::

    inputs  [B, W, 7] float32 one-hot symbol, zero beyond ``lengths``
    targets [B, W, 7] float32 multi-hot set of legal next symbols, zero beyond
    lengths [B]       int32   string length - 1 (the last symbol E is never an input)

``W`` is ``seq_len``. Outputs scored by ``loss``/``metrics`` are logits ``[B, W, 7]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.tasks._common import (check_outputs, check_size, masked_mean, randint, sigmoid_bce,
                                   step_mask)
from rnn_jax.tasks.base import Task

SYMBOLS = ("B", "T", "P", "S", "X", "V", "E")
_SYM = {s: i for i, s in enumerate(SYMBOLS)}
_NO_SYMBOL = -1

# Reber's automaton: state -> the two equiprobable (symbol, next state) moves.
# State 6 emits the final E; None marks leaving the inner grammar.
_REBER = {
    0: (("B", 1), ("B", 1)),
    1: (("T", 2), ("P", 3)),
    2: (("S", 2), ("X", 4)),
    3: (("T", 3), ("V", 5)),
    4: (("X", 3), ("S", 6)),
    5: (("P", 4), ("V", 6)),
    6: (("E", None), ("E", None)),
}


def _embedded_tables():
    """Transition tables of the embedded grammar ``B (T R T | P R P) E`` with R a Reber string.

    The branch symbol must be remembered across R, so the inner automaton is copied
    once per branch. Returns ``(symbol, next_state, legal)``: ``[S, 2]`` int arrays of
    the two equiprobable moves per state and the ``[S, 7]`` bool set of symbols each
    state can emit. The last state is absorbing and emits nothing.
    """
    n_inner = len(_REBER)
    start, branch = 0, 1
    inner = {"T": 2, "P": 2 + n_inner}
    ret = {"T": 2 + 2 * n_inner, "P": 3 + 2 * n_inner}
    end, done = 4 + 2 * n_inner, 5 + 2 * n_inner
    moves = {start: (("B", branch),) * 2,
             branch: (("T", inner["T"]), ("P", inner["P"])),
             ret["T"]: (("T", end),) * 2, ret["P"]: (("P", end),) * 2,
             end: (("E", done),) * 2, done: ((None, done),) * 2}
    for b, offset in inner.items():
        for s, pair in _REBER.items():
            moves[offset + s] = tuple((sym, ret[b] if nxt is None else offset + nxt)
                                      for sym, nxt in pair)
    n_states = done + 1
    symbol = np.full((n_states, 2), _NO_SYMBOL, np.int32)
    next_state = np.zeros((n_states, 2), np.int32)
    legal = np.zeros((n_states, len(SYMBOLS)), bool)
    for s, pair in moves.items():
        for c, (sym, nxt) in enumerate(pair):
            next_state[s, c] = nxt
            if sym is not None:
                symbol[s, c] = _SYM[sym]
                legal[s, _SYM[sym]] = True
    return symbol, next_state, legal, done


_SYMBOL, _NEXT, _LEGAL, _DONE = _embedded_tables()
MIN_STRING_LENGTH = 9  # e.g. B T B T X S E T E


def decode(symbols) -> str:
    """Letters of one row of symbol indices, stopping at the first non-symbol."""
    out = []
    for s in np.asarray(symbols).tolist():
        if s < 0:
            break
        out.append(SYMBOLS[s])
    return "".join(out)


def _generate(key, batch_size, num_steps):
    """Run the automaton ``num_steps`` moves from the start: symbols and states after each."""
    symbol, next_state = jnp.asarray(_SYMBOL), jnp.asarray(_NEXT)
    choices = randint(key, (num_steps, batch_size), 0, 2)

    def move(state, choice):
        return next_state[state, choice], (symbol[state, choice], next_state[state, choice])

    state0 = jnp.zeros((batch_size,), jnp.int32)
    final, (syms, states) = jax.lax.scan(move, state0, choices)
    return syms.T, states.T, final == _DONE


def sample_strings(key, batch_size: int, max_length: int):
    """Embedded Reber strings of at most ``max_length`` symbols, padded with -1.

    Returns ``(symbols [B, max_length] int32, states [B, max_length] int32)``, the
    state after each symbol. Strings are drawn from the grammar (each choice with
    probability 1/2) conditioned on fitting: a row whose string is too long is
    redrawn until every row fits, inside a ``lax.while_loop`` so the sampler stays
    pure and jittable.
    """
    max_length = check_size("max_length", max_length, MIN_STRING_LENGTH)

    def redraw(carry):
        key, syms, states, ok = carry
        key, sub = jax.random.split(key)
        new_syms, new_states, new_ok = _generate(sub, batch_size, max_length)
        keep = ok.reshape(-1, 1)
        return (key, jnp.where(keep, syms, new_syms), jnp.where(keep, states, new_states),
                ok | new_ok)

    # Start with every row "not fitting" so the first draw happens inside the loop:
    # one traced copy of the generator instead of two.
    empty = jnp.zeros((batch_size, max_length), jnp.int32)
    init = (key, empty, empty, jnp.zeros((batch_size,), bool))
    _, syms, states, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[3]), redraw, init)
    return syms, states


def embedded_reber(*, eval_size: int = 512) -> Task:
    """Embedded Reber grammar next-symbol prediction (Hochreiter & Schmidhuber 1997, Exp. 1).

    Strings are ``B T R T E`` or ``B P R P E`` where R is a Reber string (states and
    moves in ``_REBER``; every choice has probability 1/2). Seven locally coded
    symbols ``B, T, P, S, X, V, E``. At step t the input is symbol t and the target is
    the set of symbols that may legally follow the prefix (multi-hot): one or two
    symbols, except before the second-to-last symbol, where only the branch symbol
    read at step 1 is legal -- the long-term dependency.

    ``seq_len`` is the padded width W: strings are drawn conditioned on having at
    most W + 1 symbols (W >= 8; the shortest strings have 9 symbols). Strings have
    12 symbols on average; in 200k draws 2.8% exceeded 20 symbols, 0.13% exceeded 30
    and 0.004% exceeded 40, so W = 30-40 barely changes the distribution.

    Readout: ``outputs`` are logits of 7 sigmoid units (the paper's outputs were
    sigmoids trained on these multi-hot targets); the loss is their binary
    cross-entropy summed over units, averaged over valid steps. A step is predicted
    correctly, as the paper defines it, when "the output unit(s) corresponding to the
    possible next symbol(s) is(are) always the most active ones": every legal unit's
    logit exceeds every illegal unit's. A string is wrong if any step is. Success:
    no wrong string among ``eval_size`` (512) fresh strings -- the paper required all
    of its 256 training and 256 test strings to be right (97-100% of LSTM trials
    after 8k-40k training strings). ``baseline`` is None.
    """
    eval_size = check_size("eval_size", eval_size)
    legal_table = jnp.asarray(_LEGAL)

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        width = check_size("seq_len", seq_len, MIN_STRING_LENGTH - 1)
        syms, states = sample_strings(key, batch_size, width + 1)
        lengths = jnp.sum(syms >= 0, axis=1) - 1
        valid = step_mask(lengths, width).reshape(batch_size, width, 1).astype(jnp.float32)
        inputs = jax.nn.one_hot(syms[:, :width], len(SYMBOLS)) * valid
        targets = legal_table[states[:, :width]].astype(jnp.float32) * valid
        return {"inputs": inputs, "targets": targets, "lengths": lengths.astype(jnp.int32)}

    def loss(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, "reber")
        mask = step_mask(batch["lengths"], outputs.shape[1])
        return masked_mean(sigmoid_bce(outputs, batch["targets"]), mask)

    def metrics(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, "reber")
        legal = batch["targets"] > 0.5
        mask = step_mask(batch["lengths"], outputs.shape[1])
        lowest_legal = jnp.min(jnp.where(legal, outputs, jnp.inf), axis=-1)
        highest_illegal = jnp.max(jnp.where(legal, -jnp.inf, outputs), axis=-1)
        step_wrong = (lowest_legal <= highest_illegal) & mask
        wrong = jnp.any(step_wrong, axis=1)
        return {"bce": masked_mean(sigmoid_bce(outputs, batch["targets"]), mask),
                "step_error_rate": jnp.sum(step_wrong) / jnp.maximum(jnp.sum(mask), 1),
                "error_rate": jnp.mean(wrong), "num_wrong": jnp.sum(wrong)}

    return Task("reber", len(SYMBOLS), len(SYMBOLS), "all", sample, loss, metrics, "error_rate",
                False, success=lambda m: m["error_rate"] == 0, eval_size=eval_size)
