"""Sequence classification: a bidirectional LSTM with attention pooling over time.

    model = make_classifier(config, input_spec, num_classes)
    params = model.init(key)
    logits, weights = model.apply(params, inputs, lengths)   # [B, C], [B, T]

Inputs are token ids ``[B, T]`` int (embedded, ``input_spec = ("tokens", vocab_size)``)
or feature vectors ``[B, T, F]`` float (``("features", F)``), right-padded, with
``lengths [B]``. A forward and a backward recurrent layer (Schuster & Paliwal 1997;
BiLSTM of Graves & Schmidhuber 2005) read each sequence up to its length, the
concatenated states ``[B, T, 2H]`` are pooled by additive attention masked by the
lengths (:mod:`rnn_jax.layers`; Zhou et al. 2016, Yang et al. 2016), and a
linear layer gives the class logits. Padding therefore changes nothing: the backward
layer starts at each sequence's last valid step and padded steps get attention
weight 0.

Data sources (``config.data.source``):

* ``"digits"``: scikit-learn's bundled 8x8 digits as sequences (:mod:`rnn_jax.tasks.digits`:
  its fixed 1438/359 train/test split), one row of 8 pixels per step (``digits_mode
  = "row"``, T = 8) or one pixel per step (``"pixel"``, T = 64).
* ``"tsv"``: ``text<TAB>label`` files (:mod:`rnn_jax.data.tsv`), tokenised by
  character or whitespace; ``data.test_path`` or else a seeded ``data.test_fraction``
  of ``data.path`` is the test set.

:func:`train_and_evaluate` writes ``config.json``, ``metrics.jsonl`` (+ TensorBoard
events), ``eval.json`` (test accuracy, confusion matrix), ``confusion_matrix.png``/
``.pdf``, ``attention.png``/``.pdf`` and checkpoints into the workdir.
"""

import copy
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnn_jax import layers, models, ops
from rnn_jax.data.tsv import bucket_width
from rnn_jax.train import training
from rnn_jax.train import config as config_lib
from rnn_jax.train import workdir as workdir_lib
from rnn_jax.train.metrics_log import write_json

EXPERIMENT = "classify"
METRIC = "accuracy"
SOURCES = ("digits", "tsv")


def default_config() -> ml_collections.ConfigDict:
    """Every field of a classification run with its default (BiLSTM, digits by rows)."""
    c = ml_collections.ConfigDict()
    c.experiment = EXPERIMENT
    c.cell = "lstm"                      # each direction; "rnn" | "lstm" | "gru"
    c.hidden_size = 64                   # per direction
    c.cell_kwargs = ml_collections.ConfigDict()
    c.attention_size = 32
    c.embed_size = 32                    # token inputs (tsv) only
    c.data = ml_collections.ConfigDict()
    c.data.source = "digits"             # SOURCES
    c.data.digits_mode = "row"           # "row" (T = 8) | "pixel" (T = 64)
    c.data.path = ""                     # tsv: training file (text<TAB>label)
    c.data.test_path = ""                # tsv: test file; "" = hold out test_fraction of path
    c.data.test_fraction = 0.2
    c.data.tokenizer = "char"            # "char" | "whitespace"
    c.data.max_len = 0                   # tsv: cut texts to this many tokens; 0 = no limit
    c.data.max_vocab = 0                 # tsv: keep the most frequent tokens; 0 = all
    c.optimizer = copy.deepcopy(training.default_config().optimizer)
    c.optimizer.learning_rate = 3e-3
    c.optimizer.clip_norm = 1.0
    c.batch_size = 32
    c.num_steps = 1000
    c.seed = 0
    c.eval_every = 200
    c.checkpoint_every = 500
    c.log_every = 50
    c.keep_checkpoints = 2
    c.progress_every_s = 30.0
    c.eval_batch_size = 512
    return c


def validate(config) -> None:
    """Raise ValueError naming the first bad field (before reading data or compiling)."""
    config_lib.check_experiment(config, default_config(), EXPERIMENT,
                                "rnn_jax.apps.classify.default_config()")
    if config.cell not in models.CELLS:
        raise ValueError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
    for f in ("hidden_size", "attention_size", "embed_size", "batch_size", "num_steps",
              "eval_every", "checkpoint_every", "log_every", "keep_checkpoints", "eval_batch_size"):
        config_lib.check_int(config, f)
    d = config.data
    if d.source not in SOURCES:
        raise ValueError(f"config.data.source must be one of {list(SOURCES)}, got {d.source!r}")
    if d.source == "digits" and d.digits_mode not in ("row", "pixel"):
        raise ValueError(f"config.data.digits_mode must be 'row' or 'pixel', got {d.digits_mode!r}")
    if d.source == "tsv":
        if not d.path:
            raise ValueError("config.data.source='tsv' needs config.data.path (a text<TAB>label file)")
        if d.tokenizer not in ("char", "whitespace"):
            raise ValueError(f"config.data.tokenizer must be 'char' or 'whitespace', got {d.tokenizer!r}")
        for f in ("max_len", "max_vocab"):
            config_lib.check_int(config, "data." + f, 0)
    config_lib.check_optimizer(config)


