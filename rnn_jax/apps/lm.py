"""Character-level language model: embedding, stacked RNN/LSTM/GRU with dropout, softmax readout.

The model is pure functions of a config::

    model = make_lm(config, vocab_size)
    params = model.init(key)
    carry = model.initial_carry(batch_size)              # one carry per layer
    carry, logits = model.apply(params, carry, ids)      # ids [B, T] -> logits [B, T, V]

``apply`` returns the final carry, so consecutive windows of a stream continue from
each other: that is truncated backpropagation through time (Williams & Peng 1990):
gradients flow within a window, the state flows across windows (the carry enters the
next window as data, so no gradient reaches back through it). Dropout follows
Zaremba, Sutskever & Vinyals 2014 (arXiv 1409.2329): on the embedding output, between
layers and on the top layer's output, never on the recurrent connections.

Metric: bits per character, the mean next-character cross-entropy in nats divided
by ln 2 (Graves 2013, arXiv 1308.0850, reports this metric for character models).

Sampling (:func:`generate`): the prompt is read through the model, then each next
character is drawn from ``softmax(logits / temperature)`` restricted to the ``top_k``
most likely characters (``top_k = 0``: all); ``temperature = 0`` is greedy decoding.
The ``<unk>`` id is never sampled. A fixed ``key`` gives the same text.

:func:`train_and_evaluate` is the experiment (``experiments/char_lm.py``); it writes
``config.json``, ``metrics.jsonl`` (+ TensorBoard events), ``eval.json``,
``val_bpc.png``/``.pdf``, ``sample.txt`` and orbax checkpoints into the workdir.
"""

import copy
import functools
import json
import math
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnn_jax import layers, models, ops
from rnn_jax.train import training
from rnn_jax.data import text as text_data
from rnn_jax.train import config as config_lib
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.metrics_log import quiet_orbax, write_json

EXPERIMENT = "char_lm"
METRIC = "val_bpc"


def default_config() -> ml_collections.ConfigDict:
    """Every field of a char-LM run with its default (a 2-layer LSTM, H = 128)."""
    c = ml_collections.ConfigDict()
    c.experiment = EXPERIMENT            # checked by generate.py before loading a checkpoint
    # Model.
    c.cell = "lstm"                      # "rnn" | "lstm" | "gru"
    c.hidden_size = 128
    c.num_layers = 2
    c.embed_size = 32
    c.dropout = 0.1                      # Zaremba et al. 2014: non-recurrent connections only
    c.cell_kwargs = ml_collections.ConfigDict()  # kwargs of rnn_jax.cells.<cell>
    # Data.
    c.data = ml_collections.ConfigDict()
    c.data.path = ""                     # "" = pydoc_data.topics (Python's bundled docs)
    c.data.val_fraction = 0.1            # the last 10% of the characters
    c.batch_size = 32                    # parallel streams
    c.window = 100                       # TBPTT window (characters per step)
    c.eval_batch_size = 16               # validation streams (all of val is read in order)
    # Optimizer: the training engine's fields (rnn_jax.train.training.make_optimizer).
    c.optimizer = copy.deepcopy(training.default_config().optimizer)
    c.optimizer.learning_rate = 2e-3
    c.optimizer.clip_norm = 1.0
    # Loop.
    c.num_steps = 1000
    c.seed = 0
    c.eval_every = 200
    c.checkpoint_every = 200
    c.log_every = 50
    c.keep_checkpoints = 2
    c.progress_every_s = 30.0
    c.sample_length = 300                # characters written to sample.txt at the end
    return c



def validate(config) -> None:
    """Raise ValueError naming the first bad field; runs before any data is read or compiled."""
    config_lib.check_experiment(config, default_config(), EXPERIMENT, "rnn_jax.apps.lm.default_config()")
    if config.cell not in models.CELLS:
        raise ValueError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
    for f in ("hidden_size", "num_layers", "embed_size", "batch_size", "window", "eval_batch_size",
              "num_steps", "eval_every", "checkpoint_every", "log_every", "keep_checkpoints",
              "sample_length"):
        config_lib.check_int(config, f)
    config_lib.check_int(config, "seed", 0)
    if not isinstance(config.dropout, (int, float)) or not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"config.dropout must be in [0, 1), got {config.dropout!r}")
    if not 0.0 < config.data.val_fraction < 1.0:
        raise ValueError(f"config.data.val_fraction must be in (0, 1), got {config.data.val_fraction!r}")
    config_lib.check_optimizer(config)


