"""The training config: every field with its default, and validation before anything compiles.

Field names are public interface (experiment configs and ``--config.<field>=...`` flags
use them). ``default_config()`` is the single place that lists them; experiment
configs start from it and override what they need.
"""

from __future__ import annotations

import functools
import math

import jax
import ml_collections

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "warmup_cosine", "exponential")
CLIP_MODES = ("global_norm", "value", "adaptive", "none")

# Fields that may change between a run and its resume: how long and how often, how
# many devices share the batch (same result to float tolerance), and whether
# non-finite updates are skipped (the way to continue past a NaN stop). Anything else
# differing means an incompatible checkpoint.
RESUMABLE_FIELDS = ("num_steps", "eval_every", "checkpoint_every", "log_every",
                    "keep_checkpoints", "progress_every_s", "num_devices", "skip_nonfinite",
                    "diagnostics_every")


def default_config() -> ml_collections.ConfigDict:
    """All training fields and their defaults (an LSTM on the 1997 adding problem)."""
    c = ml_collections.ConfigDict()
    # Model.
    c.cell = "lstm"                      # a name in rnn_jax.models.CELLS (rnn, lstm, gru, lru, ...)
    c.hidden_size = 128
    c.cell_kwargs = ml_collections.ConfigDict()  # constructor kwargs of rnn_jax.cells.<cell>
    # Mixed precision: the cell's matmul operands in this dtype, accumulation, parameters and
    # carry in float32 (rnn_jax.models.COMPUTE_DTYPES: float32, bfloat16, float16).
    c.compute_dtype = "float32"
    # Task.
    c.task = ml_collections.ConfigDict()
    c.task.name = "adding"               # rnn_jax.tasks.names()
    c.task.seq_len = 100                 # the task's length parameter T
    c.task.kwargs = ml_collections.ConfigDict()  # constructor kwargs of the task
    c.task.eval_size = 0                 # fresh eval sequences; 0 = the task's eval_size
    # Optimizer (optax).
    o = c.optimizer = ml_collections.ConfigDict()
    o.name = "adam"                      # OPTIMIZERS
    o.learning_rate = 1e-3               # peak learning rate
    o.momentum = 0.9                     # momentum / nesterov
    o.b1 = 0.9                           # adam / adamw
    o.b2 = 0.999
    o.eps = 1e-8                         # adam / adamw / rmsprop
    o.decay = 0.9                        # rmsprop squared-gradient decay
    o.weight_decay = 0.0                 # adamw only (decoupled, Loshchilov & Hutter 2019)
    o.schedule = "constant"              # SCHEDULES
    o.warmup_steps = 0                   # warmup_cosine: linear warmup from 0
    o.decay_steps = 0                    # warmup_cosine: total length; 0 = num_steps
    o.end_learning_rate = 0.0            # warmup_cosine: final value
    o.transition_steps = 1000            # exponential: lr * decay_rate ** (step / transition_steps)
    o.decay_rate = 0.5
    o.clip_mode = "global_norm"          # CLIP_MODES
    o.clip_norm = 0.0                    # global_norm threshold (Pascanu et al. 2013); 0 = no clipping
    o.clip_value = 1.0                   # value mode: clip each gradient entry to [-v, v]
    o.adaptive_clip = 0.01               # adaptive mode: unit-wise ratio (Brock et al. 2021)
    # Separate settings for the recurrent weights (training.RECURRENT_PARAMS), via optax.multi_transform.
    r = o.recurrent = ml_collections.ConfigDict()
    r.enabled = False
    r.learning_rate = 1e-3               # same schedule shape, this peak value
    r.clip_norm = 0.0                    # extra global-norm clip over the w_h gradients; 0 = none
    # Loop.
    c.batch_size = 32
    c.num_steps = 10_000
    c.seed = 0
    c.num_seeds = 1                      # seeds trained as one vmapped program
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.log_every = 100
    c.keep_checkpoints = 3               # the latest few; the best by eval metric is kept too
    c.progress_every_s = 10.0            # seconds between progress log lines
    c.skip_nonfinite = False             # True: skip updates with non-finite loss/grads instead of stopping
    c.num_devices = 0                    # shard the batch over this many local devices; 0 = all
    c.diagnostics_every = 0              # gradient-flow probes every N steps (rnn_jax.train.probes); 0 = off
    return c


def _field_error(field, allowed, got):
    return ValueError(f"config.{field} must be {allowed}, got {got!r}")


def check_int(config, field, minimum=1):
    """Raise a ValueError naming ``config.<field>`` (dotted) unless it is an int >= minimum."""
    value = config[field]  # ConfigDict resolves dotted names
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _field_error(field, f"an int >= {minimum}", value)


def check_names(config, field: str, allowed) -> list[str]:
    """``config.<field>``, a comma-separated string, as a list of distinct names from ``allowed``."""
    value = config[field]
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    if not names or any(n not in allowed for n in names) or len(set(names)) != len(names):
        raise _field_error(field, f"a comma-separated list of distinct names from {sorted(allowed)}",
                           value)
    return names


def check_experiment(config, defaults, experiment: str, source: str) -> None:
    """The shared start of the applications' ``validate``: every field of ``defaults`` is
    present, and ``config.experiment`` names this experiment, so that one experiment never
    loads another's workdir."""
    missing = [k for k in defaults if k not in config]
    if missing:
        raise ValueError(f"config is missing fields {missing}; start from {source}")
    if config.experiment != experiment:
        raise _field_error("experiment", repr(experiment), config.experiment)


def _nonneg_float(config, field, strictly=False):
    value = config[field]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (strictly and value == 0):
        raise _field_error(field, "a finite number " + ("> 0" if strictly else ">= 0"), value)