# ---------------------------------------------------------------------------- model

class Classifier(NamedTuple):
    """Pure functions of the model (module docstring).

    Attributes:
      init: ``key -> params`` = ``{"embed"?: [V, E], "fw": cell, "bw": cell,
        "attention": {...}, "readout": {"w": [2H, C], "b": [C]}}``.
      apply: ``(params, inputs, lengths) -> (logits [B, C], attention weights [B, T])``.
    """

    init: Callable
    apply: Callable
    num_classes: int


def make_classifier(config, input_spec: tuple[str, int], num_classes: int) -> Classifier:
    """``input_spec``: ``("tokens", vocab_size)`` or ``("features", F)``."""
    kind, size = input_spec
    if kind not in ("tokens", "features"):
        raise ValueError(f"input_spec[0] must be 'tokens' or 'features', got {kind!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    cell = models.make_cell(config)
    H, C = cell.hidden_size, num_classes
    in_size = config.embed_size if kind == "tokens" else size

    def init(key):
        k_e, k_f, k_b, k_a, k_o = jax.random.split(key, 5)
        params = {"fw": cell.init(k_f, in_size), "bw": cell.init(k_b, in_size),
                  "attention": layers.init_attention_pool(k_a, 2 * H, config.attention_size),
                  "readout": layers.init_dense(k_o, 2 * H, C)}
        if kind == "tokens":
            params["embed"] = layers.init_embedding(k_e, size, in_size)
        return params

    def apply(params, inputs, lengths):
        if kind == "tokens":
            if inputs.ndim != 2:
                raise ValueError(f"token inputs must have shape [B, T], got {tuple(inputs.shape)}")
            x = layers.embed(params["embed"], inputs)
        else:
            if inputs.ndim != 3 or inputs.shape[-1] != size:
                raise ValueError(f"feature inputs must have shape [B, T, {size}], "
                                 f"got {tuple(inputs.shape)}")
            x = inputs
        B = x.shape[0]
        carry = (cell.initial_carry((B,)), cell.initial_carry((B,)))
        _, hs = ops.bidirectional(cell, cell, (params["fw"], params["bw"]), carry, x,
                                  lengths=lengths, time_major=False)
        pooled, weights = layers.attention_pool(params["attention"], hs, lengths)
        logits = pooled @ params["readout"]["w"] + params["readout"]["b"].reshape(1, C)
        return logits, weights

    return Classifier(init, apply, C)


# ----------------------------------------------------------------------------- data

class Dataset(NamedTuple):
    """Train and test arrays (NumPy): ``inputs`` ``[N, T]`` int or ``[N, T, F]`` float,
    ``lengths [N]`` int32, ``labels [N]`` int32; ``classes`` names the labels."""

    train: dict
    test: dict
    classes: list[str]
    input_spec: tuple[str, int]
    info: dict


def load_dataset(config) -> Dataset:
    """The train and test splits named by ``config.data``, as a :class:`Dataset`.

    ``data.source="digits"``: scikit-learn's 8x8 digits, read row by row (``[N, 8, 8]``)
    or pixel by pixel (``[N, 64, 1]``) as ``data.digits_mode`` says. ``"tsv"``: the
    ``label<TAB>text`` file at ``data.path``, tokenized, its vocabulary built on the
    training split, token ids ``[N, T]`` right-padded; the test split is
    ``data.test_path`` or a held-out ``data.test_fraction``.
    """
    d = config.data
    if d.source == "digits":
        from rnn_jax.tasks import digits
        steps, feats = (8, 8) if d.digits_mode == "row" else (64, 1)

        def part(split):
            images, labels = digits.load_split(split)
            n = images.shape[0]
            return {"inputs": np.asarray(images).reshape(n, steps, feats),
                    "lengths": np.full((n,), steps, np.int32), "labels": np.asarray(labels, np.int32)}

        return Dataset(part("train"), part("test"), [str(i) for i in range(10)], ("features", feats),
                       {"source": "sklearn digits", "T": steps, "features": feats})

    from rnn_jax.data import tsv
    examples = tsv.read_tsv(d.path)
    if d.test_path:
        train, test = examples, tsv.read_tsv(d.test_path)
    else:
        train, test = tsv.split_examples(examples, d.test_fraction, seed=config.seed)
    classes = sorted(set(train.labels))
    if len(classes) < 2:
        raise ValueError(f"{d.path}: the training examples hold one label ({classes}); "
                         "classification needs at least 2")
    vocab = tsv.build_token_vocab(train.texts, d.tokenizer, d.max_vocab or None)
    max_len = d.max_len or None

    def part(ex, source, width=None):
        ids, lengths = tsv.encode_padded(ex.texts, vocab, d.tokenizer, max_len or width)
        return {"inputs": ids, "lengths": lengths,
                "labels": tsv.label_ids(ex.labels, classes, source)}

    tr = part(train, d.path)
    te = part(test, d.test_path or f"{d.path} (the held-out test_fraction)")
    # One padded width for both splits, so train and eval share one compiled shape family.
    width = max(tr["inputs"].shape[1], te["inputs"].shape[1])
    for p in (tr, te):
        pad = width - p["inputs"].shape[1]
        p["inputs"] = np.pad(p["inputs"], ((0, 0), (0, pad)), constant_values=tsv.PAD_ID)
    return Dataset(tr, te, classes, ("tokens", len(vocab)),
                   {"source": d.path, "test_source": d.test_path or f"{d.test_fraction} of path",
                    "tokenizer": d.tokenizer, "vocab_size": len(vocab), "T": width})


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Example ids of training step ``step``: epoch ``e`` visits the examples in the order
    ``np.random.default_rng([seed, e]).permutation(N)``, in full batches (the remainder
    of an epoch is dropped). A pure function of the step, so resuming replays the data."""
    per_epoch = num_examples // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} exceeds the {num_examples} training examples")
    epoch, i = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[i * batch_size:(i + 1) * batch_size]


# ------------------------------------------------------------------------- training

def xent(logits, labels):
    """Mean cross-entropy (nats) of ``logits [B, C]`` against integer ``labels [B]``."""
    return jnp.mean(layers.softmax_xent(logits, labels))


def train_batch(train: dict, config, step: int) -> dict:
    """Training batch number ``step`` of the split ``train`` (``inputs [N, T]``, ``lengths
    [N]``, ``labels [N]``): the rows of :func:`batch_indices`, with ``inputs`` cut to
    ``[batch_size, W]``, W the power-of-two bucket of the batch's longest sequence.

    Each batch then runs as many steps as its longest sequence needs, and the buckets
    bound the number of compiled programs (:func:`rnn_jax.data.tsv.bucket_width`).
    """
    idx = batch_indices(train["labels"].shape[0], config.batch_size, config.seed, step)
    b = {k: v[idx] for k, v in train.items()}
    width = bucket_width(int(b["lengths"].max()), b["inputs"].shape[1])
    return {**b, "inputs": b["inputs"][:, :width]}


def make_train_step(config, model: Classifier, optimizer=None):
    """``train_step(state, batch) -> (state, metrics)``: one optimizer step on :func:`xent`,
    on a :class:`~rnn_jax.train.training.TrainState`.

    ``batch`` holds ``inputs`` (``[B, T]`` ids or ``[B, T, F]``), ``lengths [B]`` and
    ``labels [B]``; ``metrics`` holds the batch's ``loss``, ``accuracy`` and the
    gradient's global norm ``grad_norm``. ``optimizer`` defaults to ``config.optimizer``'s.
    """
    optimizer = training.make_optimizer(config) if optimizer is None else optimizer

    def loss_fn(params, batch):
        logits, _ = model.apply(params, batch["inputs"], batch["lengths"])
        return xent(logits, batch["labels"]), logits

    def train_step(state, batch):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        acc = jnp.mean(jnp.argmax(logits, axis=-1) == batch["labels"])
        return (state.apply_gradients(grads=grads, tx=optimizer),
                {"loss": loss, "accuracy": acc, "grad_norm": optax.tree.norm(grads)})

    return train_step


def predict(apply_jit, params, data: dict, chunk: int):
    """``(logits [N, C], weights [N, T])`` in chunks of ``chunk`` (the last one padded with
    copies of row 0, then dropped, so every call has one shape)."""
    n = data["labels"].shape[0]
    chunk = min(chunk, n)
    outs_l, outs_w = [], []
    for s in range(0, n, chunk):
        idx = np.arange(s, s + chunk)
        idx = np.where(idx < n, idx, 0)
        logits, weights = apply_jit(params, data["inputs"][idx], data["lengths"][idx])
        m = min(chunk, n - s)
        outs_l.append(np.asarray(logits)[:m])
        outs_w.append(np.asarray(weights)[:m])
    return np.concatenate(outs_l), np.concatenate(outs_w)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(predictions)), 1)
    return cm




def _plot_confusion(cm, classes, accuracy, path_stem):
    from rnn_jax import plotting
    plt = plotting.pyplot()
    n = len(classes)
    size = max(2.6, min(7.0, 0.3 * n + 1.2))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=90 if n > 10 else 0)
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test accuracy {accuracy:.3f}")
    top = cm.max() if cm.size else 0
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > top / 2 else "black")
    plotting.save(fig, path_stem)


def _plot_attention(weights, lengths, labels, preds, classes, path_stem, count=8):
    from rnn_jax import plotting
    plt = plotting.pyplot()
    k = min(count, weights.shape[0])
    T = int(lengths[:k].max())
    fig, ax = plt.subplots(figsize=(plotting.COLUMN_WIDTH, 0.3 * k + 0.9))
    ax.imshow(weights[:k, :T], aspect="auto", cmap="viridis")
    ax.set_yticks(range(k))
    ax.set_yticklabels([f"{classes[labels[i]]}->{classes[preds[i]]}" for i in range(k)])
    ax.set_xlabel("time step")
    ax.set_title("attention weights (true->predicted)")
    plotting.save(fig, path_stem)


# Validated before the claim (a bad config writes nothing); orbax is quiet in the loop.
@workdir_lib.claims(EXPERIMENT, validate=validate, resumable=config_lib.RESUMABLE_FIELDS)
def train_and_evaluate(config, workdir: str) -> dict:
    """Train the classifier of ``config`` in ``workdir``; see :func:`_train_and_evaluate`."""
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir: str) -> dict:
    """Train the classifier of ``config`` in ``workdir`` (resuming if possible).

    Returns the dict written to ``eval.json``: test ``accuracy``, ``confusion_matrix``
    (rows true, columns predicted), ``classes``, ``num_params`` and data facts.
    """
    from absl import logging
    from rnn_jax.train import loop

    # The config was validated by the @workdir_lib.claims decorator, before the claim.
    data = load_dataset(config)
    C = len(data.classes)
    model = make_classifier(config, data.input_spec, C)
    n_train = data.train["labels"].shape[0]
    batch_indices(n_train, config.batch_size, config.seed, 0)  # raises if the batch is too big
    optimizer = training.make_optimizer(config)
    apply_jit = jax.jit(model.apply)

    def evaluate(params):
        logits, weights = predict(apply_jit, params, data.test, config.eval_batch_size)
        preds = logits.argmax(-1)
        labels = data.test["labels"]
        return {METRIC: float(np.mean(preds == labels)),
                "cross_entropy": float(xent(jnp.asarray(logits), jnp.asarray(labels)))}, preds, weights

    train_step = jax.jit(make_train_step(config, model, optimizer), donate_argnums=0)
    init = jax.jit(lambda key: training.TrainState.create(params=model.init(key), tx=optimizer))
    out = loop.run(config, workdir, init=lambda: init(jax.random.PRNGKey(config.seed)),
                   advance=lambda state, step, n: train_step(state, train_batch(data.train, config, step)),
                   evaluate=lambda state: evaluate(state.params)[0], metric=METRIC)
    state, wall = out.state, out.wall_s

    ev, preds, weights = evaluate(state.params)
    labels = data.test["labels"]
    cm = confusion_matrix(labels, preds, C)
    _plot_confusion(cm, data.classes, ev[METRIC], os.path.join(workdir, "confusion_matrix"))
    _plot_attention(weights, data.test["lengths"], labels, preds, data.classes,
                    os.path.join(workdir, "attention"))
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    result = {"step": config.num_steps, "metric_name": METRIC, **ev,
              "confusion_matrix": cm.tolist(), "classes": data.classes,
              "per_class_accuracy": per_class, "num_params": models.num_params(state.params),
              "num_train": int(n_train), "num_test": int(labels.shape[0]),
              "wall_s_this_run": round(wall, 1), "cell": config.cell, **data.info}
    write_json(os.path.join(workdir, "eval.json"), result)
    logging.info("final test accuracy %.4f", ev[METRIC])
    return result