# ---------------------------------------------------------------------------- model

class LM(NamedTuple):
    """A character LM as pure functions (module docstring).

    Attributes:
      init: ``key -> params`` = ``{"embed": [V, E], "layers": (cell params, ...),
        "readout": {"w": [H, V], "b": [V]}}``.
      initial_carry: ``batch_size -> carry`` (a tuple of per-layer zero carries).
      apply: ``(params, carry, ids [B, T], *, key=None, train=False) -> (carry, logits [B, T, V])``;
        dropout only with ``train=True`` (needs ``key``).
      vocab_size: V.
      cache_key: a string that identifies the model (its config and V), so compiled
        samplers are shared between equal models.
    """

    init: Callable
    initial_carry: Callable
    apply: Callable
    vocab_size: int
    cache_key: str = ""


def make_lm(config, vocab_size: int) -> LM:
    """Build the model of ``config`` for a vocabulary of ``vocab_size`` ids."""
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    L, E, H, V = config.num_layers, config.embed_size, config.hidden_size, vocab_size
    cells = [models.make_cell(config) for _ in range(L)]  # same cell and width per layer
    rate = float(config.dropout)

    def init(key):
        k_emb, k_out, *k_layers = jax.random.split(key, L + 2)
        sizes = [E] + [H] * (L - 1)
        return {"embed": layers.init_embedding(k_emb, V, E),
                "layers": tuple(c.init(k, n) for c, k, n in zip(cells, k_layers, sizes)),
                "readout": layers.init_dense(k_out, H, V)}

    def initial_carry(batch_size):
        return tuple(c.initial_carry((batch_size,)) for c in cells)

    def dropout(x, key):
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), 0.0)

    def apply(params, carry, ids, *, key=None, train=False):
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape [B, T], got {tuple(ids.shape)}")
        use_dropout = train and rate > 0.0
        if use_dropout and key is None:
            raise ValueError("train=True with dropout > 0 needs a PRNG key: pass key=...")
        x = jnp.take(params["embed"], ids, axis=0)  # [B, T, E]
        k_in = k_mid = k_out = None
        if use_dropout:
            k_in, k_mid, k_out = jax.random.split(key, 3)
            x = dropout(x, k_in)
        carry, ys = ops.stacked(list(cells), params["layers"], carry, x,
                                dropout_rate=rate if use_dropout else 0.0, key=k_mid,
                                time_major=False)
        if use_dropout:
            ys = dropout(ys, k_out)
        logits = jnp.einsum("bth,hv->btv", ys, params["readout"]["w"])
        return carry, logits + params["readout"]["b"].reshape(1, 1, V)

    model_fields = {k: config[k] for k in ("cell", "hidden_size", "num_layers", "embed_size",
                                           "dropout")}
    kwargs = config.get("cell_kwargs", None) or {}
    model_fields["cell_kwargs"] = kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)
    return LM(init, initial_carry, apply, V, json.dumps([model_fields, V], sort_keys=True))


def num_params(config, vocab_size: int) -> int:
    """Number of trainable parameters (computed from shapes; nothing is allocated)."""
    shapes = jax.eval_shape(make_lm(config, vocab_size).init, jax.random.PRNGKey(0))
    return models.num_params(shapes)


def cross_entropy(logits, targets):
    """Mean next-token cross-entropy in nats; ``logits [B, T, V]``, ``targets [B, T]`` int."""
    return jnp.mean(layers.softmax_xent(logits, targets))


def bits_per_char(nats):
    """Cross-entropy in nats per character -> bits per character."""
    return nats / math.log(2.0)


# ------------------------------------------------------------------------- sampling

def sample_logits(key, logits, *, temperature: float = 1.0, top_k: int = 0, banned=()):
    """Draw ids ``[B]`` from ``logits [B, V]`` (module docstring); ``banned`` ids are never drawn."""
    V = logits.shape[-1]
    if banned:
        ban = jnp.zeros((V,), bool).at[jnp.asarray(banned)].set(True)
        logits = jnp.where(ban.reshape(1, V), -jnp.inf, logits)
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k and top_k < V:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # [B, 1], the k-th largest
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _check_sampling(length, temperature, top_k):
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 = no limit), got {top_k!r}")


