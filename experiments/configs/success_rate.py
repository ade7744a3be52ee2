r"""Configs of the success-rate study (experiments/success_rate.py).

    python -m experiments.success_rate --workdir=/tmp/success_rate
    python -m experiments.success_rate --workdir=/tmp/success_rate_full \
        --config=experiments/configs/success_rate.py:full

Every point (cell x clipping x T) trains ``num_seeds`` seeds as one vmapped program for
``num_steps`` Adam updates and counts the seeds that meet the task's own success
criterion on ``eval_size`` fresh sequences (0 = the task's ``eval_size``).

Default: the temporal order task of Pascanu, Mikolov & Bengio 2013 (arXiv 1211.5063;
success = fewer than 1% of 10000 fresh sequences misclassified), T in {10, 20, 40, 80},
tanh RNN / LSTM / GRU with H = 32, clipping off and at global norm 1, 8 seeds, 600 Adam
steps (lr 1e-3) of batch 32: 24 points. Measured on the 2-core CPU, shared (load ~10):
10 min 20 s wall, 301 s CPU; most of it is compiling the 24 programs (~10-25 s each
under that load). Success counts (no clip / clip), T = 10, 20, 40, 80:
tanh RNN 8,8,5,0 / 8,8,3,0; LSTM 8,8,7,7 / 8,8,8,6; GRU 8,8,8,0 / 8,8,8,0 (of 8).

":full": T in {10, 20, 40, 80, 160}, H = 64, 16 seeds, 2000 steps: 30 points. Expected
about 2 hours on the same shared 2-core CPU, extrapolated from two measured points
(LSTM with clipping: T = 40 in 235 s, 16/16 succeed; T = 160 in 538 s, 11/16 succeed);
minutes on a GPU.

:modern (issue 14): the classic and modern cells (rnn, lstm chrono, gru, lru, min_gru,
min_lstm, slstm, indrnn; kwargs in config.cell_kwargs) on adding_le (Le et al. 2015; success:
MSE < 10% of the 1/6 baseline), T in {100, 300, 1000}, H=32, clipping at 1, 4 seeds, 200 Adam
steps (lr 5e-3) of batch 16, scored on 256 fresh sequences: 24 points. :modern_copy: the same
on copy memory (success: <= 1% of sequences with a wrong symbol).
    python -m experiments.success_rate --workdir=runs/sr_modern --config=experiments/configs/success_rate.py:modern
Runtime on the shared 2-core AMD EPYC (load 14-26): about 80 min wall, 60-550 s per point
(T=1000 points the longest). Expected: 0/4 successes at every point, for every cell; final MSE
within ~10% of the baseline (see README, "Modern cells in the studies"). That budget is far
below the published ones (IndRNN: thousands of steps of batch 50); it measures what each cell
learns in 3200 sequences, and the figure's second row (final loss / baseline) shows it.
    python -m experiments.success_rate --workdir=runs/sr_modern_copy --config=experiments/configs/success_rate.py:modern_copy
Runtime 3383 s wall on the same machine. Expected: 0/4 at every point; cross-entropy /
baseline from 0.95 (LRU, T=100) to ~3.6 (LSTM, T=1000, still above the memoryless solution).

Pascanu et al. trained with plain SGD (lr 0.01, clip 1, batch 20, 50 hidden units, T
50..200); for that setting add --config.optimizer.name=sgd --config.optimizer.learning_rate=0.01
--config.batch_size=20 and expect far lower success within the default budget. With Adam
(the default) clipping changes little: Adam already normalises the update size.
"""

import ml_collections

VARIANTS = ("default", "full", "tiny", "modern", "modern_copy", "modern_tiny")

# Constructor kwargs of every cell in the :modern variants (rnn_jax.cells.<cell>(H, **kwargs)).
# Strings "T" and "2^(1/T)" are resolved per point against its T. Override one as e.g.
# --config.cell_kwargs.lru.r_min=0.99.
MODERN_CELL_KWARGS = {
    "rnn": {"recurrent_init": "orthogonal"},
    "lstm": {"chrono_t_max": "T"},                   # Tallec & Ollivier 2018
    "gru": {},
    "lru": {"r_min": 0.9, "r_max": 0.999, "max_phase": 0.3141592653589793},  # Orvieto et al. 2023
    "min_gru": {},
    "min_lstm": {},
    "slstm": {"num_heads": 4, "forget_gate": "sigmoid", "forget_bias": 1.0},
    "indrnn": {"activation": "relu", "recurrent_max": "2^(1/T)"},  # Li et al. 2018
}


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS} "
                         f"(--config=experiments/configs/success_rate.py:<variant>), got {variant!r}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.task = ml_collections.ConfigDict()  # spelt as in experiments.train (task.name, task.kwargs)
    c.task.name = "temporal_order_pascanu"   # rnn_jax.tasks name with output_mode "last" or "all"
    c.task.kwargs = ml_collections.ConfigDict()
    c.seq_lens = (10, 20, 40, 80)       # the task's T, increasing
    c.cells = "rnn,lstm,gru"            # comma-separated subset of rnn_jax.models.CELLS
    c.clip = (False, True)              # clipping off / on, each a separate point
    # Constructor kwargs per cell (rnn_jax.cells.<cell>).
    c.cell_kwargs = ml_collections.ConfigDict({"rnn": {}, "lstm": {}, "gru": {}})
    c.hidden_size = 32
    # The training engine's optimizer fields, spelt as in experiments.train (optimizer.name, ...).
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"           # rnn_jax.train.config.OPTIMIZERS
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"   # rnn_jax.train.config.SCHEDULES
    c.optimizer.warmup_steps = 0
    c.optimizer.clip_norm = 1.0         # global-norm threshold of the clip-on points (Pascanu et al. 2013)
    c.batch_size = 32
    c.num_steps = 600                   # the fixed budget of updates
    c.num_seeds = 8                     # seeds per point, one vmapped program
    c.seed = 0
    c.eval_size = 0                     # fresh test sequences; 0 = the task's eval_size
    c.eval_batch = 1000                 # evaluate in chunks of at most this many sequences
    if variant == "full":
        c.seq_lens = (10, 20, 40, 80, 160)
        c.hidden_size = 64
        c.num_steps = 2000
        c.num_seeds = 16
        c.eval_batch = 500
    elif variant in ("modern", "modern_copy", "modern_tiny"):
        c.task.name = "copy_memory" if variant == "modern_copy" else "adding_le"
        c.cells = ",".join(MODERN_CELL_KWARGS)
        c.cell_kwargs = ml_collections.ConfigDict(MODERN_CELL_KWARGS)
        c.seq_lens = (100, 300, 1000)
        c.clip = (True,)
        c.hidden_size = 32
        c.optimizer.learning_rate = 5e-3
        c.batch_size = 16
        c.num_steps = 200
        c.num_seeds = 4
        c.eval_size = 256
        c.eval_batch = 256
        if variant == "modern_tiny":    # for tests
            c.cells = "indrnn"          # its kwargs hold the per-T placeholder
            c.seq_lens = (4,)
            c.hidden_size = 4
            c.batch_size = 2
            c.num_steps = 2
            c.num_seeds = 2
            c.eval_size = 8
            c.eval_batch = 8
    elif variant == "tiny":             # for tests: seconds, not minutes
        c.seq_lens = (10,)
        c.cells = "rnn"
        c.hidden_size = 4
        c.batch_size = 4
        c.num_steps = 3
        c.num_seeds = 2
        c.eval_size = 40
        c.eval_batch = 16
    return c
