"""Sequence to sequence with attention: the experiment (config, data, training, evaluation).

    config = default_config()                   # or experiments/configs/seq2seq_*.py
    result = train_and_evaluate(config, workdir)

The model and its decoders are :mod:`rnn_jax.apps.seq2seq.model` (a BiLSTM encoder and an
LSTM decoder with additive attention, Bahdanau et al. 2014; greedy and beam
decoding); the tasks are :mod:`rnn_jax.data.seq2seq_tasks` (integer addition, date
normalisation), generated on the fly: training step ``s`` trains on
``task.sample_train(config.seed, s, batch_size)``, so a resumed run replays exactly
the batches an uninterrupted run would have seen, and the held-out set is disjoint
from every training draw by construction.

Metric: exact match, the fraction of held-out sources whose decoded string equals the
target string, for greedy decoding (every ``eval_every`` steps) and beam search (at
the end).

:func:`train_and_evaluate` writes ``config.json``, ``metrics.jsonl`` (+ TensorBoard
events), ``eval.json``, ``exact_match.png``/``.pdf``, ``attention.png``/``.pdf``
(attention runs: the weights of four held-out examples, source characters on x,
output characters on y) and orbax checkpoints into the workdir.
"""

import copy
import functools
import os
import time

import jax
import ml_collections
import numpy as np
import optax

from rnn_jax import cells, models
from rnn_jax.train import training
from rnn_jax.data import seq2seq_tasks as tasks_lib
from rnn_jax.apps.seq2seq.model import (DecodeResult, Seq2Seq, beam_search, greedy_decode, make_model,
                                   sequence_loss)
from rnn_jax.train import config as config_lib
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.metrics_log import write_json

EXPERIMENT = "seq2seq"
METRIC = "exact_match"
TASKS = ("addition", "dates")


def default_config() -> ml_collections.ConfigDict:
    """Every field of a seq2seq run with its default (attention, 3-digit addition)."""
    c = ml_collections.ConfigDict()
    c.experiment = EXPERIMENT
    # The task (rnn_jax.data.seq2seq_tasks.PairTask).
    c.task = ml_collections.ConfigDict()
    c.task.name = "addition"             # TASKS
    c.task.max_digits = 3                # addition: operands of 1..max_digits digits
    c.task.min_year = 1900               # dates: the range of generated dates
    c.task.max_year = 2099
    c.task.formats = "all"               # dates: "all" or comma-separated DATE_FORMATS names
    c.task.test_fraction = 0.0           # held-out share of split keys; 0 = the task's default
    c.task.num_test = 1000               # held-out examples scored
    # Model.
    c.attention = True                   # False: fixed context (the encoder summary)
    c.embed_size = 32
    c.hidden_size = 64                   # encoder LSTM, per direction
    c.decoder_size = 128
    c.attention_size = 64
    c.cell_kwargs = ml_collections.ConfigDict()  # kwargs of rnn_jax.cells.lstm (all three LSTMs)
    # Decoding at evaluation.
    c.beam_size = 4
    c.length_penalty = 0.0               # alpha of ((5 + |Y|) / 6) ** alpha; 0 = raw log-prob
    # Optimizer: the training engine's fields (rnn_jax.train.training.make_optimizer).
    c.optimizer = copy.deepcopy(training.default_config().optimizer)
    c.optimizer.learning_rate = 3e-3
    c.optimizer.clip_norm = 1.0
    # Loop.
    c.batch_size = 128
    c.num_steps = 2000
    c.seed = 0
    c.eval_every = 100
    c.checkpoint_every = 500
    c.log_every = 50
    c.keep_checkpoints = 2
    c.progress_every_s = 30.0
    c.eval_batch_size = 1000
    return c


