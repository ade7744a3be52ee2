"""Training as pure functions of a config and a PRNG key.

The pieces, each unjitted so a caller chooses how to compile them::

    state = init_state(config, key)                       # TrainState
    train_step = make_train_step(config)                  # (state, batch, key) -> (state, metrics)
    state, metrics = run_steps(config, state, n)          # n steps under lax.scan
    train = make_train(config)                            # key -> (state, metrics)
    states, metrics = jax.jit(jax.vmap(train))(keys)      # many seeds, ONE program

Data is a pure function of ``(state.key, step)``: step ``s`` trains on
``task.sample(fold_in(data_key, s), batch_size, seq_len)``, so a run is reproducible
from its key alone, and resuming from a saved state replays exactly the batches an
uninterrupted run would have seen (no input-pipeline state). The design follows
PureJaxRL (Lu et al. 2022, arXiv 2210.10469): the whole training loop is one jittable
function, so vmapping over keys trains seeds in parallel.

Per-step metrics (all float32 scalars):
  ``loss``; the task's metrics (``task.metrics``); ``grad_norm``, the global gradient
  norm BEFORE clipping; ``update_norm`` (the optimizer's update, after clipping and the
  learning rate); ``param_norm`` (after the update); ``clipped`` (1.0 when clipping
  changed the gradient); ``nonfinite_loss`` / ``nonfinite_grad`` (1.0 when the loss or a
  gradient entry is NaN/Inf) and ``skipped`` (1.0 when the update was dropped because of
  it, with ``config.skip_nonfinite``).
"""

import copy
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rnn_jax import models
from rnn_jax.train import config as config_lib

validate_config = config_lib.validate
default_config = config_lib.default_config


@struct.dataclass
class TrainState:
    """Everything that evolves during training: the ONE state of the engine and the apps.

    A flax ``struct.dataclass`` (a pytree: it vmaps over seeds, donates, shards and is
    saved by orbax field by field). In the manner of flax's ``TrainState``::

        state = TrainState.create(params=params, tx=optimizer, key=key)
        state = state.apply_gradients(grads=grads, tx=optimizer)

    The optimizer is passed in, not stored: a function held in the state would be part
    of its pytree structure, so two states built by equal optimizers would be different
    pytrees (a jitted step retraces, states of a study's models cannot be stacked).

    Attributes:
      step: int32 scalar, the number of steps taken.
      params: model parameters.
      opt_state: optax optimizer state.
      key: the run's PRNG key (uint32 ``[2]``), or None. It never changes: step ``s``
        derives its data and noise keys from ``(key, s)``.
      carry: what a step hands to the next besides parameters, or None: the char LM's
        truncated-BPTT carry (the recurrent state after the last window).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    key: Any = None
    carry: Any = None

    @classmethod
    def create(cls, *, params, tx: optax.GradientTransformation, key=None, carry=None):
        """Step 0: ``params``, ``tx.init(params)``, the key and the carry."""
        return cls(jnp.zeros((), jnp.int32), params, tx.init(params), key, carry)

    def apply_gradients(self, *, grads, tx: optax.GradientTransformation, **changes):
        """One optimizer step: ``tx`` on ``grads``, ``step + 1``, and any ``changes``
        (e.g. ``carry=``) to the other fields."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state, **changes)


class Setup(NamedTuple):
    """What one run builds once (in the manner of purejaxrl's ``make_train(config)``)
    and hands down: the resolved config, the model, its task, the optimizer and the
    clipping transform inside it."""

    config: Any
    model: Any
    task: Any
    optimizer: optax.GradientTransformation
    clipper: optax.GradientTransformation


def resolve_config(config, task=None):
    """A copy of ``config`` with defaults that depend on other fields filled in.

    The one copy for the engine and the apps: the cosine schedule's length is pinned
    (``optimizer.decay_steps = 0`` becomes ``num_steps``), so resuming with a larger
    ``num_steps`` cannot silently stretch the schedule of a run under way (the
    checkpoint check refuses it instead); for the engine's configs, ``task.eval_size =
    0`` becomes the task's own. ``task``: the config's task when already built.
    """
    config = copy.deepcopy(config)
    # Only the cosine schedule has a length; resolving it for the others would make a
    # resume with a different num_steps look like a changed optimizer.
    if config.optimizer.schedule == "warmup_cosine" and config.optimizer.decay_steps == 0:
        config.optimizer.decay_steps = config.num_steps
    if "eval_size" in config.get("task", {}) and config.task.eval_size == 0:
        config.task.eval_size = (models.make_task(config) if task is None else task).eval_size
    return config