def generate(model: LM, params, prompt_ids, length: int, *, key, temperature: float = 1.0,
             top_k: int = 0, banned=(0,)):
    """``length`` sampled ids ``[length]`` int32 continuing ``prompt_ids [P]`` (P >= 1).

    Jitted per (prompt length, length, temperature, top_k); ``banned`` defaults to the
    ``<unk>`` id 0.
    """
    _check_sampling(length, temperature, top_k)
    prompt_ids = jnp.asarray(prompt_ids, jnp.int32).reshape(-1)
    if prompt_ids.size < 1:
        raise ValueError("the prompt must hold at least one character")
    return _generate_jit(model, length, float(temperature), top_k, tuple(banned))(
        params, prompt_ids, key)


_GEN_CACHE: dict = {}


def _generate_jit(model, length, temperature, top_k, banned):
    cache_key = (model.cache_key, length, temperature, top_k, banned)
    if cache_key in _GEN_CACHE:
        return _GEN_CACHE[cache_key]
    if len(_GEN_CACHE) >= 16:
        _GEN_CACHE.pop(next(iter(_GEN_CACHE)))

    def run(params, prompt_ids, key):
        carry, logits = model.apply(params, model.initial_carry(1), prompt_ids.reshape(1, -1))

        def body(state, k):
            carry, last = state
            tok = sample_logits(k, last, temperature=temperature, top_k=top_k, banned=banned)
            carry, logits = model.apply(params, carry, tok.reshape(1, 1))
            return (carry, logits[:, 0]), tok[0]

        _, toks = jax.lax.scan(body, (carry, logits[:, -1]), jax.random.split(key, length))
        return toks

    fn = _GEN_CACHE[cache_key] = jax.jit(run)
    return fn


# ------------------------------------------------------------------------ training

def init_state(config, vocab_size: int, key, *, model: LM | None = None,
               optimizer=None) -> training.TrainState:
    """The state at step 0 from the run's root ``key`` (``PRNGKey(config.seed)``).

    The root splits into ``(init, noise, sample)`` keys: params from the first, the
    state's ``key`` (dropout noise, folded with the step) is the second; ``carry`` is
    the zero truncated-BPTT carry.
    """
    model = make_lm(config, vocab_size) if model is None else model
    optimizer = training.make_optimizer(config) if optimizer is None else optimizer
    k_init, k_noise, _ = jax.random.split(key, 3)
    # zeros_like per leaf: the cells' initial carries share one zeros buffer between
    # h and c, which buffer donation in the jitted train step refuses.
    carry = jax.tree_util.tree_map(jnp.zeros_like, model.initial_carry(config.batch_size))
    return training.TrainState.create(params=model.init(k_init), tx=optimizer, key=k_noise,
                                      carry=carry)


def make_train_step(config, vocab_size: int, *, model: LM | None = None, optimizer=None):
    """``(state, inputs [B, W], targets [B, W], reset) -> (state, metrics)``, unjitted.

    ``reset`` (bool scalar) starts the window from a zero carry (the first window of an
    epoch); otherwise it continues from ``state.carry``. The dropout key of step ``s``
    is ``fold_in(state.key, s)``.
    """
    model = make_lm(config, vocab_size) if model is None else model
    optimizer = training.make_optimizer(config) if optimizer is None else optimizer

    def loss_fn(params, carry, x, y, key):
        carry, logits = model.apply(params, carry, x, key=key, train=True)
        return cross_entropy(logits, y), carry

    def train_step(state, x, y, reset):
        zeros = model.initial_carry(x.shape[0])
        carry = jax.tree_util.tree_map(lambda z, c: jnp.where(reset, z, c), zeros, state.carry)
        key = jax.random.fold_in(state.key, state.step)
        (loss, carry), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, carry, x, y, key)
        metrics = {"loss": loss, "bpc": bits_per_char(loss), "grad_norm": optax.tree.norm(grads)}
        # The carry enters the next window as data: no gradient reaches back through it.
        return state.apply_gradients(grads=grads, tx=optimizer,
                                     carry=jax.lax.stop_gradient(carry)), metrics

    return train_step


def make_eval(config, vocab_size: int, *, model: LM | None = None):
    """``(params, inputs [K, B, W], targets [K, B, W]) -> mean nats`` over all K windows in order."""
    model = make_lm(config, vocab_size) if model is None else model

    def evaluate(params, xs, ys):
        def body(carry, xy):
            carry, logits = model.apply(params, carry, xy[0])
            return carry, cross_entropy(logits, xy[1])

        _, losses = jax.lax.scan(body, model.initial_carry(xs.shape[1]), (xs, ys))
        return jnp.mean(losses)

    return evaluate