def validate(config) -> None:
    """Raise ValueError naming the first bad field (before any data or compilation)."""
    config_lib.check_experiment(config, default_config(), EXPERIMENT,
                                "rnn_jax.apps.seq2seq.default_config()")
    t = config.task
    if t.name not in TASKS:
        raise ValueError(f"config.task.name must be one of {list(TASKS)}, got {t.name!r}")
    for f in ("embed_size", "hidden_size", "decoder_size", "attention_size", "beam_size",
              "batch_size", "num_steps", "eval_every", "checkpoint_every", "log_every",
              "keep_checkpoints", "eval_batch_size", "task.num_test"):
        config_lib.check_int(config, f)
    config_lib.check_int(config, "seed", 0)
    if not isinstance(config.attention, bool):
        raise ValueError(f"config.attention must be True or False, got {config.attention!r}")
    lp = config.length_penalty
    if not isinstance(lp, (int, float)) or isinstance(lp, bool) or not 0.0 <= lp <= 5.0:
        raise ValueError(f"config.length_penalty must be a number in [0, 5], got {lp!r}")
    tf = t.test_fraction
    if not isinstance(tf, (int, float)) or isinstance(tf, bool) or not 0.0 <= tf <= 0.5:
        raise ValueError(f"config.task.test_fraction must be in [0, 0.5] (0 = the task's "
                         f"default), got {tf!r}")
    make_task(config)
    try:
        cells.lstm(config.hidden_size, **config.cell_kwargs.to_dict())
    except TypeError as e:
        raise ValueError(f"config.cell_kwargs do not fit rnn_jax.cells.lstm: {e}") from e
    config_lib.check_optimizer(config)


resolve_config = training.resolve_config  # the cosine schedule's length pinned


def make_task(config) -> tasks_lib.PairTask:
    """The task of ``config.task`` (:mod:`rnn_jax.data.seq2seq_tasks`)."""
    t = config.task
    kw = {"test_fraction": t.test_fraction} if t.test_fraction else {}
    try:
        if t.name == "addition":
            return tasks_lib.addition(t.max_digits, **kw)
        if t.name == "dates":
            formats = None
            if t.formats != "all":
                formats = [f.strip() for f in str(t.formats).split(",") if f.strip()]
            return tasks_lib.dates(t.min_year, t.max_year, formats, **kw)
    except ValueError as e:
        # The task's messages start with its argument's name, the field under config.task.
        raise ValueError(f"config.task.{e}") from e
    raise ValueError(f"config.task.name must be one of {list(TASKS)}, got {t.name!r}")


# ----------------------------------------------------------------------------- data

def make_batch(task, config, step: int) -> dict:
    """The padded arrays of training step ``step`` (a pure function of seed and step)."""
    return tasks_lib.encode(task, task.sample_train(config.seed, step, config.batch_size))


# ------------------------------------------------------------------------- training

