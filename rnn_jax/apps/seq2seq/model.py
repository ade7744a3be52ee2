"""Sequence-to-sequence model as pure functions: BiLSTM encoder, attentive LSTM decoder, decoders.

    model = make_model(config, source_vocab_size, target_vocab_size)   # config: rnn_jax.apps.seq2seq
    params = model.init(key)
    logits, weights = model.apply(params, src, src_len, tgt_in)    # teacher forcing
    out = greedy_decode(model, params, src, src_len, max_len)       # DecodeResult
    out = beam_search(model, params, src, src_len, max_len, beam_size=4)

Model (Bahdanau, Cho & Bengio 2014, arXiv 1409.0473, with an LSTM in place of their
GRU-like unit). Shapes: ``B`` batch, ``S`` source width, ``T`` target width, ``E``
embedding, ``H`` encoder width per direction, ``D`` decoder width, ``A`` attention
width, ``V`` target vocabulary.

* Encoder: source embeddings read by a forward and a backward LSTM up to each
  source's length (:func:`rnn_jax.ops.bidirectional`); ``h_j = [h_fw_j; h_bw_j]``
  ``[B, S, 2H]``, zero at padded steps. The summary ``z = [h_fw after the last valid
  step; h_bw after step 0]`` ``[B, 2H]`` initialises the decoder: ``s_0 = tanh(z W_init
  + b_init)``, memory cell 0.
* Attention (``config.attention = True``): at step ``t`` with decoder state
  ``s_{t-1}``, ``e_tj = v . tanh(s_{t-1} W_q + h_j W_k + b)``, ``a_t = softmax`` over
  ``j < src_len`` (padded positions exactly 0), context ``c_t = sum_j a_tj h_j``
  (:func:`rnn_jax.layers.additive_attention`).
* No attention (``config.attention = False``): the fixed context ``c_t = z`` at every
  step (the RNN encoder-decoder of Cho et al. 2014, arXiv 1406.1078, fed the summary
  at every step). Same parameter shapes otherwise, so the comparison isolates attention.
* Decoder: ``s_t = LSTM([emb(y_{t-1}); c_t], s_{t-1})`` with ``y_0 = <s>``; readout
  ``logits_t = [s_t; c_t] W_out + b_out`` (linear; Bahdanau et al. use a maxout layer
  over ``s_{t-1}, y_{t-1}, c_t``).
* Output distribution: :func:`log_probs`, a softmax over the target vocabulary with
  ``<pad>`` and ``<s>`` excluded (they are never outputs). Training, greedy decoding,
  beam search and sequence scores all use it, so a decoder's score is exactly the
  training likelihood of its output.

Training maximises the likelihood of ``y EOS`` given the gold prefix (teacher forcing,
one ``lax.scan`` over target positions). Decoding runs ``lax.scan`` over a fixed
``max_len`` under ``jax.jit``, batched; a sequence that emits ``</s>`` is finished and
then emits ``<pad>`` with log-probability 0. See :func:`beam_search` for its scoring.

The experiment around it (config, data, training, evaluation) is :mod:`rnn_jax.apps.seq2seq`.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from rnn_jax import cells, layers, ops
from rnn_jax.data.seq2seq_tasks import BOS_ID, EOS_ID, PAD_ID


class Memory(NamedTuple):
    """What the decoder reads from the encoder.

    Attributes:
      values: ``[B, S, 2H]`` encoder states ``h_j`` (zero at padded steps).
      keys: ``[B, S, A]`` ``h_j W_k + b`` (attention only, else None).
      lengths: ``[B]`` source lengths.
      summary: ``[B, 2H]`` ``z``, the final states of both directions.
    """

    values: jax.Array
    keys: Any
    lengths: jax.Array
    summary: jax.Array


class Seq2Seq(NamedTuple):
    """The model as pure functions (module docstring).

    Attributes:
      init: ``key -> params`` = ``{"src_embed": [Vs, E], "tgt_embed": [V, E],
        "enc_fw", "enc_bw": LSTM(E -> H), "init": {"w": [2H, D], "b": [D]},
        "decoder": LSTM(E + 2H -> D), "attention"?: {"w_q": [D, A], "w_k": [2H, A],
        "b": [A], "v": [A]}, "readout": {"w": [D + 2H, V], "b": [V]}}``.
      encode: ``(params, src [B, S], src_len [B]) -> (Memory, decoder carry (s_0, 0))``.
      step: ``(params, memory, carry, prev [B]) -> (carry, logits [B, V], weights [B, S])``,
        one decoder step fed the previous output token (weights are 0 without attention).
      apply: ``(params, src, src_len, tgt_in [B, T]) -> (logits [B, T, V], weights
        [B, T, S])``: teacher forcing, ``tgt_in = <s> y`` padded.
    """

    init: Callable
    encode: Callable
    step: Callable
    apply: Callable
    source_vocab_size: int
    target_vocab_size: int
    attention: bool


def make_model(config, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
    """The model of ``config.attention``, ``embed_size`` (E), ``hidden_size`` (H),
    ``decoder_size`` (D), ``attention_size`` (A) and ``cell_kwargs`` (passed to
    :func:`rnn_jax.cells.lstm` for all three LSTMs); see :class:`Seq2Seq`."""
    kwargs = config.cell_kwargs.to_dict()
    enc = cells.lstm(config.hidden_size, **kwargs)
    dec = cells.lstm(config.decoder_size, **kwargs)
    E, H, D, A = config.embed_size, config.hidden_size, config.decoder_size, config.attention_size
    Vs, V = source_vocab_size, target_vocab_size
    use_attention = bool(config.attention)

    def init(key):
        ks = jax.random.split(key, 8)
        params = {"src_embed": layers.init_embedding(ks[0], Vs, E),
                  "tgt_embed": layers.init_embedding(ks[1], V, E),
                  "enc_fw": enc.init(ks[2], E), "enc_bw": enc.init(ks[3], E),
                  "init": layers.init_dense(ks[4], 2 * H, D),
                  "decoder": dec.init(ks[5], E + 2 * H),
                  "readout": layers.init_dense(ks[6], D + 2 * H, V)}
        if use_attention:
            params["attention"] = layers.init_additive_attention(ks[7], D, 2 * H, A)
        return params

    def encode(params, src, src_len):
        if src.ndim != 2 or src_len.shape != src.shape[:1]:
            raise ValueError(f"src must be [B, S] and src_len [B], got {tuple(src.shape)} "
                             f"and {tuple(src_len.shape)}")
        B = src.shape[0]
        x = jnp.take(params["src_embed"], src, axis=0)
        carry = (enc.initial_carry((B,)), enc.initial_carry((B,)))
        ((h_fw, _), (h_bw, _)), hs = ops.bidirectional(
            enc, enc, (params["enc_fw"], params["enc_bw"]), carry, x,
            lengths=src_len, time_major=False)
        summary = jnp.concatenate([h_fw, h_bw], axis=-1)
        keys = layers.project_keys(params["attention"], hs) if use_attention else None
        s0 = jnp.tanh(summary @ params["init"]["w"] + params["init"]["b"].reshape(1, D))
        return Memory(hs, keys, src_len, summary), (s0, jnp.zeros_like(s0))

    def step(params, memory, carry, prev):
        if use_attention:
            context, weights = layers.additive_attention(params["attention"], carry[0], memory.keys,
                                                 memory.values, memory.lengths)
        else:
            context = memory.summary
            weights = jnp.zeros(memory.values.shape[:2], memory.values.dtype)
        x = jnp.concatenate([jnp.take(params["tgt_embed"], prev, axis=0), context], axis=-1)
        carry, s = dec.step(params["decoder"], carry, x)
        r = params["readout"]
        logits = jnp.concatenate([s, context], axis=-1) @ r["w"] + r["b"].reshape(1, V)
        return carry, logits, weights

    def apply(params, src, src_len, tgt_in):
        memory, carry = encode(params, src, src_len)

        def body(c, prev):
            c, logits, weights = step(params, memory, c, prev)
            return c, (logits, weights)

        _, (logits, weights) = jax.lax.scan(body, carry, jnp.swapaxes(tgt_in, 0, 1))
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)

    return Seq2Seq(init, encode, step, apply, Vs, V, use_attention)


def log_probs(logits):
    """Log-softmax over the last axis with ``<pad>`` and ``<s>`` excluded (-inf)."""
    ids = jnp.arange(logits.shape[-1]).reshape((1,) * (logits.ndim - 1) + (-1,))
    banned = (ids == PAD_ID) | (ids == BOS_ID)
    return jax.nn.log_softmax(jnp.where(banned, -jnp.inf, logits), axis=-1)


def sequence_loss(logits, tgt_out, tgt_len):
    """``(mean token NLL, token accuracy, sequence accuracy)`` over the valid target
    positions ``t < tgt_len`` (the characters and the EOS)."""
    lp = log_probs(logits)
    nll = -jnp.take_along_axis(lp, tgt_out[..., None], axis=-1)[..., 0]
    mask = layers.length_mask(tgt_len, tgt_out.shape[1])
    # Counts cast explicitly: no implicit int-float promotion (tests run it strict).
    n = jnp.maximum(jnp.sum(mask), 1).astype(nll.dtype)
    loss = jnp.sum(jnp.where(mask, nll, 0.0)) / n
    right = (jnp.argmax(lp, axis=-1) == tgt_out) | ~mask
    return loss, jnp.sum(right & mask).astype(n.dtype) / n, jnp.mean(jnp.all(right, axis=1))


# ------------------------------------------------------------------------- decoding

class DecodeResult(NamedTuple):
    """Decoder output; tokens are ``<pad>`` after each sequence's ``</s>``.

    Attributes:
      tokens: ``[B, max_len]`` int32.
      scores: ``[B]`` sum of :func:`log_probs` of the emitted tokens (``</s>`` included).
      lengths: ``[B]`` emitted tokens, ``</s>`` included (``max_len`` if it never came).
      weights: ``[B, max_len, S]`` the attention weights of each emitted token (0 after).
    """

    tokens: jax.Array
    scores: jax.Array
    lengths: jax.Array
    weights: jax.Array


def greedy_decode(model: Seq2Seq, params, src, src_len, max_len: int) -> DecodeResult:
    """The most likely next token at each step, for ``max_len`` steps (jittable)."""
    memory, carry = model.encode(params, src, src_len)
    B = src.shape[0]

    def body(state, _):
        carry, prev, done, score, length = state
        carry, logits, w = model.step(params, memory, carry, prev)
        lp = log_probs(logits)
        tok = jnp.where(done, PAD_ID, jnp.argmax(lp, axis=-1)).astype(jnp.int32)
        score = score + jnp.where(done, 0.0, jnp.take_along_axis(lp, tok[:, None], axis=1)[:, 0])
        length = length + (~done).astype(jnp.int32)
        w = jnp.where(done[:, None], 0.0, w)
        return (carry, tok, done | (tok == EOS_ID), score, length), (tok, w)

    init = (carry, jnp.full((B,), BOS_ID, jnp.int32), jnp.zeros((B,), bool),
            jnp.zeros((B,), jnp.float32), jnp.zeros((B,), jnp.int32))
    (_, _, _, score, length), (toks, ws) = jax.lax.scan(body, init, None, length=max_len)
    return DecodeResult(toks.T, score, length, jnp.swapaxes(ws, 0, 1))


def length_normalised(scores, lengths, alpha: float):
    """``scores / ((5 + lengths) / 6) ** alpha`` (Wu et al. 2016, arXiv 1609.08144);
    ``alpha = 0`` leaves the scores unchanged."""
    if alpha == 0:
        return scores
    return scores / ((5.0 + lengths.astype(scores.dtype)) / 6.0) ** alpha


def beam_search(model: Seq2Seq, params, src, src_len, max_len: int, *, beam_size: int,
                length_penalty: float = 0.0, return_all: bool = False) -> DecodeResult:
    """Beam search (jittable, batched): ``beam_size`` hypotheses per source, ``max_len`` steps.

    At each step every live hypothesis is extended by every token, a finished one only
    by ``<pad>`` at log-probability 0 (so it keeps its score and occupies one slot),
    and the ``beam_size`` best candidates by total log-probability survive. At step 0
    only one hypothesis exists (the others start at -inf), so no candidate is counted
    twice. After ``max_len`` steps the answer is the hypothesis with the highest
    :func:`length_normalised` score; unfinished hypotheses compete as they are. With
    ``length_penalty = 0`` (default) that is the highest total log-probability; with
    ``alpha > 0`` it re-ranks only the final beam (pruning always uses the raw score).

    With ``beam_size = 1`` this is greedy decoding; with ``beam_size`` at least the
    number of distinct outputs of length ``<= max_len`` it is exhaustive search.

    Returns the best hypothesis per source, or with ``return_all`` every final
    hypothesis (``[B, K, ...]`` fields, in beam order, dead slots scored -inf).
    """
    K = beam_size
    memory, carry = model.encode(params, src, src_len)
    B, S = src.shape
    V = model.target_vocab_size
    tile = lambda a: None if a is None else jnp.repeat(a, K, axis=0)  # noqa: E731
    memory = Memory(*(tile(a) for a in memory))
    carry = jax.tree_util.tree_map(tile, carry)
    pad_only = jnp.where(jnp.arange(V) == PAD_ID, 0.0, -jnp.inf).reshape(1, 1, V)
    flat_parent = lambda parent: (jnp.arange(B).reshape(B, 1) * K + parent).reshape(-1)  # noqa: E731

    def body(state, t):
        carry, prev, score, done, length, toks, ws = state
        carry, logits, w = model.step(params, memory, carry, prev.reshape(-1))
        lp = jnp.where(done[..., None], pad_only, log_probs(logits).reshape(B, K, V))
        cand = (score[..., None] + lp).reshape(B, K * V)
        score, idx = jax.lax.top_k(cand, K)
        parent, tok = idx // V, (idx % V).astype(jnp.int32)
        pick = lambda a: jnp.take_along_axis(  # noqa: E731
            a, parent.reshape((B, K) + (1,) * (a.ndim - 2)), axis=1)
        was_done = pick(done)
        carry = jax.tree_util.tree_map(lambda a: a[flat_parent(parent)], carry)
        w = jnp.where(was_done[..., None], 0.0, pick(w.reshape(B, K, S)))
        toks = pick(toks).at[:, :, t].set(tok)
        ws = pick(ws).at[:, :, t].set(w)
        return (carry, tok, score, was_done | (tok == EOS_ID),
                pick(length) + (~was_done).astype(jnp.int32), toks, ws), None

    score0 = jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf).reshape(1, K) * jnp.ones((B, 1))
    init = (carry, jnp.full((B, K), BOS_ID, jnp.int32), score0, jnp.zeros((B, K), bool),
            jnp.zeros((B, K), jnp.int32), jnp.full((B, K, max_len), PAD_ID, jnp.int32),
            jnp.zeros((B, K, max_len, S), jnp.float32))
    (_, _, score, _, length, toks, ws), _ = jax.lax.scan(body, init, jnp.arange(max_len))
    if return_all:
        return DecodeResult(toks, score, length, ws)
    best = jnp.argmax(length_normalised(score, length, length_penalty), axis=1)
    take = lambda a: jnp.take_along_axis(  # noqa: E731
        a, best.reshape((B, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]
    return DecodeResult(take(toks), take(score), take(length), take(ws))
