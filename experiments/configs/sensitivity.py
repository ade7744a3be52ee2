"""Config of the parameter-sensitivity study (experiments/sensitivity.py).

    python -m experiments.sensitivity --workdir=runs/sensitivity

Reproduces the qualitative result of Zucchet & Orvieto 2024 (arXiv 2405.21064): the
hidden state's sensitivity to the recurrent parameter, ``||d h_T / d theta||``, grows
without bound as the memory ``|lambda| -> 1`` of a linear recurrence
``h_t = lambda h_{t-1} + gamma x_t`` (as ``(1-lambda)^(-3/2)`` for gamma = 1), the LRU's
input normalisation ``gamma = sqrt(1 - lambda^2)`` removes one half power (``(1-lambda)^-1``)
and with the exponential parametrisation ``lambda = exp(-exp(nu))`` the sensitivity to nu
stays bounded. The same measurement on an LSTM whose forget gate is held at
``sigmoid(b_f)`` plots ``||d h_T / d W_h||`` against the forget-gate timescale.

Runtime: see BUILD_NOTES.md ("Issue 15"). Expected result: the measured RMS sensitivities
lie on the closed-form curves (within the sampling error of ``batch`` sequences, ~10%
for 256), slopes -1.5 / -1 / 0 in log-log against 1 - lambda.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Linear recurrence: 1 - lambda on a log grid, white N(0, 1) inputs.
    c.one_minus_lambda = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    c.seq_len = 6000               # >> 1/(1 - lambda) for every lambda: stationary at T
    c.batch = 256                  # sequences the mean square is taken over
    # LSTM with a constant forget gate f = sigmoid(b_f) (its input and recurrent weights zeroed).
    c.lstm_hidden = 4
    c.lstm_forget_biases = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)   # timescales ~1.4 ... 150 steps
    c.lstm_seq_len = 1500
    c.lstm_batch = 32
    return c