def make_train_step(config, model: Seq2Seq, optimizer=None):
    """``train_step(state, batch) -> (state, metrics)``: one optimizer step, teacher forced,
    on a :class:`~rnn_jax.train.training.TrainState`.

    ``batch`` holds ``src [B, S]``, ``src_len [B]``, ``tgt_in`` and ``tgt_out [B, T]``
    and ``tgt_len [B]``; the loss is :func:`~rnn_jax.apps.seq2seq.model.sequence_loss` over
    the valid target tokens. ``optimizer`` defaults to ``config.optimizer``'s.
    """
    optimizer = training.make_optimizer(config) if optimizer is None else optimizer

    def loss_fn(params, batch):
        logits, _ = model.apply(params, batch["src"], batch["src_len"], batch["tgt_in"])
        loss, tok_acc, seq_acc = sequence_loss(logits, batch["tgt_out"], batch["tgt_len"])
        return loss, (tok_acc, seq_acc)

    def train_step(state, batch):
        (loss, (tok_acc, seq_acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch)
        return (state.apply_gradients(grads=grads, tx=optimizer),
                {"loss": loss, "token_accuracy": tok_acc, "sequence_accuracy": seq_acc,
                 "grad_norm": optax.tree.norm(grads)})

    return train_step


def decode_in_chunks(decode_jit, params, data: dict, chunk: int) -> DecodeResult:
    """``decode_jit(params, src, src_len)`` over all rows, ``chunk`` at a time (the last
    chunk padded with copies of row 0, then dropped, so every call has one shape)."""
    n = data["src"].shape[0]
    chunk = min(chunk, n)
    parts = []
    for s in range(0, n, chunk):
        idx = np.arange(s, s + chunk)
        idx = np.where(idx < n, idx, 0)
        out = jax.device_get(decode_jit(params, data["src"][idx], data["src_len"][idx]))
        parts.append(jax.tree_util.tree_map(lambda a: a[:min(chunk, n - s)], out))
    return DecodeResult(*(np.concatenate(f) for f in zip(*parts)))


def exact_match(task, result: DecodeResult, targets) -> tuple[float, list[str]]:
    """The fraction of decoded strings equal to their target, and the decoded strings."""
    outs = [task.target_vocab.decode(t) for t in result.tokens]
    return float(np.mean([o == t for o, t in zip(outs, targets)])), outs


def _plot_attention(task, pairs, result: DecodeResult, outputs, path_stem, count=4):
    """Heat maps of the attention weights: source characters on x, output characters
    (and ``</s>``) on y, one panel per example."""
    from rnn_jax import plotting
    plt = plotting.pyplot()
    k = min(count, len(pairs))
    cols = 2 if k > 1 else 1
    rows = -(-k // cols)
    wide = task.max_source_len > 12
    size = (plotting.PAGE_WIDTH, 2.0 * rows + 0.3) if wide else (plotting.COLUMN_WIDTH, 1.5 * rows + 0.3)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, constrained_layout=True)
    for i, ax in enumerate(axes.reshape(-1)):
        if i >= k:
            ax.axis("off")
            continue
        src, tgt = pairs[i]
        n_out = int(result.lengths[i])
        ylabels = list(outputs[i]) + (["</s>"] if n_out > len(outputs[i]) else [])
        ax.imshow(result.weights[i, :n_out, :len(src)], cmap="Greys", vmin=0.0, vmax=1.0,
                  aspect="auto")
        ax.set_xticks(range(len(src)))
        ax.set_xticklabels([ch if ch != " " else "\u2423" for ch in src], fontsize=6)
        ax.set_yticks(range(len(ylabels)))
        ax.set_yticklabels(ylabels, fontsize=6)
        ax.tick_params(length=0)
        mark = "" if outputs[i] == tgt else f" (target {tgt})"
        ax.set_title(f"{src} -> {outputs[i]}{mark}", fontsize=7)
    plotting.save(fig, path_stem)


def _plot_curve(evals, path_stem):
    from rnn_jax import plotting
    if not evals:
        return
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 2.2))
    ax.plot([r["step"] for r in evals], [r[METRIC] for r in evals], marker="o", ms=2.5,
            color=plotting.PALETTE[3])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out exact match (greedy)")
    ax.grid(True)
    plotting.save(fig, path_stem)