def make_setup(config) -> Setup:
    """Validate ``config`` and build its model, task and optimizer, once each.

    Raises ValueError/TypeError naming the bad field before anything is traced.
    """
    model = config_lib.validate(config)
    return _build(resolve_config(config, model.task), model)


def _build(config, model) -> Setup:
    clipper = make_clipper(config)
    return Setup(config, model, model.task, make_optimizer(config, clipper=clipper), clipper)


def _setup(config, setup):
    """``setup``, or (for callers that pass only a config) one built without validation."""
    return _build(config, models.make_model(config)) if setup is None else setup


# ------------------------------------------------------------------------ optimizer

def make_schedule(opt_config, num_steps: int, peak: float) -> optax.Schedule:
    """The learning-rate schedule named by ``opt_config.schedule``, peaking at ``peak``."""
    name = opt_config.schedule
    if name == "constant":
        return optax.constant_schedule(peak)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=peak, warmup_steps=opt_config.warmup_steps,
            decay_steps=opt_config.decay_steps or num_steps,
            end_value=opt_config.end_learning_rate)
    if name == "exponential":
        return optax.exponential_decay(peak, transition_steps=opt_config.transition_steps,
                                       decay_rate=opt_config.decay_rate)
    raise ValueError(f"config.optimizer.schedule must be one of {list(config_lib.SCHEDULES)}, "
                     f"got {name!r}")


