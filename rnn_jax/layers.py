"""The non-recurrent layers the models and applications share, as pure functions.

Dense and embedding layers (their initialisation written once), length masks, losses,
and additive attention masked by sequence lengths.

Attention pooling, the additive score (Bahdanau, Cho & Bengio 2014, arXiv 1409.0473)
with a learned query vector, pools a recurrent encoder's states into one vector for
classification (Yang et al. 2016, "Hierarchical Attention Networks for Document
Classification", NAACL; Zhou et al. 2016, "Attention-Based Bidirectional LSTM Networks
for Relation Classification", ACL)::

    e_t     = v . tanh(h_t W + b)              h_t: [D], W: [D, A], b, v: [A]
    alpha_t = exp(e_t) / sum_{s < L} exp(e_s)  for t < L (the sequence's length), else 0
    pooled  = sum_t alpha_t h_t

Padded steps get weight exactly 0, so neither their states nor their number changes
the result.

:func:`init_additive_attention`, :func:`project_keys` and :func:`additive_attention`
are the same score with a query in place of the learned vector,
``e_j = v . tanh(q W_q + h_j W_k + b)``: the decoder state reading the encoder states in
the sequence-to-sequence model (:mod:`rnn_jax.apps.seq2seq.model`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnn_jax import initializers as inits


def _check_positive(**sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


# ------------------------------------------------------------------ dense, embedding

def init_dense(key, input_size: int, output_size: int, dtype=jnp.float32):
    """Params ``{"w": [input_size, output_size], "b": [output_size]}`` of an affine layer:
    Glorot-uniform ``w`` (Glorot & Bengio 2010), zero ``b``."""
    _check_positive(input_size=input_size, output_size=output_size)
    return {"w": inits.glorot_uniform(key, (input_size, output_size), dtype),
            "b": jnp.zeros((output_size,), dtype)}


def dense(params, x):
    """``x @ w + b``: ``[..., input_size] -> [..., output_size]``."""
    return x @ params["w"] + params["b"]


def init_embedding(key, vocab_size: int, embed_size: int, dtype=jnp.float32):
    """An embedding table ``[vocab_size, embed_size]`` with entries ``N(0, 1/embed_size)``,
    so an embedded token has squared norm about 1 whatever the width."""
    _check_positive(vocab_size=vocab_size, embed_size=embed_size)
    return jax.random.normal(key, (vocab_size, embed_size), dtype) / math.sqrt(embed_size)


def embed(table, tokens):
    """Rows of ``table [V, E]`` for integer ``tokens [...]``: ``[..., E]``."""
    return jnp.take(table, tokens, axis=0)


# ---------------------------------------------------------------------------- losses

def softmax_xent(logits, labels):
    """Cross-entropy of a softmax over the last axis against integer ``labels``.

    ``logits: [..., K]``, ``labels: [...]`` int; returns ``[...]`` (nats, unreduced).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)
    return -picked[..., 0]


def masked_mean(values, mask):
    """Mean of ``values`` over the entries where ``mask`` is True (0 when none is)."""
    n = jnp.maximum(jnp.sum(mask), 1).astype(values.dtype)
    return jnp.sum(jnp.where(mask, values, jnp.zeros_like(values))) / n


# ----------------------------------------------------------------------- masks

def length_mask(lengths, num_steps: int):
    """``[B, T]`` bool, True at valid steps ``t < lengths[b]``."""
    lengths = jnp.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must have shape [B], got {tuple(lengths.shape)}")
    return jnp.arange(num_steps).reshape(1, num_steps) < lengths.reshape(-1, 1)