class Corpus(NamedTuple):
    """The vocabulary and the encoded splits: ``train_ids``, ``val_ids`` (int ``[N]`` each)."""

    vocab: text_data.Vocab
    train_ids: np.ndarray
    val_ids: np.ndarray


def load_data(config) -> Corpus:
    """Read, split and encode the corpus of ``config.data`` (see :mod:`rnn_jax.data.text`)."""
    text = text_data.load_corpus(config.data.path or None)
    train, val = text_data.split_corpus(text, config.data.val_fraction)
    vocab = text_data.build_vocab(train)
    return Corpus(vocab, vocab.encode(train), vocab.encode(val))


def resolve_config(config, vocab: text_data.Vocab):
    """A copy of ``config`` with the vocabulary recorded (``data.vocab``: the characters of
    ids 1.., in order), so a checkpoint carries everything needed to decode its outputs."""
    config = training.resolve_config(config)  # the cosine schedule's length pinned
    config.unlock()
    config.data.vocab = "".join(vocab.tokens[vocab.num_reserved:])
    config.lock()
    return config


def vocab_from_config(config) -> text_data.Vocab:
    """The vocabulary saved in ``config.data.vocab`` (by :func:`resolve_config`), ``<unk>`` first."""
    return text_data.Vocab((text_data.UNK,) + tuple(config.data.vocab), 1, 0)






def _plot_curve(workdir, records):
    from rnn_jax import plotting
    if not records:
        return
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 2.2))
    ax.plot([r["step"] for r in records], [r[METRIC] for r in records], marker="o", ms=2.5,
            color=plotting.PALETTE[3])
    ax.set_xlabel("training step")
    ax.set_ylabel("validation bits per character")
    ax.grid(True)
    plotting.save(fig, os.path.join(workdir, "val_bpc"))


# Validated before the claim (a bad config writes nothing); orbax is quiet in the loop.
@workdir_lib.claims(EXPERIMENT, validate=validate, resumable=config_lib.RESUMABLE_FIELDS)
def train_and_evaluate(config, workdir: str) -> dict:
    """Train the char LM of ``config`` in ``workdir``; see :func:`_train_and_evaluate`."""
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir: str) -> dict:
    """Train the char LM of ``config`` in ``workdir`` (resuming from its latest checkpoint).

    Returns the dict written to ``eval.json``: ``val_bpc`` (all validation windows,
    read in order with the carry passed on), ``best_val_bpc``, ``num_params``,
    ``vocab_size``, the split sizes and the wall-clock time.
    """
    from absl import logging
    from rnn_jax.train import loop

    # The config was validated by the @workdir_lib.claims decorator, before the claim.
    data = load_data(config)
    config = resolve_config(config, data.vocab)
    V = len(data.vocab)
    try:
        xs, ys = text_data.tbptt_windows(data.train_ids, config.batch_size, config.window)
    except ValueError as e:
        raise ValueError(f"the training split is too short: {e}; lower batch_size or window, "
                         "or use a longer corpus") from e
    try:
        vx, vy = text_data.tbptt_windows(data.val_ids, config.eval_batch_size, config.window)
    except ValueError as e:
        raise ValueError(f"the validation split is too short: {e}; lower eval_batch_size or "
                         "window, or raise data.val_fraction") from e
    num_windows = xs.shape[0]

    # Built once and handed down (the loop, the step, the eval and the sampler share them).
    model = make_lm(config, V)
    optimizer = training.make_optimizer(config)
    root = jax.random.PRNGKey(config.seed)
    k_sample = jax.random.split(root, 3)[2]
    train_step = jax.jit(make_train_step(config, V, model=model, optimizer=optimizer),
                         donate_argnums=0)
    evaluate = jax.jit(make_eval(config, V, model=model))
    vx_d, vy_d = jnp.asarray(vx), jnp.asarray(vy)

    def advance(state, step, n):  # n == 1: one window per step, fed from the host
        # Step s trains on window s mod K; window 0 starts each epoch from zeros.
        k = step % num_windows
        return train_step(state, xs[k], ys[k], np.bool_(k == 0))

    def validate_bpc(state):
        nats = float(evaluate(state.params, vx_d, vy_d))
        return {METRIC: bits_per_char(nats), "val_loss": nats,
                "epoch": int(state.step) / num_windows}

    # One jitted init: eager init would compile every small op separately.
    init = jax.jit(functools.partial(init_state, config, V, model=model, optimizer=optimizer))
    out = loop.run(config, workdir, init=lambda: init(root), advance=advance,
                   evaluate=validate_bpc, metric=METRIC, higher_is_better=False)
    state, last_eval, wall, best_step = out.state, out.last_eval, out.wall_s, out.best_checkpoint
    best = min([r[METRIC] for r in out.evals] or [last_eval[METRIC]])
    prompt = data.vocab.encode("The ")
    sample = generate(model, state.params, prompt, config.sample_length, key=k_sample,
                      temperature=0.8, top_k=0)
    with open(os.path.join(workdir, "sample.txt"), "w", encoding="utf-8") as f:
        f.write("The " + "".join(data.vocab.decode(sample)) + "\n")
    _plot_curve(workdir, out.evals)
    result = {"step": config.num_steps, "metric_name": METRIC, METRIC: last_eval[METRIC],
              "val_loss_nats": last_eval["val_loss"], "best_val_bpc": best,
              "best_checkpoint_step": best_step, "num_params": models.num_params(state.params),
              "vocab_size": V, "train_chars": int(data.train_ids.size),
              "val_chars": int(data.val_ids.size), "val_chars_scored": int(vy.size),
              "windows_per_epoch": int(num_windows), "epochs": config.num_steps / num_windows,
              "wall_s_this_run": round(wall, 1), "cell": config.cell,
              "hidden_size": config.hidden_size, "num_layers": config.num_layers}
    write_json(os.path.join(workdir, "eval.json"), result)
    logging.info("final %s = %.4f (best %.4f)", METRIC, result[METRIC], best)
    return result