def _base_optimizer(o, lr) -> optax.GradientTransformation:
    name = o.name
    if name == "sgd":
        return optax.sgd(lr)
    if name in ("momentum", "nesterov"):
        return optax.sgd(lr, momentum=o.momentum, nesterov=name == "nesterov")
    if name == "adam":
        return optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps)
    if name == "adamw":
        return optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
    if name == "rmsprop":
        return optax.rmsprop(lr, decay=o.decay, eps=o.eps)
    raise ValueError(f"config.optimizer.name must be one of {list(config_lib.OPTIMIZERS)}, "
                     f"got {name!r}")


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with its ``init``/``update`` traced under JAX's standard dtype promotion.

    optax mixes its int32 step count with Python floats (Adam's bias correction computes
    ``decay ** count``), which ``jax_numpy_dtype_promotion="strict"`` refuses. Our own code
    runs under strict promotion (the tests set it); wrapping optax's keeps that possible
    without changing a single value.
    """
    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)


def make_clipper(config) -> optax.GradientTransformation:
    """The (stateless) gradient clipping transform chosen by ``config.optimizer.clip_mode``.

    ``global_norm`` rescales the whole gradient when its norm exceeds ``clip_norm``
    (Pascanu, Mikolov & Bengio 2013, arXiv 1211.5063; ``clip_norm = 0`` disables it);
    ``value`` clips each entry to ``[-clip_value, clip_value]``; ``adaptive`` is
    unit-wise adaptive clipping (Brock et al. 2021, arXiv 2102.06171).
    """
    o = config.optimizer
    if o.clip_mode == "global_norm" and o.clip_norm > 0:
        return _standard_promotion(optax.clip_by_global_norm(o.clip_norm))
    if o.clip_mode == "value":
        return _standard_promotion(optax.clip(o.clip_value))
    if o.clip_mode == "adaptive":
        return _standard_promotion(optax.adaptive_grad_clip(o.adaptive_clip))
    if o.clip_mode not in config_lib.CLIP_MODES:
        raise ValueError(f"config.optimizer.clip_mode must be one of "
                         f"{list(config_lib.CLIP_MODES)}, got {o.clip_mode!r}")
    return optax.identity()


# The parameters through which the state feeds back into itself, by leaf name: the
# recurrent matrices of the classic cells and LSTM variants (``w_h``), the sLSTM's
# block-diagonal recurrent matrix (``r``), the IndRNN's per-unit recurrent weight (``u``),
# and the LRU's eigenvalues, ``lambda = exp(-exp(nu_log) + i exp(theta_log))``. Not the
# LRU's input normalisation ``gamma_log`` (it scales the input, not the state) nor LSTMP's
# output projection ``w_r``. min_gru and min_lstm have no recurrent weights (their gates
# read the input only). No other parameter of the models, apps or layers has these names.
RECURRENT_PARAMS = ("w_h", "r", "u", "nu_log", "theta_log")


def recurrent_labels(params):
    """``"recurrent"`` for every leaf named in :data:`RECURRENT_PARAMS`, ``"default"``
    for the rest."""
    def label(path, _):
        last = path[-1] if path else None
        return "recurrent" if getattr(last, "key", None) in RECURRENT_PARAMS else "default"
    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config, *, clipper=None) -> optax.GradientTransformation:
    """Clipping, then the optimizer with its schedule, all chosen by ``config.optimizer``.

    With ``optimizer.recurrent.enabled`` the recurrent weights (:data:`RECURRENT_PARAMS`) get their own
    learning rate and an optional extra clip over their gradients
    (``optax.multi_transform``); the global clip still sees the whole gradient first.
    ``clipper``: the ``make_clipper(config)`` already built, if any.
    """
    o = config.optimizer
    main = _base_optimizer(o, make_schedule(o, config.num_steps, o.learning_rate))
    if o.recurrent.enabled:
        r = o.recurrent
        rec = _base_optimizer(o, make_schedule(o, config.num_steps, r.learning_rate))
        if r.clip_norm > 0:
            rec = optax.chain(optax.clip_by_global_norm(r.clip_norm), rec)
        main = optax.multi_transform({"default": main, "recurrent": rec}, recurrent_labels)
    clipper = make_clipper(config) if clipper is None else clipper
    return _standard_promotion(optax.chain(clipper, main))


# ------------------------------------------------------------------------ state/steps

def init_state(config, key, *, setup: Setup | None = None) -> TrainState:
    """A fresh :class:`TrainState`: params and optimizer state from ``key``."""
    setup = _setup(config, setup)
    k_init, k_run = jax.random.split(key)
    return TrainState.create(params=setup.model.init(k_init), tx=setup.optimizer, key=k_run)


def _tree_any_differs(a, b):
    diffs = [jnp.any(x != y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                             jax.tree_util.tree_leaves(b))]
    return jnp.any(jnp.stack(diffs)) if diffs else jnp.zeros((), bool)


def _select(pred, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def make_train_step(config, *, setup: Setup | None = None) -> Callable:
    """``train_step(state, batch, key) -> (state, metrics)``, unjitted.

    ``key`` is the step's noise key (for stochastic models; the built-in models are
    deterministic and ignore it). Metrics are those listed in the module docstring.
    """
    setup = _setup(config, setup)
    model, task, optimizer, clipper = setup.model, setup.task, setup.optimizer, setup.clipper
    skip_nonfinite = bool(config.skip_nonfinite)

    def loss_fn(params, batch):
        outputs = model.apply(params, batch)
        return task.loss(outputs, batch), outputs

    def train_step(state: TrainState, batch, key):
        del key  # deterministic models; kept in the signature for dropout and the like
        (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        grad_norm = optax.tree.norm(grads)
        # Clipping transforms are stateless, so re-running the clipper is how we learn
        # whether it changed anything, in every clip mode alike. ``clipped`` reports this
        # global clipper only, not the extra optimizer.recurrent.clip_norm on w_h.
        clipped_grads, _ = clipper.update(grads, clipper.init(state.params), state.params)
        clipped = _tree_any_differs(grads, clipped_grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        loss_ok = jnp.isfinite(loss)
        grad_ok = jnp.isfinite(grad_norm)
        skipped = jnp.zeros((), bool)
        if skip_nonfinite:
            ok = loss_ok & grad_ok
            params = _select(ok, params, state.params)
            opt_state = _select(ok, opt_state, state.opt_state)
            skipped = ~ok

        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in task.metrics(outputs, batch).items()}
        metrics.update(
            loss=loss.astype(jnp.float32),
            grad_norm=grad_norm,
            update_norm=optax.tree.norm(updates),
            param_norm=optax.tree.norm(params),
            clipped=clipped.astype(jnp.float32),
            nonfinite_loss=(~loss_ok).astype(jnp.float32),
            nonfinite_grad=(~grad_ok).astype(jnp.float32),
            skipped=skipped.astype(jnp.float32),
        )
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def step_keys(run_key, step):
    """``(data_key, noise_key)`` of one step: pure functions of the run key and step."""
    data_root, noise_root = jax.random.split(run_key)
    return jax.random.fold_in(data_root, step), jax.random.fold_in(noise_root, step)


def run_steps(config, state: TrainState, num_steps: int, *, mesh=None,
              setup: Setup | None = None):
    """Take ``num_steps`` training steps with ``lax.scan``; pure and jittable.

    Args:
      config: the training config.
      state: the starting :class:`TrainState`.
      num_steps: a Python int (the scan length).
      mesh: optional ``jax.sharding.Mesh`` with a ``"data"`` axis; each batch is then
        constrained to be sharded along its batch axis over that mesh (data
        parallelism; XLA inserts the gradient all-reduce). Params stay replicated.
      setup: the run's :class:`Setup` (built from ``config`` when None).

    Returns:
      ``(state, metrics)`` with every metric stacked to shape ``[num_steps]``.
    """
    setup = _setup(config, setup)
    task = setup.task
    train_step = make_train_step(config, setup=setup)
    batch_size, seq_len = config.batch_size, config.task.seq_len
    sharding = None
    if mesh is not None:
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    def body(state, _):
        data_key, noise_key = step_keys(state.key, state.step)
        batch = task.sample(data_key, batch_size, seq_len)
        if sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, sharding)
        return train_step(state, batch, noise_key)

    return jax.lax.scan(body, state, None, length=num_steps)


def make_train(config, *, mesh=None) -> Callable:
    """``train(key) -> (state, metrics)``: init plus ``config.num_steps`` steps.

    ``jax.jit(jax.vmap(train))(keys)`` trains one model per key as a single program.
    The config is validated here, before anything is traced, and the model, task and
    optimizer are built once (:func:`make_setup`).
    """
    setup = make_setup(config)
    config, num_steps = setup.config, setup.config.num_steps

    def train(key):
        return run_steps(config, init_state(config, key, setup=setup), num_steps, mesh=mesh,
                         setup=setup)

    return train


def seed_keys(config):
    """``(train_keys [num_seeds, 2], eval_key [2])`` derived from ``config.seed``.

    Seed ``i`` trains from ``fold_in(train_root, i)`` whatever ``num_seeds`` is, so a
    seed's run does not depend on how many seeds ran beside it. All seeds share one
    eval set.
    """
    train_root, eval_key = jax.random.split(jax.random.PRNGKey(config.seed))
    keys = jnp.stack([jax.random.fold_in(train_root, i) for i in range(config.num_seeds)])
    return keys, eval_key


def holdout_key(config):
    """Key of the final TEST set: disjoint from the training keys and from the eval key.

    The periodic eval set (``seed_keys``' eval key) selects the best checkpoint, so the
    final result is reported on other fresh sequences. ``PRNGKey(seed)`` is split in two
    for training and eval; folding the seed's key with a constant gives a third,
    independent stream.
    """
    return jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x7E57)


def make_eval(config, *, setup: Setup | None = None) -> Callable:
    """``evaluate(params, key) -> metrics``: loss and task metrics on fresh sequences.

    The eval set holds ``config.task.eval_size`` sequences (0 means the task's own
    ``eval_size``, e.g. 2560 for the 1997 adding problem), drawn from ``key``.
    """
    setup = _setup(config, setup)
    model, task = setup.model, setup.task
    size = config.task.eval_size or task.eval_size

    def evaluate(params, key):
        batch = task.sample(key, size, config.task.seq_len)
        outputs = model.apply(params, batch)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in task.metrics(outputs, batch).items()}
        metrics["loss"] = jnp.asarray(task.loss(outputs, batch), jnp.float32)
        return metrics

    return evaluate
