"""The tanh RNN on the 1997 adding problem (T = 100), in exactly the LSTM's budget.

    python -m experiments.train --config=experiments/configs/adding_rnn.py --workdir=/tmp/adding_rnn

Everything but the cell is experiments/configs/adding.py (H = 64, Adam 1e-3 with 500
warmup steps and cosine decay, global-norm clip 1, batch 32, 10k steps): the row of the
reproduction table that says the LSTM solves the task (Hochreiter & Schmidhuber 1997,
Exp. 4) and the tanh RNN (orthogonal recurrent init) does not within the same budget.

Measured (seed 0, 2-core CPU shared at load ~10; 1 min 23 s wall, 27 s CPU): 2185/2560
wrong (error_rate 0.854), MSE 0.0402 against 0.0392 for always predicting 0.5, flat from
step 1000 to 10000. The LSTM config reaches 0/2560 in the same run length.
"""

from experiments.configs import adding


def get_config():
    config = adding.get_config()
    config.cell = "rnn"
    return config