def check_optimizer(config) -> None:
    """Check ``config.optimizer`` (the fields of :func:`default_config`) against
    ``config.num_steps``; every experiment that trains with
    ``rnn_jax.train.training.make_optimizer`` calls it from its ``validate``."""
    o = config.optimizer
    if o.name not in OPTIMIZERS:
        raise _field_error("optimizer.name", f"one of {list(OPTIMIZERS)}", o.name)
    if o.schedule not in SCHEDULES:
        raise _field_error("optimizer.schedule", f"one of {list(SCHEDULES)}", o.schedule)
    if o.clip_mode not in CLIP_MODES:
        raise _field_error("optimizer.clip_mode", f"one of {list(CLIP_MODES)}", o.clip_mode)
    _nonneg_float(config, "optimizer.learning_rate", strictly=True)
    for field in ("momentum", "b1", "b2", "decay"):
        v = o[field]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
            raise _field_error(f"optimizer.{field}", "a number in [0, 1)", v)
    _nonneg_float(config, "optimizer.decay_rate", strictly=True)
    _nonneg_float(config, "optimizer.eps", strictly=True)
    _nonneg_float(config, "optimizer.weight_decay")
    _nonneg_float(config, "optimizer.end_learning_rate")
    _nonneg_float(config, "optimizer.clip_norm")
    _nonneg_float(config, "optimizer.clip_value", strictly=o.clip_mode == "value")
    _nonneg_float(config, "optimizer.adaptive_clip", strictly=o.clip_mode == "adaptive")
    check_int(config, "optimizer.warmup_steps", minimum=0)
    check_int(config, "optimizer.decay_steps", minimum=0)
    check_int(config, "optimizer.transition_steps")
    if o.weight_decay > 0 and o.name != "adamw":
        raise ValueError(f"config.optimizer.weight_decay > 0 needs optimizer.name 'adamw' "
                         f"(decoupled decay), got optimizer.name {o.name!r}")
    if o.schedule == "warmup_cosine":
        total = o.decay_steps or config.num_steps
        if o.warmup_steps >= total:
            raise ValueError(f"config.optimizer.warmup_steps ({o.warmup_steps}) must be below "
                             f"optimizer.decay_steps or num_steps ({total})")
        if o.decay_steps and o.decay_steps < config.num_steps and o.end_learning_rate == 0:
            # Past decay_steps the cosine schedule stays at end_learning_rate: with 0 every
            # further step would be a no-op update (issue 17, item 4).
            raise ValueError(
                f"config.optimizer.decay_steps ({o.decay_steps}) is below num_steps "
                f"({config.num_steps}): with the warmup_cosine schedule and "
                "optimizer.end_learning_rate=0 the steps past decay_steps train at learning "
                "rate 0. A finished cosine schedule cannot be extended in its workdir (changing "
                "decay_steps changes the learning rate of the steps already trained): train "
                f"the {config.num_steps}-step run in a new --workdir (decay_steps=0 follows "
                "num_steps), or set optimizer.end_learning_rate > 0")
    if o.recurrent.enabled:
        _nonneg_float(config, "optimizer.recurrent.learning_rate", strictly=True)
        _nonneg_float(config, "optimizer.recurrent.clip_norm")


def validate(config, model=None):
    """Raise ValueError/TypeError naming the bad field and its allowed values.

    Returns the ``models.make_model(config)`` it checked (``model`` when given, else
    built here), so a run builds its model once (:func:`rnn_jax.train.training.make_setup`).

    Runs in Python before anything is traced or compiled; the task's own checks (e.g.
    a minimum ``seq_len``) run through ``jax.eval_shape`` of its sampler, which does
    not compile either.
    """
    from rnn_jax import models, tasks  # local: models imports nothing from here

    missing = [k for k in default_config() if k not in config]
    if missing:
        raise ValueError(f"config is missing fields {missing}; start from "
                         "rnn_jax.train.config.default_config()")
    if config.cell not in models.CELLS:
        raise _field_error("cell", f"one of {sorted(models.CELLS)}", config.cell)
    if config.compute_dtype not in models.COMPUTE_DTYPES:
        raise _field_error("compute_dtype", f"one of {list(models.COMPUTE_DTYPES)}",
                           config.compute_dtype)
    if config.task.name not in tasks.names():
        raise _field_error("task.name", f"one of {tasks.names()}", config.task.name)
    for field in ("hidden_size", "task.seq_len", "batch_size", "num_steps", "num_seeds",
                  "eval_every", "checkpoint_every", "log_every", "keep_checkpoints"):
        check_int(config, field)
    check_int(config, "task.eval_size", minimum=0)
    check_int(config, "num_devices", minimum=0)
    check_int(config, "diagnostics_every", minimum=0)
    if not isinstance(config.seed, int) or isinstance(config.seed, bool) or config.seed < 0:
        raise _field_error("seed", "an int >= 0", config.seed)

    check_optimizer(config)

    # Devices per process, and the batch split over the ("seed", "data") mesh
    # (rnn_jax.train.distributed.layout), checked against every process's devices.
    from rnn_jax.train import distributed
    distributed.layout(config)

    # Cell and task constructors, and the task's own checks on seq_len.
    model = models.make_model(config) if model is None else model
    try:
        batch = jax.eval_shape(functools.partial(model.task.sample, batch_size=config.batch_size,
                                                 seq_len=config.task.seq_len),
                               jax.random.PRNGKey(0))
    except ValueError as e:
        raise ValueError(f"config.task.seq_len={config.task.seq_len} is invalid for task "
                         f"{config.task.name!r}: {e}") from e
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    jax.eval_shape(model.apply, params, batch)
    return model