# ---------------------------------------------------------------------- generation

def load_checkpoint(workdir: str):
    """``(config, vocab, model, params, step)`` from the best checkpoint in ``workdir``.

    Raises FileNotFoundError when there is no checkpoint, and ValueError when the
    checkpoint was written by another experiment (its config's ``experiment`` field
    is not ``"char_lm"``).
    """
    from rnn_jax.train.checkpointing import Checkpointer

    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in {workdir!r} (expected {directory}); train "
                                "first with python -m experiments.char_lm --workdir=...")
    ckpt = Checkpointer(directory, keep=1, metric_name=METRIC, higher_is_better=False,
                        read_only=True)
    try:
        step = ckpt.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint saved in {directory}")
        # Check the experiment first: another experiment's checkpoints have other
        # metrics, so even ranking them by val_bpc would fail.
        saved = ckpt.saved_config(step)
        experiment = saved.get("experiment")
        if experiment != EXPERIMENT:
            if experiment is not None:
                what = f"experiment {experiment!r}"
            else:
                task = saved.get("task")
                task = task.get("name") if isinstance(task, dict) else task
                what = ("another experiment (its config has no 'experiment' field; "
                        f"task={task!r}, cell={saved.get('cell')!r})")
            raise ValueError(f"the checkpoint in {directory} (step {step}) was written by {what}, "
                             f"not by the character language model ({EXPERIMENT!r}); "
                             "generate.py only loads char_lm checkpoints")
        step = ckpt.best_step()
        config = ml_collections.ConfigDict(ckpt.saved_config(step))
        vocab = vocab_from_config(config)
        # A concrete state to restore onto: a checkpoint written before the state had a
        # key takes it from here (rnn_jax.train.checkpointing).
        like = jax.jit(functools.partial(init_state, config, len(vocab)))(jax.random.PRNGKey(0))
        state = ckpt.restore(step, like)
    finally:
        ckpt.close()
    return config, vocab, make_lm(config, len(vocab)), state.params, step


def generate_text(workdir: str, prompt: str, length: int, *, temperature: float = 0.8,
                  top_k: int = 0, seed: int = 0) -> str:
    """The prompt followed by ``length`` characters sampled from ``workdir``'s checkpoint.

    Checks the arguments (and that every prompt character is in the vocabulary)
    before loading anything.
    """
    _check_sampling(length, temperature, top_k)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    with quiet_orbax():
        config, vocab, model, params, _ = load_checkpoint(workdir)
    ids = vocab.encode(prompt, strict=True, what="prompt")
    out = generate(model, params, ids, length, key=jax.random.PRNGKey(seed),
                   temperature=temperature, top_k=top_k, banned=(vocab.unk_id,))
    return prompt + "".join(vocab.decode(out))
