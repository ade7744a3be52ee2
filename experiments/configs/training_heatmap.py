"""Config of the gradient-flow-while-training study (experiments/training_heatmap.py).

    python -m experiments.training_heatmap --workdir=runs/training_heatmap

Trains a tanh RNN and a chrono-initialised LSTM (Tallec & Ollivier 2018, T_max = T) on the
1997 adding problem with ``diagnostics_every`` probes on, and draws
log10 ||dL/dh_t|| as a heatmap over lag x training step, the two models side by side,
plus the probes' top Lyapunov exponent and mean forget-gate timescale over training.

Runtime and result: see BUILD_NOTES.md ("Issue 15").
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.models = "rnn,lstm_chrono"      # names from rnn_jax.studies.training_heatmap.MODELS
    c.seq_len = 100
    c.hidden_size = 64
    c.batch_size = 32
    c.num_steps = 1500
    c.diagnostics_every = 25
    c.optimizer = ml_collections.ConfigDict()  # Adam, constant; fields as in experiments.train
    c.optimizer.learning_rate = 3e-3
    c.optimizer.clip_norm = 1.0       # global-norm clipping (Pascanu et al. 2013)
    c.seed = 0
    return c