# Validated before the claim (a bad config writes nothing); orbax is quiet in the loop.
@workdir_lib.claims(EXPERIMENT, validate=validate, resumable=config_lib.RESUMABLE_FIELDS)
def train_and_evaluate(config, workdir: str) -> dict:
    """Train the seq2seq model of ``config`` in ``workdir``; see :func:`_train_and_evaluate`."""
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir: str) -> dict:
    """Train (resuming from the latest checkpoint), then decode the held-out set.

    Every ``eval_every`` steps the held-out set is decoded greedily and its exact
    match and teacher-forced loss go to ``metrics.jsonl`` with ``elapsed_s`` (wall
    seconds since this run started, compilation included). Returns the dict written to
    ``eval.json``: ``exact_match_greedy``, ``exact_match_beam``, the first step whose
    greedy exact match was 1.0 and its ``elapsed_s``, ``num_params``, a few mistakes.
    """
    from absl import logging
    from rnn_jax.train import loop

    t_start = time.perf_counter()
    # The config was validated by the @workdir_lib.claims decorator, before the claim.
    config = resolve_config(config)
    task = make_task(config)
    test_pairs = task.test_set(config.task.num_test)
    test = tasks_lib.encode(task, test_pairs)
    targets = [t for _, t in test_pairs]
    model = make_model(config, task.source_vocab.size, task.target_vocab.size)
    max_len = task.max_target_len + 1
    optimizer = training.make_optimizer(config)

    greedy = jax.jit(functools.partial(greedy_decode, model, max_len=max_len))
    test_loss = jax.jit(lambda p, b: sequence_loss(
        model.apply(p, b["src"], b["src_len"], b["tgt_in"])[0], b["tgt_out"], b["tgt_len"])[0])

    def evaluate(params):
        result = decode_in_chunks(greedy, params, test, config.eval_batch_size)
        em, _ = exact_match(task, result, targets)
        return {METRIC: em, "test_loss": float(test_loss(params, test)),
                "elapsed_s": round(time.perf_counter() - t_start, 1)}

    train_step = jax.jit(make_train_step(config, model, optimizer), donate_argnums=0)
    init = jax.jit(lambda key: training.TrainState.create(params=model.init(key), tx=optimizer))
    out = loop.run(config, workdir, init=lambda: init(jax.random.PRNGKey(config.seed)),
                   advance=lambda state, step, n: train_step(state, make_batch(task, config, step)),
                   evaluate=lambda state: evaluate(state.params), metric=METRIC)
    state, wall = out.state, out.wall_s

    params = state.params
    g = decode_in_chunks(greedy, params, test, config.eval_batch_size)
    em_greedy, outs_greedy = exact_match(task, g, targets)
    beam = jax.jit(functools.partial(beam_search, model, max_len=max_len, beam_size=config.beam_size,
                                     length_penalty=config.length_penalty))
    b = decode_in_chunks(beam, params, test, config.eval_batch_size)
    em_beam, outs_beam = exact_match(task, b, targets)
    evals = out.evals
    first = next((r for r in evals if r[METRIC] >= 1.0), None)
    _plot_curve(evals, os.path.join(workdir, "exact_match"))
    if model.attention:
        _plot_attention(task, test_pairs, g, outs_greedy, os.path.join(workdir, "attention"))
    mistakes = [{"source": s, "target": t, "greedy": og, "beam": ob}
                for (s, t), og, ob in zip(test_pairs, outs_greedy, outs_beam) if og != t or ob != t]
    result = {"step": config.num_steps, "metric_name": METRIC, "task": task.name,
              "attention": model.attention, "exact_match_greedy": em_greedy,
              "exact_match_beam": em_beam, "beam_size": config.beam_size,
              "length_penalty": config.length_penalty,
              "first_step_exact_match_1": first["step"] if first else None,
              "elapsed_s_at_first_1": first["elapsed_s"] if first else None,
              "num_params": models.num_params(params), "num_test": len(test_pairs),
              "test_fraction": task.test_fraction, "num_mistakes": len(mistakes),
              "mistakes": mistakes[:20], "wall_s_this_run": round(wall, 1),
              "wall_s_with_final_decoding": round(time.perf_counter() - t_start, 1),
              "max_source_len": task.max_source_len, "max_target_len": task.max_target_len,
              "source_vocab": task.source_vocab.chars, "target_vocab": task.target_vocab.chars}
    write_json(os.path.join(workdir, "eval.json"), result)
    logging.info("exact match on %d held-out examples: greedy %.4f, beam(%d) %.4f",
                 len(test_pairs), em_greedy, config.beam_size, em_beam)
    return result