def masked_softmax(scores, lengths):
    """Softmax over the last axis of ``scores [B, T]`` restricted to ``t < lengths[b]``.

    Padded entries are exactly 0. A sequence of length 0 gets all-zero weights.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [B, T], got {tuple(scores.shape)}")
    mask = length_mask(lengths, scores.shape[1])
    # Subtracting the masked max keeps exp() in range; masked entries never enter it.
    neg = jnp.finfo(scores.dtype).min
    top = jnp.max(jnp.where(mask, scores, neg), axis=1, keepdims=True)
    e = jnp.where(mask, jnp.exp(jnp.where(mask, scores - top, 0.0)), 0.0)
    total = jnp.sum(e, axis=1, keepdims=True)
    return e / jnp.where(total > 0, total, 1.0)


# ----------------------------------------------------------- attention pooling

def init_attention_pool(key, input_size: int, attention_size: int):
    """Params ``{"w": [D, A], "b": [A], "v": [A]}`` (Glorot-uniform ``w``, small normal ``v``)."""
    _check_positive(input_size=input_size, attention_size=attention_size)
    k_w, k_v = jax.random.split(key)
    return {"w": inits.glorot_uniform(k_w, (input_size, attention_size)),
            "b": jnp.zeros((attention_size,), jnp.float32),
            "v": jax.random.normal(k_v, (attention_size,), jnp.float32) / jnp.sqrt(attention_size)}


def attention_scores(params, hs):
    """Unnormalised scores ``e [B, T]`` of states ``hs [B, T, D]``."""
    if hs.ndim != 3 or hs.shape[-1] != params["w"].shape[0]:
        raise ValueError(f"hs must have shape [B, T, {params['w'].shape[0]}], got {tuple(hs.shape)}")
    a = params["w"].shape[1]
    u = jnp.tanh(jnp.einsum("btd,da->bta", hs, params["w"]) + params["b"].reshape(1, 1, a))
    return jnp.einsum("bta,a->bt", u, params["v"])


def attention_pool(params, hs, lengths):
    """Attention pooling: ``(pooled [B, D], weights [B, T])`` (module docstring)."""
    weights = masked_softmax(attention_scores(params, hs), lengths)
    return jnp.einsum("bt,btd->bd", weights, hs), weights


# ------------------------------------------------------- query-based additive attention

def init_additive_attention(key, query_size: int, key_size: int, attention_size: int):
    """Params of query-based additive attention (Bahdanau, Cho & Bengio 2014)::

        e_j     = v . tanh(q W_q + h_j W_k + b)    q: [Dq] query, h_j: [Dk] key/value j
        alpha_j = masked softmax of e over j < L
        context = sum_j alpha_j h_j

    ``{"w_q": [Dq, A], "w_k": [Dk, A], "b": [A], "v": [A]}``: Glorot-uniform ``w_q``
    and ``w_k``, zero ``b``, ``v ~ N(0, 1/A)``.
    """
    _check_positive(query_size=query_size, key_size=key_size, attention_size=attention_size)
    k_q, k_k, k_v = jax.random.split(key, 3)
    return {"w_q": inits.glorot_uniform(k_q, (query_size, attention_size)),
            "w_k": inits.glorot_uniform(k_k, (key_size, attention_size)),
            "b": jnp.zeros((attention_size,), jnp.float32),
            "v": jax.random.normal(k_v, (attention_size,), jnp.float32) / jnp.sqrt(attention_size)}


def project_keys(params, hs):
    """``h_j W_k + b``: ``[B, S, A]`` from ``hs [B, S, Dk]``. It does not depend on the
    query, so a decoder computes it once per source and reuses it at every step."""
    if hs.ndim != 3 or hs.shape[-1] != params["w_k"].shape[0]:
        raise ValueError(f"hs must have shape [B, S, {params['w_k'].shape[0]}], "
                         f"got {tuple(hs.shape)}")
    a = params["w_k"].shape[1]
    return jnp.einsum("bsd,da->bsa", hs, params["w_k"]) + params["b"].reshape(1, 1, a)


def additive_attention(params, query, projected_keys, values, lengths):
    """One attention read: ``(context [B, Dv], weights [B, S])``.

    Args:
      query: ``[B, Dq]`` (a decoder's previous state ``s_{t-1}``).
      projected_keys: ``[B, S, A]`` from :func:`project_keys`.
      values: ``[B, S, Dv]`` (the encoder states ``h_j``).
      lengths: ``[B]`` valid source steps; weights beyond them are exactly 0.
    """
    B, S, A = projected_keys.shape
    if query.shape != (B, params["w_q"].shape[0]):
        raise ValueError(f"query must have shape [{B}, {params['w_q'].shape[0]}], "
                         f"got {tuple(query.shape)}")
    q = (query @ params["w_q"]).reshape(B, 1, A)
    e = jnp.einsum("bsa,a->bs", jnp.tanh(projected_keys + q), params["v"])
    weights = masked_softmax(e, lengths)
    return jnp.einsum("bs,bsd->bd", weights, values), weights
