r"""Configs of the gradient-versus-lag study (experiments/gradient_lag.py).

    python -m experiments.gradient_lag --workdir=/tmp/gradient_lag
    python -m experiments.gradient_lag --config=experiments/configs/gradient_lag.py:radius \
        --workdir=/tmp/gradient_lag_radius

Default ("models"): tanh RNN (orthogonal), LSTM with forget bias 0 / 1 / chrono init, GRU, on
the 1997 adding problem's inputs, measured at init and after training. ":radius": vanilla
RNN, linear and tanh, recurrent matrix = radius x orthogonal, measured at init.

Runtime (default): 51 s wall, 63 s CPU on an idle 2-core x86 CPU (jax 0.10.2).
Expected result (default, seed 0): orders of magnitude that log10 ||dL/dh_t|| drops over
lags 0..99, at steps 0 / 100 / 1000: tanh RNN 2.96 / 9.72 / 7.65; LSTM forget bias 0
13.49 / 14.45 / 15.83; forget bias 1 2.06 / 4.40 / 6.39; chrono 2.75 / 2.21 / 1.19 (the
only model that learns the task: train loss 0.0003 vs ~0.034); GRU 13.07 / 13.79 / 13.84.
":radius": the linear RNN's Jacobian norm slope is exactly log10(r) per lag; the tanh
RNN's stays below it (-0.305 ... +0.033 per lag for r = 0.5 ... 1.5).

":modern" (issue 14): tanh RNN, LSTM (chrono), GRU, LRU (r_min 0.9 / 0.99, r_max 0.999,
phases in [0, pi/10]), minGRU, minLSTM, sLSTM (4 heads), IndRNN (relu, |u| <= 2^(1/T)), T=100,
H=64, 3 seeds x 16 sequences, measured at steps 0 / 100 / 1000 (Adam 3e-3, clip 1, batch 16);
every model's cell kwargs are in config.model_kwargs.

    python -m experiments.gradient_lag --workdir=runs/gl_modern \
        --config=experiments/configs/gradient_lag.py:modern

Runtime: 2173 s wall on the 2-core AMD EPYC shared with other jobs (load 14-26), nice 10.
Expected (seed 0; orders of magnitude log10 ||dL/dh_t|| drops over lags 0..99 at steps
0 / 100 / 1000; LRU: the complex state's norm): tanh RNN 2.96 / 9.72 / 7.65; LSTM chrono
2.75 / 2.21 / 1.19; GRU 13.07 / 13.79 / 13.84; LRU r_min 0.9 0.51 / 0.57 / 0.39; LRU r_min 0.99
0.18 / 0.19 / 0.21; minGRU 29.80 / 28.90 / 27.74; minLSTM 29.79 / 29.35 / 28.25; sLSTM
7.51 / 7.31 / 8.09; IndRNN: exactly zero (all ReLU units off) for some sequences beyond a
lag, so its log-mean curve ends there.

":modern_long": the same cells at T=1000, H=64, 2 seeds x 4 sequences, at init and after
100 steps of batch 8. Runtime and result: see README ("Modern cells in the studies").
"""

import ml_collections

VARIANTS = ("models", "radius", "modern", "modern_long")

# Cell kwargs of every model of the :modern variants (rnn_jax.cells.<cell>(H, **kwargs));
# strings "T" and "2^(1/T)" are resolved against seq_len. Override one as e.g.
# --config.model_kwargs.lru_r090.r_max=0.99.
MODERN_KWARGS = {
    "rnn": {"recurrent_init": "orthogonal"},
    "lstm_chrono": {"chrono_t_max": "T"},
    "gru": {},
    "lru_r090": {"r_min": 0.9, "r_max": 0.999, "max_phase": 0.3141592653589793},
    "lru_r099": {"r_min": 0.99, "r_max": 0.999, "max_phase": 0.3141592653589793},
    "min_gru": {},
    "min_lstm": {},
    "slstm": {"num_heads": 4, "forget_gate": "sigmoid", "forget_bias": 1.0},
    "indrnn": {"activation": "relu", "recurrent_max": "2^(1/T)"},
}


def get_config(variant: str = "models") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS} "
                         f"(--config=experiments/configs/gradient_lag.py:<variant>), got {variant!r}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.task = ml_collections.ConfigDict()
    c.task.name = "adding"         # rnn_jax.tasks name; its inputs drive the cells
    c.seq_len = 100                # the task's T (1997 adding: lengths in [T, 1.1T])
    c.hidden_size = 64
    c.num_seeds = 3                # seeds run as one vmapped program
    c.seed = 0
    c.diag_batch = 16              # sequences per seed the gradient norms are averaged over
    if variant in ("modern", "modern_long"):
        c.variant = "models"       # the same study, more cells
        c.models = ",".join(MODERN_KWARGS)
        c.model_kwargs = ml_collections.ConfigDict(MODERN_KWARGS)
        c.measure_at = (0, 100, 1000)
        c.train_batch = 16
        c.optimizer = ml_collections.ConfigDict({"learning_rate": 3e-3, "clip_norm": 1.0})
        if variant == "modern_long":
            c.seq_len = 1000
            c.num_seeds = 2
            c.diag_batch = 4
            c.measure_at = (0, 100)
            c.train_batch = 8
    elif variant == "models":
        # Comma-separated names from experiments.gradient_lag.MODELS.
        c.models = "rnn,lstm_fb0,lstm_fb1,lstm_chrono,gru"
        # Per model, cell kwargs over MODELS' own, e.g. --config.model_kwargs.lstm_fb1.forget_bias=2.0
        c.model_kwargs = ml_collections.ConfigDict()
        c.measure_at = (0, 100, 1000)  # training steps at which to measure; 0 = init
        c.train_batch = 16
        c.optimizer = ml_collections.ConfigDict()   # Adam; fields as in experiments.train
        c.optimizer.learning_rate = 3e-3
        c.optimizer.clip_norm = 1.0    # global-norm clipping (Pascanu et al. 2013)
    else:
        c.seq_len = 60             # keeps the linear radius-1.5 RNN's loss inside float32
        c.radii = (0.5, 0.9, 1.0, 1.1, 1.5)
        c.activations = ("linear", "tanh")
        c.spectra_lags = (1, 10, 50)
        c.jacobian_batch = 4       # sequences per seed for the (D x D) Jacobian products
    return c
