"""Configs of the gradient-versus-lag study (experiments/gradient_lag.py).

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
"""

import ml_collections

VARIANTS = ("models", "radius")


def get_config(variant: str = "models") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS} "
                         f"(--config=experiments/configs/gradient_lag.py:<variant>), got {variant!r}")
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.task = "adding"              # rnn_jax.tasks name; its inputs drive the cells
    c.seq_len = 100                # the task's T (1997 adding: lengths in [T, 1.1T])
    c.hidden_size = 64
    c.num_seeds = 3                # seeds run as one vmapped program
    c.seed = 0
    c.diag_batch = 16              # sequences per seed the gradient norms are averaged over
    if variant == "models":
        # Comma-separated names from experiments.gradient_lag.MODELS.
        c.models = "rnn,lstm_fb0,lstm_fb1,lstm_chrono,gru"
        c.measure_at = (0, 100, 1000)  # training steps at which to measure; 0 = init
        c.train_batch = 16
        c.learning_rate = 3e-3     # Adam
        c.clip_norm = 1.0          # global-norm clipping (Pascanu et al. 2013)
    else:
        c.seq_len = 60             # keeps the linear radius-1.5 RNN's loss inside float32
        c.radii = (0.5, 0.9, 1.0, 1.1, 1.5)
        c.activations = ("linear", "tanh")
        c.spectra_lags = (1, 10, 50)
        c.jacobian_batch = 4       # sequences per seed for the (D x D) Jacobian products
    return c
